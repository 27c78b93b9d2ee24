"""Benchmark: the RAVEN n-gram index (hashed, streaming, sharded: builders/dialogues/ngram_index.py) against the
naive baseline, a Python set of n-gram tuples (what RAVEN's reference code keeps in memory), on the same corpus,
in one run.

Run on demand (not collected by pytest):
    .venv/bin/python tests/benchmarks/bench_dialogues.py [--tokens 10000000] [--generations 3000]

Corpus: every line of real Arabic text in ../shared/data (tweets, reviews, poetry, news, Wikipedia paragraphs and
questions; lines with >= 3 tokens and mostly Arabic letters), shuffled once and repeated in that order until
--tokens whitespace tokens. Generated texts: a third copied corpus lines, a third corpus lines with one word in four
replaced, a third random words, about 30 tokens each. Each arm runs in its own process (peak memory is that
process's maximum resident set; speeds are per CPU second, user + system, which a busy shared machine disturbs far
less than the wall clock, also reported); both compute the training pointwise scores of every generated token for
n = 1..10 and the run checks they are identical. Ends with one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def arabic_lines() -> list[str]:
    from builders.dialogues.filters import arabic_ratio

    lines: list[str] = []
    for path in sorted(SHARED.rglob("*")):
        if not path.is_file() or path.suffix not in (".csv", ".tsv", ".txt", ".ar", ".jsonl", ".json"):
            continue
        text = path.read_text(encoding="utf-8-sig", errors="ignore")
        if path.suffix == ".json" and path.parent.name == "arcd":
            for art in json.loads(text)["data"]:
                for para in art["paragraphs"]:
                    lines.append(para["context"])
                    lines += [q["question"] for q in para["qas"]]
            continue
        lines += text.splitlines()
    out = []
    for line in lines:
        line = " ".join(line.split())
        if len(line.split()) >= 3 and arabic_ratio(line) >= 0.6:
            out.append(line)
    return out


def make_data(workdir: Path, tokens: int, generations: int, seed: int = 0) -> dict:
    lines = arabic_lines()
    rng = random.Random(seed)
    rng.shuffle(lines)
    unique_tokens = sum(len(line.split()) for line in lines)
    written = 0
    with open(workdir / "train.txt", "w", encoding="utf-8") as f:
        while written < tokens:
            for line in lines:
                f.write(line + "\n")
                written += len(line.split())
                if written >= tokens:
                    break
    vocab = sorted({w for line in lines[:20000] for w in line.split()})
    gens = []
    for i in range(generations):
        words = rng.choice(lines).split()[:30]
        if i % 3 == 1:
            words = [rng.choice(vocab) if k % 4 == 3 else w for k, w in enumerate(words)]
        elif i % 3 == 2:
            words = [rng.choice(vocab) for _ in range(30)]
        gens.append(" ".join(words))
    (workdir / "generated.txt").write_text("\n".join(gens) + "\n", encoding="utf-8")
    return {"train_tokens": written, "unique_corpus_tokens": unique_tokens, "corpus_lines": len(lines),
            "generations": generations, "generated_tokens": sum(len(g.split()) for g in gens)}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Clock:
    """Wall and CPU (user + system) seconds of a block: CPU time is what the ratios use, since on a shared
    machine the wall clock also measures the other processes."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), self._cpu()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, self._cpu() - self.cpu

    @staticmethod
    def _cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime


def arm_ours(workdir: Path, max_n: int, shards: int, budget: int = 16) -> dict:
    import numpy as np

    from builders.dialogues.ngram_index import build_index_from_files
    from builders.dialogues.raven import pointwise_scores

    gens = [line.split() for line in (workdir / "generated.txt").read_text(encoding="utf-8").splitlines()]
    base = peak_mb()
    with Clock() as build:
        index = build_index_from_files([workdir / "train.txt"], workdir / "index", max_n=max_n, num_shards=shards,
                                       chunk_tokens=250_000, memory_budget_mb=budget)
    build_peak = peak_mb()
    with Clock() as query:
        scores = pointwise_scores(gens, index, max_n=max_n, context=False)["training"]
    np.save(workdir / "scores-ours.npy", np.concatenate(scores))
    size = sum(p.stat().st_size for p in (workdir / "index").glob("shard-*.npy"))
    return {"build_s": build.cpu, "query_s": query.cpu, "build_wall_s": build.wall, "query_wall_s": query.wall,
            "peak_mb": peak_mb(), "start_mb": base, "build_peak_mb": build_peak, "distinct_ngrams": index.meta.distinct,
            "index_mb": size / 2**20}


def arm_baseline(workdir: Path, max_n: int, shards: int, budget: int = 16) -> dict:
    import numpy as np
    from dialogues_fixtures import naive_training_ngrams, naive_training_scores

    gens = [line.split() for line in (workdir / "generated.txt").read_text(encoding="utf-8").splitlines()]
    base = peak_mb()
    with Clock() as build:
        with open(workdir / "train.txt", encoding="utf-8") as f:
            grams = naive_training_ngrams(f, max_n)
    build_peak = peak_mb()
    with Clock() as query:
        scores = naive_training_scores(gens, grams, max_n)
    np.save(workdir / "scores-baseline.npy", np.array([s for g in scores for s in g], dtype=np.int64))
    return {"build_s": build.cpu, "query_s": query.cpu, "build_wall_s": build.wall, "query_wall_s": query.wall,
            "peak_mb": peak_mb(), "start_mb": base, "build_peak_mb": build_peak, "distinct_ngrams": len(grams)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=10_000_000, help="training tokens (default 10M)")
    parser.add_argument("--generations", type=int, default=20000)
    parser.add_argument("--max-n", type=int, default=10)
    parser.add_argument("--shards", type=int, default=32)
    parser.add_argument("--memory-budget-mb", type=int, default=16, help="the index build's buffer before it spills")
    parser.add_argument("--arm", choices=["ours", "baseline"], help=argparse.SUPPRESS)  # one arm, in a child
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        fn = arm_ours if args.arm == "ours" else arm_baseline
        print(json.dumps(fn(Path(args.workdir), args.max_n, args.shards, args.memory_budget_mb)))
        return
    if not SHARED.is_dir():
        raise SystemExit(f"shared data not found at {SHARED}")
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="bench-dialogues-") as tmp:
        workdir = Path(tmp)
        data = make_data(workdir, args.tokens, args.generations)
        print(f"corpus: {data['train_tokens']:,} training tokens ({data['unique_corpus_tokens']:,} before repeating, "
              f"{data['corpus_lines']:,} lines); {data['generations']:,} generations, "
              f"{data['generated_tokens']:,} tokens", flush=True)
        results = {}
        for arm in ("ours", "baseline"):
            proc = subprocess.run([sys.executable, __file__, "--arm", arm, "--workdir", str(workdir), "--max-n",
                                   str(args.max_n), "--shards", str(args.shards), "--memory-budget-mb",
                                   str(args.memory_budget_mb)], capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(f"{arm} arm failed:\n{proc.stderr[-3000:]}")
            results[arm] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{arm:9} done: {results[arm]}", flush=True)
        same = bool(np.array_equal(np.load(workdir / "scores-ours.npy"), np.load(workdir / "scores-baseline.npy")))
    ours, base = results["ours"], results["baseline"]
    tok, gen = data["train_tokens"], data["generated_tokens"]
    rows = [("index build (training tokens/CPU-s)", tok / ours["build_s"], tok / base["build_s"]),
            ("query (generated tokens/CPU-s, n=1..10)", gen / ours["query_s"], gen / base["query_s"]),
            ("build + query (CPU s)", ours["build_s"] + ours["query_s"], base["build_s"] + base["query_s"]),
            ("build + query (wall s)", ours["build_wall_s"] + ours["query_wall_s"],
             base["build_wall_s"] + base["query_wall_s"]),
            ("peak memory (MB, whole process)", ours["peak_mb"], base["peak_mb"]),
            ("peak memory above start (MB)", ours["peak_mb"] - ours["start_mb"], base["peak_mb"] - base["start_mb"])]
    print(f"\n{'':42} {'ours':>14} {'set of tuples':>14} {'ratio':>8}")
    for name, a, b in rows:
        better = a / b if "tokens/" in name else b / a
        print(f"{name:42} {a:>14,.1f} {b:>14,.1f} {better:>7.1f}x")
    print(f"distinct n-grams: {ours['distinct_ngrams']:,} (index: {ours['index_mb']:.0f} MB on disk, "
          f"{args.shards} shards); baseline set: {base['distinct_ngrams']:,}; identical scores: {same}")
    print(json.dumps({
        "benchmark": "dialogues_raven_index", "train_tokens": tok, "generated_tokens": gen, "max_n": args.max_n,
        "shards": args.shards, "distinct_ngrams": ours["distinct_ngrams"], "identical_scores": same,
        "build_tokens_per_cpu_s": {"ours": tok / ours["build_s"], "baseline": tok / base["build_s"]},
        "query_tokens_per_cpu_s": {"ours": gen / ours["query_s"], "baseline": gen / base["query_s"]},
        "wall_s": {"ours": ours["build_wall_s"] + ours["query_wall_s"],
                   "baseline": base["build_wall_s"] + base["query_wall_s"]},
        "peak_mb": {"ours": ours["peak_mb"], "baseline": base["peak_mb"]},
        "build_speedup": base["build_s"] / ours["build_s"], "query_speedup": base["query_s"] / ours["query_s"],
        "memory_ratio": base["peak_mb"] / ours["peak_mb"],
    }))


if __name__ == "__main__":
    main()
