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
import xxhash

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


def part_hash(normalised: str) -> int:
    return xxhash.xxh3_64_intdigest(normalised.encode())


def keys_of(parts: list[list[str]]) -> list[tuple[str, list[int], list[int]]]:
    """Split keys of many rows at once (one vectorised normalisation): for each row, its key (normalised
    non-empty parts, sorted and joined; '' when all are empty), the hashes of those parts, and the winnowing
    fingerprints of its texts."""
    flat = [p for row in parts for p in row]
    normed = normalize(flat).to_pylist() if flat else []
    prints = fingerprints([p or "" for p in normed])
    out, i = [], 0
    for row in parts:
        mine = sorted({p for p in normed[i:i + len(row)] if p})
        shingles = np.unique(np.concatenate([np.zeros(0, np.uint64), *prints[i:i + len(row)]]))
        i += len(row)
        out.append((KEY_SEPARATOR.join(mine), [part_hash(p) for p in mine], shingles.tolist()))
    return out


SHINGLE_WORDS, WINDOW = 5, 6  # winnowing: any run of >= SHINGLE_WORDS + WINDOW - 1 = 10 shared words is found
_MULT = np.array([0x100000001B3 ** (SHINGLE_WORDS - 1 - j) % 2**64 for j in range(SHINGLE_WORDS)], dtype=np.uint64)


def fingerprints(texts: list[str]) -> list[np.ndarray]:
    """Winnowing fingerprints (Schleimer et al., 2003) of normalised texts: hashes of 5-word shingles, the
    smallest in every window of 6 consecutive shingles (of a text with fewer shingles, its smallest). Two texts
    that share a run of 10 or more words share a fingerprint, so a sentence of one dataset inside a document of
    another is found. A text of fewer than 5 words has none (its exact text still links it)."""
    words = [t.split(" ") if t else [] for t in texts]
    lengths = np.array([len(w) for w in words], dtype=np.int64)
    vocab: dict[str, int] = {}
    flat = np.fromiter((vocab[x] if x in vocab else vocab.setdefault(x, part_hash(x)) for ws in words for x in ws),
                       dtype=np.uint64, count=int(lengths.sum()))
    owner = np.repeat(np.arange(len(texts)), lengths)
    out = [np.zeros(0, np.uint64)] * len(texts)
    k = SHINGLE_WORDS
    if len(flat) < k:
        return out
    with np.errstate(over="ignore"):
        grams = sum(flat[j:len(flat) - k + 1 + j] * _MULT[j] for j in range(k))  # wraps mod 2**64
    valid = owner[:len(grams)] == owner[k - 1:]
    grams, gram_owner = grams[valid], owner[:len(valid)][valid]
    if not len(grams):
        return out
    picked = [np.zeros(0, np.int64)]
    if len(grams) >= WINDOW:
        windows = np.lib.stride_tricks.sliding_window_view(grams, WINDOW)
        whole = gram_owner[:len(windows)] == gram_owner[WINDOW - 1:]
        starts = np.flatnonzero(whole)
        picked.append(starts + windows[starts].argmin(axis=1))
    # texts with fewer shingles than a window: their smallest shingle
    counts = np.bincount(gram_owner, minlength=len(texts))
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    for t in np.flatnonzero((counts > 0) & (counts < WINDOW)):
        picked.append(np.array([first[t] + int(grams[first[t]:first[t] + counts[t]].argmin())]))
    chosen = np.unique(np.concatenate(picked))
    pairs = np.unique(np.rec.fromarrays([gram_owner[chosen], grams[chosen]], names="t,h"))
    bounds = np.searchsorted(pairs["t"], np.arange(len(texts) + 1))
    return [pairs["h"][bounds[i]:bounds[i + 1]].astype(np.uint64) for i in range(len(texts))]


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
    Label propagation with pointer jumping on the graph of keys and texts, one edge per (row key, text)."""
    n = len(keys)
    lengths = np.fromiter((len(p) for p in parts), dtype=np.int64, count=n)
    flat = np.concatenate(parts) if n else np.zeros(0, np.uint64)
    owner = np.repeat(np.arange(n), lengths)
    distinct, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    linkable = counts[inverse] <= max_link_rows
    nodes, node = np.unique(np.concatenate([keys.astype(np.uint64), flat[linkable]]), return_inverse=True)
    row_node, part_node = node[:n], node[n:]
    u, v = row_node[owner[linkable]], part_node
    label = np.arange(len(nodes))
    while len(u):
        lu, lv = label[u], label[v]
        if np.array_equal(lu, lv):
            break
        m = np.minimum(lu, lv)
        np.minimum.at(label, lu, m)
        np.minimum.at(label, lv, m)
        while True:  # pointer jumping: every node points at its root
            nxt = label[label]
            if np.array_equal(nxt, label):
                break
            label = nxt
    dense, comp = np.unique(label[row_node], return_inverse=True)
    frequent = counts > max_link_rows
    figures = {"linking_hashes": int(len(distinct)), "category_texts_not_linking": int(frequent.sum()),
               "max_link_rows": max_link_rows}
    return comp, nodes[dense], figures


def assign(keys: np.ndarray, parts: list[np.ndarray], own: list[str], fractions: list[dict[str, float]],
           missing: list[set[str]]) -> tuple[list[str], np.ndarray, np.ndarray, dict]:
    """The build-wide split of every row (rows of all entries together). ``fractions[r]`` / ``missing[r]``
    are those of row r's entry. Returns (splits, tentative priorities, component labels, figures)."""
    comp, comp_key, figures = components(keys, parts)
    tentative = np.array([SPLIT_PRIORITY[carve(comp_key[c], f, m) if o == "train" and m else o]
                          for o, c, f, m in zip(own, comp, fractions, missing)], dtype=np.int8)
    best = np.zeros(len(comp_key), dtype=np.int8)
    np.maximum.at(best, comp, tentative)
    return [PRIORITY_SPLIT[int(p)] for p in best[comp]], tentative, comp, figures


__all__ = ["SPLITS", "KEY_SEPARATOR", "key_text", "keys_of", "source_id", "carve", "carve_fraction",
           "missing_splits", "components", "assign"]
