"""Build throughput and peak memory on real shared data, against a PromptSource-style baseline, in one run.

    python tests/benchmarks/bench_build.py --prompts 1000000 [--workers 1] [--baseline-prompts 50000]

The input is ASTD (../shared/data/astd/Tweets.txt, 10,006 real tweets) repeated until the build renders
``--prompts`` prompts; each copy's tweets get a copy number so no prompt is an exact duplicate (otherwise
dedup would drop every repeat and the benchmark would measure nothing). Both arms run the same datatrove
build in a fresh process; the baseline compiles each template for every example, as PromptSource's
``Template.apply`` does. It is slow, so it renders ``--baseline-prompts`` prompts and is compared per
prompt. Prints a table and ends with one JSON line: prompts/s per worker for both arms, the ratio, peak MB.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TWEETS = REPO.parent / "shared" / "data" / "astd" / "Tweets.txt"
DATASET = "astd_sentiment"


def write_input(path: Path, prompts: int, templates: int) -> int:
    tweets = []
    with open(TWEETS, encoding="utf-8-sig") as f:
        for line in f:
            text, _, label = line.rstrip("\n").rpartition("\t")
            if text.strip() and label:
                tweets.append((text, label))
    rows = -(-prompts // templates)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(rows):
            text, label = tweets[i % len(tweets)]
            copy = i // len(tweets)
            f.write(json.dumps({"tweet": f"{text} ({copy})" if copy else text, "label": label, "split": "train"},
                               ensure_ascii=False) + "\n")
    return rows


def run_arm(args) -> None:
    """One arm, in its own process, so peak memory is its own."""
    sys.path.insert(0, str(REPO))
    from builders.catalog import load_catalog
    from builders.pipeline import BuildConfig, build

    templates = len(load_catalog()[DATASET].templates)
    work = Path(args.work)
    data = work / f"{args.arm}.jsonl"
    write_input(data, args.prompts, templates)
    out = work / f"out-{args.arm}"
    start = time.perf_counter()
    res = build(BuildConfig(out=out, datasets=[DATASET], local={DATASET: str(data)}, workers=args.workers,
                            prompts_per_task=args.prompts_per_task), compile_per_row=args.arm == "baseline")
    seconds = time.perf_counter() - start
    peak_kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    rendered = sum(res.report["by_dataset"].values()) + res.report["skipped_total"]
    print(json.dumps({"arm": args.arm, "prompts": rendered, "seconds": seconds, "peak_mb": peak_kb / 1024,
                      "workers": args.workers}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=1_000_000)
    p.add_argument("--baseline-prompts", type=int, default=50_000)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--prompts-per-task", type=int, default=200_000)
    p.add_argument("--arm", choices=["ours", "baseline"], help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.arm:
        return run_arm(args)
    if not TWEETS.exists():
        sys.exit(f"real data not found: {TWEETS}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_build_") as work:
        for arm, n in (("baseline", min(args.baseline_prompts, args.prompts)), ("ours", args.prompts)):
            cmd = [sys.executable, __file__, "--arm", arm, "--work", work, "--prompts", str(n),
                   "--workers", str(args.workers), "--prompts-per-task", str(args.prompts_per_task)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                sys.exit(f"{arm} arm failed:\n{proc.stderr[-3000:]}")
            results[arm] = json.loads(proc.stdout.strip().splitlines()[-1])
            shutil.rmtree(Path(work) / f"out-{arm}", ignore_errors=True)
    per_worker = {arm: r["prompts"] / r["seconds"] / r["workers"] for arm, r in results.items()}
    ratio = per_worker["ours"] / per_worker["baseline"]
    print(f"{'arm':10} {'prompts':>10} {'seconds':>9} {'prompts/s/worker':>17} {'peak MB':>9}")
    for arm, r in results.items():
        print(f"{arm:10} {r['prompts']:>10} {r['seconds']:>9.1f} {per_worker[arm]:>17.0f} {r['peak_mb']:>9.0f}")
    print(f"ratio (ours / PromptSource-style baseline): {ratio:.1f}x")
    print(json.dumps({
        "prompts": results["ours"]["prompts"], "workers": args.workers,
        "ours_prompts_per_s_per_worker": round(per_worker["ours"], 1),
        "baseline_prompts_per_s_per_worker": round(per_worker["baseline"], 1),
        "baseline_prompts": results["baseline"]["prompts"],
        "ratio": round(ratio, 2),
        "ours_peak_mb": round(results["ours"]["peak_mb"], 1),
        "baseline_peak_mb": round(results["baseline"]["peak_mb"], 1),
    }))


if __name__ == "__main__":
    main()
