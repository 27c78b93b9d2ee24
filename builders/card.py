"""Dataset cards: the Hub YAML (configs, dataset_info, license, task categories, size) with huggingface_hub's
card classes, and a body rendered from a template in ``dataset_cards/`` (shipped as ``builders.dataset_cards``).

``card_data`` and ``write_card`` serve every dataset the project writes (prompts, translated prompts, dialogues,
mixtures): they take the row schema and the files per config. ``write_prompts_card`` is the prompts build's card.
"""

from __future__ import annotations

import copy
import re
from importlib import resources
from pathlib import Path

import jinja2
import pyarrow as pa
import pyarrow.parquet as pq

from builders import __version__
from builders.catalog_check import CatalogCounts

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


def card_template(name: str) -> str:
    """The text of ``dataset_cards/<name>`` (from the installed package, so a wheel install works too)."""
    return (resources.files("builders.dataset_cards") / name).read_text(encoding="utf-8")


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
    # a copy per config: the YAML dumper would otherwise write anchors, which the Hub's parser refuses
    info = {"config_name": name, "features": copy.deepcopy(features), "splits": splits,
            "download_size": sum(stats[f][2] for fs in split_files.values() for f in fs),
            "dataset_size": sum(s["num_bytes"] for s in splits)}
    return config, info


def card_data(out: Path, files: dict[str, dict[str, list[str]]], schema: pa.Schema, *, licenses: list[str],
              task_categories: list[str], pretty_name: str, languages: list[str], tags: list[str], total: int,
              default_configs: list[str] | None = None):
    """The README's YAML as ``huggingface_hub.DatasetCardData``: one config per key of ``files``
    (``data/<config>/<split>-*``) plus ``default`` over all of them (or over ``default_configs`` only: the
    translated prompts leave their ``rejected`` config out), and ``dataset_info`` split sizes (which also make
    ``datasets`` see a rebuilt folder as new)."""
    from datasets import Features
    from huggingface_hub import DatasetCardData

    features = Features.from_arrow_schema(schema)._to_yaml_list()
    stats = {f: _file_stats(out / f) for splits in files.values() for fs in splits.values() for f in fs}
    in_default = sorted(files) if default_configs is None else sorted(default_configs)
    all_splits: dict[str, list[str]] = {}
    for name in in_default:
        for split, fs in files[name].items():
            all_splits.setdefault(split, []).extend(fs)
    default_config, default_info = _config("default", "data/*/{split}-*", all_splits, stats, features)
    if in_default != sorted(files):  # a list of patterns, one per config that has the split
        default_config["data_files"] = [{"split": split, "path": [f"data/{n}/{split}-*" for n in in_default
                                                                  if split in files[n]]} for split in sorted(all_splits)]
    default_config = {"config_name": "default", "default": True, "data_files": default_config["data_files"]}
    pairs = [_config(name, f"data/{name}/{{split}}-*", files[name], stats, features) for name in sorted(files)]
    unique_licenses = sorted(set(licenses))
    mixed = len(unique_licenses) > 1
    extra = {"license_name": "multiple",
             "license_details": "Each row keeps its source's license (`license` field): " + ", ".join(unique_licenses)
             } if mixed else {}
    return DatasetCardData(
        language=languages,
        license=unique_licenses[0] if not mixed else "other",
        pretty_name=pretty_name,
        size_categories=[size_category(total)],
        task_categories=sorted(set(task_categories)),
        tags=tags,
        configs=([default_config] if all_splits else []) + [c for c, _ in pairs],
        dataset_info=([default_info] if all_splits else []) + [i for _, i in pairs],
        **extra,
    )


def write_card(out: Path, data, template: str, **context) -> Path:
    """README.md = the YAML of ``data`` + the body rendered from ``dataset_cards/<template>`` with ``context``."""
    from huggingface_hub import DatasetCard

    body = jinja2.Template(card_template(template), trim_blocks=True).render(version=__version__, **context)
    path = Path(out) / "README.md"
    DatasetCard("---\n" + data.to_yaml() + "\n---\n\n" + body).save(path)
    return path


def write_prompts_card(out: Path, entries: list, rep: dict, manifest: dict, schema: pa.Schema,
                       repo_id: str = DEFAULT_REPO_ID, pretty_name: str = "Arabic Prompts") -> Path:
    """The prompts build's card: per-task and per-source tables, licenses, the leakage check, method, citation."""
    data = card_data(out, manifest["files"], schema, licenses=[e.license for e in entries],
                     task_categories=[FAMILY_TO_HUB_TASK[e.task_family] for e in entries] + ["text-generation"],
                     pretty_name=pretty_name, languages=sorted({e.language for e in entries}) or ["ar"],
                     tags=["instruction-tuning", "prompts", "promptsource", "arabic"], total=rep["total"])
    by_task: dict[str, list[str]] = {}
    families = {}
    for e in entries:  # a derived template's prompts sit in its own task (CatalogEntry.template_task)
        for task, family in dict.fromkeys([(e.task, e.task_family)] + [r for r in map(e.template_task, e.templates) if r]):
            by_task.setdefault(task, []).append(e.name)
            families.setdefault(task, family)
    tasks = [
        {"name": t, "family": families[t], "datasets": by_task[t], **{k: s.get(k, 0) for k in ("train", "validation", "test")},
         "total": sum(s.values())}
        for t, s in rep["by_task_split"].items()
    ]
    source_kind = {s["name"]: s["source"] for s in manifest["sources"]}
    revisions = {s["name"]: s.get("resolved_revision") for s in manifest["sources"]}
    sources = [
        {"name": e.name, "hub_id": e.hub_id, "hub_config": e.hub_config, "task": e.task, "templates": len(e.templates),
         "read_from": "local copy" if source_kind.get(e.name) == "local" else "Hub",
         "revision": (revisions.get(e.name) or "")[:10],
         "rows": sum(rep["source_rows"].get(e.name, {}).values()), "prompts": rep["by_dataset"].get(e.name, 0),
         "license": e.license}
        for e in entries
    ]
    return write_card(
        out, data, "prompts_dataset.md.j2",
        pretty_name=pretty_name, datasets=entries, tasks=tasks, sources=sources, total=rep["total"], repo_id=repo_id,
        tag=DEFAULT_TAG, example_task=tasks[0]["name"] if tasks else "default", skipped_total=rep["skipped_total"],
        fingerprint=manifest["fingerprint"], fields=list(schema.names), leakage=rep["leakage"],
        splitting=rep["splitting"], counts=CatalogCounts(len(entries), len({e.source_dataset for e in entries}), len(tasks)).sentence(),
    )


def stamp_usage(folder: Path, repo_id: str, tag: str) -> bool:
    """Point the card's ``load_dataset`` snippet at the repo and version being published. True if it changed."""
    readme = Path(folder) / "README.md"
    text = readme.read_text(encoding="utf-8")
    new = _USAGE.sub(lambda m: f'load_dataset("{repo_id}", {m.group(2)}, revision="{tag}")', text)
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return new != text
