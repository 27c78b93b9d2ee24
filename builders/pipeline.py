"""The prompts build: catalog entries -> prompted, deduplicated, sharded parquet with one split per source text.

Stages (each a datatrove pipeline of the small steps in ``builders.steps``; executors from ``builders.executors``):

0. ingest   ``IngestSource`` (``INGEST_CHUNKS`` tasks per dataset, each keying every other block of its rows):
            read, map columns, check labels, key each row by its text
1. assign   ``AssignSplits`` (one task): one split per source text across the whole build
2. render   ``SourceRowsReader -> RenderPrompts -> PromptFilter -> PromptSignatures -> RowWriter``
            (one task per chunk of source rows: bounded prompts per task, so memory stays flat)
3. find     ``FindDuplicates`` (one task per hash bucket): exact duplicates and inputs a higher split already has
4. write    ``RankParquetReader -> DropDuplicates -> RowWriter -> CheckSignatures`` into
            ``_build/staging/<task>/<split>/``
5. check    ``FindLeaks`` (one task per hash bucket): ids, source texts and inputs of the written rows

Render and write pass Arrow record batches between their steps (columns, not one Document per prompt). Then
``builders.finalize`` names the shards ``data/<task>/<split>-XXXXX-of-YYYYY.parquet`` (refusing a leak the
check stage found), and the report and card are written. datatrove records finished tasks under ``_build/logs``: a killed build run
again skips what finished and redoes the rest, with deterministic output, so the result is identical.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from datatrove.pipeline.writers import ParquetWriter

from builders import __version__, card
from builders import report as report_mod
from builders.catalog import CatalogEntry, load_catalog, select
from builders.executors import (ExecutorConfig, check_complete, frozen_gc, make_executor, release_free_memory,
                                slurm_done, start_forkserver)
from builders.finalize import MARKER, WORK, check_output_folder, finalize, mark_ours
from builders.records import to_json
from builders.schema import PROMPT_FIELDS, PROMPT_SCHEMA, PROMPTS, REJECT_SCHEMA, extend
from builders.sources import resolve_revision, source_fingerprint
from builders.steps import BuildError
from builders.steps.assign import AssignSplits, assigned_meta
from builders.steps.checks import PromptFilter
from builders.leakage import sum_figures
from builders.steps.dedup import INPUTS_HASH, DropDuplicates, FindDuplicates, PromptSignatures
from builders.steps.ingest import IngestSource, map_record
from builders.steps.rejects import reject_adapter
from builders.steps.render import RenderPrompts, SourceRowsReader
from builders.steps.verify import CheckSignatures, FindLeaks
from builders.steps.write import RankParquetReader, RowWriter

ROW_SCHEMA, ROW_FIELDS = PROMPT_SCHEMA, PROMPT_FIELDS  # the names earlier releases exported
# what the render stage writes: the rows, where they came from (for rejects) and their normalised inputs' hash
RENDERED_SCHEMA = extend(PROMPT_SCHEMA, [("source_split", pa.string()), ("source_row", pa.int64()),
                                         (INPUTS_HASH, pa.uint64())])
# Small builds are cut into at least MIN_UNITS render tasks (of at least MIN_UNIT_PROMPTS prompts), so that up
# to MIN_UNITS workers share them evenly; the plan depends on the data only, never on --workers, so the output
# is the same whatever the number of workers. Signatures are split into one hash bucket per BUCKET_PROMPTS
# planned prompts (at least MIN_BUCKETS): the find and check stages run one task per bucket.
MIN_UNITS, MIN_UNIT_PROMPTS = 16, 10_000
BUCKET_PROMPTS, MIN_BUCKETS = 500_000, 2
STAGING_ROWS = 10_000
WORK_DISTINCT = ("id", "source_id", "inputs", "source_row", INPUTS_HASH)  # work file columns of (nearly) distinct values
# The layout of the _build work files; a _build written with another layout is not resumed (2: the assigned
# files name each row's position among the ingested rows instead of copying its record; 3: the ingested rows'
# row_hash and label_hash are xxh3, not blake2b)
WORK_FORMAT = 3


@dataclass
class BuildConfig:
    out: Path
    datasets: list[str] | None = None
    local: dict[str, str] = field(default_factory=dict)
    catalog_dirs: list[str] = field(default_factory=list)
    override: bool = False  # a --catalog-dir entry may replace a package entry of the same name
    workers: int = 1
    executor: str = "local"  # local | slurm | ray
    limit: int | None = None  # source rows per source split (quick builds)
    prompts_per_task: int = 200_000
    shard_size_mb: int = 256
    slurm: dict[str, Any] = field(default_factory=dict)  # partition, time, cpus_per_task, ... for SlurmPipelineExecutor
    ray: dict[str, Any] = field(default_factory=dict)  # cpus_per_task, mem_per_cpu_gb, ... for RayPipelineExecutor

    def __post_init__(self):
        self.out = Path(self.out)
        self.executors = ExecutorConfig(self.executor, self.workers, self.slurm, self.ray)
        unknown = sorted(set(self.local) - set(self.datasets or self.local))
        if unknown:
            raise ValueError(f"--local given for {unknown}, which are not in --datasets")


@dataclass
class BuildResult:
    out: Path
    report: dict
    manifest: dict


def _fingerprint(cfg: BuildConfig, entries: list[CatalogEntry], revisions: dict[str, str | None]) -> str:
    parts = {
        "version": __version__,
        "work_format": WORK_FORMAT,
        "limit": cfg.limit,
        "prompts_per_task": cfg.prompts_per_task,
        "shard_size_mb": cfg.shard_size_mb,
        "sources": [
            [e.name, e.catalog_sha, [t.sha for t in e.templates],
             source_fingerprint(e, cfg.local.get(e.name), revisions.get(e.name))]
            for e in entries
        ],
    }
    return hashlib.sha256(to_json(parts).encode()).hexdigest()[:16]


def plan_units(entries: list[CatalogEntry], work: Path, prompts_per_task: int) -> list[dict]:
    rows = {e.name: sum(assigned_meta(work, e.name)["rows"].values()) for e in entries}
    total = sum(rows[e.name] * len(e.templates) for e in entries)
    per_unit = min(prompts_per_task, max(MIN_UNIT_PROMPTS, -(-total // MIN_UNITS)))
    units = []
    for e in entries:
        n = rows[e.name]
        step = max(1, per_unit // max(1, len(e.templates)))
        units += [{"dataset": e.name, "start": s, "end": min(n, s + step)} for s in range(0, n, step)]
    return units


def plan_buckets(entries: list[CatalogEntry], units: list[dict]) -> int:
    templates = {e.name: len(e.templates) for e in entries}
    prompts = sum((u["end"] - u["start"]) * templates[u["dataset"]] for u in units)
    return max(MIN_BUCKETS, -(-prompts // BUCKET_PROMPTS))


def select_entries(cfg: BuildConfig) -> list[CatalogEntry]:
    catalog = load_catalog(cfg.catalog_dirs, override=cfg.override)
    entries = sorted(select(catalog, cfg.datasets), key=lambda e: e.name)  # output independent of argument order
    if not cfg.datasets:  # "everything": the entries that can be read (a Hub copy, or a --local path)
        skipped = [e.name for e in entries if not e.hub_id and e.name not in cfg.local]
        if skipped:
            print(f"skipping {len(skipped)} local-only datasets without --local: {', '.join(skipped)}")
        entries = [e for e in entries if e.hub_id or e.name in cfg.local]
    for e in entries:
        e.check_templates()
        if e.name not in cfg.local and not e.hub_id:
            raise BuildError(f"dataset '{e.name}' has no Hub copy ({e.hub_note}); pass --local {e.name}=PATH")
    return entries


def prepare(cfg: BuildConfig, api=None) -> tuple[list[CatalogEntry], Path, str, dict[str, str | None]]:
    """Resolve and check entries and Hub revisions, check the output folder is ours to write, then (re)use
    ``OUT/_build`` when its fingerprint matches."""
    entries = select_entries(cfg)
    revisions = {e.name: resolve_revision(e, api) for e in entries if e.name not in cfg.local}
    fingerprint = _fingerprint(cfg, entries, revisions)
    check_output_folder(cfg.out)
    work = cfg.out / WORK
    stamp = work / "fingerprint"
    if work.exists() and (not stamp.exists() or stamp.read_text() != fingerprint) and (cfg.out / MARKER).exists():
        shutil.rmtree(work)  # different inputs: an earlier partial build of ours cannot be resumed
    mark_ours(cfg.out, fingerprint)
    stamp.write_text(fingerprint)
    return entries, work, fingerprint, revisions


def run_stages(cfg: BuildConfig, entries: list[CatalogEntry], work: Path, revisions: dict[str, str | None],
               compile_per_row: bool = False) -> None:
    logs, ex = work / "logs", cfg.executors
    reader = IngestSource(entries, cfg.local, str(work), cfg.limit, {k: v for k, v in revisions.items() if v})
    ingest = make_executor(ex, [reader], tasks=len(entries) * reader.chunks, logging_dir=logs / "0-ingest", local=True,
                           fork=True)
    ingest.run()
    check_complete(ingest, "ingest")
    release_free_memory()  # what ingest freed here (its tasks run in this process with 1 worker)
    start_forkserver(ex)  # it starts while assign runs here
    assign = make_executor(ex, [AssignSplits(entries, str(work))], tasks=1, logging_dir=logs / "1-assign", local=True)
    assign.run()
    check_complete(assign, "assign")
    release_free_memory()
    units = plan_units(entries, work, cfg.prompts_per_task)
    if not units:
        raise BuildError("no source rows survived ingest; see the build report's rejected rows")
    buckets = plan_buckets(entries, units)
    (work / "plan.json").write_text(json.dumps({"units": units, "buckets": buckets}))
    tasks = len(units)
    render = make_executor(ex, [
        SourceRowsReader(str(work)),
        RenderPrompts(entries, compile_per_row=compile_per_row),
        PromptFilter(exclusion_writer=ParquetWriter(str(work / "rejected" / "prompts"), adapter=reject_adapter("render"),
                                                    schema=REJECT_SCHEMA, max_file_size=-1)),
        PromptSignatures(str(work / "dedup" / "sigs"), buckets=buckets),
        # a work file read once, whole, by the write stage: lz4, big row groups, no content-defined chunking, page
        # index or statistics, dictionaries only for the columns of few values (without them the write stage's
        # reads take more memory, more at 4M prompts than at 1M; the published shards keep all of it)
        RowWriter(str(work / "rendered"), RENDERED_SCHEMA, output_filename="${rank}.parquet", batch_size=16_384,
                  compression="lz4", write_statistics=False,
                  use_dictionary=[c for c in RENDERED_SCHEMA.names if c not in WORK_DISTINCT],
                  use_content_defined_chunking=False, write_page_index=False),
    ], tasks=tasks, logging_dir=logs / "2-render", name="render")
    find = make_executor(ex, [FindDuplicates(str(work / "dedup" / "sigs"), str(work / "dedup" / "dups"))],
                         tasks=buckets, logging_dir=logs / "3-find", depends=render, name="find")
    write = make_executor(ex, [
        RankParquetReader(str(work / "rendered"), text_key="inputs", id_key="id", batches=True, batch_size=4096),
        DropDuplicates(str(work / "dedup" / "dups"),
                       exclusion_writer=ParquetWriter(str(work / "rejected" / "duplicates"),
                                                      adapter=reject_adapter("duplicate"), schema=REJECT_SCHEMA,
                                                      max_file_size=-1)),
        # the published shards: row groups of STAGING_ROWS prompts (a few MB each)
        RowWriter(str(work / "staging"), PROMPT_SCHEMA, output_filename="${task}/${split}/${rank}.parquet",
                  max_file_size=cfg.shard_size_mb * 2**20, batch_size=STAGING_ROWS),
        CheckSignatures(str(work / "checks" / "sigs"), buckets=buckets),
    ], tasks=tasks, logging_dir=logs / "4-write", depends=find, name="write")
    check = make_executor(ex, [FindLeaks(str(work / "checks" / "sigs"), str(work / "checks" / "figures"))],
                          tasks=buckets, logging_dir=logs / "5-check", depends=write, name="check")
    check.run()
    if cfg.executor != "slurm":
        for stage, name in ((render, "render"), (find, "find"), (write, "write"), (check, "check")):
            check_complete(stage, name)


def build_checks(work: Path) -> dict:
    """The check stage's figures, summed over its hash buckets."""
    buckets = json.loads((work / "plan.json").read_text())["buckets"]
    return sum_figures([json.loads((work / "checks" / "figures" / f"{b:04d}.json").read_text())
                        for b in range(buckets)])


def finalize_build(cfg: BuildConfig, entries: list[CatalogEntry], work: Path, fingerprint: str,
                   revisions: dict[str, str | None]) -> BuildResult:
    """Shards, checks and manifest (``builders.finalize``), then the report and the dataset card."""
    sources = [
        {
            "name": e.name,
            "hub_id": e.hub_id,
            "hub_config": e.hub_config,
            "revision": e.revision,
            "resolved_revision": revisions.get(e.name),
            "source": "local" if e.name in cfg.local else "hub",
            "task": e.task,
            "task_family": e.task_family,
            "language": e.language,
            "license": e.license,
            "eval_only": e.eval_only,
            "catalog_sha": e.catalog_sha,
            "templates": {t.name: t.sha for t in e.templates},
        }
        for e in entries
    ]
    done = finalize(cfg.out, work / "staging", kind=PROMPTS, schema=PROMPT_SCHEMA,
                    manifest={"fingerprint": fingerprint, "limit": cfg.limit, "sources": sources},
                    checks=build_checks(work))
    rep = report_mod.build_report(cfg.out, work, entries, done.checks)
    for s in done.manifest["sources"]:
        s["prompts"] = rep["by_dataset"].get(s["name"], 0)
    (cfg.out / "build_manifest.json").write_text(json.dumps(done.manifest, ensure_ascii=False, indent=1),
                                                 encoding="utf-8")
    report_mod.write_report(cfg.out, rep)
    card.write_prompts_card(cfg.out, entries, rep, done.manifest, PROMPT_SCHEMA)
    return BuildResult(out=cfg.out, report=rep, manifest=done.manifest)


def build(cfg: BuildConfig, compile_per_row: bool = False, api=None) -> BuildResult:
    """Run every stage, then finalize the folder. ``compile_per_row`` is the benchmark's baseline arm; ``api``
    stands in for ``huggingface_hub.HfApi`` when resolving Hub revisions (tests)."""
    entries, work, fingerprint, revisions = prepare(cfg, api)
    with frozen_gc():  # the tasks that run in this process
        run_stages(cfg, entries, work, revisions, compile_per_row=compile_per_row)
    if cfg.executor == "slurm" and not slurm_done(work / "logs" / "5-check", json.loads(
            (work / "plan.json").read_text())["buckets"]):
        raise BuildError(f"Slurm jobs submitted (logs in {work / 'logs'}); when they have finished, "
                         f"run the same command again to finalize {cfg.out}")
    return finalize_build(cfg, entries, work, fingerprint, revisions)


__all__ = ["BuildConfig", "BuildError", "BuildResult", "ROW_SCHEMA", "ROW_FIELDS", "build", "map_record",
           "prepare", "plan_units"]
