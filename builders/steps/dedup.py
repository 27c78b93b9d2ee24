"""Deduplication across the whole build, on datatrove's exact-dedup signatures (its file format: sorted
``(hash, priority, doc)`` records in ``<bucket>/<rank>.c4_sig``, split into hash-range buckets as
``ExactDedupSignature`` with ``finder_workers`` does, read with datatrove's reader), with two rules:

- **exact duplicate**: the same inputs and targets; the copy in the highest split (then the earliest) stays;
- **input seen in a higher split**: a prompt whose *normalised* inputs (``builders.textnorm``) also occur in
  a higher split is dropped, so no normalised input text sits in two splits (a word-level task can render the
  same input from two sentences of different splits). Prompts with one normalised input in one split all stay
  (one per label).

``PromptSignatures`` (end of the render stage) computes both signatures for a whole batch at once (taking the
normalised inputs' hash from the batch's ``INPUTS_HASH`` column when ``RenderPrompts`` computed it) and saves
them per rank; ``FindDuplicates`` (one task per hash bucket, so buckets run in parallel and memory is bounded
by a bucket) sorts a bucket's signatures of every rank together with numpy and writes, per rank, the prompts
to drop; ``DropDuplicates`` (write stage) drops them, keeping each in the exclusion writer with its reason.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datatrove.data import Document, DocumentsPipeline
from datatrove.io import DataFolderLike, get_datafolder
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.exact_dedup import get_sig_dtype
from datatrove.utils.binaryio import read_np_from_file
from datatrove.utils.hashing import HashConfig
from datatrove.utils.typeshelper import ExtensionHelperSD

from builders.hashes import hash64
from builders.leakage import split_priorities
from builders.textnorm import normalize

EXACT, CROSS_SPLIT = 1, 2
REASONS = {EXACT: "exact duplicate", CROSS_SPLIT: "input seen in a higher split"}
DUP_DTYPE = np.dtype([("doc", "<u4"), ("reason", "u1")])
_KINDS = {"exact": EXACT, "inputs": CROSS_SPLIT}
HASH_CONFIG = HashConfig()  # 64-bit hashes (the values are xxh3, see builders.hashes)
SIG_DTYPE = get_sig_dtype(HASH_CONFIG)
INPUTS_HASH = "inputs_hash"  # the hash of the normalised inputs (added by RenderPrompts, or else PromptSignatures)


def save_signatures(folder, rank: int, hashes: np.ndarray, priorities: np.ndarray, docs: np.ndarray,
                    buckets: int = 1) -> None:
    """What ``ExactDedupSignature.save_hashes`` writes (byte for byte), from arrays: records sorted by
    (hash, -priority, doc), in ``buckets`` files ``<bucket:04d>/<rank:05d>.c4_sig`` by hash range."""
    if len(priorities) and (priorities.min() < 1 or priorities.max() > np.iinfo(np.uint16).max):
        raise ValueError("priority must be between 1 and 65535")
    sigs = np.empty(len(hashes), dtype=SIG_DTYPE)
    sigs["hash"], sigs["priority"], sigs["doc"] = hashes, priorities, docs
    sigs = sigs[np.lexsort((sigs["doc"], (-sigs["priority"].astype(np.int32)), sigs["hash"]))]
    per_bucket = HASH_CONFIG.max // buckets
    left = 0
    for b in range(buckets):
        with folder.open(f"{b:04d}/{rank:05d}{ExtensionHelperSD.stage_1_signature}", mode="wb") as f:
            right_hash = (b + 1) * per_bucket if b != buckets - 1 else np.iinfo(np.uint64).max
            right = left + int(sigs["hash"][left:].searchsorted(np.uint64(right_hash), side="right"))
            if right > left:
                f.write(sigs[left:right].tobytes())
            left = right
            if right >= len(sigs):
                break


def save_kinds(folder, rank: int, parts: dict[str, list[np.ndarray]], kinds, count: int, buckets: int) -> None:
    """``save_signatures`` for each kind of hash collected per batch in ``parts`` (``parts["priority"]`` holds the
    split priorities), into ``<folder>/<kind>/``; docs are the rank's row numbers 0..count-1."""
    docs = np.arange(count, dtype=np.uint32)
    priority = np.concatenate(parts["priority"]) if count else np.zeros(0, np.uint16)
    for kind in kinds:
        hashes = np.concatenate(parts[kind]) if count else np.zeros(0, np.uint64)
        save_signatures(get_datafolder(f"{folder.path}/{kind}"), rank, hashes, priority, docs, buckets)


def read_bucket(folder, bucket: int) -> tuple[np.ndarray, list[str]]:
    """Every rank's signatures of one bucket: records with a ``file`` field (index into the returned stems,
    which are the ranks' file stems in name order)."""
    names = folder.list_files(subdirectory=f"{bucket:04d}", glob_pattern="*" + ExtensionHelperSD.stage_1_signature)
    parts, stems = [], []
    for i, name in enumerate(sorted(names)):
        stems.append(name.rsplit("/", 1)[-1].removesuffix(ExtensionHelperSD.stage_1_signature))
        parts.append(read_np_from_file(folder.open(name, "rb"), SIG_DTYPE, folder.is_local()))
    out = np.empty(sum(len(p) for p in parts), dtype=SIG_DTYPE.descr + [("file", "<u4")])
    at = 0
    for i, p in enumerate(parts):
        for k in SIG_DTYPE.names:
            out[k][at:at + len(p)] = p[k]
        out["file"][at:at + len(p)] = i
        at += len(p)
    return out, stems


def grouped(sigs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sigs`` in (hash, -priority, doc, file) order (the order datatrove's heap merge of the ranks' files
    gives), and a mask of the first record of each hash."""
    order = np.lexsort((sigs["file"], sigs["doc"], -sigs["priority"].astype(np.int32), sigs["hash"]))
    s = sigs[order]
    first = np.ones(len(s), dtype=bool)
    first[1:] = s["hash"][1:] != s["hash"][:-1]
    return s, first


class PromptSignatures(PipelineStep):
    """For each prompt: a hash of inputs + targets and a hash of its normalised inputs, with its split's
    priority, saved in datatrove's signature format (sorted, one file per rank and hash bucket). Batches go on
    with the inputs hash as a column (``INPUTS_HASH``), for the leakage checks after the write stage."""

    name = "prompt signatures"
    type = "🫂 - DEDUPS"

    def __init__(self, output_folder: DataFolderLike, batch_size: int = 4096, buckets: int = 1):
        super().__init__()
        self.folder = get_datafolder(output_folder)
        self.batch_size, self.buckets = batch_size, buckets

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1):
        parts: dict[str, list[np.ndarray]] = {"exact": [], "inputs": [], "priority": []}
        pending: list[Document] = []
        count = 0

        def add(inputs, targets, splits, norm=None) -> np.ndarray:
            nonlocal count
            exact = hash64(pc.binary_join_element_wise(inputs, targets, "\x1e"))
            norm = hash64(normalize(inputs)) if norm is None else norm
            parts["exact"].append(exact)
            parts["inputs"].append(norm)
            parts["priority"].append(split_priorities(splits))
            count += len(exact)
            return norm

        def flush_documents():
            if pending:
                add(pa.array([d.text for d in pending], pa.string()),
                    pa.array([d.metadata["targets"] for d in pending], pa.string()),
                    pa.array([d.metadata["split"] for d in pending], pa.string()))
                yield from pending
                pending.clear()

        for item in data:
            if isinstance(item, (pa.RecordBatch, pa.Table)):
                yield from flush_documents()
                carried = INPUTS_HASH in item.schema.names  # computed by RenderPrompts (from the rendered pieces)
                norm = add(item.column("inputs"), item.column("targets"), item.column("split"),
                           item.column(INPUTS_HASH).to_numpy(zero_copy_only=False) if carried else None)
                yield item if carried else item.append_column(INPUTS_HASH, pa.array(norm, pa.uint64()))
                continue
            pending.append(item)
            if len(pending) >= self.batch_size:
                yield from flush_documents()
        yield from flush_documents()
        self.stat_update("prompts", value=count)
        save_kinds(self.folder, rank, parts, _KINDS, count, self.buckets)


class FindDuplicates(PipelineStep):
    """One task per hash bucket: sort the bucket's signatures of every rank together and write, per rank, the
    sorted indices of its prompts to drop with the rule that drops them (``<bucket>/<rank>.dups``)."""

    name = "find duplicates"
    type = "🫂 - DEDUPS"

    def __init__(self, sigs_folder: DataFolderLike, output_folder: DataFolderLike):
        super().__init__()
        self.sigs_folder = get_datafolder(sigs_folder)
        self.output_folder = get_datafolder(output_folder)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1):
        drops: dict[str, list[np.ndarray]] = {}
        for kind, reason in _KINDS.items():
            sigs, stems = read_bucket(get_datafolder(self.sigs_folder.path + f"/{kind}"), rank)
            s, first = grouped(sigs)
            if reason == EXACT:
                drop = ~first
            else:
                starts = np.flatnonzero(first)
                group_priority = s["priority"][starts][np.cumsum(first) - 1]
                drop = s["priority"] < group_priority
            for f in np.unique(s["file"][drop]):
                mine = drop & (s["file"] == f)
                rec = np.empty(int(mine.sum()), dtype=DUP_DTYPE)
                rec["doc"], rec["reason"] = s["doc"][mine], reason
                drops.setdefault(stems[f], []).append(rec)
        for stem, recs in sorted(drops.items()):
            arr = merge_dups(recs)
            with self.output_folder.open(f"{rank:04d}/{stem}.dups", mode="wb") as f:
                f.write(arr.tobytes())
            self.stat_update("duplicates", value=len(arr))
        return
        yield


def merge_dups(recs: list[np.ndarray]) -> np.ndarray:
    """Marked prompts sorted by index, one record each (the strongest reason when several rules mark one)."""
    allrec = np.concatenate(recs) if recs else np.zeros(0, DUP_DTYPE)
    allrec = allrec[np.lexsort((-allrec["reason"].astype(np.int16), allrec["doc"]))]
    keep = np.ones(len(allrec), dtype=bool)
    keep[1:] = allrec["doc"][1:] != allrec["doc"][:-1]
    return allrec[keep]


class DropDuplicates(PipelineStep):
    """Drop the prompts ``FindDuplicates`` marked for this rank (in the order stage 2 wrote them), each kept in
    the exclusion writer with ``filter_reason``. Takes batches or Documents."""

    name = "drop duplicates"
    type = "🫂 - DEDUPS"

    def __init__(self, dups_folder: DataFolderLike, exclusion_writer=None):
        super().__init__()
        self.dups_folder = get_datafolder(dups_folder)
        self.exclusion_writer = exclusion_writer

    def _marked(self, rank: int) -> np.ndarray:
        name = f"{rank:05d}.dups"
        recs = []
        for path in sorted(self.dups_folder.list_files(glob_pattern=f"*/{name}")):
            with self.dups_folder.open(path, mode="rb") as f:
                recs.append(np.frombuffer(f.read(), dtype=DUP_DTYPE))
        return merge_dups(recs)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1):
        marked = self._marked(rank)
        docs = marked["doc"].astype(np.int64)
        j = dropped = index = 0
        with self.exclusion_writer if self.exclusion_writer else contextlib.nullcontext() as writer:
            for item in data:
                n = item.num_rows if isinstance(item, (pa.RecordBatch, pa.Table)) else 1
                hi = int(np.searchsorted(docs, index + n, side="left"))
                here = marked[j:hi]
                j = hi
                if not isinstance(item, (pa.RecordBatch, pa.Table)):
                    index += 1
                    if len(here):
                        dropped += 1
                        item.metadata["filter_reason"] = REASONS[int(here[0]["reason"])]
                        if writer:
                            writer.write(item, rank)
                        continue
                    yield item
                    continue
                if not len(here):
                    index += n
                    yield item
                    continue
                local = here["doc"].astype(np.int64) - index
                drop = np.zeros(n, dtype=bool)
                drop[local] = True
                for row, reason in zip(item.take(pa.array(local)).to_pylist(), here["reason"]):
                    dropped += 1
                    if writer:
                        meta = {k: v for k, v in row.items() if k not in ("inputs", "id")}
                        meta["filter_reason"] = REASONS[int(reason)]
                        writer.write(Document(text=row["inputs"], id=row["id"], metadata=meta), rank)
                index += n
                kept = item.filter(pa.array(~drop))
                if kept.num_rows:
                    yield kept
        if j != len(marked):
            raise RuntimeError(f"rank {rank}: {len(marked) - j} marked duplicates were not seen; "
                               f"the rendered prompts changed since their signatures were written")
        self.stat_update("dropped", value=dropped)
