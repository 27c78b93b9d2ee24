"""Tiny random models built in-process for tests (no Hub, no download): a byte-level BPE tokenizer trained on
real Arabic text from ../shared/data with Qwen2's special tokens, and a tiny random Qwen2 causal LM saved as
safetensors. Shared by the evaluation, training, Space and dialogue tests."""

from __future__ import annotations

import csv
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# Qwen2's base tokenizer has these three; <|endoftext|> is its eos and pad token
QWEN2_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def arabic_texts(limit: int | None = None) -> list[str]:
    """Real Arabic sentences: AJGT tweets, then ARCD contexts and questions."""
    import json

    with open(SHARED_DATA / "ajgt" / "AJGT.csv", encoding="utf-8") as f:
        texts = [r["Feed"].strip() for r in csv.DictReader(f)]
    squad = json.loads((SHARED_DATA / "arcd" / "arcd-train.json").read_text(encoding="utf-8"))
    for art in squad["data"]:
        for para in art["paragraphs"]:
            texts.append(para["context"])
            texts += [q["question"] for q in para["qas"]]
    return texts[:limit]


def tiny_tokenizer(texts: list[str] | None = None, vocab_size: int = 800, model_max_length: int = 1024,
                   extra_specials: list[str] | None = None):
    """A PreTrainedTokenizerFast (byte-level BPE, so any text round-trips) with Qwen2's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = QWEN2_SPECIALS + list(extra_specials or [])
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts if texts is not None else arabic_texts(3000),
                            trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=specials[1:], model_max_length=model_max_length)


def tiny_qwen2(tokenizer, out: str | Path | None = None, seed: int = 0, hidden_size: int = 32, layers: int = 2,
               max_position_embeddings: int = 1024):
    """A tiny random Qwen2ForCausalLM for ``tokenizer``; saved (safetensors, with the tokenizer) when ``out``."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                      num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1,
                      max_position_embeddings=max_position_embeddings, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id, bos_token_id=None, tie_word_embeddings=True)
    model = Qwen2ForCausalLM(cfg)
    if out is not None:
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
    return model
