"""Stage 5, check: the leakage and uniqueness checks of the written rows, as two datatrove steps shaped like the
dedup ones, so they run in parallel and in bounded memory instead of in one process over every shard:

- ``CheckSignatures`` (end of the write stage): for each row the write stage wrote, the hash of its ``id``, its
  ``source_id`` and the hash of its normalised inputs, with its split's priority, saved in datatrove's
  signature format (per rank, in hash buckets). The inputs hash is the one ``PromptSignatures`` computed from
  the same ``inputs`` at render time (carried in the column ``INPUTS_HASH``); ``verify_rows`` rows of every
  batch are normalised again here and must give the same hash.
- ``FindLeaks`` (one task per bucket): every rank's signatures of a bucket together: rows, duplicate ids,
  distinct source texts and inputs, and how many of them are in more than one split
  (``builders.leakage.figures`` over the bucket). The build sums the buckets' figures
  (``builders.leakage.sum_figures``) and ``finalize`` refuses a leak, as it does with the figures it computes
  itself from the shards (``builders.leakage.check_rows``, what ``validate`` runs on a published folder).
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
from datatrove.io import DataFolderLike, get_datafolder
from datatrove.pipeline.base import PipelineStep

from builders.hashes import hash64, hex64
from builders.leakage import figures, split_priorities
from builders.steps import BuildError
from builders.steps.dedup import INPUTS_HASH, read_bucket, save_kinds
from builders.textnorm import normalize

KINDS = ("ids", "source_ids", "inputs")


def id_hashes(ids) -> np.ndarray:
    """64 bits of each row id: its first 16 hex digits when the ids are hexadecimal (the build's are), else a
    hash of the id."""
    try:
        return hex64(ids)
    except ValueError:
        return hash64(ids)


class CheckSignatures(PipelineStep):
    name = "check signatures"
    type = "🔎 - CHECKS"

    def __init__(self, output_folder: DataFolderLike, buckets: int = 1, text_column: str = "inputs",
                 group_column: str = "source_id", verify_rows: int = 16):
        super().__init__()
        self.folder = get_datafolder(output_folder)
        self.buckets, self.text_column, self.group_column = buckets, text_column, group_column
        self.verify_rows = verify_rows

    def _inputs_hashes(self, batch: pa.RecordBatch, rank: int) -> np.ndarray:
        texts = batch.column(self.text_column)
        if INPUTS_HASH not in batch.schema.names:
            return hash64(normalize(texts))
        carried = batch.column(INPUTS_HASH).to_numpy()
        n = min(self.verify_rows, batch.num_rows)
        if n and not np.array_equal(hash64(normalize(texts.slice(0, n))), carried[:n]):
            raise BuildError(f"rank {rank}: the inputs hashes carried from the render stage do not match the "
                             f"written inputs (a bug: please report it)")
        return carried

    def run(self, data, rank: int = 0, world_size: int = 1):
        parts: dict[str, list[np.ndarray]] = {k: [] for k in (*KINDS, "priority")}
        for batch in data:
            parts["ids"].append(id_hashes(batch.column("id")))
            parts["source_ids"].append(hex64(batch.column(self.group_column)))
            parts["inputs"].append(self._inputs_hashes(batch, rank))
            parts["priority"].append(split_priorities(batch.column("split")))
            yield batch
        rows = sum(len(p) for p in parts["ids"])
        self.stat_update("rows", value=rows)
        save_kinds(self.folder, rank, parts, KINDS, rows, self.buckets)


class FindLeaks(PipelineStep):
    """One task per hash bucket: the check figures of the bucket (``<bucket>.json``)."""

    name = "find leaks"
    type = "🔎 - CHECKS"

    def __init__(self, sigs_folder: DataFolderLike, output_folder: DataFolderLike):
        super().__init__()
        self.sigs_folder = get_datafolder(sigs_folder)
        self.output_folder = get_datafolder(output_folder)

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        arrays = {}
        for kind in KINDS:
            sigs, _ = read_bucket(get_datafolder(self.sigs_folder.path + f"/{kind}"), rank)
            arrays[kind] = (sigs["hash"], sigs["priority"])
        out = figures(ids=arrays["ids"][0], groups=arrays["source_ids"], texts=arrays["inputs"])
        with self.output_folder.open(f"{rank:04d}.json", "wt") as f:
            json.dump(out, f)
        return
        yield
