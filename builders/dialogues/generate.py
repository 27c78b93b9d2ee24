"""`arabic-prompts dialogues generate`: grid cells -> conversations, as datatrove stages on the builder's
executors (local processes, Slurm, Ray: ``builders.pipeline.make_executor``).

Stages (work files under ``OUT/_build``):

1. generate  ``CellReader -> GenerateDialogues -> DialogueChecks -> ParquetWriter -> ExactDedupSignature``
             (one task per ``--cells-per-task`` cells; the expensive stage)
2. exact     ``ExactFindDedups`` (of exact duplicates, the earliest cell of the plan stays)
3. unique    ``RankParquetReader -> ExactDedupFilter -> ParquetWriter -> MinhashDedupSignature``
4. buckets   ``MinhashDedupBuckets`` (one task per MinHash bucket)
5. cluster   ``MinhashDedupCluster``
6. write     ``RankParquetReader -> MinhashDedupFilter -> ParquetWriter`` into ``_build/staging``

Every rejected conversation is written to ``_build/rejected/<stage>/`` with its reason (invalid after retries,
failed a check, exact duplicate, near duplicate) and counted in ``dialogue_report.json``: cells = kept + rejected.

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

from builders.dialogues.filters import FilterConfig
from builders.dialogues.grid import GRID_DIR, make_cells
from builders.dialogues.prompt import DialoguePrompt
from builders.dialogues.steps import (CELL_SCHEMA, DIALOGUE_SCHEMA, REJECT_SCHEMA, STAGED_SCHEMA, BackendSpec,
                                      CellReader, DialogueChecks, GenerateDialogues, dedup_content, dedup_priority,
                                      reject_adapter,
                                      row_adapter, source_id, staged_adapter)

STAMP = "dialogues-fingerprint"


class GenerateError(RuntimeError):
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
    filters: FilterConfig = field(default_factory=FilterConfig)
    minhash_ngrams: int = 5
    minhash_buckets: int = 14
    minhash_hashes_per_bucket: int = 8
    shard_size_mb: int = 256
    prompt_file: str | None = None
    workers: int = 1
    executor: str = "local"
    slurm: dict = field(default_factory=dict)
    ray: dict = field(default_factory=dict)

    def __post_init__(self):
        self.out = Path(self.out)
        if self.num_turns < 2:
            raise ValueError(f"--turns must be at least 2 (one user and one assistant turn), not {self.num_turns}")
        if self.max_retries < 0 or self.batch_size < 1 or self.cells_per_task < 1:
            raise ValueError("--max-retries must be >= 0, --batch-size and --cells-per-task >= 1")


def _backend_key(backend) -> str:
    if isinstance(backend, BackendSpec):
        return backend.key()
    return f"{getattr(backend, '__module__', '')}.{getattr(backend, '__qualname__', repr(backend))}"


def _fingerprint(cfg: GenerateConfig, prompt: DialoguePrompt, cell_ids: list[str]) -> str:
    grid = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in sorted(GRID_DIR.glob("*.yaml"))}
    parts = {
        "backend": _backend_key(cfg.backend), "prompt": prompt.prompt_version, "turns": cfg.num_turns,
        "retries": cfg.max_retries, "batch": cfg.batch_size, "cells_per_task": cfg.cells_per_task,
        "filters": asdict(cfg.filters), "minhash": [cfg.minhash_ngrams, cfg.minhash_buckets,
                                                    cfg.minhash_hashes_per_bucket],
        "shard_mb": cfg.shard_size_mb, "grid": grid,
        "cells": hashlib.sha256("\n".join(cell_ids).encode()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def prepare(cfg: GenerateConfig) -> tuple[Path, DialoguePrompt, int]:
    """Plan the cells, then reuse ``OUT/_build`` when its fingerprint matches (else start it afresh)."""
    prompt = DialoguePrompt.load(cfg.prompt_file)
    cells = make_cells(cfg.per_cell, cfg.seed, cfg.topics, cfg.countries, cfg.max_cells)
    rows = [{"source_id": source_id(c.topic.key, c.country.key, c.index, c.seed), "topic": c.topic.key,
             "country": c.country.key, "dialect": c.country.dialect_code, "index": c.index, "seed": c.seed,
             "instruction": prompt.render(c, cfg.num_turns)} for c in cells]
    fingerprint = _fingerprint(cfg, prompt, [r["source_id"] for r in rows])
    work = cfg.out / "_build"
    stamp = work / STAMP
    if work.exists():
        if not stamp.exists():
            raise GenerateError(f"{work} exists but was not written by `dialogues generate`; choose another --out")
        if stamp.read_text() != fingerprint:
            shutil.rmtree(work)  # ours (stamped), with other inputs: an earlier partial run cannot be resumed
    work.mkdir(parents=True, exist_ok=True)
    if not stamp.exists() or not (work / "plan.json").exists():
        pq.write_table(pa.Table.from_pylist(rows, schema=CELL_SCHEMA), work / "cells.parquet")
        units = [{"start": s, "end": min(len(rows), s + cfg.cells_per_task)}
                 for s in range(0, len(rows), cfg.cells_per_task)]
        (work / "plan.json").write_text(json.dumps({"units": units, "prompt_version": prompt.prompt_version}))
        stamp.write_text(fingerprint)
    return work, prompt, len(rows)


def _executor(cfg: GenerateConfig, pipeline: list, tasks: int, logs: Path, depends=None, name: str = ""):
    from builders.pipeline import BuildConfig, make_executor

    build_cfg = BuildConfig(out=cfg.out, workers=cfg.workers, executor=cfg.executor, slurm=cfg.slurm, ray=cfg.ray)
    return make_executor(build_cfg, pipeline, tasks=tasks, logging_dir=logs, depends=depends, name=f"dialogues-{name}")


def run_stages(cfg: GenerateConfig, work: Path, prompt: DialoguePrompt) -> list:
    from datatrove.pipeline.dedup.exact_dedup import (ExactDedupConfig, ExactDedupFilter, ExactDedupSignature,
                                                      ExactFindDedups)
    from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                                  MinhashDedupFilter, MinhashDedupSignature)
    from datatrove.pipeline.writers import ParquetWriter
    from datatrove.utils.typeshelper import Languages

    from builders.pipeline import RankParquetReader

    tasks = len(json.loads((work / "plan.json").read_text())["units"])
    logs, rej = work / "logs", work / "rejected"

    def rejects(stage: str, reason: str | None = None):
        return ParquetWriter(str(rej / stage), output_filename="${rank}.parquet", adapter=reject_adapter(stage, reason),
                             schema=REJECT_SCHEMA, max_file_size=-1)

    exact = ExactDedupConfig(content_getter=dedup_content, document_priority=dedup_priority)
    minhash = MinhashConfig(n_grams=cfg.minhash_ngrams, num_buckets=cfg.minhash_buckets,
                            hashes_per_bucket=cfg.minhash_hashes_per_bucket)
    generate = _executor(cfg, [
        CellReader(str(work)),
        GenerateDialogues(cfg.backend, cfg.num_turns, prompt.user_label, prompt.assistant_label, prompt.prompt_version,
                          max_retries=cfg.max_retries, batch_size=cfg.batch_size, exclusion_writer=rejects("validate")),
        DialogueChecks(cfg.filters, exclusion_writer=rejects("filter")),
        ParquetWriter(str(work / "generated"), output_filename="${rank}.parquet", adapter=staged_adapter,
                      schema=STAGED_SCHEMA, max_file_size=-1),
        ExactDedupSignature(str(work / "exact" / "sigs"), config=exact),
    ], tasks, logs / "1-generate", name="generate")
    find = _executor(cfg, [ExactFindDedups(str(work / "exact" / "sigs"), str(work / "exact" / "dups"), config=exact)],
                     1, logs / "2-exact", depends=generate, name="exact")
    unique = _executor(cfg, [
        RankParquetReader(str(work / "generated"), text_key="text", id_key="source_id"),
        ExactDedupFilter(str(work / "exact" / "dups"), config=exact,
                         exclusion_writer=rejects("exact_duplicate", "exact duplicate")),
        ParquetWriter(str(work / "unique"), output_filename="${rank}.parquet", adapter=staged_adapter,
                      schema=STAGED_SCHEMA, max_file_size=-1),
        MinhashDedupSignature(str(work / "minhash" / "sigs"), config=minhash, language=Languages.arabic),
    ], tasks, logs / "3-unique", depends=find, name="unique")
    buckets = _executor(cfg, [MinhashDedupBuckets(str(work / "minhash" / "sigs"), str(work / "minhash" / "buckets"),
                                                  config=minhash)],
                        cfg.minhash_buckets, logs / "4-buckets", depends=unique, name="buckets")
    cluster = _executor(cfg, [MinhashDedupCluster(str(work / "minhash" / "buckets"), str(work / "minhash" / "remove"),
                                                  config=minhash)],
                        1, logs / "5-cluster", depends=buckets, name="cluster")
    write = _executor(cfg, [
        RankParquetReader(str(work / "unique"), text_key="text", id_key="source_id"),
        MinhashDedupFilter(str(work / "minhash" / "remove"),
                           exclusion_writer=rejects("near_duplicate", "near duplicate")),
        ParquetWriter(str(work / "staging"), output_filename="${rank}.parquet", adapter=row_adapter,
                      schema=DIALOGUE_SCHEMA, max_file_size=cfg.shard_size_mb * 2**20),
    ], tasks, logs / "6-write", depends=cluster, name="write")
    write.run()
    executors = [generate, find, unique, buckets, cluster, write]
    if cfg.executor != "slurm":
        for ex, name in zip(executors, ("generate", "exact", "unique", "buckets", "cluster", "write")):
            missing = ex.get_incomplete_ranks(range(ex.world_size))
            if missing:
                raise GenerateError(f"stage '{name}': {len(missing)} task(s) did not finish (ranks {missing[:10]}); "
                                    f"see {logs} and run the same command again to resume")
    return executors


def _read(paths: list[Path], columns: list[str]) -> list[dict]:
    rows: list[dict] = []
    for p in paths:
        rows += pq.read_table(p, columns=columns).to_pylist()
    return rows


def report(out: Path, work: Path, cells: int) -> dict:
    """Counts of what was kept and rejected (by stage and reason), per topic and per country."""
    kept = _read(sorted((work / "staging").rglob("*.parquet")), ["topic", "country", "source_id"])
    rejected = _read(sorted((work / "rejected").rglob("*.parquet")), ["stage", "reason", "source_id"])
    ids = [r["source_id"] for r in kept] + [r["source_id"] for r in rejected]
    rep = {
        "cells": cells,
        "kept": len(kept),
        "rejected": len(rejected),
        "rejected_by_stage_reason": {f"{s}: {r}": n for (s, r), n in
                                     sorted(Counter((x["stage"], x["reason"]) for x in rejected).items())},
        "by_topic": dict(sorted(Counter(r["topic"] for r in kept).items())),
        "by_country": dict(sorted(Counter(r["country"] for r in kept).items())),
        "by_topic_country": {f"{t}/{c}": n for (t, c), n in sorted(Counter((r["topic"], r["country"])
                                                                           for r in kept).items())},
        "accounted": len(ids) == cells and len(set(ids)) == cells,
    }
    (out / "dialogue_report.json").write_text(json.dumps(rep, ensure_ascii=False, indent=1), encoding="utf-8")
    return rep


def generate(cfg: GenerateConfig) -> dict:
    """Plan, run every stage (resuming finished tasks), and write the report. Returns the report."""
    work, prompt, cells = prepare(cfg)
    run_stages(cfg, work, prompt)
    if cfg.executor == "slurm" and not (work / "logs" / "6-write" / "completions").exists():
        raise GenerateError(f"Slurm jobs submitted (logs in {work / 'logs'}); when they have finished, run the same "
                            "command again to finish the folder")
    rep = report(cfg.out, work, cells)
    if not rep["accounted"]:
        raise GenerateError(f"{cells} cells but {rep['kept']} kept + {rep['rejected']} rejected (or repeated ids): "
                            f"see {work}")
    return rep
