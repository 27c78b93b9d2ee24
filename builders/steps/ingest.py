"""Stage 0, ingest: ``INGEST_CHUNKS`` tasks per dataset read its source, map columns to template variables,
check labels, compute each row's split key and ``source_id``, and write the row's own split (the build-wide
split is decided next, by ``AssignSplits``). Rows that cannot be used are kept in ``_build/rejected/`` with
the reason.

The rows of a source are cut into blocks of ``BLOCK_ROWS`` rows in the order the source gives them; task ``k``
of a dataset keys the blocks ``k, k + INGEST_CHUNKS, ...`` (every task reads the source, only one does the
work on a row; a Hub dataset does not even turn the other tasks' rows into Python) and writes each block as
one row group of ``_build/sources/<name>/<k>.parquet``, listed in ``<k>.json``. ``IngestedRows`` reads them
back in the source's order (block by block, or the rows at given positions), so what follows is the same
whatever the number of workers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datatrove.pipeline.base import PipelineStep
from tqdm.auto import tqdm

from builders.catalog import CatalogEntry
from builders.hashes import text_hash64
from builders.records import to_json
from builders.report import reason_kind
from builders.schema import SOURCE_SCHEMA, SPLITS
from builders.sources import REJECT, read_source, uses_local_layout
from builders.splits import key_columns, key_text, source_id
from builders.steps import BuildError
from builders.steps.rejects import RejectLog


INGEST_CHUNKS = 2  # ingest tasks per dataset (a fixed number: the output never depends on --workers)
BLOCK_ROWS = 5000  # source rows per block (one row group of a chunk file)


def chunk_path(work: Path, name: str, chunk: int, suffix: str = ".parquet") -> Path:
    return Path(work) / "sources" / name / f"{chunk}{suffix}"


def _chunk_metas(work: Path, name: str) -> dict[int, dict]:
    folder = Path(work) / "sources" / name
    metas = {int(p.stem): json.loads(p.read_text(encoding="utf-8")) for p in folder.glob("*.json")}
    if not metas:
        raise BuildError(f"dataset '{name}': no ingested rows in {folder} (ingest did not finish?)")
    return dict(sorted(metas.items()))


def ingested_meta(work: Path, name: str) -> dict:
    """What split assignment needs of a dataset's ingest, its chunks added up: own_rows (rows per own split)
    and link_hashes."""
    total = {"own_rows": dict.fromkeys(SPLITS, 0), "link_hashes": 0}
    for m in _chunk_metas(work, name).values():
        for k, v in m["own_rows"].items():
            total["own_rows"][k] += v
        total["link_hashes"] += m["link_hashes"]
    return total


class IngestedRows:
    """A dataset's ingested rows in the order of its source, a block (one row group of a chunk file) at a
    time: ``tables`` reads them all in order, ``take`` the rows at given positions in that order (what the
    render stage reads of them, so split assignment need not copy them)."""

    def __init__(self, work: Path, name: str):
        metas = _chunk_metas(work, name)
        # (block, chunk, row group, rows) in source order
        self.groups = sorted((block, k, g, n) for k, meta in metas.items() for g, (block, n) in enumerate(meta["blocks"]))
        self.starts = np.cumsum([0, *(n for *_, n in self.groups)])  # position of each block's first row
        self.files = {k: pq.ParquetFile(chunk_path(work, name, k)) for k in metas}
        self._last: tuple | None = None  # (block, columns, table): the block read last

    def __len__(self) -> int:
        return int(self.starts[-1])

    def block(self, b: int, columns: list[str] | None = None) -> pa.Table:
        if self._last is None or self._last[:2] != (b, columns):
            _, k, g, _ = self.groups[b]
            self._last = (b, columns, self.files[k].read_row_group(g, columns=columns))
        return self._last[2]

    def tables(self, columns: list[str] | None = None):
        for b in range(len(self.groups)):
            yield self.block(b, columns)

    def take(self, rows: np.ndarray, columns: list[str]) -> pa.Table:
        """The rows at ``rows`` (ascending positions), reading only the blocks they are in."""
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return self.block(0, columns).slice(0, 0) if self.groups else pa.table({c: pa.array([], pa.string()) for c in columns})
        which = np.searchsorted(self.starts, rows, side="right") - 1
        bounds = np.flatnonzero(np.diff(which)) + 1
        parts = [self.block(int(which[lo]), columns).take(pa.array(rows[lo:hi] - self.starts[which[lo]]))
                 for lo, hi in zip([0, *bounds], [*bounds, len(rows)])]
        return pa.concat_tables(parts) if len(parts) > 1 else parts[0]


def ingested_tables(work: Path, name: str, columns: list[str] | None = None):
    """A dataset's ingested rows block by block, in the order of its source (one table per block)."""
    yield from IngestedRows(work, name).tables(columns)


def own_split(entry: CatalogEntry, source_split: str) -> str | None:
    """The output split a source split maps to (a split named like an output split maps to itself)."""
    return entry.splits.get(source_split) or (source_split if source_split in SPLITS else None)


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


class IngestSource(PipelineStep):
    """One dataset per task -> normalised rows (template variables as JSON, split key, own split) + rejects."""

    name = "ingest source"
    type = "📖 - READER"

    def __init__(self, entries: list[CatalogEntry], local: dict[str, str], work: str, limit: int | None,
                 revisions: dict[str, str] | None = None):
        super().__init__()
        self.entries, self.local, self.work, self.limit = entries, local, work, limit
        self.revisions = revisions or {}  # dataset -> resolved Hub commit
        self.chunks, self.block_rows = INGEST_CHUNKS, BLOCK_ROWS  # tasks = len(entries) * chunks

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        entry, chunk = self.entries[rank // self.chunks], rank % self.chunks
        work = Path(self.work)
        out, meta_path = chunk_path(work, entry.name, chunk), chunk_path(work, entry.name, chunk, ".json")
        out.parent.mkdir(parents=True, exist_ok=True)
        rejects = RejectLog(work / "rejected" / f"source-{entry.name}-{chunk}.parquet")
        blocks: list[list[int]] = []  # [block, rows] of each row group written
        tmp = out.with_suffix(".tmp")
        rejected: dict[str, int] = {}
        counts = dict.fromkeys(SPLITS, 0)
        local_path = self.local.get(entry.name)
        local_layout = uses_local_layout(entry, local_path)
        pending: list[tuple[str, int, str, dict]] = []

        def reject(source_split: str, i: int, reason: str, content: str) -> None:
            kind = reason_kind(reason)
            rejected[kind] = rejected.get(kind, 0) + 1
            rejects.add(dataset_name=entry.name, template_name=None, stage="source", reason=reason,
                        source_split=source_split, source_row=i, content=content[:2000])
            self.stat_update("rejected")

        label_names = sorted(entry.labels)
        links = [0]  # linking hashes written (key texts and fingerprints): AssignSplits reads them range by range

        def flush(writer: pq.ParquetWriter) -> None:
            if not pending:
                return
            key_vars = [entry.split_key_vars(row) for *_, row in pending]
            keys, parts, shingles = key_columns([[key_text(row.get(v)) for v in kv]
                                                 for kv, (*_, row) in zip(key_vars, pending)])
            cols: dict[str, list] = {k: [] for k in ("source_split", "source_row", "own_split", "source_id",
                                                     "row_hash", "label_hash", "record")}
            keep = np.ones(len(pending), dtype=bool)
            for j, ((source_split, i, split, row), key, kv) in enumerate(zip(pending, keys, key_vars)):
                record = to_json(row)
                if not key:
                    keep[j] = False
                    reject(source_split, i, "empty split key", record)
                    continue
                counts[split] += 1
                others = {v: row[v] for v in row if v not in kv}
                labels = {v: row.get(v) for v in label_names}
                others_json = to_json(others)
                cols["source_split"].append(source_split)
                cols["source_row"].append(i)
                cols["own_split"].append(split)
                cols["source_id"].append(source_id(key))
                cols["row_hash"].append(text_hash64(key + "\x1e" + others_json))
                cols["label_hash"].append(text_hash64(others_json if others == labels else to_json(labels)))
                cols["record"].append(record)
            if cols["record"]:
                mask = pa.array(keep)
                data = {**cols, "split": cols["own_split"], "parts": parts.filter(mask), "shingles": shingles.filter(mask)}
                links[0] += len(pc.list_flatten(data["parts"])) + len(pc.list_flatten(data["shingles"]))
                writer.write_table(pa.table({name: data[name] for name in SOURCE_SCHEMA.names}, schema=SOURCE_SCHEMA))
                blocks.append([block, len(cols["record"])])
            pending.clear()

        def mine(seq: int) -> bool:
            return (seq // self.block_rows) % self.chunks == chunk

        with pq.ParquetWriter(tmp, SOURCE_SCHEMA) as writer:
            # a Hub dataset gives the other tasks' rows undecoded (record None); they are only counted
            rows = read_source(entry, local_path, self.limit, revision=self.revisions.get(entry.name), wanted=mine)
            read, block = 0, 0
            for seq, (source_split, i, record) in enumerate(tqdm(rows, desc=f"read {entry.name} [{chunk}]",
                                                                 unit=" rows", mininterval=2)):
                if not mine(seq):
                    continue  # another task's block
                if seq // self.block_rows != block:
                    flush(writer)
                    block = seq // self.block_rows
                read += 1
                row, reason = map_record(entry, record, local_layout)
                split = own_split(entry, source_split) if row is not None else None
                if row is not None and split is None:
                    reason = f"source split '{source_split}' is not in the catalog's splits"
                if reason:
                    reject(source_split, i, reason, to_json(record))
                    continue
                pending.append((source_split, i, split, row))
            flush(writer)
            self.stat_update("source_rows", value=read)
        os.replace(tmp, out)
        rejects.close()
        meta = {"own_rows": counts, "rejected": rejected, "num_templates": len(entry.templates), "link_hashes": links[0],
                "blocks": blocks}
        meta_path.write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
        return
        yield  # a generator that yields nothing: datatrove steps are generators
