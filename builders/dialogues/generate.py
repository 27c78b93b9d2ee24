"""`arabic-prompts dialogues generate`: grid cells -> a Hub dataset of conversations, as datatrove stages on the
builder's executors (local processes, Slurm, Ray: ``builders.executors``), written with the builder's
``RowWriter`` and ``finalize``, carded with ``builders.card``, checked and published with ``builders.hub``.

Stages (work files under ``OUT/_build``):

1. generate  ``CellReader -> GenerateDialogues -> DialogueChecks -> RowWriter -> ExactDedupSignature``
             (one task per ``--cells-per-task`` cells; the expensive stage)
2. exact     ``ExactFindDedups`` (of exact duplicates, the earliest cell of the plan stays)
3. unique    ``RankParquetReader -> ExactDedupFilter -> RowWriter -> MinhashDedupSignature``
4. buckets   ``MinhashDedupBuckets`` (one task per MinHash bucket)
5. cluster   ``MinhashDedupCluster``
6. write     ``RankParquetReader -> MinhashDedupFilter -> RowWriter`` into ``_build/staging/<dialect>/<split>/``

Then ``finalize`` names the shards ``data/<dialect>/<split>-XXXXX-of-YYYYY.parquet`` (one config per Arabic
variety, plus ``default``), checks them and writes the manifest (kind ``dialogues``); the report
(``build_report.json``), the topic x country heat map and the card follow.

Every rejected conversation is written to ``_build/rejected/<stage>/`` with its reason (invalid after retries,
failed a check, exact duplicate, near duplicate) and counted in the report: cells = kept + rejected.

Resuming: datatrove records finished tasks under ``_build/logs``; a killed run started again with the same
command skips them and redoes the rest (a redone task rewrites its own files), so no conversation is lost or
written twice. Other inputs (model, prompt version, grid, options) make a new fingerprint and start afresh.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from builders import card
from builders.dialogues.filters import FilterConfig
from builders.dialogues.grid import GRID_DIR, load_countries, load_topics, make_cells
from builders.dialogues.prompt import DialoguePrompt
from builders.dialogues.steps import (CELL_SCHEMA, REJECT_SCHEMA, STAGED_SCHEMA, BackendSpec, CellReader,
                                      DialogueChecks, GenerateDialogues, dedup_content, dedup_priority,
                                      reject_adapter, source_id)
from builders.executors import ExecutorConfig, check_complete, make_executor, slurm_done
from builders.finalize import MARKER, WORK, check_output_folder, finalize, mark_ours
from builders.schema import DIALOGUE_SCHEMA, DIALOGUES
from builders.steps import BuildError

STAMP = "dialogues-fingerprint"
CARD_TEMPLATE = "dialogues_dataset.md.j2"
HEATMAP = "topic_country_heatmap.png"
REPORT = "build_report.json"
STAGES = ("1-generate", "2-exact", "3-unique", "4-buckets", "5-cluster", "6-write")


class GenerateError(BuildError):
    """A generation run that cannot go on; the message says what to do."""


@dataclass
class GenerateConfig:
    out: Path
    backend: Any  # BackendSpec, or a factory function (Python API: tests, custom generators)
    num_turns: int = 6
    per_cell: int = 1
    seed: int = 0
    topics: list[str] | None = None
    countries: list[str] | None = None
    max_cells: int | None = None
    max_retries: int = 2
    batch_size: int = 8
    cells_per_task: int = 256
    validation_fraction: float = 0.05
    test_fraction: float = 0.1
    filters: FilterConfig = field(default_factory=FilterConfig)
    minhash_ngrams: int = 5
    minhash_buckets: int = 14
    minhash_hashes_per_bucket: int = 8
    shard_size_mb: int = 256
    prompt_file: str | None = None
    license: str = "apache-2.0"
    pretty_name: str = "Arabic Multi-turn Dialogues"
    workers: int = 1
    executor: str = "local"
    slurm: dict = field(default_factory=dict)
    ray: dict = field(default_factory=dict)

    def __post_init__(self):
        self.out = Path(self.out)
        self.executors = ExecutorConfig(self.executor, self.workers, self.slurm, self.ray)
        if self.num_turns < 2:
            raise ValueError(f"--turns must be at least 2 (one user and one assistant turn), not {self.num_turns}")
        if self.max_retries < 0 or self.batch_size < 1 or self.cells_per_task < 1:
            raise ValueError("--max-retries must be >= 0, --batch-size and --cells-per-task >= 1")
        if not (0 <= self.validation_fraction and 0 <= self.test_fraction and
                self.validation_fraction + self.test_fraction < 1):
            raise ValueError("--validation-fraction and --test-fraction must be >= 0 and leave some train")


@dataclass
class GenerateResult:
    out: Path
    report: dict
    manifest: dict


def generator_name(backend) -> str:
    return backend.model if isinstance(backend, BackendSpec) else getattr(backend, "__qualname__", repr(backend))


def _backend_key(backend) -> str:
    if isinstance(backend, BackendSpec):
        return backend.key()
    return f"{getattr(backend, '__module__', '')}.{getattr(backend, '__qualname__', repr(backend))}"


def _fingerprint(cfg: GenerateConfig, prompt: DialoguePrompt, cell_ids: list[str]) -> str:
    grid = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in sorted(GRID_DIR.glob("*.yaml"))}
    parts = {
        "backend": _backend_key(cfg.backend), "prompt": prompt.prompt_version, "turns": cfg.num_turns,
        "retries": cfg.max_retries, "batch": cfg.batch_size, "cells_per_task": cfg.cells_per_task,
        "splits": [cfg.validation_fraction, cfg.test_fraction], "filters": asdict(cfg.filters),
        "minhash": [cfg.minhash_ngrams, cfg.minhash_buckets, cfg.minhash_hashes_per_bucket],
        "shard_mb": cfg.shard_size_mb, "grid": grid, "cells": hashlib.sha256("\n".join(cell_ids).encode()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def prepare(cfg: GenerateConfig) -> tuple[Path, DialoguePrompt, int, str]:
    """Plan the cells, check the output folder is ours to write, then reuse ``OUT/_build`` when its fingerprint
    matches (else start it afresh)."""
    prompt = DialoguePrompt.load(cfg.prompt_file)
    cells = make_cells(cfg.per_cell, cfg.seed, cfg.topics, cfg.countries, cfg.max_cells)
    rows = [{"source_id": source_id(c.topic.key, c.country.key, c.index, c.seed), "topic": c.topic.key,
             "country": c.country.key, "dialect": c.country.dialect_code, "index": c.index, "seed": c.seed,
             "instruction": prompt.render(c, cfg.num_turns)} for c in cells]
    fingerprint = _fingerprint(cfg, prompt, [r["source_id"] for r in rows])
    check_output_folder(cfg.out)
    work = cfg.out / WORK
    stamp = work / STAMP
    if work.exists() and (not stamp.exists() or stamp.read_text() != fingerprint) and (cfg.out / MARKER).exists():
        shutil.rmtree(work)  # ours, with other inputs: an earlier partial run cannot be resumed
    mark_ours(cfg.out, fingerprint)
    if not stamp.exists() or stamp.read_text() != fingerprint or not (work / "plan.json").exists():
        pq.write_table(pa.Table.from_pylist(rows, schema=CELL_SCHEMA), work / "cells.parquet")
        units = [{"start": s, "end": min(len(rows), s + cfg.cells_per_task)}
                 for s in range(0, len(rows), cfg.cells_per_task)]
        (work / "plan.json").write_text(json.dumps({"units": units, "prompt_version": prompt.prompt_version}))
        stamp.write_text(fingerprint)
    return work, prompt, len(rows), fingerprint


def run_stages(cfg: GenerateConfig, work: Path, prompt: DialoguePrompt) -> None:
    from datatrove.pipeline.dedup.exact_dedup import (ExactDedupConfig, ExactDedupFilter, ExactDedupSignature,
                                                      ExactFindDedups)
    from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                                  MinhashDedupFilter, MinhashDedupSignature)
    from datatrove.pipeline.writers import ParquetWriter
    from datatrove.utils.typeshelper import Languages

    from builders.steps.write import RankParquetReader, RowWriter

    tasks = len(json.loads((work / "plan.json").read_text())["units"])
    logs, rej, ex = work / "logs", work / "rejected", cfg.executors

    def rejects(stage: str, reason: str | None = None):
        return ParquetWriter(str(rej / stage), output_filename="${rank}.parquet", adapter=reject_adapter(stage, reason),
                             schema=REJECT_SCHEMA, max_file_size=-1)

    def staged(folder: str):
        return RowWriter(str(work / folder), STAGED_SCHEMA, output_filename="${rank}.parquet", text_field="text")

    exact = ExactDedupConfig(content_getter=dedup_content, document_priority=dedup_priority)
    minhash = MinhashConfig(n_grams=cfg.minhash_ngrams, num_buckets=cfg.minhash_buckets,
                            hashes_per_bucket=cfg.minhash_hashes_per_bucket)
    generate = make_executor(ex, [
        CellReader(str(work)),
        GenerateDialogues(cfg.backend, cfg.num_turns, prompt.user_label, prompt.assistant_label, prompt.prompt_version,
                          max_retries=cfg.max_retries, batch_size=cfg.batch_size,
                          validation_fraction=cfg.validation_fraction, test_fraction=cfg.test_fraction,
                          exclusion_writer=rejects("validate")),
        DialogueChecks(cfg.filters, exclusion_writer=rejects("filter")),
        staged("generated"),
        ExactDedupSignature(str(work / "exact" / "sigs"), config=exact),
    ], tasks, logs / STAGES[0], name="dialogues-generate")
    find = make_executor(ex, [ExactFindDedups(str(work / "exact" / "sigs"), str(work / "exact" / "dups"),
                                              config=exact)], 1, logs / STAGES[1], depends=generate,
                         name="dialogues-exact")
    unique = make_executor(ex, [
        RankParquetReader(str(work / "generated"), text_key="text", id_key="id"),
        ExactDedupFilter(str(work / "exact" / "dups"), config=exact,
                         exclusion_writer=rejects("exact_duplicate", "exact duplicate")),
        staged("unique"),
        MinhashDedupSignature(str(work / "minhash" / "sigs"), config=minhash, language=Languages.arabic),
    ], tasks, logs / STAGES[2], depends=find, name="dialogues-unique")
    buckets = make_executor(ex, [MinhashDedupBuckets(str(work / "minhash" / "sigs"), str(work / "minhash" / "buckets"),
                                                     config=minhash)],
                            cfg.minhash_buckets, logs / STAGES[3], depends=unique, name="dialogues-buckets")
    cluster = make_executor(ex, [MinhashDedupCluster(str(work / "minhash" / "buckets"),
                                                     str(work / "minhash" / "remove"), config=minhash)],
                            1, logs / STAGES[4], depends=buckets, name="dialogues-cluster")
    write = make_executor(ex, [
        RankParquetReader(str(work / "unique"), text_key="text", id_key="id"),
        MinhashDedupFilter(str(work / "minhash" / "remove"),
                           exclusion_writer=rejects("near_duplicate", "near duplicate")),
        RowWriter(str(work / "staging"), DIALOGUE_SCHEMA, output_filename="${dialect}/${split}/${rank}.parquet",
                  text_field="text", max_file_size=cfg.shard_size_mb * 2**20),
    ], tasks, logs / STAGES[5], depends=cluster, name="dialogues-write")
    write.run()
    if cfg.executor != "slurm":
        for stage, name in zip((generate, find, unique, buckets, cluster, write), STAGES):
            check_complete(stage, name)


def _read(paths: list[Path], columns: list[str]) -> list[dict]:
    rows: list[dict] = []
    for p in paths:
        rows += pq.read_table(p, columns=columns).to_pylist()
    return rows


def build_report(out: Path, work: Path, cells: int, files: dict) -> dict:
    """Counts of what was kept (by split, dialect, topic, country, cell) and rejected (by stage and reason)."""
    kept = _read([out / f for splits in files.values() for fs in splits.values() for f in fs],
                 ["topic", "country", "dialect", "split", "source_id"])
    rejected = _read(sorted((work / "rejected").rglob("*.parquet")), ["stage", "reason", "source_id"])
    ids = [r["source_id"] for r in kept] + [r["source_id"] for r in rejected]
    return {
        "cells": cells,
        "kept": len(kept),
        "rejected": len(rejected),
        "accounted": len(ids) == cells and len(set(ids)) == cells,
        "rejected_by_stage_reason": {f"{s}: {r}": n for (s, r), n in
                                     sorted(Counter((x["stage"], x["reason"]) for x in rejected).items())},
        "by_split": dict(sorted(Counter(r["split"] for r in kept).items())),
        "by_dialect": dict(sorted(Counter(r["dialect"] for r in kept).items())),
        "by_topic": dict(sorted(Counter(r["topic"] for r in kept).items())),
        "by_country": dict(sorted(Counter(r["country"] for r in kept).items())),
        "by_topic_country": {f"{t}/{c}": n for (t, c), n in sorted(Counter((r["topic"], r["country"])
                                                                           for r in kept).items())},
    }


def plot_heatmap(rep: dict, path: Path, topics: list[str] | None = None, countries: list[str] | None = None) -> Path | None:
    """Conversations per topic (rows) x country (columns), grid order, zero cells shown empty."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
    except ImportError:
        return None
    t_all, c_all = load_topics(), load_countries()
    used_t = set(rep["by_topic"]) | {k.split("/")[0] for k in rep["by_topic_country"]}
    used_c = set(rep["by_country"]) | {k.split("/")[1] for k in rep["by_topic_country"]}
    ts = [t for t in t_all if t.key in (topics or used_t)]
    cs = [c for c in c_all if c.key in (countries or used_c)]
    if not ts or not cs:
        return None
    grid = np.zeros((len(ts), len(cs)))
    for key, n in rep["by_topic_country"].items():
        t, c = key.split("/")
        if t in {x.key for x in ts} and c in {x.key for x in cs}:
            grid[[x.key for x in ts].index(t), [x.key for x in cs].index(c)] = n
    fig, ax = plt.subplots(figsize=(max(6, 0.16 * len(cs) + 3), max(4, 0.16 * len(ts) + 2)))
    shown = np.ma.masked_equal(grid, 0)
    im = ax.imshow(shown, aspect="auto", cmap="viridis", interpolation="nearest", vmin=0, vmax=max(1, grid.max()))
    size = 7 if max(len(ts), len(cs)) < 40 else 4
    ax.set_xticks(range(len(cs)), [c.name_en for c in cs], rotation=90, fontsize=size)
    ax.set_yticks(range(len(ts)), [t.name_en for t in ts], fontsize=size)
    ax.set_title(f"Conversations per topic x country ({int(grid.sum())} in all; blank: none kept)")
    fig.colorbar(im, ax=ax, fraction=0.02, pad=0.01)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_dialogue_card(cfg: GenerateConfig, rep: dict, manifest: dict, heatmap: Path | None) -> Path:
    data = card.card_data(cfg.out, manifest["files"], DIALOGUE_SCHEMA, licenses=[cfg.license],
                          task_categories=["text-generation"], pretty_name=cfg.pretty_name, languages=["ar"],
                          tags=["arabic", "dialogue", "multi-turn", "synthetic", "conversational", "dialects"],
                          total=rep["kept"])
    topics, countries = {t.key: t for t in load_topics()}, {c.key: c for c in load_countries()}
    dialects: dict[str, dict] = {}
    for c in countries.values():
        d = dialects.setdefault(c.dialect_code, {"code": c.dialect_code, "names": set(), "countries": 0})
        d["names"].add(c.dialect_en.split(" (")[0])
        d["countries"] += 1
    return card.write_card(
        cfg.out, data, CARD_TEMPLATE, pretty_name=cfg.pretty_name, repo_id=card.DEFAULT_REPO_ID, tag=card.DEFAULT_TAG,
        rep=rep, manifest=manifest, fields=list(DIALOGUE_SCHEMA.names), heatmap=heatmap.name if heatmap else None,
        topics=[{"key": k, "name_en": topics[k].name_en, "name_ar": topics[k].name_ar, "n": n}
                for k, n in rep["by_topic"].items()],
        countries=[{"key": k, "name_en": countries[k].name_en, "name_ar": countries[k].name_ar,
                    "dialect": countries[k].dialect_en, "n": n} for k, n in rep["by_country"].items()],
        dialects=[{**d, "names": ", ".join(sorted(d["names"])), "n": rep["by_dialect"].get(code, 0)}
                  for code, d in sorted(dialects.items()) if rep["by_dialect"].get(code)],
        example_config=next(iter(sorted(rep["by_dialect"])), "default"),
    )


def finish(cfg: GenerateConfig, work: Path, prompt: DialoguePrompt, cells: int, fingerprint: str) -> GenerateResult:
    """Shards, checks and manifest (``builders.finalize``), then the report, the heat map and the card."""
    manifest = {"fingerprint": fingerprint, "generator": generator_name(cfg.backend),
                "backend": asdict(cfg.backend) if isinstance(cfg.backend, BackendSpec) else None,
                "prompt_version": prompt.prompt_version, "num_turns": cfg.num_turns, "per_cell": cfg.per_cell,
                "seed": cfg.seed, "cells": cells, "license": cfg.license,
                "split_fractions": {"validation": cfg.validation_fraction, "test": cfg.test_fraction}}
    if not list((work / "staging").rglob("*.parquet")):
        rep = build_report(cfg.out, work, cells, {})
        (cfg.out / REPORT).write_text(json.dumps(rep, ensure_ascii=False, indent=1), encoding="utf-8")
        raise GenerateError(f"no conversation of {cells} cells was kept: {rep['rejected_by_stage_reason']} "
                            f"(rejects with their output under {work / 'rejected'})")
    done = finalize(cfg.out, work / "staging", kind=DIALOGUES, schema=DIALOGUE_SCHEMA, manifest=manifest,
                    text_column=None)
    rep = build_report(cfg.out, work, cells, done.files)
    if not rep["accounted"]:
        raise GenerateError(f"{cells} cells but {rep['kept']} kept + {rep['rejected']} rejected (or repeated ids): "
                            f"see {work}")
    rep["checks"] = done.checks
    (cfg.out / REPORT).write_text(json.dumps(rep, ensure_ascii=False, indent=1), encoding="utf-8")
    heatmap = plot_heatmap(rep, cfg.out / HEATMAP, cfg.topics, cfg.countries)
    write_dialogue_card(cfg, rep, done.manifest, heatmap)
    return GenerateResult(out=cfg.out, report=rep, manifest=done.manifest)


def generate(cfg: GenerateConfig) -> GenerateResult:
    """Plan, run every stage (resuming finished tasks), then finalize the folder."""
    work, prompt, cells, fingerprint = prepare(cfg)
    run_stages(cfg, work, prompt)
    tasks = len(json.loads((work / "plan.json").read_text())["units"])
    if cfg.executor == "slurm" and not slurm_done(work / "logs" / STAGES[5], tasks):
        raise GenerateError(f"Slurm jobs submitted (logs in {work / 'logs'}); when they have finished, run the same "
                            "command again to finish the folder")
    return finish(cfg, work, prompt, cells, fingerprint)
