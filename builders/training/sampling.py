"""Stratified sampling for mixtures: how many rows each task gets (water-filling under a cap), and which rows
(the smallest seeded hashes of their ids: a uniform sample without replacement that does not depend on the order
of the inputs, their shards or the rows in them)."""

from __future__ import annotations

import numpy as np
import xxhash

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def id_hashes(ids: list[str]) -> np.ndarray:
    """A 64-bit hash of each row id."""
    return np.fromiter((xxhash.xxh3_64_intdigest(i.encode()) for i in ids), dtype=np.uint64, count=len(ids))


def seeded_keys(hashes: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 of (hash + seed): the sampling key of each row, uniform and independent per seed."""
    with np.errstate(over="ignore"):
        z = hashes + np.uint64(seed % 2**64) * _GOLDEN + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def allocate(available: dict[str, int], size: int, cap: int | None = None) -> dict[str, int]:
    """Rows per task: every task the same share (a water level), no task more than ``cap`` or than it has; what
    small tasks cannot use goes to the others. The result sums to ``size`` unless the tasks have fewer rows
    (then every task gives all it can). Ties at the level are broken by task name, so it is deterministic."""
    if size < 0:
        raise ValueError(f"size must be >= 0, not {size}")
    limit = {t: min(n, cap) if cap is not None else n for t, n in available.items()}
    total = sum(limit.values())
    if total <= size:
        return dict(limit)
    got = dict.fromkeys(limit, 0)
    left = size
    open_tasks = sorted(t for t in limit if limit[t] > 0)
    while left > 0 and open_tasks:
        share = left // len(open_tasks)
        if share == 0:  # fewer rows left than tasks: one more row each, in name order
            for t in open_tasks[:left]:
                got[t] += 1
            break
        for t in open_tasks:
            take = min(share, limit[t] - got[t])
            got[t] += take
            left -= take
        open_tasks = [t for t in open_tasks if got[t] < limit[t]]
    return got


def smallest(keys: np.ndarray, groups: np.ndarray, wanted: dict[int, int]) -> np.ndarray:
    """Indices of the ``wanted[g]`` rows with the smallest keys in each group ``g`` (sorted by group, then key)."""
    order = np.lexsort((keys, groups))
    sorted_groups = groups[order]
    picked = []
    for g, n in sorted(wanted.items()):
        start = np.searchsorted(sorted_groups, g, side="left")
        end = np.searchsorted(sorted_groups, g, side="right")
        if n > end - start:
            raise ValueError(f"group {g}: {n} rows wanted, {end - start} available")
        picked.append(order[start:start + n])
    return np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
