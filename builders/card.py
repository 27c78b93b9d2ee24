"""Dataset card: Hub YAML (configs, dataset_info, license, task categories, size) + a body from dataset_cards/."""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
import pyarrow.parquet as pq
import yaml

from builders import __version__
from builders.catalog import CatalogEntry

CARD_TEMPLATE = Path(__file__).resolve().parent.parent / "dataset_cards" / "prompts_dataset.md.j2"
DEFAULT_REPO_ID = "arabic-prompts/arabic-prompts"  # the id this project publishes under; publish --repo stamps its own
DEFAULT_TAG = "v1.0.0"  # stands for the version tag until `publish --version` stamps the real one
_USAGE = re.compile(r'load_dataset\("([^"]+)", ("[^"]+"), revision="([^"]+)"\)')
FAMILY_TO_HUB_TASK = {
    "classification": "text-classification",
    "sequence_labeling": "token-classification",
    "question_answering": "question-answering",
    "summarization": "summarization",
    "generation": "text-generation",
    "translation": "translation",
    "text_correction": "text-generation",
    "extraction": "text-generation",
}


class _NoAliasDumper(yaml.SafeDumper):
    """Writes repeated structures (the features list) in full: the Hub's YAML parser wants no anchors."""

    def ignore_aliases(self, data) -> bool:
        return True


def size_category(n: int) -> str:
    for bound, label in ((1e3, "n<1K"), (1e4, "1K<n<10K"), (1e5, "10K<n<100K"), (1e6, "100K<n<1M"),
                         (1e7, "1M<n<10M"), (1e8, "10M<n<100M"), (1e9, "100M<n<1B")):
        if n < bound:
            return label
    return "n>1T" if n >= 1e12 else "1B<n<10B"


def _file_stats(path: Path) -> tuple[int, int, int]:
    """(rows, uncompressed bytes, file bytes) of one parquet shard, from its footer."""
    meta = pq.ParquetFile(path).metadata
    num_bytes = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    return meta.num_rows, num_bytes, path.stat().st_size


def _config(name: str, pattern: str, split_files: dict[str, list[str]], stats: dict, features: list) -> tuple[dict, dict]:
    """A ``configs`` entry and its ``dataset_info`` entry."""
    splits = [{"name": split, "num_bytes": sum(stats[f][1] for f in fs), "num_examples": sum(stats[f][0] for f in fs)}
              for split, fs in sorted(split_files.items())]
    config = {"config_name": name, "data_files": [{"split": split, "path": pattern.format(split=split)}
                                                 for split in sorted(split_files)]}
    info = {"config_name": name, "features": features, "splits": splits,
            "download_size": sum(stats[f][2] for fs in split_files.values() for f in fs),
            "dataset_size": sum(s["num_bytes"] for s in splits)}
    return config, info


def card_metadata(out: Path, files: dict[str, dict[str, list[str]]], licenses: list[str], families: list[str],
                  total: int, pretty_name: str) -> dict:
    """The README's YAML. ``dataset_info`` (split sizes) also makes ``datasets`` see a rebuilt folder as new."""
    from datasets import Features

    from builders.pipeline import ROW_SCHEMA

    features = Features.from_arrow_schema(ROW_SCHEMA)._to_yaml_list()
    stats = {f: _file_stats(out / f) for splits in files.values() for fs in splits.values() for f in fs}
    all_splits: dict[str, list[str]] = {}
    for splits in files.values():
        for split, fs in splits.items():
            all_splits.setdefault(split, []).extend(fs)
    default_config, default_info = _config("default", "data/*/{split}-*", all_splits, stats, features)
    default_config = {"config_name": "default", "default": True, "data_files": default_config["data_files"]}
    pairs = [_config(task, f"data/{task}/{{split}}-*", files[task], stats, features) for task in sorted(files)]
    configs = [default_config] + [c for c, _ in pairs]
    infos = [default_info] + [i for _, i in pairs]
    unique_licenses = sorted(set(licenses))
    return {
        "language": ["ar"],
        "license": unique_licenses[0] if len(unique_licenses) == 1 else "other",
        "license_name": "multiple" if len(unique_licenses) > 1 else None,
        "license_details": ("Each row keeps its source's license (`license` field): " + ", ".join(unique_licenses))
        if len(unique_licenses) > 1 else None,
        "pretty_name": pretty_name,
        "size_categories": [size_category(total)],
        "task_categories": sorted({FAMILY_TO_HUB_TASK[f] for f in families} | {"text-generation"}),
        "tags": ["instruction-tuning", "prompts", "promptsource", "arabic"],
        "configs": configs,
        "dataset_info": infos,
    }


def write_dataset_card(out: Path, entries: list[CatalogEntry], rep: dict, manifest: dict,
                       repo_id: str = DEFAULT_REPO_ID, pretty_name: str = "Arabic Prompts",
                       template: Path = CARD_TEMPLATE) -> Path:
    meta = card_metadata(out, manifest["files"], [e.license for e in entries], [e.task_family for e in entries],
                         rep["total"], pretty_name)
    meta = {k: v for k, v in meta.items() if v is not None}
    by_task: dict[str, list[str]] = {}
    for e in entries:
        by_task.setdefault(e.task, []).append(e.name)
    families = {e.task: e.task_family for e in entries}
    tasks = [
        {"name": t, "family": families[t], "datasets": by_task[t], **{k: s.get(k, 0) for k in ("train", "validation", "test")},
         "total": sum(s.values())}
        for t, s in rep["by_task_split"].items()
    ]
    source_kind = {s["name"]: s["source"] for s in manifest["sources"]}
    sources = [
        {"name": e.name, "hub_id": e.hub_id, "hub_config": e.hub_config, "task": e.task, "templates": len(e.templates),
         "read_from": "local copy" if source_kind.get(e.name) == "local" else "Hub",
         "rows": sum(rep["source_rows"].get(e.name, {}).values()), "prompts": rep["by_dataset"].get(e.name, 0),
         "license": e.license}
        for e in entries
    ]
    body = jinja2.Template(template.read_text(encoding="utf-8"), trim_blocks=True).render(
        pretty_name=pretty_name, datasets=entries, tasks=tasks, sources=sources, total=rep["total"],
        version=__version__, repo_id=repo_id, tag=DEFAULT_TAG, example_task=tasks[0]["name"] if tasks else "default",
        skipped_total=rep["skipped_total"], fingerprint=manifest["fingerprint"],
    )
    text = "---\n" + yaml.dump(meta, Dumper=_NoAliasDumper, allow_unicode=True, sort_keys=False) + "---\n\n" + body
    path = out / "README.md"
    path.write_text(text, encoding="utf-8")
    return path


def stamp_usage(folder: Path, repo_id: str, tag: str) -> bool:
    """Point the card's ``load_dataset`` snippet at the repo and version being published. True if it changed."""
    readme = Path(folder) / "README.md"
    text = readme.read_text(encoding="utf-8")
    new = _USAGE.sub(lambda m: f'load_dataset("{repo_id}", {m.group(2)}, revision="{tag}")', text)
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return new != text
