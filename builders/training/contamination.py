"""Long n-gram overlap between a mixture and held-out text, as GPT-3's and lm-eval's decontamination measure it:
13-grams of normalised words (builders.textnorm: diacritics, letter variants, punctuation, case).

Held-out documents come in groups (every test config of every input; every benchmark: eval_only catalog entries
and --benchmark folders). A document is one source text (its ``source_id``): the inputs and targets of all its
prompts. An n-gram that many documents of a group share is template boilerplate, not content (each template's
text is in every document of its task), and is ignored: one found in more than min(max_df, half the group)
documents.

A held-out document is *contaminated* when one of its 13-grams occurs in a mixture row. The report gives, per
group, documents checked and contaminated and the fraction, and the mixture rows that overlap; ``mix`` fails
when a group's fraction is above the threshold. Memory: 16 bytes per held-out n-gram.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from builders.textnorm import normalize

N = 13
SHORT = 4  # the window that marks template words
MAX_DF = 10
_P = np.uint64(0x100000001B3)  # FNV prime: the polynomial base of the rolling hash


def _finish(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(33))) * np.uint64(0xFF51AFD7ED558CCD)
        z = (z ^ (z >> np.uint64(33))) * np.uint64(0xC4CEB9FE1A85EC53)
        return z ^ (z >> np.uint64(33))


def tokens(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(a 64-bit hash of every word, the index of its text): ``texts`` normalised and split on whitespace."""
    words = pc.utf8_split_whitespace(normalize(pa.array(texts, pa.string())).fill_null(""))
    lengths = pc.list_value_length(words).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(words)
    if len(flat) == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    encoded = pc.dictionary_encode(flat).combine_chunks() if isinstance(flat, pa.ChunkedArray) else \
        pc.dictionary_encode(flat)
    vocab = np.fromiter((xxhash.xxh3_64_intdigest(w.encode()) for w in encoded.dictionary.to_pylist()),
                        dtype=np.uint64, count=len(encoded.dictionary))
    return vocab[encoded.indices.to_numpy(zero_copy_only=False)], np.repeat(np.arange(len(texts)), lengths)


def windows(toks: np.ndarray, doc: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hash, text index, start position) of every n-word window that stays inside one text."""
    starts = len(toks) - n + 1
    if starts <= 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    with np.errstate(over="ignore"):
        h = np.zeros(starts, dtype=np.uint64)
        for k in range(n):
            h = h * _P + toks[k:k + starts]
    inside = np.flatnonzero(doc[:starts] == doc[n - 1:n - 1 + starts])
    return _finish(h[inside]), doc[inside], inside


def ngrams(texts: list[str], n: int = N) -> tuple[np.ndarray, np.ndarray]:
    """(hash of every word n-gram, index of its text) for ``texts``."""
    h, d, _ = windows(*tokens(texts), n)
    return h, d


def covered(starts: np.ndarray, width: int, n_tokens: int) -> np.ndarray:
    """Prefix counts of the words covered by windows of ``width`` words at ``starts`` (length n_tokens + 1)."""
    cover = np.zeros(n_tokens + 1, np.int64)
    np.add.at(cover, starts, 1)
    np.add.at(cover, np.minimum(starts + width, n_tokens), -1)
    return np.concatenate([[0], np.cumsum(np.cumsum(cover)[:n_tokens] > 0)])


@dataclass
class HeldOut:
    """Held-out documents by group; ``add`` them, then ``freeze`` once before ``scan``. Every prompt of a
    held-out source text is read (not one per text), so a template's boilerplate is in every text of the group
    and its document frequency shows it for what it is."""

    max_df: int = MAX_DF
    sids: dict[str, dict[str, int]] = field(default_factory=dict)  # group -> source_id -> document number
    chunks: dict[str, list] = field(default_factory=dict)  # group -> [(n-gram hashes, document numbers)]
    kinds: dict[str, str] = field(default_factory=dict)  # group -> "test" | "benchmark"

    def add(self, group: str, kind: str, source_ids: list[str], texts: list[str]) -> None:
        numbers = self.sids.setdefault(group, {})
        self.kinds[group] = kind
        toks, row = tokens(texts)
        docs = np.array([numbers.setdefault(s, len(numbers)) for s in source_ids], dtype=np.int64)
        self.chunks.setdefault(group, []).append((windows(toks, row, N), windows(toks, row, SHORT), len(toks), docs))

    def freeze(self) -> None:
        """Per group, the document frequency (distinct source texts) of every n-gram: template boilerplate is in
        more than the limit. A 13-gram is kept as content when it is not boilerplate and at most half of its
        words are covered by boilerplate 4-grams (so twelve template words and one word of text do not count;
        templates shorter than 13 words are caught by their 4-grams)."""
        self._groups = {}
        parts = []
        for group in sorted(self.sids):
            sids = sorted(self.sids[group], key=self.sids[group].get)
            limit = min(self.max_df, max(1, len(sids) // 2))
            frequent = {}
            for i, n in ((0, N), (1, SHORT)):
                pairs = np.unique(np.rec.fromarrays([np.concatenate([c[i][0] for c in self.chunks[group]]),
                                                     np.concatenate([c[3][c[i][1]] for c in self.chunks[group]])],
                                                    names="h,d"))
                uniq, df = np.unique(pairs["h"], return_counts=True)
                frequent[n] = uniq[df > limit]
            keep_h, keep_d = [], []
            for (h, row, starts), (h4, _, starts4), n_tokens, docs in self.chunks[group]:
                cov = covered(starts4[np.isin(h4, frequent[SHORT])], SHORT, n_tokens)
                ok = ~np.isin(h, frequent[N]) & ((cov[starts + N] - cov[starts]) <= N // 2)
                keep_h.append(h[ok])
                keep_d.append(docs[row[ok]])
            kept = np.unique(np.rec.fromarrays([np.concatenate(keep_h), np.concatenate(keep_d)], names="h,d"))
            self._groups[group] = (sids, kept["h"], kept["d"], int(len(frequent[N])))
            parts.append(kept["h"])
        self.chunks = {}
        self._all = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.uint64)
        self._hits = np.zeros(0, np.uint64)

    def new_scan(self) -> None:
        """Forget the n-grams earlier scans found (before scanning the mixture again)."""
        self._hits = np.zeros(0, np.uint64)

    def scan(self, ids: list[str], texts: list[str]) -> list[str]:
        """Mixture rows: the ids of those sharing a content n-gram with any held-out document (remembered)."""
        hashes, doc = ngrams(texts)
        hit = np.isin(hashes, self._all)
        self._hits = np.union1d(self._hits, hashes[hit])
        return [ids[i] for i in np.unique(doc[hit])]

    def report(self, threshold: float, mixture_rows: int, overlapping_ids: list[str]) -> dict:
        groups = {}
        for group, (sids, hashes, doc, boilerplate) in self._groups.items():
            found = np.unique(doc[np.isin(hashes, self._hits)])
            n = len(sids)
            groups[group] = {"kind": self.kinds[group], "documents": n, "contaminated": int(len(found)),
                             "fraction": round(len(found) / n, 6) if n else 0.0,
                             "boilerplate_ngrams_ignored": boilerplate,
                             "examples": [sids[i] for i in found[:5]]}
        failed = sorted(g for g, r in groups.items() if r["fraction"] > threshold)
        return {"n": N, "max_df": self.max_df, "threshold": threshold, "passed": not failed, "failed": failed,
                "mixture_rows": mixture_rows, "mixture_rows_overlapping": len(overlapping_ids),
                "mixture_examples": overlapping_ids[:10], "mixture_overlapping_ids": overlapping_ids,
                "groups": groups}


def summary(report: dict) -> str:
    """The report as a table (printed by `mix`)."""
    lines = [f"13-gram contamination (max over groups must be <= {report['threshold']:.2%}):",
             f"  {'held-out group':58} {'kind':9} {'docs':>7} {'hit':>5} {'fraction':>9}"]
    for group, r in sorted(report["groups"].items()):
        lines.append(f"  {group[:58]:58} {r['kind']:9} {r['documents']:>7} {r['contaminated']:>5} "
                     f"{r['fraction']:>9.2%}{'  FAIL' if group in report['failed'] else ''}")
    lines.append(f"  mixture rows sharing a 13-gram with held-out text: {report['mixture_rows_overlapping']} "
                 f"of {report['mixture_rows']}")
    return "\n".join(lines)
