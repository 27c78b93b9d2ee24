"""Long n-gram overlap between a mixture and held-out text, as GPT-3's and lm-eval's decontamination measure it:
13-grams of normalised words (builders.textnorm: diacritics, letter variants, punctuation, case).

Held-out documents come in groups (every test config of every input; every benchmark: eval_only catalog entries
and --benchmark folders). A document is one source text (its ``source_id``) with one of its prompts, inputs and
targets: all prompts of a text share its content. An n-gram that many documents of a group share is template
boilerplate, not content, and is ignored: one found in more than min(max_df, half the group) documents.

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
MAX_DF = 10
_P = np.uint64(0x100000001B3)  # FNV prime: the polynomial base of the rolling hash


def _finish(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(33))) * np.uint64(0xFF51AFD7ED558CCD)
        z = (z ^ (z >> np.uint64(33))) * np.uint64(0xC4CEB9FE1A85EC53)
        return z ^ (z >> np.uint64(33))


def ngrams(texts: list[str], n: int = N) -> tuple[np.ndarray, np.ndarray]:
    """(hash of every word n-gram, index of its text) for ``texts`` (normalised, split on whitespace)."""
    words = pc.utf8_split_whitespace(normalize(pa.array(texts, pa.string())).fill_null(""))
    lengths = pc.list_value_length(words).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(words)
    if len(flat) == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    encoded = pc.dictionary_encode(flat).combine_chunks() if isinstance(flat, pa.ChunkedArray) else \
        pc.dictionary_encode(flat)
    vocab = np.fromiter((xxhash.xxh3_64_intdigest(w.encode()) for w in encoded.dictionary.to_pylist()),
                        dtype=np.uint64, count=len(encoded.dictionary))
    tokens = vocab[encoded.indices.to_numpy(zero_copy_only=False)]
    doc = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
    starts = len(tokens) - n + 1
    if starts <= 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    with np.errstate(over="ignore"):
        h = np.zeros(starts, dtype=np.uint64)
        for k in range(n):
            h = h * _P + tokens[k:k + starts]
    inside = doc[:starts] == doc[n - 1:n - 1 + starts]  # the n-gram does not cross into the next text
    return _finish(h[inside]), doc[:starts][inside]


@dataclass
class HeldOut:
    """Held-out documents by group; ``add`` them, then ``freeze`` once before ``scan``."""

    max_df: int = MAX_DF
    docs: dict[str, dict[str, str]] = field(default_factory=dict)  # group -> source_id -> text
    kinds: dict[str, str] = field(default_factory=dict)  # group -> "test" | "benchmark"

    def add(self, group: str, kind: str, source_ids: list[str], texts: list[str]) -> None:
        mine = self.docs.setdefault(group, {})
        self.kinds[group] = kind
        for sid, text in zip(source_ids, texts):
            mine.setdefault(sid, text)  # the first prompt seen of each source text

    def freeze(self) -> None:
        self._groups = {}
        parts = []
        for group in sorted(self.docs):
            sids = list(self.docs[group])
            hashes, doc = ngrams([self.docs[group][s] for s in sids])
            pairs = np.unique(np.rec.fromarrays([hashes, doc], names="h,d"))
            uniq, df = np.unique(pairs["h"], return_counts=True)
            limit = min(self.max_df, max(1, len(sids) // 2))
            content = np.isin(pairs["h"], uniq[df <= limit])
            self._groups[group] = (sids, pairs["h"][content], pairs["d"][content], int((df > limit).sum()))
            parts.append(pairs["h"][content])
        self._all = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.uint64)
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
                "mixture_examples": overlapping_ids[:10], "groups": groups}


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
