"""Deduplication across the whole build, on datatrove's exact-dedup signatures (its file format, sorting,
bucketing and readers), with two rules:

- **exact duplicate**: the same inputs and targets; the copy in the highest split (then the earliest) stays;
- **input seen in a higher split**: a prompt whose *normalised* inputs (``builders.textnorm``) also occur in
  a higher split is dropped, so no normalised input text sits in two splits (a word-level task can render the
  same input from two sentences of different splits). Prompts with one normalised input in one split all stay
  (one per label).

``PromptSignatures`` (end of the render stage) writes both signatures per rank; ``FindDuplicates`` (one task)
merges the sorted signatures; ``DropDuplicates`` (write stage) drops the marked prompts, keeping each in the
exclusion writer with its reason.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools

import numpy as np
from datatrove.data import Document, DocumentsPipeline
from datatrove.io import DataFolderLike, get_datafolder
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.exact_dedup import ExactDedupConfig, ExactDedupSignature, read_sigs
from datatrove.utils.hashing import HashConfig, create_hash_func
from datatrove.utils.typeshelper import ExtensionHelperSD

from builders.schema import SPLIT_PRIORITY
from builders.textnorm import normalize

EXACT, CROSS_SPLIT = 1, 2
REASONS = {EXACT: "exact duplicate", CROSS_SPLIT: "input seen in a higher split"}
DUP_DTYPE = np.dtype([("doc", "<u4"), ("reason", "u1")])
_KINDS = {"exact": EXACT, "inputs": CROSS_SPLIT}


def _bytes_content(doc: Document) -> bytes:  # datatrove reads the hash input type from this annotation
    return doc.text.encode()


class PromptSignatures(PipelineStep):
    """For each prompt: a hash of inputs + targets and a hash of its normalised inputs, with its split's
    priority, saved with datatrove's ``ExactDedupSignature.save_hashes`` (sorted, one file per rank)."""

    name = "prompt signatures"
    type = "🫂 - DEDUPS"

    def __init__(self, output_folder: DataFolderLike, batch_size: int = 4096):
        super().__init__()
        folder = get_datafolder(output_folder)
        config = ExactDedupConfig(content_getter=_bytes_content)
        self.savers = {kind: ExactDedupSignature(folder.path + f"/{kind}", config=config) for kind in _KINDS}
        self.hash = create_hash_func(HashConfig(), bytes)
        self.batch_size = batch_size

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1):
        sigs: dict[str, list[tuple[int, int, int]]] = {kind: [] for kind in _KINDS}
        batch: list[Document] = []
        index = 0

        def flush() -> None:
            nonlocal index
            normed = normalize([d.text for d in batch]).to_pylist()
            for doc, norm in zip(batch, normed):
                priority = SPLIT_PRIORITY[doc.metadata["split"]]
                sigs["exact"].append((self.hash((doc.text + "\x1e" + doc.metadata["targets"]).encode()), priority, index))
                sigs["inputs"].append((self.hash(norm.encode()), priority, index))
                index += 1
            batch.clear()

        for doc in data:
            batch.append(doc)
            if len(batch) >= self.batch_size:
                flush()
        if batch:
            flush()
        self.stat_update("prompts", value=index)
        for kind, saver in self.savers.items():
            saver.save_hashes(rank, sigs[kind])
        return
        yield


class FindDuplicates(PipelineStep):
    """Merge every rank's sorted signatures (one task) and write, per rank, the sorted indices of its prompts
    to drop with the rule that drops them (``<rank>.dups``)."""

    name = "find duplicates"
    type = "🫂 - DEDUPS"

    def __init__(self, sigs_folder: DataFolderLike, output_folder: DataFolderLike):
        super().__init__()
        self.sigs_folder = get_datafolder(sigs_folder)
        self.output_folder = get_datafolder(output_folder)

    def _merged(self, kind: str):
        folder = get_datafolder(self.sigs_folder.path + f"/{kind}")
        files = folder.list_files(glob_pattern="*/*" + ExtensionHelperSD.stage_1_signature)
        readers = [read_sigs(f, i, HashConfig()) for i, f in enumerate(folder.open_files(files))]
        return heapq.merge(*readers)  # (hash, -priority, doc) order within and across ranks

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1):
        drops: dict[str, dict[int, int]] = {}
        for kind, reason in _KINDS.items():
            for _, group in itertools.groupby(self._merged(kind), key=lambda s: s.hash_value):
                first = next(group)
                for sig in group:
                    if reason == EXACT or sig.priority < first.priority:
                        mine = drops.setdefault(sig.file_stem, {})
                        mine[sig.doc_id] = max(mine.get(sig.doc_id, 0), reason)
        for stem, marked in drops.items():
            arr = np.array(sorted(marked.items()), dtype=DUP_DTYPE)
            with self.output_folder.open(f"{stem}.dups", mode="wb") as f:
                f.write(arr.tobytes())
            self.stat_update("duplicates", value=len(arr))
        return
        yield


class DropDuplicates(PipelineStep):
    """Drop the prompts ``FindDuplicates`` marked for this rank (in the order stage 2 wrote them), each kept in
    the exclusion writer with ``filter_reason``."""

    name = "drop duplicates"
    type = "🫂 - DEDUPS"

    def __init__(self, dups_folder: DataFolderLike, exclusion_writer=None):
        super().__init__()
        self.dups_folder = get_datafolder(dups_folder)
        self.exclusion_writer = exclusion_writer

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1):
        name = f"{rank:05d}.dups"
        marked = np.zeros(0, dtype=DUP_DTYPE)
        if self.dups_folder.exists(name):
            with self.dups_folder.open(name, mode="rb") as f:
                marked = np.frombuffer(f.read(), dtype=DUP_DTYPE)
        j = dropped = 0
        with self.exclusion_writer if self.exclusion_writer else contextlib.nullcontext() as writer:
            for i, doc in enumerate(data):
                if j < len(marked) and marked[j]["doc"] == i:
                    doc.metadata["filter_reason"] = REASONS[int(marked[j]["reason"])]
                    j += 1
                    dropped += 1
                    if writer:
                        writer.write(doc, rank)
                    continue
                yield doc
        if j != len(marked):
            raise RuntimeError(f"rank {rank}: {len(marked) - j} marked duplicates were not seen; "
                               f"the rendered prompts changed since their signatures were written")
        self.stat_update("dropped", value=dropped)


