"""Which split a source text goes to: its key, its ``source_id``, and the rules that make the split the same
for that text everywhere in a build.

- The **key** of a source row is its normalised split-key text (``CatalogEntry.split_key_vars``: the catalog's
  ``split_key``, else every non-label text variable), parts sorted, so it does not depend on variable names,
  entry, task or label. ``source_id`` is a hash of the key.
- A row's **own split** comes from its source (a source split mapped to test stays test). A train row of a
  source that has no validation or test split is **carved** into one by a hash of its source_id, with the
  entry's ``split_fractions``.
- Across the whole build, a text takes the highest split any of its rows has (test, then validation, then
  train): a text that is test anywhere is test everywhere (``resolve_splits``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from builders.schema import SPLIT_PRIORITY, SPLITS
from builders.textnorm import normalize

KEY_SEPARATOR = "\x1f"
PRIORITY_SPLIT = {p: s for s, p in SPLIT_PRIORITY.items()}


def key_text(value) -> str:
    """The text of one split-key variable: a string; a list (tokens) joined by spaces; a dict's values (a
    translation pair) in key order, joined by spaces."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return " ".join(key_text(value[k]) for k in sorted(value))
    if isinstance(value, list):
        return " ".join(key_text(v) for v in value)
    return str(value)


def keys_of(parts: list[list[str]]) -> list[str]:
    """Split keys of many rows at once: each row's parts normalised (one vectorised pass), empty parts dropped,
    the rest sorted and joined. A row whose parts are all empty gets the key ''."""
    flat = [p for row in parts for p in row]
    normed = normalize(flat).to_pylist() if flat else []
    keys, i = [], 0
    for row in parts:
        mine = sorted(p for p in normed[i:i + len(row)] if p)
        i += len(row)
        keys.append(KEY_SEPARATOR.join(mine))
    return keys


def source_id(key: str) -> str:
    """A stable 16-hex-digit id of a split key."""
    return hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


def carve_fraction(sid: str) -> float:
    """Where a source_id falls in [0, 1): the same for every entry that reads the text."""
    return int(sid[:8], 16) / 2**32


def carve(sid: str, fractions: dict[str, float], missing: set[str]) -> str:
    """The split a train row goes to when its source lacks validation and/or test."""
    x = carve_fraction(sid)
    val = fractions.get("validation", 0.05) if "validation" in missing else 0.0
    test = fractions.get("test", 0.1) if "test" in missing else 0.0
    if x < val:
        return "validation"
    if x < val + test:
        return "test"
    return "train"


def missing_splits(own_counts: dict[str, int]) -> set[str]:
    """The output splits a source with these row counts must carve from train."""
    if not own_counts.get("train"):
        return set()
    return {s for s in ("validation", "test") if not own_counts.get(s)}


def tentative_priorities(own: pa.Array, ids: pa.Array, fractions: dict[str, float], missing: set[str]) -> np.ndarray:
    """Split priority of each row before the build-wide rule: its own split, or the carved one."""
    own_list, id_list = own.to_pylist(), ids.to_pylist()
    return np.array([SPLIT_PRIORITY[carve(i, fractions, missing) if o == "train" and missing else o]
                     for o, i in zip(own_list, id_list)], dtype=np.int8)


def resolve_splits(parts: Iterable[tuple[pa.Array, np.ndarray]]) -> pa.Table:
    """Build-wide rule: for every source_id, the highest split priority among all its rows (of every entry).
    ``parts`` yields (source_ids, priorities) per entry. Returns a table (source_id, priority)."""
    tables = [pa.table({"source_id": ids, "priority": pa.array(pr, pa.int8())}) for ids, pr in parts]
    if not tables:
        return pa.table({"source_id": pa.array([], pa.string()), "priority": pa.array([], pa.int8())})
    merged = pa.concat_tables(tables).group_by("source_id").aggregate([("priority", "max")])
    return merged.rename_columns(["source_id", "priority"])


def final_splits(ids: pa.Array, resolved: pa.Table) -> list[str]:
    """The build-wide split of each source_id of one entry (``resolved`` from ``resolve_splits``)."""
    idx = pc.index_in(ids, value_set=resolved["source_id"])
    priorities = pc.take(resolved["priority"], idx).to_pylist()
    return [PRIORITY_SPLIT[p] for p in priorities]


__all__ = ["SPLITS", "KEY_SEPARATOR", "key_text", "keys_of", "source_id", "carve", "carve_fraction",
           "missing_splits", "tentative_priorities", "resolve_splits", "final_splits"]
