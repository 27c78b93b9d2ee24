"""Benchmark: Arabic ROUGE-L pairs/s of our scorer (eval_tasks/arabic_prompts.py: spaCy-based
Arabic tokenizer + bit-parallel LCS) against rouge_score's RougeScorer given the SAME tokenizer.

Run on demand (not collected by pytest):  .venv/bin/python tests/benchmarks/bench_rouge.py [--pairs N]
Pairs come from real Arabic text in ../shared/data (AJGT tweets, ARCD answers and contexts):
each reference with a perturbed copy, an unrelated text, or itself. Both arms get their own
tokenizer with its cache off, so both pay for tokenization on every pair; the LCS-only figures
score pre-tokenized pairs. Ends with one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"


def load_scorer_module():
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import load_eval_tasks

    return load_eval_tasks("arabic_prompts_bench")


def real_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import real_arabic_pairs

    return real_arabic_pairs(n, seed)


def rate(fn, pairs, repeat: int) -> tuple[float, list[float]]:
    best, out = float("inf"), []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = [fn(t, p) for t, p in pairs]
        best = min(best, time.perf_counter() - t0)
    return len(pairs) / best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per arm; the best counts")
    args = parser.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"shared data not found at {SHARED}")
    ap = load_scorer_module()
    from rouge_score import rouge_scorer

    pairs = real_pairs(args.pairs)
    ours = ap.ArabicRougeLScorer(tokenizer=ap.ArabicRougeTokenizer(normalize=True, cache_size=0))
    theirs = rouge_scorer.RougeScorer(["rougeL"], tokenizer=ap.ArabicRougeTokenizer(normalize=True, cache_size=0))
    ours.score(*pairs[0]), theirs.score(*pairs[0])  # load spaCy outside the timing

    ours_rate, ours_scores = rate(lambda t, p: ours.score(t, p)["rougeL"].fmeasure, pairs, args.repeat)
    theirs_rate, theirs_scores = rate(lambda t, p: theirs.score(t, p)["rougeL"].fmeasure, pairs, args.repeat)
    max_diff = max(abs(a - b) for a, b in zip(ours_scores, theirs_scores))

    tok = ap.ArabicRougeTokenizer(normalize=True)
    tokenized = [(tok.tokenize(t), tok.tokenize(p)) for t, p in pairs]
    lcs_ours, _ = rate(lambda t, p: ap.rouge_l_from_tokens(t, p).fmeasure, tokenized, args.repeat)
    lcs_theirs, _ = rate(lambda t, p: rouge_scorer._score_lcs(t, p).fmeasure, tokenized, args.repeat)
    mean_tokens = sum(len(t) + len(p) for t, p in tokenized) / (2 * len(tokenized))

    print(f"pairs: {len(pairs)} (mean {mean_tokens:.1f} tokens per text), best of {args.repeat}")
    print(f"ours (Arabic tokenizer + bit-parallel LCS):      {ours_rate:10.0f} pairs/s")
    print(f"rouge_score RougeScorer (same tokenizer):        {theirs_rate:10.0f} pairs/s")
    print(f"LCS only, pre-tokenized: ours {lcs_ours:.0f} pairs/s, rouge_score {lcs_theirs:.0f} pairs/s")
    print(f"max |F1 difference| between the arms: {max_diff:.2e}")
    print(json.dumps({
        "benchmark": "rouge_l_arabic", "pairs": len(pairs), "mean_tokens": round(mean_tokens, 1),
        "ours_pairs_per_s": round(ours_rate, 1), "rouge_score_pairs_per_s": round(theirs_rate, 1),
        "speedup": round(ours_rate / theirs_rate, 2),
        "lcs_only_ours_pairs_per_s": round(lcs_ours, 1), "lcs_only_rouge_score_pairs_per_s": round(lcs_theirs, 1),
        "lcs_only_speedup": round(lcs_ours / lcs_theirs, 2), "max_abs_f1_diff": max_diff,
    }))


if __name__ == "__main__":
    main()
