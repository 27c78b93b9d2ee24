"""Which split a source text goes to: its key, its ``source_id``, and the rules that make the split the same
for that text everywhere in a build.

- The **key** of a source row is made of its split-key texts (``CatalogEntry.split_key_vars``: the catalog's
  ``split_key``, else every non-label text variable), each normalised (``builders.textnorm``); the parts are
  sorted, so the key depends neither on variable names nor on entry, task or label. ``source_id`` is a hash of
  the key.
- Rows that share any key text, or a run of 10 words of one (``fingerprints``: a news sentence of one dataset
  inside a document of another), are **linked** (a sentence pair shares its first sentence with a claim of
  another task; one tweet sits in two datasets; one passage serves several questions), transitively: a linked
  group of rows is a *component*. A text or fingerprint shared by more than ``MAX_LINK_ROWS`` rows is a
  category (a poetry meter, a tag sequence, a stock phrase), not a source text, and links nothing.
- A row's **own split** comes from its source (a source split mapped to test stays test). A train row of a
  source that has no validation or test split is **carved** into one by a hash of its component, with the
  entry's ``split_fractions``, so linked rows carve alike.
- Across the whole build, a component takes the highest split any of its rows has (test, then validation,
  then train): a text that is test anywhere is test everywhere (``assign``).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from builders.hashes import hash64
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


def key_columns(parts: list[list[str]]) -> tuple[list[str], pa.ListArray, pa.ListArray]:
    """Split keys of many rows at once, as columns (one vectorised normalisation, words hashed once per
    distinct word): each row's key (normalised non-empty parts, sorted and joined; '' when all are empty), the
    hashes of those parts and the winnowing fingerprints of its texts (both ``list<uint64>``, sorted)."""
    lengths = np.fromiter((len(row) for row in parts), dtype=np.int64, count=len(parts))
    flat = [p for row in parts for p in row]
    normed = normalize(flat) if flat else pa.array([], pa.string())
    values = normed.to_pylist()
    keys, mine_all, counts, i = [], [], np.zeros(len(parts), dtype=np.int64), 0
    for r, n in enumerate(lengths.tolist()):
        mine = sorted({p for p in values[i:i + n] if p})
        i += n
        keys.append(KEY_SEPARATOR.join(mine))
        mine_all += mine
        counts[r] = len(mine)
    part_hashes = pa.ListArray.from_arrays(pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)),
                                           pa.array(hash64(mine_all), pa.uint64()))
    text, prints = fingerprint_pairs(pc.fill_null(normed, ""))
    row = np.repeat(np.arange(len(parts)), lengths)[text] if len(text) else text
    order = np.lexsort((prints, row))
    row, prints = row[order], prints[order]
    keep = np.ones(len(row), dtype=bool)
    keep[1:] = (row[1:] != row[:-1]) | (prints[1:] != prints[:-1])
    row, prints = row[keep], prints[keep]
    offsets = np.searchsorted(row, np.arange(len(parts) + 1)).astype(np.int32)
    return keys, part_hashes, pa.ListArray.from_arrays(pa.array(offsets), pa.array(prints, pa.uint64()))


def keys_of(parts: list[list[str]]) -> list[tuple[str, list[int], list[int]]]:
    """``key_columns`` one row at a time: for each row, (key, part hashes, fingerprints)."""
    keys, part_hashes, shingles = key_columns(parts)
    return list(zip(keys, part_hashes.to_pylist(), shingles.to_pylist()))


SHINGLE_WORDS, WINDOW = 5, 6  # winnowing: any run of >= SHINGLE_WORDS + WINDOW - 1 = 10 shared words is found
_MULT = np.array([0x100000001B3 ** (SHINGLE_WORDS - 1 - j) % 2**64 for j in range(SHINGLE_WORDS)], dtype=np.uint64)


def _word_hashes(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(text index, ``hash64`` of the word) of every word of normalised texts, in order."""
    words = pc.split_pattern(texts, " ")
    owner = pc.list_parent_indices(words).to_numpy()
    flat = pc.list_flatten(words)
    real = pc.not_equal(flat, "")  # an empty text splits into one empty "word"; a normalised text has no others
    if not pc.all(real).as_py():
        flat, owner = flat.filter(real), owner[real.to_numpy(zero_copy_only=False)]
    encoded = pc.dictionary_encode(flat)
    return owner, hash64(encoded.dictionary)[encoded.indices.to_numpy()] if len(flat) else np.zeros(0, np.uint64)


def fingerprint_pairs(texts: pa.Array | list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Winnowing fingerprints (Schleimer et al., 2003) of normalised texts, as (text index, fingerprint) pairs
    sorted by text then fingerprint, each pair once: hashes of 5-word shingles, the smallest in every window of
    6 consecutive shingles (of a text with fewer shingles, its smallest). Two texts that share a run of 10 or
    more words share a fingerprint, so a sentence of one dataset inside a document of another is found. A text
    of fewer than 5 words has none (its exact text still links it)."""
    texts = texts if isinstance(texts, pa.Array) else pa.array(texts, pa.string())
    owner, flat = _word_hashes(texts)
    none = (np.zeros(0, np.int64), np.zeros(0, np.uint64))
    k = SHINGLE_WORDS
    if len(flat) < k:
        return none
    with np.errstate(over="ignore"):
        grams = sum(flat[j:len(flat) - k + 1 + j] * _MULT[j] for j in range(k))  # wraps mod 2**64
    valid = owner[:len(grams)] == owner[k - 1:]
    grams, gram_owner = grams[valid], owner[:len(valid)][valid]
    if not len(grams):
        return none
    picked_owner, picked = [np.zeros(0, np.int64)], [np.zeros(0, np.uint64)]
    if len(grams) >= WINDOW:
        windows = np.lib.stride_tricks.sliding_window_view(grams, WINDOW)
        whole = gram_owner[:len(windows)] == gram_owner[WINDOW - 1:]
        starts = np.flatnonzero(whole)
        picked_owner.append(gram_owner[starts])
        picked.append(windows[starts].min(axis=1))
    # texts with fewer shingles than a window: their smallest shingle
    counts = np.bincount(gram_owner, minlength=len(texts))
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    short = np.flatnonzero((counts > 0) & (counts < WINDOW))
    if len(short):
        bounds = np.ravel(np.column_stack([first[short], first[short] + counts[short]]))
        picked_owner.append(short)
        picked.append(np.minimum.reduceat(np.append(grams, np.uint64(0)), bounds)[::2])
    t, h = np.concatenate(picked_owner), np.concatenate(picked)
    order = np.lexsort((h, t))
    t, h = t[order], h[order]
    keep = np.ones(len(t), dtype=bool)
    keep[1:] = (t[1:] != t[:-1]) | (h[1:] != h[:-1])
    return t[keep], h[keep]


def fingerprints(texts: list[str]) -> list[np.ndarray]:
    """``fingerprint_pairs`` per text: the sorted fingerprints of each text."""
    t, h = fingerprint_pairs(texts)
    bounds = np.searchsorted(t, np.arange(len(texts) + 1))
    return [h[bounds[i]:bounds[i + 1]].astype(np.uint64) for i in range(len(texts))]


def source_id(key: str) -> str:
    """A stable 16-hex-digit id of a split key."""
    return hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


def carve_fraction(component_key: int) -> float:
    """Where a component falls in [0, 1): the same for every entry that reads one of its texts."""
    return (int(component_key) & 0xFFFFFFFF) / 2**32


def carve(component_key: int, fractions: dict[str, float], missing: set[str]) -> str:
    """The split a train row goes to when its source lacks validation and/or test."""
    x = carve_fraction(component_key)
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


MAX_LINK_ROWS = 100  # a text shared by more rows than this is a category (a meter, a tag sequence), not a source text


def components(keys: np.ndarray, parts: list[np.ndarray], max_link_rows: int = MAX_LINK_ROWS
               ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Connected components of rows linked by shared key texts or fingerprints.

    ``keys[r]`` is row r's key as an integer (rows with one key are always together), ``parts[r]`` the hashes
    of its key texts and their fingerprints. A hash shared by more than ``max_link_rows`` rows links nothing: it
    is a category or a stock phrase, not a source text (rows that are that text alone still share their key). Returns (component of each row as a
    dense label, each component's key: its smallest node hash, stable for a given set of texts, figures).
    ``components_flat`` is the same with the hashes of every row in one array."""
    lengths = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(keys))
    flat = np.concatenate(parts).astype(np.uint64) if len(keys) else np.zeros(0, np.uint64)
    return components_flat(keys, np.repeat(np.arange(len(keys)), lengths), flat, max_link_rows)


def components_flat(keys: np.ndarray, owner: np.ndarray, flat: np.ndarray, max_link_rows: int = MAX_LINK_ROWS
                    ) -> tuple[np.ndarray, np.ndarray, dict]:
    """``components`` with row ``owner[i]`` holding hash ``flat[i]``, all in memory (``Components`` fed one
    range holding every hash)."""
    linker = Components(keys, max_link_rows)
    linker.add(owner, flat, 0, None)
    return linker.result()


class Components:
    """Connected components of rows linked by shared key texts or fingerprints, fed one hash range at a time,
    so memory is a few bytes per row plus one range's hashes (``AssignSplits`` reads a build's linking hashes
    range by range).

    The graph has a node per row key and per text hash (a row key and a text hash of equal value are one node)
    and an edge per (row key, text of the row); a text hash held more than ``max_link_rows`` times links
    nothing. ``add`` takes every occurrence of the text hashes in ``[lo, hi)`` (``hi=None``: up to the largest)
    and the row keys there; rows that meet at a node are joined (union by smallest row, with pointer jumping).
    ``result`` gives the same as label propagation over the whole graph at once: each row's component as a
    dense label in the order of the components' keys, each component's key (its smallest node hash, stable for
    a given set of texts) and the figures."""

    def __init__(self, keys: np.ndarray, max_link_rows: int = MAX_LINK_ROWS):
        self.keys = np.asarray(keys, dtype=np.uint64)
        self.root = np.arange(len(self.keys), dtype=np.int64)  # every row points at its component's first row
        self.low = self.keys.copy()  # each row's smallest node: its key or one of its linking text hashes
        self.max_link_rows = max_link_rows
        self.figures = {"linking_hashes": 0, "category_texts_not_linking": 0, "max_link_rows": max_link_rows}

    @staticmethod
    def ranges(count: int) -> list[tuple[int, int | None]]:
        """``count`` hash ranges ``[lo, hi)`` that cover every 64-bit value (the last one's ``hi`` is None)."""
        step = 2**64 // max(1, count)
        return [(b * step, (b + 1) * step if b < count - 1 else None) for b in range(max(1, count))]

    @staticmethod
    def range_index(values: np.ndarray, count: int) -> np.ndarray:
        """Which of ``ranges(count)`` each value falls in."""
        if count <= 1:
            return np.zeros(len(values), dtype=np.int64)
        step = np.uint64(2**64 // count)
        return np.minimum(values // step, np.uint64(count - 1)).astype(np.int64)

    @staticmethod
    def in_range(values: np.ndarray, lo: int, hi: int | None) -> np.ndarray:
        mask = values >= np.uint64(lo)
        return mask if hi is None else mask & (values < np.uint64(hi))

    def add(self, owner: np.ndarray, flat: np.ndarray, lo: int, hi: int | None) -> None:
        """Row ``owner[i]`` holds text hash ``flat[i]``; these must be every occurrence of the hashes in
        ``[lo, hi)`` (once ``add`` has seen a range, it must not see it again)."""
        rows = np.flatnonzero(self.in_range(self.keys, lo, hi))
        values = np.concatenate([np.asarray(flat, np.uint64), self.keys[rows]])
        owners = np.concatenate([np.asarray(owner, np.int64), rows])
        is_text = np.zeros(len(values), dtype=bool)
        is_text[:len(flat)] = True
        order = np.argsort(values, kind="stable")
        values, owners, is_text = values[order], owners[order], is_text[order]
        del order
        first = np.ones(len(values), dtype=bool)
        first[1:] = values[1:] != values[:-1]
        group = np.cumsum(first) - 1
        texts = np.bincount(group, weights=is_text, minlength=int(first.sum())) if len(group) else np.zeros(0)
        self.figures["linking_hashes"] += int((texts > 0).sum())
        self.figures["category_texts_not_linking"] += int((texts > self.max_link_rows).sum())
        linkable = ~is_text | (texts[group] <= self.max_link_rows)
        text_nodes = linkable & is_text
        np.minimum.at(self.low, owners[text_nodes], values[text_nodes])
        owners, group = owners[linkable], group[linkable]
        same = group[1:] == group[:-1]
        self._union(owners[:-1][same], owners[1:][same])

    def _union(self, u: np.ndarray, v: np.ndarray) -> None:
        label = self.root
        while len(u):
            lu, lv = label[u], label[v]
            if np.array_equal(lu, lv):
                break
            m = np.minimum(lu, lv)
            np.minimum.at(label, lu, m)
            np.minimum.at(label, lv, m)
            while True:  # pointer jumping: every row points at its root
                nxt = label[label]
                if np.array_equal(nxt, label):
                    break
                label = nxt
        self.root = label

    def roots(self) -> tuple[np.ndarray, np.ndarray]:
        """(each row's component as the index of its first row, each row's component key): ``result``
        without the dense labels (no sort: what a build uses)."""
        low = np.full(len(self.keys), np.iinfo(np.uint64).max, dtype=np.uint64)
        np.minimum.at(low, self.root, self.low)
        return self.root, low[self.root]

    def result(self) -> tuple[np.ndarray, np.ndarray, dict]:
        """(component of each row, each component's key, figures)."""
        comp_key, comp = np.unique(self.roots()[1], return_inverse=True)
        return comp, comp_key, dict(self.figures)


def split_of_components(comp: np.ndarray, row_key: np.ndarray, own: np.ndarray, entry: np.ndarray,
                        fractions: list[dict[str, float]], missing: list[set[str]]) -> tuple[np.ndarray, np.ndarray]:
    """(split priority, tentative priority) of each row: carved by its component's key (``row_key``, per row),
    then the highest of its component (``comp``: any labels below the number of rows)."""
    tentative = carve_all(row_key, own, entry, fractions, missing)
    best = np.zeros(len(comp), dtype=np.int8)
    np.maximum.at(best, comp, tentative)
    return best[comp], tentative


def carve_all(component_keys: np.ndarray, own: np.ndarray, entry: np.ndarray, fractions: list[dict[str, float]],
              missing: list[set[str]]) -> np.ndarray:
    """``carve`` for many rows at once: the tentative split priority of each row, from its own split's
    priority ``own``, its component's key and its entry's (``entry[r]`` indexes ``fractions``/``missing``)."""
    out = own.astype(np.int8).copy()
    x = (component_keys.astype(np.uint64) & np.uint64(0xFFFFFFFF)).astype(np.float64) / 2**32
    for e, (f, m) in enumerate(zip(fractions, missing)):
        if not m:
            continue
        rows = (entry == e) & (own == SPLIT_PRIORITY["train"])
        val = f.get("validation", 0.05) if "validation" in m else 0.0
        test = f.get("test", 0.1) if "test" in m else 0.0
        out[rows] = np.where(x[rows] < val, SPLIT_PRIORITY["validation"],
                             np.where(x[rows] < val + test, SPLIT_PRIORITY["test"], SPLIT_PRIORITY["train"]))
    return out


def assign_flat(keys: np.ndarray, owner: np.ndarray, flat: np.ndarray, own: np.ndarray, entry: np.ndarray,
                fractions: list[dict[str, float]], missing: list[set[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """``assign`` on arrays: row ``owner[i]`` holds hash ``flat[i]``; ``own`` is each row's own split priority,
    ``entry`` the index of its entry in ``fractions``/``missing``. Returns (split priorities, tentative
    priorities, component labels, figures)."""
    comp, comp_key, figures = components_flat(keys, owner, flat)
    best, tentative = split_of_components(comp, comp_key[comp], own, entry, fractions, missing)
    return best, tentative, comp, figures


def assign(keys: np.ndarray, parts: list[np.ndarray], own: list[str], fractions: list[dict[str, float]],
           missing: list[set[str]]) -> tuple[list[str], np.ndarray, np.ndarray, dict]:
    """The build-wide split of every row (rows of all entries together). ``fractions[r]`` / ``missing[r]``
    are those of row r's entry. Returns (splits, tentative priorities, component labels, figures)."""
    groups: dict[tuple, int] = {}
    entry = np.array([groups.setdefault((tuple(sorted(f.items())), frozenset(m)), len(groups))
                      for f, m in zip(fractions, missing)], dtype=np.int64)
    kinds = sorted(groups, key=groups.get)
    lengths = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(keys))
    flat = np.concatenate(parts).astype(np.uint64) if len(keys) else np.zeros(0, np.uint64)
    best, tentative, comp, figures = assign_flat(
        keys, np.repeat(np.arange(len(keys)), lengths), flat, np.array([SPLIT_PRIORITY[o] for o in own], np.int8),
        entry, [dict(f) for f, _ in kinds], [set(m) for _, m in kinds])
    return [PRIORITY_SPLIT[int(p)] for p in best], tentative, comp, figures


__all__ = ["SPLITS", "KEY_SEPARATOR", "key_text", "keys_of", "key_columns", "fingerprints", "fingerprint_pairs",
           "source_id", "carve", "carve_all", "carve_fraction", "missing_splits", "components", "components_flat",
           "Components", "split_of_components", "assign", "assign_flat"]
