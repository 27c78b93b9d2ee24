"""Stage 2, render: ``SourceRowsReader -> RenderPrompts``. One task per chunk of source rows (the plan unit of
its rank), every row x every template of its dataset, templates compiled once and rendered in the sandbox.

The stage passes Arrow batches, not one Document per prompt: ``SourceRowsReader`` yields tables of source rows,
``RenderPrompts`` decodes each row once, renders the table's rows with each template in one looped call
(``Template.render_many``) and yields one ``pa.RecordBatch`` of prompts (the prompt columns,
``source_split``/``source_row`` for rejects, the check columns ``render_error``, ``data_has_jinja``,
``data_has_none``, and ``INPUTS_HASH``, the hash of the normalised inputs) built from column lists. The
inputs column and that hash are both built from the inputs' distinct pieces (``textnorm.piece_ids``); the
columns that are the same for every prompt of a template (dataset, task, template ...) are taken from one
small array. The later steps (``PromptFilter``, ``PromptSignatures``, ``RowWriter``) take these batches."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datatrove.pipeline.base import PipelineStep
from tqdm.auto import tqdm

from builders.catalog import CatalogEntry
from builders.hashes import hash64
from builders.records import from_json
from builders.steps.assign import INGESTED_ROW, assigned_path
from builders.steps.dedup import INPUTS_HASH
from builders.steps.ingest import IngestedRows
from builders.templates import SEPARATOR, Template, apply_like_promptsource, has_separator
from builders.textnorm import join_pieces, normalize_pieces, piece_ids

LEFTOVER_JINJA = re.compile(r"\{\{|\}\}|\{%|%\}")
RENDERED_NONE = re.compile(r"(?<![\w])None(?![\w])")
# the same tests for a whole column (RE2 has no look-around: "None" is a superset, checked exactly per row)
LEFTOVER_JINJA_RE2 = LEFTOVER_JINJA.pattern
NONE_SUBSTRING = "None"
# a derived template (original_task: false) that names no derived_task is not the entry's evaluated task
DERIVED_TEST = "derived template without derived_task, kept out of the test config"

DATASET_KEY = b"dataset_name"  # schema metadata of a source-rows table: the dataset its rows belong to
PER_ROW = ("source_id", "split", "source_split", "source_row")  # prompt columns taken from the source row
CHECK_COLUMNS = ("render_error", "excluded", "data_has_jinja", "data_has_none")


def row_id(dataset: str, source_split: str, source_row: int, template_id: str) -> str:
    """Deterministic prompt id: dataset, source split, source row and template."""
    key = f"{dataset}\x1f{source_split}\x1f{source_row}\x1f{template_id}"
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def plan_unit(work: str | Path, rank: int) -> dict:
    return json.loads((Path(work) / "plan.json").read_text())["units"][rank]


def dataset_of(table: pa.Table | pa.RecordBatch) -> str:
    return table.schema.metadata[DATASET_KEY].decode()


class SourceRowsReader(PipelineStep):
    """The rows ``[start, end)`` of one dataset's assigned sources, as given by this rank's plan unit, in tables
    of at most ``batch_rows`` rows (the dataset's name in the schema metadata, ``DATASET_KEY``): the assigned
    file's columns, with each row's ``record`` read from the ingested rows."""

    name = "source rows"
    type = "📖 - READER"

    def __init__(self, work: str, batch_rows: int = 1024):
        super().__init__()
        self.work, self.batch_rows = work, batch_rows

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        unit = plan_unit(self.work, rank)
        pf = pq.ParquetFile(assigned_path(Path(self.work), unit["dataset"]))
        ingested = IngestedRows(Path(self.work), unit["dataset"])  # where the records are
        start, end, offset = unit["start"], unit["end"], 0
        bar = tqdm(total=end - start, desc=f"render {unit['dataset']} [{rank}]", unit=" rows", mininterval=2)
        meta = {DATASET_KEY: unit["dataset"].encode()}
        for group in range(pf.metadata.num_row_groups):  # read only the row groups that overlap [start, end)
            n = pf.metadata.row_group(group).num_rows
            if offset + n > start and offset < end:
                lo, hi = max(start - offset, 0), min(end - offset, n)
                table = pf.read_row_group(group).slice(lo, hi - lo)
                records = ingested.take(table.column(INGESTED_ROW).to_numpy(), ["record"]).column("record")
                table = table.drop_columns([INGESTED_ROW]).append_column("record", records).replace_schema_metadata(meta)
                self.stat_update("source_rows", value=table.num_rows)
                bar.update(table.num_rows)
                for b in range(0, table.num_rows, self.batch_rows):
                    yield table.slice(b, self.batch_rows)
            offset += n
            if offset >= end:
                break
        bar.close()


def template_columns(entry: CatalogEntry, tpl: Template) -> dict[str, str]:
    """The columns every prompt of ``tpl`` shares. Derived templates go to their own task
    (``CatalogEntry.template_task``); one that names none stays in the entry's task (and is kept out of test)."""
    task, family = entry.template_task(tpl) or (entry.task, entry.task_family)
    return {"dataset_name": entry.name, "task": task, "task_family": family, "template_id": tpl.id,
            "template_name": tpl.name, "language": entry.language, "license": entry.license}


class _Templates:
    """What RenderPrompts keeps per dataset: its templates and their shared columns as small arrays."""

    def __init__(self, entry: CatalogEntry):
        self.entry, self.templates = entry, list(entry.templates)
        shared = [template_columns(entry, t) for t in self.templates]
        self.columns = {k: pa.array([s[k] for s in shared], pa.string()) for k in shared[0]} if shared else {}
        fixed = [t.fixed_choices for t in self.templates]
        self.fixed_choices = pa.array(fixed, pa.list_(pa.string())) if all(f is not None for f in fixed) else None
        self.id_suffixes = [t.id.encode() for t in self.templates]
        # derived templates without a task of their own: their test prompts are set aside (DERIVED_TEST)
        self.untasked = np.array([entry.template_task(t) is None for t in self.templates], dtype=bool)


class RenderPrompts(PipelineStep):
    """Source-row tables -> one prompt ``pa.RecordBatch`` per table: every row x every template, rows decoded
    once. A row the template cannot use (an empty answer list indexed with [0], say) gives a prompt carrying
    ``render_error``, which the checks set aside."""

    name = "render prompts"
    type = "✍️ - RENDER"

    def __init__(self, entries: list[CatalogEntry], compile_per_row: bool = False):
        super().__init__()
        self.entries = {e.name: e for e in entries}
        self.compile_per_row = compile_per_row  # the benchmark's baseline: PromptSource's Template.apply

    def _templates(self, name: str) -> _Templates:
        cache = self.__dict__.setdefault("_per_dataset", {})
        if name not in cache:
            cache[name] = _Templates(self.entries[name])
        return cache[name]

    def run(self, data, rank: int = 0, world_size: int = 1):
        for table in data:
            if table.num_rows:
                yield self.render_table(table)

    def render_table(self, table: pa.Table) -> pa.RecordBatch:
        tp = self._templates(dataset_of(table))
        templates, n_t, n_r = tp.templates, len(tp.templates), table.num_rows
        records = table.column("record")
        splits, positions = table.column("source_split").to_pylist(), table.column("source_row").to_pylist()
        dataset = tp.entry.name
        record_list = records.to_pylist()
        decoded = list(map(from_json, record_list))
        refs = [f"{s}:{p}" for s, p in zip(splits, positions)]
        # prompts in row-major order (row 0 with every template, then row 1 ...): template j's are j::n_t
        inputs, targets, choices = [""] * (n_r * n_t), [""] * (n_r * n_t), [None] * (n_r * n_t)
        error_col: list[str | None] = [None] * (n_r * n_t)
        if self.compile_per_row:  # the benchmark's baseline: PromptSource's Template.apply for every prompt
            for i, row in enumerate(decoded):
                for j, tpl in enumerate(templates):
                    inputs[i * n_t + j], targets[i * n_t + j], choices[i * n_t + j] = apply_like_promptsource(tpl, row)
        else:
            sizes = pc.binary_length(records).to_pylist()
            # a row can hold the separator only where its record does (JSON leaves '|' as it is)
            plain = [not (SEPARATOR in text and has_separator(r)) for text, r in zip(record_list, decoded)]
            for j, tpl in enumerate(templates):
                out = tpl.render_many(decoded, refs, sizes, plain)
                inputs[j::n_t], targets[j::n_t], choices[j::n_t] = out.inputs, out.targets, out.choices
                for i, message in out.errors.items():
                    error_col[i * n_t + j] = message
        self.stat_update("prompts", value=len(inputs))
        rows = pa.array(np.repeat(np.arange(n_r), n_t))
        which = pa.array(np.tile(np.arange(n_t), n_r))
        prefixes = [f"{dataset}\x1f{s}\x1f{p}\x1f".encode() for s, p in zip(splits, positions)]
        ids = [hashlib.sha256(p + t).hexdigest()[:24] for p in prefixes for t in tp.id_suffixes]
        # braces or a "None" that the record itself holds are not rendering leftovers
        has_jinja = pc.match_substring_regex(records, LEFTOVER_JINJA_RE2)
        maybe_none = pc.match_substring(records, NONE_SUBSTRING).to_pylist()
        has_none = [bool(m and RENDERED_NONE.search(r)) for m, r in zip(maybe_none, record_list)]
        if self.compile_per_row:
            input_column, inputs_hash = pa.array(inputs, pa.string()), None
        else:  # the inputs' distinct pieces go to Arrow once each: the column and its normalised hash are built from them
            unique, pid, counts = piece_ids(input_pieces(decoded, inputs, n_t))
            input_column, inputs_hash = join_pieces(unique, pid, counts), hash64(normalize_pieces(unique, pid, counts))
        columns = {
            "id": pa.array(ids, pa.string()),
            "inputs": input_column,
            "targets": pa.array(targets, pa.string()),
            "answer_choices": (tp.fixed_choices.take(which) if tp.fixed_choices is not None and not self.compile_per_row
                               else pa.array(choices, pa.list_(pa.string()))),
            **{k: v.take(which) for k, v in tp.columns.items()},
            **{k: table.column(k).combine_chunks().take(rows) for k in PER_ROW},
            "render_error": pa.array(error_col, pa.string()),
            "excluded": self._excluded(tp, table, n_r),
            "data_has_jinja": has_jinja.combine_chunks().take(rows),
            "data_has_none": pa.array(has_none, pa.bool_()).take(rows),
        }
        if inputs_hash is not None:
            columns[INPUTS_HASH] = pa.array(inputs_hash, pa.uint64())
        return pa.RecordBatch.from_pydict(columns)

    @staticmethod
    def _excluded(tp: _Templates, table: pa.Table, n_rows: int) -> pa.Array:
        """``DERIVED_TEST`` for the test prompts of a derived template without a task of its own, else null."""
        if not tp.untasked.any():
            return pa.nulls(n_rows * len(tp.templates), pa.string())
        is_test = pc.equal(table.column("split"), "test").combine_chunks().to_numpy(zero_copy_only=False)
        mask = np.repeat(is_test, len(tp.templates)) & np.tile(tp.untasked, n_rows)
        return pc.if_else(pa.array(mask), pa.scalar(DERIVED_TEST), pa.scalar(None, pa.string()))


def input_pieces(rows: list[dict], inputs: list[str], per_row: int) -> list[tuple[str, str, str]]:
    """Each prompt's inputs cut around its row's longest text (rows in order, ``per_row`` prompts each): the
    pieces that ``textnorm.piece_ids`` keeps once each (for the inputs column and ``normalize_pieces``), the
    template's words and the row's text being the same in many prompts. Any cut gives the same result; one
    that shares nothing only saves nothing."""
    keys = [max((v for v in row.values() if isinstance(v, str)), key=len, default="") or "\x00" for row in rows]
    return [text.partition(key) for text, key in zip(inputs, (k for k in keys for _ in range(per_row)))]
