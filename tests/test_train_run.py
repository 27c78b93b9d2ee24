"""Training runs of the tiny recipe on CPU: a tiny random Qwen2 built in-process, data built by the real builder from
real shared files, the real TRL/PEFT/Accelerate stack. Loss goes down, the adapter reloads with PeftModel and
generates, resume is exact, the merged export matches the adapter, a tokenizer without ChatML tokens gets them."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from builders.training.formatting import IM_END, IM_START
from test_train_format import PROMPTS, write_jsonl
from train_fixtures import LAUNCHED, load_sft, parse

LINEAR = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def losses(log_history) -> dict[int, float]:
    return {h["step"]: h["loss"] for h in log_history if "loss" in h}


def test_train_command_runs_the_tiny_recipe_through_accelerate(launched_run, train_mixture):
    """`arabic-prompts train` on a mixture made by `mix` from a build of real shared files: a real `accelerate
    launch` of training/sft.py (the session's launched run, which the tests below read too)."""
    out = launched_run.result()
    assert "accelerate.commands.launch --config_file" in launched_run.log.read_text()
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json", "chat_template.jinja",
                 "generation_config.json", "training_run.json", "checkpoint-2/adapter_model.safetensors",
                 "checkpoint-4/trainer_state.json"):
        assert (out / name).is_file(), name
    assert not (out / "adapter_model.bin").exists()
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert {m.split(".")[-1] for m in adapter["target_modules"]} == LINEAR  # all-linear: every projection
    assert adapter["r"] == 8 and adapter["lora_alpha"] == 16
    run = json.loads((out / "training_run.json").read_text())
    assert run["global_step"] == LAUNCHED["max_steps"] and run["final_eval_loss"] > 0 and run["final_train_loss"] > 0
    assert run["hyperparameters"]["assistant_only_loss"] is True and run["hyperparameters"]["packing"] is True
    assert run["datasets"][0]["fingerprint"] == json.loads((train_mixture / "build_manifest.json").read_text())["fingerprint"]
    assert run["datasets"][0]["mixture_recipe"]["size"] == 400 == run["rows"][str(train_mixture)]["train"]
    assert run["rows_used"]["train"] + run["rows_too_long"]["train"] == 400
    from transformers import AutoTokenizer, GenerationConfig

    from builders.training.formatting import chat_template

    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template == chat_template()  # saved with the adapter, generation markers and all
    assert tok.convert_tokens_to_ids(IM_END) in GenerationConfig.from_pretrained(out).eos_token_id


def test_loss_goes_down_on_a_small_repeated_set(tiny_base, train_build, tmp_path, single_thread):
    from builders.hub import load_built

    rows = load_built(train_build, "sentiment_analysis", split="train").select(range(4)).to_list()
    data = write_jsonl(tmp_path / "repeated.jsonl", rows * 16)
    trainer = load_sft().main(*parse(tiny_base, [data], tmp_path / "run", dataset_eval_split="none", max_steps=24,
                                     learning_rate=2e-2, save_strategy="no", lora_dropout=0.0))
    curve = losses(trainer.state.log_history)
    first, last = sum(curve[s] for s in (1, 2, 3)) / 3, sum(curve[s] for s in (22, 23, 24)) / 3
    print(f"loss on a repeated set, mean of steps 1-3 -> 22-24: {first:.3f} -> {last:.3f}")
    assert last < 0.5 * first, curve


def test_adapter_reloads_with_peft_and_generates(tiny_run, tiny_base):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_run)
    base = AutoModelForCausalLM.from_pretrained(tiny_base)
    base_logits_input = tok.apply_chat_template([{"role": "user", "content": PROMPTS[1]["inputs"]}],
                                                add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        base_logits = base(**base_logits_input).logits
    model = PeftModel.from_pretrained(base, tiny_run).eval()
    saved = load_file(tiny_run / "adapter_model.safetensors")
    state = {k.replace(".default", ""): v for k, v in model.state_dict().items() if "lora_" in k}
    assert saved and all(torch.equal(state[k], v) for k, v in saved.items())
    assert any(v.abs().sum() > 0 for k, v in saved.items() if "lora_B" in k)  # trained, not the zero init
    with torch.no_grad():
        logits = model(**base_logits_input).logits
        out = model.generate(**base_logits_input, max_new_tokens=12, do_sample=False)
    assert not torch.allclose(logits, base_logits)
    new = out[0, base_logits_input["input_ids"].shape[1]:]
    assert 0 < len(new) <= 12
    assert isinstance(tok.decode(new, skip_special_tokens=True), str)


def test_resume_continues_from_the_same_step_with_the_same_next_loss(tiny_run, tiny_base, train_mixture, tmp_path,
                                                                    single_thread):
    """tiny_run (launched by `arabic-prompts train`) trained 4 steps without stopping (checkpoints at 2 and 4); a
    new run in this process resumes from its checkpoint-2."""
    from transformers import TrainerCallback

    full = losses(json.loads((tiny_run / "checkpoint-4" / "trainer_state.json").read_text())["log_history"])
    trainer, _ = load_sft().build_trainer(*parse(tiny_base, [train_mixture], tmp_path / "resumed", **LAUNCHED))
    steps_run = []

    class Steps(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            steps_run.append(state.global_step)

    trainer.add_callback(Steps())
    trainer.train(resume_from_checkpoint=str(tiny_run / "checkpoint-2"))
    assert steps_run == [3, 4]  # it continued at step 3; steps 1-2 were not trained again
    resumed = losses(trainer.state.log_history)
    assert resumed[3] == pytest.approx(full[3], rel=1e-6) and resumed[4] == pytest.approx(full[4], rel=1e-6)


def test_merged_export_matches_the_adapters_logits(tiny_run, tiny_base, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from builders.cli import main

    assert main(["merge", str(tiny_run), "--out", str(tmp_path / "merged"), "--base", str(tiny_base)]) == 0
    assert main(["evaluate", "merge-adapter", "--base", str(tiny_base), "--adapter", str(tiny_run),
                 "--out", str(tmp_path / "merged2")]) == 0
    assert (tmp_path / "merged" / "model.safetensors").read_bytes() == \
        (tmp_path / "merged2" / "model.safetensors").read_bytes()  # one implementation behind both commands
    assert main(["merge", str(tiny_run), "--out", str(tmp_path / "merged"), "--base", str(tiny_base)]) == 2  # not empty
    tok = AutoTokenizer.from_pretrained(tmp_path / "merged")
    assert tok.chat_template == AutoTokenizer.from_pretrained(tiny_run).chat_template
    batch = tok([PROMPTS[0]["inputs"], PROMPTS[2]["inputs"]], return_tensors="pt", padding=True)
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")(**batch).logits
        adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base), tiny_run).eval()(**batch).logits
    torch.testing.assert_close(merged, adapter, atol=1e-5, rtol=1e-4)


def test_a_tokenizer_without_chatml_tokens_gets_them_trained_and_saved_with_the_adapter(tmp_path, single_thread):
    from peft import PeftModel
    from safetensors.torch import load_file
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

    from tiny_models import arabic_texts
    from train_fixtures import tiny_trainable_qwen2

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(arabic_texts(500), trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<eos>", pad_token="<eos>")
    assert IM_START not in tok.get_vocab()
    base = tmp_path / "base"
    tiny_trainable_qwen2(tok, base)
    data = write_jsonl(tmp_path / "rows.jsonl", PROMPTS * 4)
    trainer = load_sft().main(*parse(base, [data], tmp_path / "run", dataset_eval_split="none", max_steps=3,
                                     save_strategy="no", learning_rate=5e-2))
    run = json.loads((tmp_path / "run" / "training_run.json").read_text())
    assert run["added_tokens"] == [IM_START, IM_END]
    saved_tok, base_tok = AutoTokenizer.from_pretrained(tmp_path / "run"), AutoTokenizer.from_pretrained(base)
    assert len(saved_tok) == len(base_tok) + 2 and saved_tok.convert_tokens_to_ids(IM_END) == len(base_tok) + 1
    weights = load_file(tmp_path / "run" / "adapter_model.safetensors")
    assert any("embed_tokens" in k for k in weights)  # the resized embeddings travel with the adapter
    reloaded = AutoModelForCausalLM.from_pretrained(base)
    reloaded.resize_token_embeddings(len(saved_tok))
    reloaded = PeftModel.from_pretrained(reloaded, tmp_path / "run").eval()
    batch = saved_tok.apply_chat_template([{"role": "user", "content": PROMPTS[0]["inputs"]}],
                                          add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        expected = trainer.model.eval()(**batch).logits
        got = reloaded(**batch).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    from builders.training.merge import merge_adapter

    merged = AutoModelForCausalLM.from_pretrained(merge_adapter(str(base), tmp_path / "run", tmp_path / "merged"))
    with torch.no_grad():
        torch.testing.assert_close(merged(**batch).logits, expected, atol=1e-5, rtol=1e-4)
    shutil.rmtree(tmp_path / "merged")
