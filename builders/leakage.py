"""Leakage and uniqueness checks over a built folder's shards (the build's report and ``validate`` both run
them): no ``source_id`` in two splits, no normalised input text in two splits, no row id twice.

Streams the shards a batch at a time and keeps one 64-bit hash and one split byte per row, so memory is about
9 bytes x rows per check, whatever the text sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import xxhash

from builders.schema import SPLIT_PRIORITY
from builders.textnorm import normalize


def _hash_all(values: list[str | None]) -> np.ndarray:
    return np.fromiter((xxhash.xxh3_64_intdigest((v or "").encode()) for v in values), dtype=np.uint64,
                       count=len(values))


def _in_two_splits(keys: np.ndarray, splits: np.ndarray) -> tuple[int, int, np.ndarray]:
    """(distinct keys, keys seen in more than one split, those keys)."""
    if not len(keys):
        return 0, 0, keys
    pairs = np.unique(np.rec.fromarrays([keys, splits], names="k,s"))
    distinct, counts = np.unique(pairs["k"], return_counts=True)
    leaked = distinct[counts > 1]
    return len(distinct), len(leaked), leaked


def check_rows(files: list[Path], text_column: str | None = "inputs", group_column: str | None = "source_id",
               batch_rows: int = 65_536) -> dict:
    """Figures for the shards ``files``: rows, duplicate ids, source texts and normalised inputs checked and how
    many of each sit in more than one split. A column the schema lacks is not checked (its figures are None)."""
    ids, groups, texts, splits = [], [], [], []
    for path in files:
        pf = pq.ParquetFile(path)
        names = set(pf.schema_arrow.names)
        cols = ["id", "split"] + [c for c in (group_column, text_column) if c and c in names]
        for batch in pf.iter_batches(batch_size=batch_rows, columns=cols):
            data = batch.to_pydict()
            ids.append(_hash_all(data["id"]))
            splits.append(np.array([SPLIT_PRIORITY[s] for s in data["split"]], dtype=np.uint8))
            if group_column in data:
                groups.append(np.array([int(v, 16) for v in data[group_column]], dtype=np.uint64))
            if text_column in data:
                texts.append(_hash_all(normalize(batch.column(text_column)).to_pylist()))
    split_arr = np.concatenate(splits) if splits else np.zeros(0, np.uint8)
    id_arr = np.concatenate(ids) if ids else np.zeros(0, np.uint64)
    figures = {"rows": int(len(id_arr)), "duplicate_ids": int(len(id_arr) - len(np.unique(id_arr))),
               "source_texts": None, "source_texts_in_two_splits": None,
               "inputs_checked": None, "inputs_in_two_splits": None}
    if groups:
        n, leaked, _ = _in_two_splits(np.concatenate(groups), split_arr)
        figures.update(source_texts=n, source_texts_in_two_splits=leaked)
    if texts:
        n, leaked, _ = _in_two_splits(np.concatenate(texts), split_arr)
        figures.update(inputs_checked=n, inputs_in_two_splits=leaked)
    return figures


def leakage_problems(figures: dict) -> list[str]:
    """What ``validate`` refuses, in words."""
    problems = []
    if figures["duplicate_ids"]:
        problems.append(f"{figures['duplicate_ids']} row ids occur more than once")
    if figures["source_texts_in_two_splits"]:
        problems.append(f"{figures['source_texts_in_two_splits']} source texts (source_id) are in more than one split")
    if figures["inputs_in_two_splits"]:
        problems.append(f"{figures['inputs_in_two_splits']} normalised inputs are in more than one split")
    return problems
