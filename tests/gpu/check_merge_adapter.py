"""On-demand GPU check (not collected by pytest; falls back to CPU): merge a LoRA adapter into a tiny random Qwen2
in bf16 with builders.training.merge.merge_adapter, compare the merged model's logits with base+adapter (unmerged) on
CUDA, and generate. Needs torch, transformers, peft and tokenizers only.

    python tests/gpu/check_merge_adapter.py      # from the repository root

Seen on an NVIDIA H200 (torch 2.11.0+cu130): max |logit diff| 0.0039 in bf16, argmax agreement 1.0.
"""
import json, sys, tempfile, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from builders.training.merge import merge_adapter
from peft import LoraConfig, PeftModel, get_peft_model
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

out = {"torch": torch.__version__, "cuda": torch.cuda.is_available(), "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}
DEV = "cuda" if torch.cuda.is_available() else "cpu"
root = Path(tempfile.mkdtemp())
texts = ["ما شعور هذه التغريدة؟ يوم جميل -> إيجابي", "اقرأ الفقرة ثم أجب: القاهرة عاصمة مصر -> القاهرة"] * 50
tok = Tokenizer(models.BPE(unk_token="<unk>"))
tok.pre_tokenizer = pre_tokenizers.Whitespace()
tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<pad>", "<eos>"]))
hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")
torch.manual_seed(0)
cfg = Qwen2Config(vocab_size=len(hf_tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
base = Qwen2ForCausalLM(cfg)
base.save_pretrained(root / "base", safe_serialization=True); hf_tok.save_pretrained(root / "base")
peft_model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
peft_model.save_pretrained(root / "adapter", safe_serialization=True)
t0 = time.time()
merge_adapter(str(root / "base"), root / "adapter", root / "merged", dtype="bfloat16")
out["merge_s"] = round(time.time() - t0, 2)
ids = torch.tensor([hf_tok(texts[0])["input_ids"]], device=DEV)
merged = AutoModelForCausalLM.from_pretrained(root / "merged", dtype=torch.bfloat16).to(DEV).eval()
ref = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(root / "base", dtype=torch.bfloat16).to(DEV), root / "adapter").eval()
with torch.no_grad():
    a, b = merged(ids).logits.float(), ref(ids).logits.float()
    out["merged_dtype"] = str(next(merged.parameters()).dtype)
    out["max_abs_logit_diff_bf16"] = float((a - b).abs().max())
    out["argmax_agree"] = float((a.argmax(-1) == b.argmax(-1)).float().mean())
    gen = merged.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=hf_tok.pad_token_id)
    out["generated_tokens"] = int(gen.shape[1] - ids.shape[1])
print(json.dumps(out))
assert out["argmax_agree"] > 0.9 and out["generated_tokens"] == 8
