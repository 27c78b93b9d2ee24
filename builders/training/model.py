"""The base model and its tokenizer, ready for our chat template (safetensors only, no remote code by default)."""

from __future__ import annotations

from builders.training.formatting import IM_END, prepare_tokenizer


def load_tokenizer(model_args, training_args):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_args.model_name_or_path, revision=model_args.model_revision,
                                         trust_remote_code=training_args.trust_remote_code)


def load_model_and_tokenizer(model_args, training_args):
    """(model, tokenizer, ids of the tokens added to the vocabulary). The model is loaded the way TRL's own
    ``sft.py`` loads it (``create_model_from_path``: dtype, device map, DeepSpeed ZeRO-3 aware), from safetensors."""
    from trl.trainer.utils import create_model_from_path

    tokenizer = load_tokenizer(model_args, training_args)
    added = prepare_tokenizer(tokenizer)
    kwargs = dict(revision=model_args.model_revision, trust_remote_code=training_args.trust_remote_code,
                  attn_implementation=model_args.attn_implementation, dtype=model_args.dtype, use_safetensors=True)
    kwargs.update(training_args.model_init_kwargs or {})
    model = create_model_from_path(model_args.model_name_or_path, **kwargs)
    if added:
        # new rows start at the mean embedding (transformers' default); trained in full and saved with the adapter
        # (modules_to_save: config.lora_config)
        model.resize_token_embeddings(len(tokenizer))
    stop_ids = [tokenizer.convert_tokens_to_ids(IM_END)]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in stop_ids:
        stop_ids.append(tokenizer.eos_token_id)
    model.generation_config.eos_token_id = stop_ids
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer, tokenizer.convert_tokens_to_ids(added) if added else []
