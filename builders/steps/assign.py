"""Stage 1, assign splits: one split per source text across the whole build (one task).

Reads every dataset's ingested rows and links rows that share a key text (``builders.splits``), in any
dataset or task. Each row gets a tentative split (its source's, or carved from train by a hash of its
component when the source lacks validation/test); every component then takes the highest split any of its rows
has (test, then validation, then train). Within a dataset, a row with the same text and the same other
variables as an earlier row is a duplicate source row (set aside with the reason); rows with the same text and
different labels are kept, once per label, in that one split, and counted. Memory stays flat as a build grows:
a few bytes per row, the linking hashes read one hash range at a time (``Components``). Writes
``_build/sources/<name>.assigned.parquet`` and ``.assigned.json``, and ``_build/splits.json`` (the figures of
the whole build). The ingest output is kept, so a killed run redoes this stage from the same input."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datatrove.pipeline.base import PipelineStep

from builders.catalog import CatalogEntry
from builders.schema import SOURCE_SCHEMA, SPLIT_PRIORITY, SPLITS
from builders.hashes import hex64
from builders.leakage import split_priorities
from builders.splits import PRIORITY_SPLIT, Components, missing_splits, split_of_components
from builders.steps.ingest import IngestedRows, ingested_meta, ingested_tables
from builders.steps.rejects import RejectLog


LINK_RANGE_HASHES = 1 << 18  # linking hashes joined at a time: some 50 MB of work arrays, whatever the build's size
MAX_RANGES = 512  # files open at once while sorting hashes into ranges (a larger build takes larger ranges)
LINK_DTYPE = np.dtype([("hash", "<u8"), ("row", "<i8")])
RANGE_ROWS = 1 << 18  # rows of one dataset taken at a time to find its duplicate rows and conflicting labels


# An assigned file: the kept rows of a dataset in source order, with their build-wide split and their position
# among the ingested rows (``INGESTED_ROW``), where rendering reads each row's record (``IngestedRows.take``):
# the records are not copied here, which keeps this one-task stage short.
INGESTED_ROW = "ingested_row"
ASSIGNED_SCHEMA = pa.schema([*(SOURCE_SCHEMA.field(n) for n in ("source_split", "source_row", "split", "source_id")),
                             pa.field(INGESTED_ROW, pa.int64())])


def assigned_path(work: Path, name: str) -> Path:
    return work / "sources" / f"{name}.assigned.parquet"


def assigned_meta(work: Path, name: str) -> dict:
    return json.loads((work / "sources" / f"{name}.assigned.json").read_text(encoding="utf-8"))


def texts_with_two_labels(ids: np.ndarray, labels: np.ndarray) -> int:
    """How many distinct ``ids`` come with more than one distinct label (one sort of the pairs)."""
    order = np.lexsort((labels, ids))
    ids, labels = ids[order], labels[order]
    first = np.ones(len(ids), dtype=bool)  # the first row of each distinct (id, label) pair
    first[1:] = (ids[1:] != ids[:-1]) | (labels[1:] != labels[:-1])
    pairs = ids[first]  # sorted: an id with two labels appears in a run
    again = pairs[1:] == pairs[:-1]
    return int(np.count_nonzero(again & ~np.concatenate([[False], again[:-1]])))  # runs, counted once each


class AssignSplits(PipelineStep):
    name = "assign splits"
    type = "🔀 - SPLITS"

    def __init__(self, entries: list[CatalogEntry], work: str):
        super().__init__()
        self.entries, self.work = entries, work

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        work = Path(self.work)
        keys, own, entry_of, fractions, missing, rows, hashes = [], [], [], [], [], [], 0
        for i, e in enumerate(self.entries):  # every row's key and own split, as flat arrays (9 bytes a row)
            meta = ingested_meta(work, e.name)
            n = 0
            for block in ingested_tables(work, e.name, ["source_id", "own_split"]):  # a block at a time
                keys.append(hex64(block["source_id"]))
                own.append(split_priorities(block["own_split"]).astype(np.int8))
                n += block.num_rows
            entry_of.append(np.full(n, i, dtype=np.int16 if len(self.entries) < 2**15 else np.int32))
            rows.append(n)
            fractions.append(e.split_fractions)
            missing.append(missing_splits(meta["own_rows"]))
            hashes += meta["link_hashes"]

        def joined(parts, dtype):
            return np.concatenate(parts) if parts else np.zeros(0, dtype)

        linker = Components(joined(keys, np.uint64))
        del keys
        # the linking hashes (key texts and fingerprints), sorted into hash ranges on disk in one pass over
        # the ingested rows, then joined one range at a time: memory stays flat
        ranges = Components.ranges(min(MAX_RANGES, -(-hashes // LINK_RANGE_HASHES)))
        folder = work / "links"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        files = [open(folder / f"{r:05d}.bin", "wb") for r in range(len(ranges))]
        try:
            offset = 0
            for e in self.entries:
                for table in ingested_tables(work, e.name, ["parts", "shingles"]):
                    for name in ("parts", "shingles"):
                        lists = table[name].combine_chunks()
                        flat = pc.list_flatten(lists)
                        rec = np.empty(len(flat), LINK_DTYPE)
                        rec["hash"] = flat.to_numpy()
                        rec["row"] = pc.list_parent_indices(lists).to_numpy() + offset
                        which = Components.range_index(rec["hash"], len(ranges))
                        order = np.argsort(which, kind="stable")
                        rec, which = rec[order], which[order]
                        bounds = np.searchsorted(which, np.arange(len(ranges) + 1))
                        for r in np.flatnonzero(np.diff(bounds)):
                            files[r].write(rec[bounds[r]:bounds[r + 1]].tobytes())
                    offset += table.num_rows
        finally:
            for f in files:
                f.close()
        for r, (lo, hi) in enumerate(ranges):
            rec = np.fromfile(folder / f"{r:05d}.bin", dtype=LINK_DTYPE)
            linker.add(rec["row"], rec["hash"], lo, hi)
            del rec
        shutil.rmtree(folder, ignore_errors=True)
        root, row_key = linker.roots()
        linked = linker.figures
        del linker
        priorities, tentative = split_of_components(root, row_key, joined(own, np.int8), joined(entry_of, np.int16),
                                                    fractions, missing)
        del own, entry_of, row_key
        sizes = np.bincount(root) if len(root) else np.zeros(0, np.int64)
        figures = {"rows": len(root), "components": int(np.count_nonzero(sizes)),
                   "largest_component_rows": int(sizes.max()) if len(sizes) else 0, **linked}
        del root, sizes
        start = 0
        for e, n in zip(self.entries, rows):
            self._write_entry(work, e, priorities[start:start + n], tentative[start:start + n])
            start += n
        (work / "splits.json").write_text(json.dumps(figures, indent=1), encoding="utf-8")
        self.stat_update("components", value=figures["components"])
        return
        yield

    def _write_entry(self, work: Path, entry: CatalogEntry, after: np.ndarray, tentative: np.ndarray) -> None:
        parts = [(b["row_hash"].to_numpy(), hex64(b["source_id"]), b["label_hash"].to_numpy())
                 for b in ingested_tables(work, entry.name, ["source_id", "row_hash", "label_hash"])]
        row_hash, ids, labels = (np.concatenate([p[k] for p in parts]) if parts else np.zeros(0, np.uint64)
                                 for k in range(3))
        del parts
        keep = np.zeros(len(row_hash), dtype=bool)
        conflicting = 0
        ranges = Components.ranges(-(-len(row_hash) // RANGE_ROWS))  # a hash range at a time: flat memory
        for lo, hi in ranges:
            at = np.flatnonzero(Components.in_range(row_hash, lo, hi))
            keep[at[np.unique(row_hash[at], return_index=True)[1]]] = True  # the first row of each content stays
        for lo, hi in ranges:
            # conflicting labels: texts that, among the kept rows, have more than one label combination
            at = np.flatnonzero(Components.in_range(ids, lo, hi) & keep)
            conflicting += texts_with_two_labels(ids[at], labels[at])
        del row_hash, ids, labels
        raised = keep & (after > tentative)
        moved = {s: int(np.sum(raised & (after == SPLIT_PRIORITY[s]))) for s in SPLITS if np.any(raised & (after == SPLIT_PRIORITY[s]))}
        names = pa.array([PRIORITY_SPLIT.get(p) for p in range(max(SPLIT_PRIORITY.values()) + 1)], pa.string())
        counts = {s: int(np.sum(keep & (after == SPLIT_PRIORITY[s]))) for s in SPLITS}
        rejects = RejectLog(work / "rejected" / f"assign-{entry.name}.parquet")
        out = assigned_path(work, entry.name)
        tmp = out.with_suffix(".tmp")
        offset = 0
        ingested = IngestedRows(work, entry.name)
        with pq.ParquetWriter(tmp, ASSIGNED_SCHEMA) as writer:
            # a block at a time (flat memory), one row group per block
            for table in ingested.tables(["source_split", "source_row", "source_id"]):
                n = table.num_rows
                mask = keep[offset:offset + n]
                dropped = np.flatnonzero(~mask)
                if len(dropped):
                    records = ingested.take(dropped + offset, ["record"]).column("record").to_pylist()
                    for r, record in zip(table.take(pa.array(dropped)).to_pylist(), records):
                        rejects.add(dataset_name=entry.name, template_name=None, stage="source",
                                    reason="duplicate source row", source_split=r["source_split"],
                                    source_row=r["source_row"], content=record[:2000])
                kept = np.flatnonzero(mask)
                final = names.take(pa.array(after[offset:offset + n][mask].astype(np.int64)))
                table = table.take(pa.array(kept))
                writer.write_table(pa.table({**{c: table.column(c) for c in table.column_names}, "split": final,
                                             INGESTED_ROW: pa.array(kept + offset, pa.int64())},
                                            schema=ASSIGNED_SCHEMA))
                offset += n
        os.replace(tmp, out)
        rejects.close()
        meta = {"rows": counts, "duplicate_rows": int((~keep).sum()), "conflicting_label_texts": int(conflicting),
                "moved_to_higher_split": moved}
        (work / "sources" / f"{entry.name}.assigned.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
