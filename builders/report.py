"""Build report: prompts per dataset, template, task and split, and every rejected row with its reason."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from builders.catalog import CatalogEntry


def reason_kind(reason: str) -> str:
    """A rejection reason without its row details: 'malformed row at line 9 of x.csv: 3 fields' -> 'malformed row'."""
    return re.sub(r" at line \d+ of [^\s:]+", "", reason).split(":")[0].strip()


def _count(paths, columns: list[str]) -> Counter:
    """Group-by counts over parquet files, one file at a time (memory stays flat)."""
    counts: Counter = Counter()
    for path in paths:
        table = pq.read_table(path, columns=columns)
        if table.num_rows == 0:
            continue
        agg = table.group_by(columns).aggregate([([], "count_all")]).to_pylist()
        for row in agg:
            counts[tuple(row[c] for c in columns)] += row["count_all"]
    return counts


def build_report(out: Path, work: Path, entries: list[CatalogEntry], checks: dict) -> dict:
    """Counts from the written shards and the rejected rows; the split assignment's figures per dataset; the
    leakage and uniqueness checks (``checks``, from ``builders.finalize``)."""
    data_files = sorted((out / "data").rglob("*.parquet"))
    by = _count(data_files, ["task", "split", "dataset_name", "template_name"])
    rejected = _count(sorted((work / "rejected").rglob("*.parquet")), ["dataset_name", "stage", "reason"])
    sources = {e.name: json.loads((work / "sources" / f"{e.name}.assigned.json").read_text()) for e in entries}
    by_task_split: dict[str, dict[str, int]] = {}
    by_dataset: Counter = Counter()
    by_template: Counter = Counter()
    for (task, split, dataset, template), n in by.items():
        by_task_split.setdefault(task, {}).setdefault(split, 0)
        by_task_split[task][split] += n
        by_dataset[dataset] += n
        by_template[f"{dataset}/{template}"] += n
    skipped: dict[str, dict[str, int]] = {}
    for (dataset, stage, reason), n in rejected.items():
        # render-stage reasons carry the row; group them by their kind
        key = f"{stage}: {reason_kind(reason)}"
        skipped.setdefault(dataset or "?", {}).setdefault(key, 0)
        skipped[dataset or "?"][key] += n
    entries_by_name = {e.name: e for e in entries}
    return {
        "total": sum(by.values()),
        "by_task_split": {t: dict(sorted(s.items())) for t, s in sorted(by_task_split.items())},
        "by_dataset": dict(sorted(by_dataset.items())),
        "by_template": dict(sorted(by_template.items())),
        "source_rows": {name: meta["rows"] for name, meta in sorted(sources.items())},
        "splitting": {
            "rule": "one split per normalised source text across the build (test, then validation, then train); "
                    "rows that share a text or a run of 10 words are linked, transitively",
            **json.loads((work / "splits.json").read_text()),
            "duplicate_source_rows": sum(m["duplicate_rows"] for m in sources.values()),
            "conflicting_label_texts": sum(m["conflicting_label_texts"] for m in sources.values()),
            "moved_to_higher_split": sum(sum(m["moved_to_higher_split"].values()) for m in sources.values()),
            "by_dataset": {name: {k: m[k] for k in ("duplicate_rows", "conflicting_label_texts", "moved_to_higher_split")}
                           for name, m in sorted(sources.items())},
        },
        "leakage": checks,
        "skipped": dict(sorted(skipped.items())),
        "skipped_total": sum(rejected.values()),
        "datasets": {
            name: {"task": e.task, "task_family": e.task_family, "templates": len(e.templates)}
            for name, e in sorted(entries_by_name.items())
        },
        "rejected_rows_dir": str((work / "rejected").relative_to(out)),
    }


def write_report(out: Path, rep: dict) -> None:
    (out / "build_report.json").write_text(json.dumps(rep, ensure_ascii=False, indent=1), encoding="utf-8")
    plot_report(rep, out / "build_report.png")


def plot_report(rep: dict, path: Path) -> Path | None:
    """A bar chart of prompts per task and split (log scale), for a look rather than a read. Needs matplotlib
    (the `eval` extra); without it the JSON report is all there is."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    tasks = list(rep["by_task_split"])
    fig, ax = plt.subplots(figsize=(10, max(3.0, 0.42 * len(tasks) + 1.5)))
    height = 0.27
    for k, (split, color) in enumerate((("train", "#4c72b0"), ("validation", "#dd8452"), ("test", "#55a868"))):
        counts = [rep["by_task_split"][t].get(split, 0) for t in tasks]
        ax.barh([i + (k - 1) * height for i in range(len(tasks))], counts, height=height, color=color, label=split)
    ax.set_yticks(range(len(tasks)), tasks)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("prompts (log scale)")
    ax.set_title(f"{rep['total']:,} prompts in {len(tasks)} tasks; {rep['skipped_total']:,} skipped")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def task_table(rep: dict) -> str:
    """The per-task table (train / validation / test / total), as printed by the CLI and the demo."""
    lines = [f"{'task':34} {'train':>9} {'valid':>9} {'test':>9} {'total':>10}"]
    for task, splits in rep["by_task_split"].items():
        t, v, s = (splits.get(k, 0) for k in ("train", "validation", "test"))
        lines.append(f"{task:34} {t:>9} {v:>9} {s:>9} {t + v + s:>10}")
    lines.append(f"{'all':34} {'':>9} {'':>9} {'':>9} {rep['total']:>10}")
    c = rep.get("leakage") or {}
    if c.get("source_texts") is not None:
        lines.append(f"leakage check: {c['source_texts']} source texts and {c['inputs_checked']} normalised inputs, "
                     f"{c['source_texts_in_two_splits']} and {c['inputs_in_two_splits']} in two splits")
    if rep["skipped_total"]:
        lines.append(f"skipped: {rep['skipped_total']} (reasons in build_report.json, rows in {rep['rejected_rows_dir']}/)")
    return "\n".join(lines)
