"""RAVEN n-gram novelty (McCoy, Smolensky, Linzen, Gao and Celikyilmaz, 2021, "How much do language models copy
from their training data? Evaluating linguistic novelty in text generation using RAVEN", arXiv:2111.09509),
following the reference code (github.com/tommccoy1/raven) in its first-pass mode with ``max_n`` = 10.

For every generated token we compute its *pointwise score*: the size of the smallest novel n-gram ending at that
token, where an n-gram is not novel if it occurs in the source. Three sources, as in the reference:

- ``training``: the training corpus (the n-gram index; one token stream across lines, see ``ngram_index``);
- ``context``: the prompt plus the text generated before that token;
- ``training_and_context``: either of them (the paper's main setting): the max of the two scores.

As in the reference, n-grams larger than ``max_n`` count as novel (scores are capped at ``max_n + 1``), n-grams
reaching back past the start of the generation count as novel (the score of the j-th generated token, from 0, is
capped at j + 2), and a token none of whose n-grams is novel gets that cap. Also as in the reference, against the
context the n-gram that starts at the very beginning of the text is not tested (so without a prompt, the first
generated token scores 2, not 1).

From the scores:
- ``novelty[n]`` = 1 - (n-grams of size n inside generations that are duplicated) / (all n-grams of size n inside
  generations), for n = 1..max_n, where the n-gram ending at a token is duplicated iff n < its score;
- ``pointwise_truncated5`` = the mean over generated tokens of min(score, 5) (the paper's summary), and
  ``pointwise_mean`` = the plain mean (of scores capped at max_n + 1).

Headline (one number for tables, ``raven``): the mean of ``novelty[n]`` over n = 1..max_n against
``training_and_context``, i.e. the area under the novelty-by-n curve divided by max_n. It lies in [0, 1]: 1 when no
n-gram of any size is copied, 0 when every n-gram up to max_n is. Unlike a single n it weighs local (small n)
and longer-range (large n) copying alike; ``pointwise_truncated5`` is reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from builders.dialogues.ngram_index import NgramIndex, _mix, iter_ngram_hashes, tokenize_lines

SOURCES = ("training", "context", "training_and_context")
HEADLINE_SOURCE = "training_and_context"


@dataclass
class _Batch:
    """All generations (optionally after their prompts) in one token array, with boundaries."""

    seq: np.ndarray  # token hashes of prompt_0 + gen_0 + prompt_1 + gen_1 + ...
    doc: np.ndarray  # generation index of each position
    is_gen: np.ndarray  # position belongs to a generation (not its prompt)
    j: np.ndarray  # position within its generation (0-based), -1 in prompts
    gen_lengths: np.ndarray


def _batch(generations: list[list[str]], prompts: list[list[str]] | None) -> _Batch:
    """One token array for all texts (vectorised: one hashing pass, positions from the lengths)."""
    plens = np.array([len(prompts[i]) if prompts is not None else 0 for i in range(len(generations))], dtype=np.int64)
    glens = np.array([len(g) for g in generations], dtype=np.int64)
    texts = [" ".join((list(prompts[i]) if prompts is not None else []) + list(g)) for i, g in enumerate(generations)]
    total = plens + glens
    doc = np.repeat(np.arange(len(generations), dtype=np.int64), total)
    offset = np.repeat(np.cumsum(total) - total, total)  # start of each text, per position
    within = np.arange(doc.size, dtype=np.int64) - offset
    j = within - plens[doc]  # position in the generation; negative in the prompt
    tokens, lengths = tokenize_lines(texts)
    if not np.array_equal(lengths, total):
        raise ValueError("a token contains whitespace: tokens must be whitespace-separated words")
    return _Batch(tokens, doc, j >= 0, np.where(j >= 0, j, -1), glens)


def _first_occurrence(keys: np.ndarray) -> np.ndarray:
    """For each position, the position of the first occurrence of its key (a stable sort, then group starts)."""
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    starts = np.concatenate(([True], sk[1:] != sk[:-1])) if sk.size else np.zeros(0, bool)
    group = np.cumsum(starts) - 1
    first = np.empty_like(order)
    first[order] = order[starts][group]
    return first


def _leading_true_scores(dup: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """Per token: 1 + (number of consecutive duplicated sizes from n = 1), capped. ``dup`` is (max_n, T)."""
    score = np.ones(dup.shape[1], dtype=np.int64)
    alive = np.ones(dup.shape[1], dtype=bool)
    for row in dup:
        alive &= row
        score += alive
    return np.minimum(score, cap)


def pointwise_scores(generations: list[list[str]], index: NgramIndex | None = None,
                     prompts: list[list[str]] | None = None, max_n: int = 10,
                     context: bool = True, batch_tokens: int = 1_000_000) -> dict[str, list[np.ndarray]]:
    """Pointwise scores per source, one int array per generation (``context=False``: against training only).
    Generations are scored in batches of about ``batch_tokens`` tokens, and each look-up reads the index one shard
    at a time, so memory stays bounded (``with index.cached():`` around the call trades memory for speed)."""
    if prompts is not None and len(prompts) != len(generations):
        raise ValueError(f"{len(prompts)} prompts for {len(generations)} generations: one prompt per generation")
    if index is not None and index.max_n < max_n:
        raise ValueError(f"the index holds n-grams up to {index.max_n}, fewer than max_n={max_n}")
    out: dict[str, list[np.ndarray]] = {}
    start, size = 0, 0
    for i, g in enumerate(generations):
        size += len(g) + (len(prompts[i]) if prompts is not None else 0)
        if size >= batch_tokens or i == len(generations) - 1:
            part = _scores(generations[start:i + 1], index, prompts[start:i + 1] if prompts is not None else None,
                           max_n, context)
            for k, v in part.items():
                out.setdefault(k, []).extend(v)
            start, size = i + 1, 0
    if not generations:
        out = {k: [] for k in (SOURCES if context else ("training",))}
    return out


def _scores(generations: list[list[str]], index: NgramIndex | None, prompts: list[list[str]] | None, max_n: int,
            context: bool) -> dict[str, list[np.ndarray]]:
    b = _batch(generations, prompts)
    T = b.seq.size
    pos = np.arange(T, dtype=np.int32 if T < 2**31 else np.int64)
    train_dup = np.zeros((max_n, T), dtype=bool)
    ctx_dup = np.zeros((max_n, T), dtype=bool)
    doc_key = _mix(b.doc.astype(np.uint64) + np.uint64(0x5151))  # makes a context n-gram hash per generation
    doc_start = np.zeros(len(generations), dtype=np.int64)  # first position of each text (prompt + generation)
    if T:
        firsts = np.r_[0, np.flatnonzero(np.diff(b.doc)) + 1]
        doc_start[b.doc[firsts]] = firsts
    # Training look-ups in three passes over the index (each pass reads every shard it needs once): sizes 1 and 2
    # together (a word of the generation is nearly always a training word, so asking its 2-gram at once costs
    # almost nothing); size 3 where the 2-gram was seen; sizes 4..max_n where the 3-gram was seen (copied text goes
    # on for long). If an n-gram was not seen, no larger one ending at the same token was: about as many look-ups
    # as the reference's walk back, with three reads of the index.
    pending: list[tuple[int, np.ndarray, np.ndarray]] = []

    def look_up():
        if pending:
            hits = index.contains(np.concatenate([h for _, h, _ in pending]))
            at = 0
            for n, h, end in pending:
                train_dup[n - 1, end[hits[at:at + h.size]]] = True
                at += h.size
            pending.clear()

    with np.errstate(over="ignore"):
        for n, h in enumerate(iter_ngram_hashes(b.seq, max_n), 1):
            if not h.size:
                continue
            start = pos[: h.size]
            end = start + (n - 1)
            inside = b.doc[start] == b.doc[end]  # does not span two generations
            if index is not None:
                if n in (3, 4):
                    look_up()  # the pass before, whose sizes this one is asked on
                # only n-grams inside the generation matter (scores are capped at j + 2)
                ask = inside & b.is_gen[start]
                if n >= 3:
                    ask &= train_dup[min(n, 4) - 2, end]
                if ask.any():
                    pending.append((n, h[ask], end[ask]))
            if not context:
                continue
            # context: the n-gram occurs entirely before its own end, in the prompt or earlier generated text
            keys = _mix(h ^ doc_key[start])
            keys[~inside] = np.uint64(0)
            first_end = end[_first_occurrence(keys)]
            # as in the reference, an n-gram that starts with its text (prompt, else generation) is never
            # tested against the context (it would be longer than it) and does not count as novel
            seen_before = inside & ((first_end < end) | (start == doc_start[b.doc[start]]))
            ctx_dup[n - 1, end[seen_before]] = True
    if index is not None:
        look_up()
    gen = b.is_gen
    cap = np.minimum(b.j[gen] + 2, max_n + 1)
    scores = {"training": _leading_true_scores(train_dup[:, gen], cap)}
    if context:
        scores["context"] = _leading_true_scores(ctx_dup[:, gen], cap)
        scores["training_and_context"] = np.maximum(scores["training"], scores["context"])
    ends = np.cumsum(b.gen_lengths).tolist()
    starts = [0] + ends[:-1]
    return {k: [v[a:z] for a, z in zip(starts, ends)] for k, v in scores.items()}  # views (np.split is slower)


def summarize(scores: list[np.ndarray], max_n: int = 10) -> dict:
    """Per-n novelty and the pointwise means from one source's scores."""
    lengths = np.array([s.size for s in scores])
    flat = np.concatenate(scores) if scores else np.empty(0, dtype=np.int64)
    novelty = {}
    for n in range(1, max_n + 1):
        total = int(np.maximum(lengths - n + 1, 0).sum())
        dup = int((flat > n).sum())
        novelty[str(n)] = None if total == 0 else 1.0 - dup / total
    return {
        "novelty": novelty,
        "pointwise_mean": float(flat.mean()) if flat.size else None,
        "pointwise_truncated5": float(np.minimum(flat, 5).mean()) if flat.size else None,
    }


def headline(summary: dict) -> float | None:
    values = [v for v in summary["novelty"].values() if v is not None]
    return float(np.mean(values)) if values else None


def raven_report(generations: list[list[str]], index: NgramIndex | None, prompts: list[list[str]] | None = None,
                 max_n: int = 10) -> dict:
    """The full report: per source per-n novelty and pointwise scores, and the headline."""
    scores = pointwise_scores(generations, index, prompts, max_n)
    report = {"max_n": max_n, "generations": len(generations), "tokens": int(sum(len(g) for g in generations)),
              "prompts": prompts is not None}
    sources = SOURCES if index is not None else ("context",)
    for source in sources:
        report[source] = summarize(scores[source], max_n)
    src = HEADLINE_SOURCE if index is not None else "context"
    report["raven"] = headline(report[src])
    report["raven_definition"] = f"mean of novelty[n] for n=1..{max_n} against {src}"
    return report
