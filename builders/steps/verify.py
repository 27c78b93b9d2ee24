"""Stage 5, check: the leakage and uniqueness checks of the written rows, as two datatrove steps shaped like the
dedup ones, so they run in parallel and in bounded memory instead of in one process over every shard:

- ``CheckSignatures`` (end of the write stage): for each row the write stage wrote, the hash of its ``id``, its
  ``source_id`` and the hash of its normalised inputs, with its split's priority, saved in datatrove's
  signature format (per rank, in hash buckets). The inputs hash is the one the render stage computed from
  the same ``inputs`` (carried in the column ``INPUTS_HASH``); the first ``verify_rows`` rows of a task and
  the first and last row of each later batch are normalised again here (once, at the end of the task) and
  must give the same hashes.
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

    def _inputs_hashes(self, batch: pa.RecordBatch, samples: list[tuple[pa.Array, np.ndarray]]) -> np.ndarray:
        """The normalised inputs' hashes of a batch: those carried from the render stage when there are (a few
        rows of each batch kept in ``samples`` to be checked against the written inputs), else computed."""
        texts = batch.column(self.text_column)
        if INPUTS_HASH not in batch.schema.names:
            return hash64(normalize(texts))
        carried = batch.column(INPUTS_HASH).to_numpy()
        n = batch.num_rows
        rows = np.arange(min(self.verify_rows, n)) if not samples else np.unique([0, n - 1])  # the ends of later batches
        if n:
            samples.append((texts.take(pa.array(rows)), carried[rows]))
        return carried

    @staticmethod
    def _check_samples(samples: list[tuple[pa.Array, np.ndarray]], rank: int) -> None:
        """The carried hashes of the sampled rows must be those of their written inputs (one normalisation per
        task, not per batch: each call compiles its patterns)."""
        if not samples:
            return
        texts = pa.concat_arrays([t.combine_chunks() if isinstance(t, pa.ChunkedArray) else t for t, _ in samples])
        if not np.array_equal(hash64(normalize(texts)), np.concatenate([h for _, h in samples])):
            raise BuildError(f"rank {rank}: the inputs hashes carried from the render stage do not match the "
                             f"written inputs (a bug: please report it)")

    def run(self, data, rank: int = 0, world_size: int = 1):
        parts: dict[str, list[np.ndarray]] = {k: [] for k in (*KINDS, "priority")}
        samples: list[tuple[pa.Array, np.ndarray]] = []
        for batch in data:
            parts["ids"].append(id_hashes(batch.column("id")))
            parts["source_ids"].append(hex64(batch.column(self.group_column)))
            parts["inputs"].append(self._inputs_hashes(batch, samples))
            parts["priority"].append(split_priorities(batch.column("split")))
            yield batch
        self._check_samples(samples, rank)
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
