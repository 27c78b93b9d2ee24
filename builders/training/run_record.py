"""``training_run.json``: what a run was (recipe, data and its versions, LoRA, results), written beside the adapter.
The model card is made from it, so a published adapter says exactly how it was trained."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict
from pathlib import Path

RUN_FILE = "training_run.json"
MIXTURE_RECIPE_FILES = ("mixture_recipe.json",)
HYPERPARAMETERS = ("learning_rate", "lr_scheduler_type", "warmup_steps", "num_train_epochs", "max_steps",
                   "per_device_train_batch_size", "gradient_accumulation_steps", "max_length", "packing",
                   "packing_strategy", "assistant_only_loss", "bf16", "activation_checkpointing", "weight_decay",
                   "optim", "seed")
LORA_KEYS = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "use_rslora", "use_dora")


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("torch", "transformers", "trl", "peft", "accelerate", "datasets"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def dataset_info(source: str, revision: str | None) -> dict:
    """Where a dataset came from and which version: a local folder's manifest fingerprint and mixture recipe,
    or the Hub id and revision."""
    path = Path(source).expanduser()
    info: dict = {"source": source}
    if path.is_dir():
        info["local"] = True
        manifest = path / "build_manifest.json"
        if manifest.is_file():
            data = json.loads(manifest.read_text(encoding="utf-8"))
            info.update({k: data[k] for k in ("fingerprint", "tool_version", "repo_id", "version") if k in data})
        for name in MIXTURE_RECIPE_FILES:
            if (path / name).is_file():
                info["mixture_recipe"] = json.loads((path / name).read_text(encoding="utf-8"))
    else:
        info.update(local=path.is_file(), revision=revision)
    return info


def jsonable(value):
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def record(data_args, training_args, model_args, loaded, train_output=None, eval_metrics=None,
           log_history=None) -> dict:
    args = training_args.to_dict()  # redacts every *_token value (the Hub token among them) ...
    for key in ("eos_token", "pad_token"):  # ... but these two are vocabulary tokens, not secrets
        args[key] = getattr(training_args, key, None)
    metrics = dict(getattr(train_output, "metrics", None) or {})
    history = list(log_history or [])
    return jsonable({
        "base_model": model_args.model_name_or_path,
        "base_model_revision": model_args.model_revision,
        "peft": bool(model_args.use_peft),
        "lora": {k: getattr(model_args, k) for k in LORA_KEYS} if model_args.use_peft else None,
        "hyperparameters": {k: args.get(k) for k in HYPERPARAMETERS},
        "datasets": [dataset_info(s, data_args.dataset_revision) for s in data_args.datasets],
        "data": asdict(data_args),
        "rows": loaded.counts,  # source -> split -> rows read
        "rows_used": {"train": len(loaded.train), "eval": len(loaded.eval) if loaded.eval is not None else 0},
        "rows_too_long": loaded.too_long,  # left out: longer than max_length tokens
        "added_tokens": list(loaded.added_tokens),
        "train_metrics": metrics,
        "eval_metrics": dict(eval_metrics or {}),
        "final_train_loss": next((h["loss"] for h in reversed(history) if "loss" in h), None),
        "final_eval_loss": (eval_metrics or {}).get("eval_loss"),
        "global_step": getattr(train_output, "global_step", None),
        "train_tokens": next((h["num_tokens"] for h in reversed(history) if "num_tokens" in h), None),
        "versions": _versions(),
        "platform": platform.platform(),
        "recipe": {"sft": args, "model": asdict(model_args)},
    })


def write(out_dir: str | Path, run: dict) -> Path:
    path = Path(out_dir) / RUN_FILE
    path.write_text(json.dumps(run, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read(run_dir: str | Path) -> dict:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; is {run_dir} a folder written by training/sft.py?")
    return json.loads(path.read_text(encoding="utf-8"))
