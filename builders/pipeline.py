"""The build: catalog entries -> prompted, deduplicated, sharded parquet, as datatrove pipelines.

Stages (each a datatrove pipeline of small steps; executors come from datatrove):

0. ingest   ``IngestSource``: one task per dataset reads its source (Hub or local), maps columns, checks
            labels, assigns the output split by source example, writes ``_build/sources/<name>.parquet``
            and the rejected source rows with their reason.
1. render   ``SourceRowsReader -> RenderPrompts -> PromptFilter -> ParquetWriter -> ExactDedupSignature``:
            one task per chunk of source rows (bounded prompts per task, so memory stays flat).
2. find     ``ExactFindDedups``: merges the sorted signatures (keeps the test copy of a duplicate).
3. write    ``RankParquetReader -> ExactDedupFilter -> ParquetWriter`` into ``_build/staging/<task>/<split>/``
            with a bounded shard size.

Then ``finalize`` names the shards ``data/<task>/<split>-XXXXX-of-YYYYY.parquet`` and writes the card,
the report and the manifest. datatrove records finished tasks under ``_build/logs``: a killed build run
again skips what finished and redoes the rest, with deterministic output, so the result is identical.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.exact_dedup import (
    ExactDedupConfig,
    ExactDedupFilter,
    ExactDedupSignature,
    ExactFindDedups,
)
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.readers import ParquetReader
from datatrove.pipeline.writers import ParquetWriter
from tqdm.auto import tqdm

from builders import __version__, card
from builders import report as report_mod
from builders.catalog import OUTPUT_SPLITS, CatalogEntry, load_catalog, select
from builders.report import reason_kind
from builders.sources import REJECT, read_source, source_fingerprint, uses_local_layout
from builders.templates import TemplateError, apply_like_promptsource

LANGUAGE = "ar"
SPLIT_PRIORITY = {"test": 3, "validation": 2, "train": 1}  # of two duplicates, the test copy stays
ROW_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("inputs", pa.string()),
        ("targets", pa.string()),
        ("dataset_name", pa.string()),
        ("task", pa.string()),
        ("task_family", pa.string()),
        ("template_id", pa.string()),
        ("template_name", pa.string()),
        ("answer_choices", pa.list_(pa.string())),
        ("split", pa.string()),
        ("language", pa.string()),
        ("license", pa.string()),
    ]
)
ROW_FIELDS = ROW_SCHEMA.names
SOURCE_SCHEMA = pa.schema(
    [("source_split", pa.string()), ("source_row", pa.int64()), ("split", pa.string()), ("record", pa.string())]
)
REJECT_SCHEMA = pa.schema(
    [
        ("dataset_name", pa.string()),
        ("template_name", pa.string()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("source_split", pa.string()),
        ("source_row", pa.int64()),
        ("content", pa.string()),
    ]
)
_LEFTOVER_JINJA = re.compile(r"\{\{|\}\}|\{%|%\}")
_NONE = re.compile(r"(?<![\w])None(?![\w])")
_SUSPECT = re.compile(_LEFTOVER_JINJA.pattern + "|" + _NONE.pattern)


class BuildError(RuntimeError):
    """A build that cannot go on (no rows, a broken template, a failed task)."""


@dataclass
class BuildConfig:
    out: Path
    datasets: list[str] | None = None
    local: dict[str, str] = field(default_factory=dict)
    catalog_dirs: list[str] = field(default_factory=list)
    workers: int = 1
    executor: str = "local"  # local | slurm | ray
    limit: int | None = None  # source rows per source split (quick builds)
    prompts_per_task: int = 200_000
    shard_size_mb: int = 256
    slurm: dict[str, Any] = field(default_factory=dict)  # partition, time, cpus_per_task, ... for SlurmPipelineExecutor
    ray: dict[str, Any] = field(default_factory=dict)  # cpus_per_task, mem_per_cpu_gb, ... for RayPipelineExecutor

    def __post_init__(self):
        self.out = Path(self.out)
        if self.executor not in ("local", "slurm", "ray"):
            raise ValueError(f"--executor must be local, slurm or ray, not {self.executor!r}")
        unknown = sorted(set(self.local) - set(self.datasets or self.local))
        if unknown:
            raise ValueError(f"--local given for {unknown}, which are not in --datasets")


# ----------------------------------------------------------------------------------------- helpers


def row_id(dataset: str, source_split: str, source_row: int, template_id: str) -> str:
    """Deterministic prompt id: dataset, source split, source row and template."""
    key = f"{dataset}\x1f{source_split}\x1f{source_row}\x1f{template_id}"
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def _fraction(key: str) -> float:
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 2**32


def own_split(entry: CatalogEntry, source_split: str) -> str | None:
    """The output split a source split maps to (a split named like an output split maps to itself)."""
    return entry.splits.get(source_split) or (source_split if source_split in OUTPUT_SPLITS else None)


def carve_split(entry: CatalogEntry, record_json: str, missing: set[str]) -> str:
    """For a train example: validation/test when the source has none, chosen by a hash of its content."""
    x = _fraction(f"{entry.name}\x1f{record_json}")
    val = entry.split_fractions.get("validation", 0.05) if "validation" in missing else 0.0
    test = entry.split_fractions.get("test", 0.1) if "test" in missing else 0.0
    if x < val:
        return "validation"
    if x < val + test:
        return "test"
    return "train"


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or (isinstance(value, (list, dict)) and not value)


def map_record(entry: CatalogEntry, record: dict, local: bool) -> tuple[dict | None, str | None]:
    """Template variables of one source record, or (None, reason) when the row must be rejected."""
    if REJECT in record:
        return None, record[REJECT]
    columns = {**entry.columns, **((entry.local or {}).get("columns") or {})} if local else entry.columns
    labels = {**entry.labels, **entry.local_labels} if local else entry.labels
    row = {}
    for var, col in columns.items():
        if col not in record:
            raise BuildError(
                f"dataset '{entry.name}': source has no column '{col}' (for variable '{var}'); "
                f"columns are {sorted(record)}"
            )
        value = record[col]
        if _is_empty(value):
            if var not in entry.optional:
                return None, f"empty {var}"
            value = "" if value is None else value
        spec = labels.get(var)
        if spec is not None:
            index = spec.to_index(value)
            if index is None:
                return None, f"unknown label {str(value)[:40]!r}"
            value = index
        row[var] = value
    return row, None


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


class _RejectLog:
    """Rejected rows go to a parquet file with their reason: nothing is dropped silently."""

    def __init__(self, path: Path):
        self.path, self.rows, self.writer = path, [], None

    def add(self, **row: Any) -> None:
        self.rows.append(row)
        if len(self.rows) >= 2000:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.path, REJECT_SCHEMA)
        self.writer.write_table(pa.Table.from_pylist(self.rows, schema=REJECT_SCHEMA))
        self.rows = []

    def close(self) -> None:
        self.flush()
        if self.writer is not None:
            self.writer.close()


# ------------------------------------------------------------------------------------- steps


class IngestSource(PipelineStep):
    """Stage 0: one dataset per task -> normalised rows (template variables as JSON) + rejected rows."""

    name = "ingest source"
    type = "📖 - READER"

    def __init__(self, entries: list[CatalogEntry], local: dict[str, str], work: str, limit: int | None):
        super().__init__()
        self.entries, self.local, self.work, self.limit = entries, local, work, limit

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        entry = self.entries[rank]
        work = Path(self.work)
        out, meta_path = work / "sources" / f"{entry.name}.parquet", work / "sources" / f"{entry.name}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        rejects = _RejectLog(work / "rejected" / f"source-{entry.name}.parquet")
        tmp = out.with_suffix(".tmp")
        rejected: dict[str, int] = {}
        counts = {s: 0 for s in OUTPUT_SPLITS}
        batch: list[dict] = []
        local_path = self.local.get(entry.name)
        local_layout = uses_local_layout(entry, local_path)
        with pq.ParquetWriter(tmp, SOURCE_SCHEMA) as writer:
            rows = read_source(entry, local_path, self.limit)
            for source_split, i, record in tqdm(rows, desc=f"read {entry.name}", unit=" rows", mininterval=2):
                self.stat_update("source_rows")
                row, reason = map_record(entry, record, local_layout)
                split = own_split(entry, source_split) if row is not None else None
                if row is not None and split is None:
                    reason = f"source split '{source_split}' is not in the catalog's splits"
                if reason:
                    kind = reason_kind(reason)
                    rejected[kind] = rejected.get(kind, 0) + 1
                    rejects.add(dataset_name=entry.name, template_name=None, stage="source", reason=reason,
                                source_split=source_split, source_row=i, content=_json(record)[:2000])
                    self.stat_update("rejected")
                    continue
                counts[split] += 1
                batch.append({"source_split": source_split, "source_row": i, "split": split, "record": _json(row)})
                if len(batch) >= 5000:
                    writer.write_table(pa.Table.from_pylist(batch, schema=SOURCE_SCHEMA))
                    batch = []
            if batch:
                writer.write_table(pa.Table.from_pylist(batch, schema=SOURCE_SCHEMA))
        missing = {s for s in ("validation", "test") if not counts[s]} if counts["train"] else set()
        if missing:
            counts = self._carve_splits(entry, tmp, out, missing)
        else:
            os.replace(tmp, out)
        rejects.close()
        meta = {"rows": counts, "rejected": rejected, "num_templates": len(entry.templates)}
        meta_path.write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
        return
        yield  # a generator that yields nothing: datatrove steps are generators

    @staticmethod
    def _carve_splits(entry: CatalogEntry, tmp: Path, out: Path, missing: set[str]) -> dict[str, int]:
        """Second pass, when the source lacks validation or test: carve them out of train, recount per split."""
        counts = {s: 0 for s in OUTPUT_SPLITS}
        pf = pq.ParquetFile(tmp)
        with pq.ParquetWriter(out.with_suffix(".tmp2"), SOURCE_SCHEMA) as writer:
            for group in range(pf.metadata.num_row_groups):  # one row group at a time: memory stays flat
                rows = pf.read_row_group(group).to_pylist()
                for r in rows:
                    if r["split"] == "train":
                        r["split"] = carve_split(entry, r["record"], missing)
                    counts[r["split"]] += 1
                writer.write_table(pa.Table.from_pylist(rows, schema=SOURCE_SCHEMA))
        os.replace(out.with_suffix(".tmp2"), out)
        tmp.unlink()
        return counts


class SourceRowsReader(PipelineStep):
    """Stage 1 reader: the rows ``[start, end)`` of one dataset, as given by this rank's plan unit."""

    name = "source rows"
    type = "📖 - READER"

    def __init__(self, work: str):
        super().__init__()
        self.work = work

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        unit = json.loads((Path(self.work) / "plan.json").read_text())["units"][rank]
        pf = pq.ParquetFile(Path(self.work) / "sources" / f"{unit['dataset']}.parquet")
        start, end, offset = unit["start"], unit["end"], 0
        bar = tqdm(total=end - start, desc=f"render {unit['dataset']} [{rank}]", unit=" rows", mininterval=2)
        for group in range(pf.metadata.num_row_groups):  # read only the row groups that overlap [start, end)
            n = pf.metadata.row_group(group).num_rows
            if offset + n > start and offset < end:
                lo, hi = max(start - offset, 0), min(end - offset, n)
                recs = pf.read_row_group(group).slice(lo, hi - lo).to_pylist()
                self.stat_update("source_rows", value=len(recs))
                bar.update(len(recs))
                for rec in recs:
                    yield Document(text="", id=f"{unit['dataset']}/{rec['source_split']}/{rec['source_row']}",
                                   metadata={"dataset_name": unit["dataset"], **rec})
            offset += n
            if offset >= end:
                break
        bar.close()


class RenderPrompts(PipelineStep):
    """Stage 1: one source row -> one prompt document per template (sandboxed jinja, compiled once)."""

    name = "render prompts"
    type = "✍️ - RENDER"

    def __init__(self, entries: list[CatalogEntry], compile_per_row: bool = False):
        super().__init__()
        self.entries = {e.name: e for e in entries}
        self.compile_per_row = compile_per_row  # the benchmark's baseline: PromptSource's Template.apply

    def run(self, data, rank: int = 0, world_size: int = 1):
        for doc in data:
            meta = doc.metadata
            entry = self.entries[meta["dataset_name"]]
            row = json.loads(meta["record"])
            where = f"{meta['source_split']}:{meta['source_row']}"
            # braces or a "None" that the text itself contains are not rendering leftovers
            flags = {k: True for k, rx in (("data_has_jinja", _LEFTOVER_JINJA), ("data_has_none", _NONE))
                     if rx.search(meta["record"])}
            self.stat_update("prompts", value=len(entry.templates))
            for tpl in entry.templates:
                try:
                    if self.compile_per_row:
                        inputs, targets, choices = apply_like_promptsource(tpl, row)
                    else:
                        inputs, targets, choices = tpl.render(row, where)
                    reason = None
                except TemplateError as e:
                    if not e.row_level:
                        raise
                    inputs, targets, choices, reason = "", "", [], f"render error: {e}"
                yield Document(
                    text=inputs,
                    id=row_id(entry.name, meta["source_split"], meta["source_row"], tpl.id),
                    metadata={
                        "targets": targets,
                        "dataset_name": entry.name,
                        "task": entry.task,
                        "task_family": entry.task_family,
                        "template_id": tpl.id,
                        "template_name": tpl.name,
                        "answer_choices": choices,
                        "split": meta["split"],
                        "language": LANGUAGE,
                        "license": entry.license,
                        "source_split": meta["source_split"],
                        "source_row": meta["source_row"],
                        **({"render_error": reason} if reason else {}),
                        **flags,
                    },
                )


class PromptFilter(BaseFilter):
    """Stage 1: drop prompts with an empty side, a rendered ``None`` or leftover jinja (kept with the reason)."""

    name = "prompt checks"

    def run(self, data, rank: int = 0, world_size: int = 1):
        """BaseFilter.run with the statistics counted once per task rather than updated for every prompt
        (on the hot path of a build); dropped prompts still go to the exclusion writer with their reason."""
        kept = dropped = 0
        with self.exclusion_writer if self.exclusion_writer else contextlib.nullcontext() as writer:
            for doc in data:
                result = self.filter(doc)
                if result is True:
                    kept += 1
                    yield doc
                    continue
                dropped += 1
                doc.metadata["filter_reason"] = result[1]
                self.stat_update(f"dropped_{result[1]}")
                if writer:
                    writer.write(doc, rank)
        self.stat_update("total", value=kept + dropped)
        self.stat_update("forwarded", value=kept)
        self.stat_update("dropped", value=dropped)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        meta = doc.metadata
        if meta.get("render_error"):
            return False, "render error"
        if not doc.text.strip():
            return False, "empty inputs"
        if not meta["targets"].strip():
            return False, "empty targets"
        if not _SUSPECT.search(doc.text) and not _SUSPECT.search(meta["targets"]):
            return True  # the common case: one scan per side
        if not meta.get("data_has_none") and (_NONE.search(doc.text) or _NONE.search(meta["targets"])):
            return False, "rendered None"
        if not meta.get("data_has_jinja") and (_LEFTOVER_JINJA.search(doc.text) or _LEFTOVER_JINJA.search(meta["targets"])):
            return False, "leftover jinja"
        return True


class RankParquetReader(ParquetReader):
    """Stage 3 reader: exactly the file stage 1 wrote for this rank, so dedup indices line up."""

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        name = f"{rank:05d}.parquet"
        if self.data_folder.exists(name):
            yield from self.read_files_shard([name])


def _rendered_adapter(self, doc: Document) -> dict:
    meta = doc.metadata
    return {"id": doc.id, "inputs": doc.text, **{k: meta[k] for k in _RENDERED_META}}


def _final_adapter(self, doc: Document) -> dict:
    meta = doc.metadata
    return {"id": doc.id, "inputs": doc.text, **{k: meta[k] for k in ROW_FIELDS[2:]}}


def _reject_adapter(stage: str):
    def adapter(self, doc: Document) -> dict:
        meta = doc.metadata
        reason = meta.get("render_error") or meta.get("filter_reason") or stage
        return {
            "dataset_name": meta.get("dataset_name"),
            "template_name": meta.get("template_name"),
            "stage": stage,
            "reason": reason,
            "source_split": meta.get("source_split"),
            "source_row": meta.get("source_row"),
            "content": _json({"inputs": doc.text, "targets": meta.get("targets")})[:2000],
        }

    return adapter


def _dedup_content(doc: Document) -> bytes:
    return (doc.text + "\x1e" + doc.metadata["targets"]).encode()


def _dedup_priority(doc: Document) -> int:
    return SPLIT_PRIORITY[doc.metadata["split"]]


RENDERED_SCHEMA = pa.schema(
    [f for f in ROW_SCHEMA] + [pa.field("source_split", pa.string()), pa.field("source_row", pa.int64())]
)
_RENDERED_META = tuple(n for n in RENDERED_SCHEMA.names if n not in ("id", "inputs"))


class PromptParquetWriter(ParquetWriter):
    """datatrove's ParquetWriter on the hot path of a build: each file name is computed once per
    (rank, task, split[, file number]) instead of string work for every prompt, local files are taken from
    the output manager directly (the retry wrapper is for remote Hub writes), and the per-document
    statistics (three counter updates per prompt) become one count per file, recorded when it closes."""

    def _memo(self, key: str, compute) -> str:
        cache = self.__dict__.setdefault("_name_cache", {})  # string keys: datatrove saves steps as JSON
        name = cache.get(key)
        if name is None:
            name = cache[key] = compute()
        return name

    def _get_output_filename(self, document: Document, rank: int | str = 0, **kwargs) -> str:
        meta = document.metadata
        return self._memo(f"{rank}/{meta.get('task')}/{meta.get('split')}",
                          lambda: super(PromptParquetWriter, self)._get_output_filename(document, rank, **kwargs))

    def _get_filename_with_file_id(self, filename: str) -> str:
        return self._memo(f"{filename}#{self.file_id_counter[filename]}",
                          lambda: super(PromptParquetWriter, self)._get_filename_with_file_id(filename))

    def write(self, document: Document, rank: int = 0, **kwargs):
        name = current = self._get_output_filename(document, rank)
        if self.max_file_size > 0:  # the same rotation rule as DiskWriter.write
            current = self._get_filename_with_file_id(name)
            if self.output_mg.get_file(current).tell() >= self.max_file_size:
                self.file_id_counter[name] += 1
                new = self._get_filename_with_file_id(name)
                self._on_file_switch(name, current, new)
                current = new
        self._write(self.adapter(document), self.output_mg.get_file(current), name)
        counts = self.__dict__.setdefault("_counts", {})
        counts[name] = counts.get(name, 0) + 1

    def close(self):
        for name, n in self.__dict__.pop("_counts", {}).items():
            self.stat_update(name, value=n)
            self.stat_update("total", value=n)
        super().close()


# ------------------------------------------------------------------------------------ executors


def make_executor(cfg: BuildConfig, pipeline: list, tasks: int, logging_dir: Path, depends=None, name: str = ""):
    """A datatrove executor for one stage: local processes, a Slurm job array, or Ray tasks."""
    workers = max(1, min(cfg.workers, tasks))
    if cfg.executor == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        opts = {"time": "24:00:00", "partition": "cpu", "job_name": f"arabic-prompts-{name}", **cfg.slurm}
        return SlurmPipelineExecutor(pipeline, tasks=tasks, workers=cfg.workers if cfg.workers > 1 else -1,
                                     logging_dir=str(logging_dir), depends=depends, **opts)
    if cfg.executor == "ray":
        from datatrove.executor import RayPipelineExecutor

        return RayPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=str(logging_dir),
                                   depends=depends, **cfg.ray)
    from datatrove.executor import LocalPipelineExecutor

    return LocalPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=str(logging_dir), depends=depends)


# ----------------------------------------------------------------------------------------- build


@dataclass
class BuildResult:
    out: Path
    report: dict
    manifest: dict


def _fingerprint(cfg: BuildConfig, entries: list[CatalogEntry]) -> str:
    parts = {
        "version": __version__,
        "limit": cfg.limit,
        "prompts_per_task": cfg.prompts_per_task,
        "shard_size_mb": cfg.shard_size_mb,
        "sources": [
            [e.name, e.catalog_sha, [t.sha for t in e.templates], source_fingerprint(e, cfg.local.get(e.name))]
            for e in entries
        ],
    }
    return hashlib.sha256(_json(parts).encode()).hexdigest()[:16]


def plan_units(entries: list[CatalogEntry], work: Path, prompts_per_task: int) -> list[dict]:
    units = []
    for e in entries:
        meta = json.loads((work / "sources" / f"{e.name}.json").read_text())
        n = sum(meta["rows"].values())
        step = max(1, prompts_per_task // max(1, meta["num_templates"]))
        units += [{"dataset": e.name, "start": s, "end": min(n, s + step)} for s in range(0, n, step)]
    return units


def prepare(cfg: BuildConfig) -> tuple[list[CatalogEntry], Path, str]:
    """Resolve and check entries, then (re)use ``OUT/_build`` when its fingerprint matches."""
    catalog = load_catalog(cfg.catalog_dirs)
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
    fingerprint = _fingerprint(cfg, entries)
    work = cfg.out / "_build"
    stamp = work / "fingerprint"
    if work.exists() and (not stamp.exists() or stamp.read_text() != fingerprint):
        shutil.rmtree(work)  # different inputs: an earlier partial build cannot be resumed
    work.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint)
    return entries, work, fingerprint


def run_stages(cfg: BuildConfig, entries: list[CatalogEntry], work: Path, compile_per_row: bool = False) -> None:
    logs = work / "logs"
    ingest = make_executor(
        BuildConfig(out=cfg.out, workers=cfg.workers),  # ingest always runs here: it reads each source once
        [IngestSource(entries, cfg.local, str(work), cfg.limit)],
        tasks=len(entries),
        logging_dir=logs / "0-ingest",
    )
    ingest.run()
    _check_complete(ingest, "ingest")
    units = plan_units(entries, work, cfg.prompts_per_task)
    if not units:
        raise BuildError("no source rows survived ingest; see the build report's rejected rows")
    (work / "plan.json").write_text(json.dumps({"units": units}))
    tasks = len(units)
    dedup = ExactDedupConfig(content_getter=_dedup_content, document_priority=_dedup_priority)
    render = make_executor(
        cfg,
        [
            SourceRowsReader(str(work)),
            RenderPrompts(entries, compile_per_row=compile_per_row),
            PromptFilter(
                exclusion_writer=ParquetWriter(str(work / "rejected" / "prompts"), adapter=_reject_adapter("render"),
                                               schema=REJECT_SCHEMA, max_file_size=-1)
            ),
            PromptParquetWriter(str(work / "rendered"), output_filename="${rank}.parquet", adapter=_rendered_adapter,
                          schema=RENDERED_SCHEMA, max_file_size=-1),
            ExactDedupSignature(str(work / "dedup" / "sigs"), config=dedup),
        ],
        tasks=tasks,
        logging_dir=logs / "1-render",
        name="render",
    )
    find = make_executor(cfg, [ExactFindDedups(str(work / "dedup" / "sigs"), str(work / "dedup" / "dups"), config=dedup)],
                         tasks=1, logging_dir=logs / "2-find", depends=render, name="find")
    write = make_executor(
        cfg,
        [
            RankParquetReader(str(work / "rendered"), text_key="inputs", id_key="id"),
            ExactDedupFilter(
                str(work / "dedup" / "dups"),
                config=dedup,
                exclusion_writer=ParquetWriter(str(work / "rejected" / "duplicates"),
                                               adapter=_reject_adapter("duplicate"), schema=REJECT_SCHEMA,
                                               max_file_size=-1),
            ),
            PromptParquetWriter(str(work / "staging"), output_filename="${task}/${split}/${rank}.parquet",
                          adapter=_final_adapter, schema=ROW_SCHEMA, max_file_size=cfg.shard_size_mb * 2**20),
        ],
        tasks=tasks,
        logging_dir=logs / "3-write",
        depends=find,
        name="write",
    )
    write.run()
    if cfg.executor != "slurm":
        for ex, name in ((render, "render"), (find, "find"), (write, "write")):
            _check_complete(ex, name)


def _check_complete(executor, stage: str) -> None:
    missing = executor.get_incomplete_ranks(range(executor.world_size))
    if missing:
        raise BuildError(
            f"stage '{stage}': {len(missing)} task(s) did not finish (ranks {missing[:10]}); "
            f"see {executor.logging_dir.path}/logs and run the same command again to resume"
        )


def finalize(cfg: BuildConfig, entries: list[CatalogEntry], work: Path, fingerprint: str) -> BuildResult:
    """Name the shards Hub-style, then write report, manifest and dataset card."""
    data = cfg.out / "data"
    if data.exists():
        shutil.rmtree(data)
    staging = work / "staging"
    files: dict[str, dict[str, list[str]]] = {}
    for task_dir in sorted(p for p in staging.iterdir() if p.is_dir()) if staging.exists() else []:
        for split_dir in sorted(p for p in task_dir.iterdir() if p.is_dir()):
            shards = sorted(split_dir.glob("*.parquet"), key=lambda p: _shard_key(p.name))
            dest = data / task_dir.name
            dest.mkdir(parents=True, exist_ok=True)
            for i, src in enumerate(shards):
                target = dest / f"{split_dir.name}-{i:05d}-of-{len(shards):05d}.parquet"
                try:
                    os.link(src, target)
                except OSError:
                    shutil.copyfile(src, target)
                files.setdefault(task_dir.name, {}).setdefault(split_dir.name, []).append(
                    str(target.relative_to(cfg.out))
                )
    rep = report_mod.build_report(cfg.out, work, entries)
    manifest = {
        "tool": "arabic-prompts",
        "version": __version__,
        "fingerprint": fingerprint,
        "limit": cfg.limit,
        "files": files,
        "counts": {"total": rep["total"], "by_task_split": rep["by_task_split"]},
        "sources": [
            {
                "name": e.name,
                "hub_id": e.hub_id,
                "hub_config": e.hub_config,
                "revision": e.revision,
                "source": "local" if e.name in cfg.local else "hub",
                "task": e.task,
                "license": e.license,
                "catalog_sha": e.catalog_sha,
                "templates": {t.name: t.sha for t in e.templates},
                "prompts": rep["by_dataset"].get(e.name, 0),
            }
            for e in entries
        ],
    }
    (cfg.out / "build_manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    report_mod.write_report(cfg.out, rep)
    card.write_dataset_card(cfg.out, entries, rep, manifest)
    return BuildResult(out=cfg.out, report=rep, manifest=manifest)


def _shard_key(name: str) -> tuple[int, int]:
    # datatrove names rotated files "NNN_RRRRR.parquet" (file counter, rank) or "RRRRR.parquet"
    parts = name.removesuffix(".parquet").split("_")
    return (int(parts[-1]), int(parts[0]) if len(parts) > 1 else 0)


def build(cfg: BuildConfig, compile_per_row: bool = False) -> BuildResult:
    """Run every stage, then finalize the folder. ``compile_per_row`` is the benchmark's baseline arm."""
    entries, work, fingerprint = prepare(cfg)
    run_stages(cfg, entries, work, compile_per_row=compile_per_row)
    if cfg.executor == "slurm" and not _slurm_done(work):
        raise BuildError(f"Slurm jobs submitted (logs in {work / 'logs'}); when they have finished, "
                         f"run the same command again to finalize {cfg.out}")
    return finalize(cfg, entries, work, fingerprint)


def _slurm_done(work: Path) -> bool:
    done = work / "logs" / "3-write" / "completions"
    units = json.loads((work / "plan.json").read_text())["units"]
    return done.exists() and len(list(done.iterdir())) >= len(units)
