"""Stage 1, assign splits: one split per source text across the whole build (one task).

Reads every dataset's ingested rows, gives each row a tentative split (its source's, or carved from train by a
hash of its source_id when the source lacks validation/test), then gives every source_id the highest split
any of its rows has, in any dataset or task (test, then validation, then train). Within a dataset, a row with
the same text and the same other variables as an earlier row is a duplicate source row (set aside with the
reason); rows with the same text and different labels are kept, once per label, in that one split, and
counted. Writes ``_build/sources/<name>.assigned.parquet`` and ``.assigned.json`` (the ingest output is kept,
so a killed run redoes this stage from the same input)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datatrove.pipeline.base import PipelineStep

from builders.catalog import CatalogEntry
from builders.schema import SOURCE_SCHEMA, SPLIT_PRIORITY, SPLITS
from builders.splits import PRIORITY_SPLIT, missing_splits, resolve_splits, tentative_priorities
from builders.steps.rejects import RejectLog


def assigned_path(work: Path, name: str) -> Path:
    return work / "sources" / f"{name}.assigned.parquet"


def assigned_meta(work: Path, name: str) -> dict:
    return json.loads((work / "sources" / f"{name}.assigned.json").read_text(encoding="utf-8"))


class AssignSplits(PipelineStep):
    name = "assign splits"
    type = "🔀 - SPLITS"

    def __init__(self, entries: list[CatalogEntry], work: str):
        super().__init__()
        self.entries, self.work = entries, work

    def _tentative(self, entry: CatalogEntry) -> tuple[pa.Table, np.ndarray]:
        work = Path(self.work)
        meta = json.loads((work / "sources" / f"{entry.name}.json").read_text(encoding="utf-8"))
        cols = pq.read_table(work / "sources" / f"{entry.name}.parquet",
                             columns=["source_id", "own_split", "row_hash", "label_hash"])
        missing = missing_splits(meta["own_rows"])
        return cols, tentative_priorities(cols["own_split"].combine_chunks(), cols["source_id"].combine_chunks(),
                                          entry.split_fractions, missing)

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        work = Path(self.work)
        tentative = {e.name: self._tentative(e) for e in self.entries}
        resolved = resolve_splits((cols["source_id"].combine_chunks(), pr) for cols, pr in tentative.values())
        self.stat_update("source_texts", value=len(resolved))
        for entry in self.entries:
            cols, before = tentative[entry.name]
            self._write_entry(work, entry, cols, before, resolved)
        return
        yield

    def _write_entry(self, work: Path, entry: CatalogEntry, cols: pa.Table, before: np.ndarray,
                     resolved: pa.Table) -> None:
        ids = cols["source_id"].combine_chunks()
        after = pc.take(resolved["priority"], pc.index_in(ids, value_set=resolved["source_id"])).to_numpy()
        row_hash = cols["row_hash"].to_numpy()
        keep = np.zeros(len(row_hash), dtype=bool)
        keep[np.unique(row_hash, return_index=True)[1]] = True  # the first row of each content stays
        # conflicting labels: kept rows whose text has more than one label combination
        kept = pa.table({"source_id": ids.filter(pa.array(keep)), "label_hash": cols["label_hash"].filter(pa.array(keep))})
        labels_per_text = kept.group_by("source_id").aggregate([("label_hash", "count_distinct")])
        conflicting = pc.sum(pc.greater(labels_per_text["label_hash_count_distinct"], 1)).as_py() or 0
        moved: dict[str, int] = {}
        for p in np.unique(after[keep & (after > before)]):
            moved[PRIORITY_SPLIT[int(p)]] = int(np.sum(keep & (after > before) & (after == p)))
        counts = dict.fromkeys(SPLITS, 0)
        rejects = RejectLog(work / "rejected" / f"assign-{entry.name}.parquet")
        src = pq.ParquetFile(work / "sources" / f"{entry.name}.parquet")
        out = assigned_path(work, entry.name)
        tmp = out.with_suffix(".tmp")
        offset = 0
        with pq.ParquetWriter(tmp, SOURCE_SCHEMA) as writer:
            for group in range(src.metadata.num_row_groups):  # one row group at a time: memory stays flat
                table = src.read_row_group(group)
                n = table.num_rows
                mask, splits = keep[offset:offset + n], after[offset:offset + n]
                for r in table.filter(pa.array(~mask)).to_pylist():
                    rejects.add(dataset_name=entry.name, template_name=None, stage="source",
                                reason="duplicate source row",
                                source_split=r["source_split"], source_row=r["source_row"], content=r["record"][:2000])
                final = pa.array([PRIORITY_SPLIT[int(p)] for p in splits[mask]], pa.string())
                table = table.filter(pa.array(mask))
                table = table.set_column(table.schema.get_field_index("split"), "split", final)
                for s, c in zip(*np.unique(final.to_numpy(zero_copy_only=False), return_counts=True)):
                    counts[str(s)] += int(c)
                writer.write_table(table)
                offset += n
        os.replace(tmp, out)
        rejects.close()
        meta = {"rows": counts, "duplicate_rows": int((~keep).sum()), "conflicting_label_texts": int(conflicting),
                "moved_to_higher_split": moved}
        (work / "sources" / f"{entry.name}.assigned.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")


__all__ = ["AssignSplits", "assigned_path", "assigned_meta", "SPLIT_PRIORITY"]
