"""Training data: the recipe's datasets, read from a local folder, a file or the Hub, as ``messages`` rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from builders.training.formatting import to_messages

FILE_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


@dataclass
class LoadedData:
    train: object  # datasets.Dataset of `messages`
    eval: object | None
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # source -> split -> rows
    too_long: dict[str, int] = field(default_factory=dict)  # train/eval -> rows left out (longer than max_length)
    added_tokens: list[str] = field(default_factory=list)  # tokens the tokenizer lacked (added, trained, saved)


def load_split(source: str, split: str, config: str = "default", revision: str | None = None):
    """One split of one dataset (a ``datasets.Dataset``), or None when the dataset has no such split."""
    from datasets import load_dataset

    path = Path(source).expanduser()
    if path.is_dir():
        from builders.hub import config_files, load_built

        if not (path / "README.md").is_file():
            raise ValueError(f"{source}: not a dataset folder (no README.md with `configs`)")
        if not config_files(path, config).get(split):
            return None
        return load_built(path, config, split=split)
    if path.is_file():
        fmt = FILE_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise ValueError(f"{source}: unknown file type (use {', '.join(FILE_FORMATS)})")
        ds = load_dataset(fmt, data_files=str(path), split="train")
        if "split" in ds.column_names:  # a flat export of a build: one file, a `split` column
            ds = ds.filter(lambda s: s == split, input_columns="split")
            return ds if len(ds) else None
        return ds if split == "train" else None
    if source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise ValueError(f"{source}: no such folder or file, and not a Hub dataset id (ORG/NAME)")
    try:
        return load_dataset(source, config, revision=revision, split=split)
    except ValueError as err:  # datasets: 'Unknown split "validation". Should be one of [...]'
        if "split" in str(err).lower():
            return None
        raise


def as_conversations(ds, source: str, split: str, num_proc: int | None = None):
    """Only a ``messages`` column, built from ``inputs``/``targets`` or checked from ``messages``."""
    has_id = "id" in ds.column_names

    def convert(row, idx):
        where = f"{source} [{split}] row {row['id'] if has_id else idx}"
        return {"messages": to_messages(row, where)}

    keep = [c for c in ("id", "inputs", "targets", "messages") if c in ds.column_names]
    return ds.select_columns(keep).map(convert, with_indices=True, remove_columns=keep, num_proc=num_proc,
                                       desc=f"Conversations from {Path(source).name} [{split}]")


def load_conversations(data_args, num_proc: int | None = None) -> LoadedData:
    """The recipe's train and eval splits, every source concatenated (in the recipe's order)."""
    from datasets import concatenate_datasets

    parts: dict[str, list] = {"train": [], "eval": []}
    counts: dict[str, dict[str, int]] = {}
    for source in data_args.datasets:
        wanted = [("train", data_args.dataset_train_split)]
        if data_args.dataset_eval_split:
            wanted.append(("eval", data_args.dataset_eval_split))
        for role, split in wanted:
            ds = load_split(source, split, data_args.dataset_config, data_args.dataset_revision)
            if ds is None:
                if role == "train":
                    raise ValueError(f"{source}: no `{split}` split to train on")
                continue
            parts[role].append(as_conversations(ds, source, split, num_proc))
            counts.setdefault(source, {})[split] = len(ds)
    train = concatenate_datasets(parts["train"])
    evals = concatenate_datasets(parts["eval"]) if parts["eval"] else None
    return LoadedData(train=train, eval=evals, counts=counts)


def limit_rows(loaded: LoadedData, data_args, seed: int) -> LoadedData:
    """``max_train_samples`` / ``max_eval_samples``: a seeded random subset (the rows of a dataset are grouped by
    task, so the first N would be one task), taken after over-long rows were left out."""
    for role, n in (("train", data_args.max_train_samples), ("eval", data_args.max_eval_samples)):
        ds = getattr(loaded, role)
        if ds is not None and n is not None and n < len(ds):
            setattr(loaded, role, ds.shuffle(seed=seed).select(range(n)))
    if loaded.eval is not None and not len(loaded.eval):
        loaded.eval = None  # nothing left to evaluate on
    return loaded


def drop_too_long(loaded: LoadedData, tokenizer, max_length: int | None, num_proc: int | None = None) -> LoadedData:
    """Leave out (and count) conversations longer than ``max_length`` tokens. Packing would cut them at
    ``max_length``, which usually cuts the answer away: the row would then cost compute and teach nothing (and an
    evaluation batch of such rows would pull the eval loss towards 0)."""
    if max_length is None:
        return loaded

    def fits(batch):
        ids = tokenizer.apply_chat_template(batch["messages"], tokenize=True, return_dict=False)
        return [len(x) <= max_length for x in ids]

    for role in ("train", "eval"):
        ds = getattr(loaded, role)
        if ds is None:
            continue
        kept = ds.filter(fits, batched=True, num_proc=num_proc, desc=f"Leaving out {role} rows over {max_length} tokens")
        loaded.too_long[role] = len(ds) - len(kept)
        setattr(loaded, role, kept)
    if not len(loaded.train):
        raise ValueError(f"no training row fits in max_length={max_length} tokens")
    return loaded
