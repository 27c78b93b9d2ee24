"""Leakage and uniqueness checks over a built folder's shards (the build's report and ``validate`` both run
them): no ``source_id`` in two splits, no normalised input text in two splits, no row id twice.

``check_rows`` streams the shards a batch at a time, column by column (hashes read straight from the Arrow
buffers, ``builders.hashes``), and keeps one 64-bit hash and one split byte per row, so memory is about 9 bytes
x rows per check, whatever the text sizes. ``figures`` is the same computation on hashes someone else made:
the prompts build computes them in its write stage and checks them per hash bucket, in parallel
(``builders.steps.verify``), and ``sum_figures`` adds the buckets up."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from builders.hashes import hash64, hex64
from builders.schema import SPLIT_PRIORITY
from builders.textnorm import normalize

FIGURES = ("rows", "duplicate_ids", "source_texts", "source_texts_in_two_splits", "inputs_checked",
           "inputs_in_two_splits")


def split_priorities(splits: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """``SPLIT_PRIORITY`` of each value of a split column, as uint16 (a value that is no split is an error)."""
    names = list(SPLIT_PRIORITY)
    index = pc.index_in(splits, value_set=pa.array(names))
    if index.null_count:
        bad = pc.filter(splits, pc.is_null(index)).to_pylist()[:3]
        raise ValueError(f"split values {bad} are not one of {names}")
    return np.array([SPLIT_PRIORITY[n] for n in names], dtype=np.uint16)[index.to_numpy()]


def _in_two_splits(keys: np.ndarray, splits: np.ndarray) -> tuple[int, int, np.ndarray]:
    """(distinct keys, keys seen in more than one split, those keys)."""
    if not len(keys):
        return 0, 0, keys
    order = np.lexsort((splits, keys))
    k, s = keys[order], splits[order]
    new_key = np.ones(len(k), dtype=bool)
    new_key[1:] = k[1:] != k[:-1]
    other_split = np.zeros(len(k), dtype=bool)
    other_split[1:] = ~new_key[1:] & (s[1:] != s[:-1])
    leaked = np.unique(k[other_split])
    return int(new_key.sum()), len(leaked), leaked


def figures(ids: np.ndarray, groups: tuple[np.ndarray, np.ndarray] | None = None,
            texts: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """The check figures of rows given as hashes: ``ids`` (one per row), ``groups`` and ``texts`` as
    (hashes, split priorities) or None when not checked."""
    out = {"rows": int(len(ids)), "duplicate_ids": int(len(ids) - len(np.unique(ids))),
           "source_texts": None, "source_texts_in_two_splits": None,
           "inputs_checked": None, "inputs_in_two_splits": None}
    if groups is not None:
        n, leaked, _ = _in_two_splits(*groups)
        out.update(source_texts=n, source_texts_in_two_splits=leaked)
    if texts is not None:
        n, leaked, _ = _in_two_splits(*texts)
        out.update(inputs_checked=n, inputs_in_two_splits=leaked)
    return out


def sum_figures(parts: list[dict]) -> dict:
    """The figures of rows split into parts by hash (each hash in one part): the parts' sums."""
    out = {}
    for key in FIGURES:
        values = [p[key] for p in parts]
        out[key] = None if parts and any(v is None for v in values) else int(sum(values))
    return out


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
            ids.append(hash64(batch.column("id")))
            splits.append(split_priorities(batch.column("split")).astype(np.uint8))
            if group_column in cols:
                groups.append(hex64(batch.column(group_column)))
            if text_column in cols:
                texts.append(hash64(normalize(batch.column(text_column))))
    split_arr = np.concatenate(splits) if splits else np.zeros(0, np.uint8)
    id_arr = np.concatenate(ids) if ids else np.zeros(0, np.uint64)
    return figures(id_arr, (np.concatenate(groups), split_arr) if groups else None,
                   (np.concatenate(texts), split_arr) if texts else None)


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
