"""Merged export: base model + LoRA adapter -> one model folder (safetensors) with the adapter's tokenizer, chat
template and generation settings. This is what lighteval evaluates (``model_name=DIR``) and what a Space serves."""

from __future__ import annotations

import json
from pathlib import Path

DTYPES = ("float32", "bfloat16", "float16")


class MergeError(ValueError):
    """An adapter folder or output folder that cannot be merged; the message names it."""


def adapter_base(adapter: str | Path) -> str:
    """The base model an adapter was trained on (adapter_config.json's base_model_name_or_path)."""
    config = Path(adapter) / "adapter_config.json"
    if not config.is_file():
        raise MergeError(f"{adapter}: not a PEFT adapter folder (no adapter_config.json)")
    base = json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise MergeError(f"{config}: no base_model_name_or_path; pass the base model")
    return base


def merge_adapter(base: str | None, adapter: str | Path, out: str | Path, dtype: str = "float32",
                  trust_remote_code: bool = False) -> Path:
    """Base model + PEFT adapter -> one merged model folder (safetensors) with its tokenizer.

    ``base`` defaults to the adapter's own base model. ``out`` must be new or empty: lighteval caches generations
    per model path and would not notice new weights in a reused folder."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    adapter = Path(adapter)
    base = base or adapter_base(adapter)
    if not (adapter / "adapter_config.json").is_file():
        raise MergeError(f"{adapter}: not a PEFT adapter folder (no adapter_config.json)")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise MergeError(f"{out}: already exists and is not empty; merge into a new folder (lighteval caches "
                         "generations per model path and would not notice new weights there)")
    if dtype not in DTYPES:
        raise MergeError(f"dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    has_tokenizer = any((adapter / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))
    tokenizer = AutoTokenizer.from_pretrained(str(adapter) if has_tokenizer else base,
                                              trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=getattr(torch, dtype), use_safetensors=True,
                                                 trust_remote_code=trust_remote_code)
    if has_tokenizer and len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))  # the adapter added tokens (their rows are in the adapter)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    if (adapter / "generation_config.json").is_file():  # stop at the chat template's end of turn
        merged.generation_config = GenerationConfig.from_pretrained(str(adapter))
    merged.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
