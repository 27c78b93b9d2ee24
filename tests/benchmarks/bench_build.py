"""Build throughput and peak memory on real shared data, against the render ceiling and a PromptSource-style
baseline, in one run.

    python tests/benchmarks/bench_build.py --prompts 1000000 4000000 [--baseline-prompts 50000]

The input is ASTD (../shared/data/astd/Tweets.txt, 10,006 real tweets) repeated until the build renders
``--prompts`` prompts; each copy's tweets get a copy number so no prompt is an exact duplicate (otherwise
dedup would drop every repeat and the benchmark would measure nothing); ``--source hub`` gives the same rows
as a Hub snapshot folder, read through ``load_dataset`` as a build from the Hub reads them (the default is a
.jsonl export). Each input is written once, by the parent, and every arm runs in a fresh process (so its peak
memory is its own):

- **ceiling**: the same rows and templates, compiled once, ``Template.render`` in a loop: no I/O, no build
  (``--ceiling-prompts`` prompts, one core). What rendering alone allows. Beside it, for reference, the
  build's own renderer alone (``Template.render_many``: the rows of a table in one looped call per template),
  which is faster than ``Template.render`` per prompt; the fraction of the ceiling is against the former.
- **ours**: the full datatrove build end to end (ingest, split assignment, render, dedup, write, checks,
  card), with 1 worker and with 2 workers, for every ``--prompts`` size.
  ``--repeat N`` runs every arm N times, in rounds (the ceiling, the baseline, then each size with 1 and with
  2 workers), and keeps the fastest of each, the ceiling's and the baseline's included (as ``timeit`` does: on
  a shared machine the fastest run is the one least slowed by others; a ceiling measured once in a slow spell
  would flatter the fraction of it).
- **baseline**: the same build, compiling each template for every example as PromptSource's
  ``Template.apply`` does. It is slow, so it renders ``--baseline-prompts`` prompts and is compared per
  prompt.

Prints a table and ends with one JSON line: ``render_ceiling_prompts_per_s``, ``render_many_prompts_per_s``,
and per size
``ours_prompts_per_s_per_worker``, ``ours_2_workers_prompts_per_s``, ``scaling_2_workers``,
``fraction_of_ceiling``, ``ratio_vs_baseline``, ``peak_mb`` (1 worker; ``peak_mb_2_workers``: the largest
process of a 2-worker build, its workers included; both ``ru_maxrss``, which counts the resident pages of
files a process has mapped), ``peak_anon_mb`` / ``peak_anon_mb_2_workers`` (the largest process's peak
anonymous memory: what the build holds itself, sampled every 0.1 s from outside the arm) and
``peak_anon_mb_2_workers_all`` (the peak of all of a 2-worker arm's processes together, pages shared by forked
processes counted once), plus the projected minutes for the
paper's 67,488,303 prompts on 2 and 16 cores (the largest size's per-worker rate times the number of workers
times the measured 2-worker efficiency; an extrapolation, not a measurement).
"""

from __future__ import annotations

import argparse
import contextlib
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
PAPER_PROMPTS = 67_488_303


def write_input(path: Path, prompts: int, templates: int, source: str = "jsonl") -> int:
    """The benchmark's rows at ``path``: a .jsonl export of the Hub copy (Hub column names, a split column), or
    (``source="hub"``) a Hub snapshot folder, read with ``load_dataset`` as the Hub copy is: one train split in
    parquet (row groups of 100,000 rows), labels as the Hub's ClassLabel ids. Written a row (or a row group) at
    a time, so that making the input does not set the arm's peak memory."""
    tweets = []
    with open(TWEETS, encoding="utf-8-sig") as f:
        for line in f:
            text, _, label = line.rstrip("\n").rpartition("\t")
            if text.strip() and label:
                tweets.append((text, label))
    rows = -(-prompts // templates)

    def row(i: int) -> tuple[str, str]:
        text, label = tweets[i % len(tweets)]
        return (f"{text} ({i // len(tweets)})" if i >= len(tweets) else text), label

    if source == "hub":
        import pyarrow as pa
        import pyarrow.parquet as pq
        sys.path.insert(0, str(REPO))
        from builders.catalog import load_catalog

        names = load_catalog()[DATASET].labels["label"].names
        (path / "data").mkdir(parents=True, exist_ok=True)
        schema = pa.schema([("tweet", pa.string()), ("label", pa.int64())])
        with pq.ParquetWriter(path / "data" / "train-00000-of-00001.parquet", schema) as writer:
            for lo in range(0, rows, 100_000):
                texts, labels = zip(*(row(i) for i in range(lo, min(rows, lo + 100_000))))
                writer.write_table(pa.table({"tweet": texts, "label": [names.index(x) for x in labels]}, schema=schema))
        return rows
    with open(path, "w", encoding="utf-8") as f:
        for i in range(rows):
            text, label = row(i)
            f.write(json.dumps({"tweet": text, "label": label, "split": "train"}, ensure_ascii=False) + "\n")
    return rows


def _stop_forkserver() -> None:
    """End the local workers' forkserver (multiprocess's own ``_stop``), so that ``RUSAGE_CHILDREN`` counts the
    workers forked from it: they are its children, reaped by it, and it counts for this process only once it has
    ended and been waited for. Without this, a 2-worker arm's peak leaves out every stage after the first."""
    from multiprocess import forkserver

    stop = getattr(forkserver._forkserver, "_stop", None)
    if stop is not None:
        stop()


def _peak_mb() -> float:
    kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return kb / 1024


def run_ceiling(args) -> dict:
    """Compiled ``Template.render`` over the benchmark's rows (mapped to template variables once, outside the
    timing) and every template: prompts per second on one core."""
    sys.path.insert(0, str(REPO))
    from builders.catalog import load_catalog
    from builders.sources import read_source, uses_local_layout
    from builders.steps.ingest import map_record

    entry = load_catalog()[DATASET]
    data = Path(args.input)
    local = uses_local_layout(entry, str(data))
    rows = [(f"{s}:{i}", map_record(entry, rec, local)[0]) for s, i, rec in read_source(entry, str(data), None)]
    templates = list(entry.templates)
    for tpl in templates:  # compile (and warm) outside the timing
        tpl.render(rows[0][1], rows[0][0])
    n = 0
    start = time.perf_counter()
    for where, row in rows:
        for tpl in templates:
            tpl.render(row, where)
            n += 1
    seconds = time.perf_counter() - start
    # the build's own renderer (Template.render_many, a looped render of the rows a table at a time) alone
    refs, values = [w for w, _ in rows], [r for _, r in rows]
    sizes = [len(json.dumps(r, ensure_ascii=False)) for r in values]
    start = time.perf_counter()
    for lo in range(0, len(rows), 1024):
        for tpl in templates:
            tpl.render_many(values[lo:lo + 1024], refs[lo:lo + 1024], sizes[lo:lo + 1024])
    looped = time.perf_counter() - start
    return {"arm": "ceiling", "prompts": n, "seconds": seconds, "peak_mb": _peak_mb(), "workers": 1,
            "render_many_prompts_per_s": n / looped}


def run_build(args) -> dict:
    sys.path.insert(0, str(REPO))
    from builders.pipeline import BuildConfig, build

    work, data = Path(args.work), Path(args.input)
    out = work / f"out-{args.arm}-{args.prompts}-{args.workers}"
    start = time.perf_counter()
    res = build(BuildConfig(out=out, datasets=[DATASET], local={DATASET: str(data)}, workers=args.workers,
                            prompts_per_task=args.prompts_per_task),
                compile_per_row=args.arm == "baseline")
    seconds = time.perf_counter() - start
    _stop_forkserver()
    rendered = sum(res.report["by_dataset"].values()) + res.report["skipped_total"]
    shutil.rmtree(out, ignore_errors=True)
    return {"arm": args.arm, "prompts": rendered, "seconds": seconds, "peak_mb": _peak_mb(), "workers": args.workers}


def input_file(work: str, prompts: int, source: str) -> Path:
    """The input of ``prompts`` prompts, written once (by this process, so that no arm's peak memory includes
    making it) and read by every arm of that size."""
    sys.path.insert(0, str(REPO))
    from builders.catalog import load_catalog

    path = Path(work) / f"input-{prompts}.{source}"
    if not path.exists():
        write_input(path, prompts, len(load_catalog()[DATASET].templates), source)
    return path


def _anonymous_kb(pid: int) -> tuple[int, int]:
    """(Anonymous, Pss_Anon) of a process, kB, from Linux's /proc/PID/smaps_rollup: its resident pages not
    backed by a file, counted whole and shared out among the processes that share them (forked workers share
    their parent's pages until they write them)."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Anonymous", "Pss_Anon"):
                fields[key] = int(value.split()[0])
    return fields["Anonymous"], fields["Pss_Anon"]


def sample_memory(proc: subprocess.Popen, every: float = 0.1) -> dict:
    """While ``proc`` runs, every ``every`` s (from this process, so the arm does not pay for it): the anonymous
    memory of it and its descendants (workers, the forkserver; psutil finds them), i.e. what the build holds
    itself, without the pages of files it has mapped (a Hub dataset's Arrow files), which count in
    ``ru_maxrss`` but the system can drop. Returns the peak of the largest process and the peak of the
    processes' proportional sum (``Pss_Anon``: a page shared by forked processes counted once)."""
    import psutil

    root, largest, total = psutil.Process(proc.pid), 0, 0
    while proc.poll() is None:
        whole, shared_out = [], []
        with contextlib.suppress(psutil.Error):  # the arm has just ended
            for pid in [root.pid, *(q.pid for q in root.children(recursive=True))]:
                with contextlib.suppress(OSError, KeyError):  # a process that has just ended
                    a, pss = _anonymous_kb(pid)
                    whole.append(a)
                    shared_out.append(pss)
        largest, total = max(largest, *whole, 0), max(total, sum(shared_out))
        time.sleep(every)
    return {"peak_anon_mb": largest / 1024, "peak_anon_mb_all": total / 1024}


def arm(work: str, name: str, prompts: int, workers: int, prompts_per_task: int, source: str = "jsonl") -> dict:
    data = input_file(work, prompts, "jsonl" if name == "ceiling" else source)
    cmd = [sys.executable, __file__, "--arm", name, "--work", work, "--prompts", str(prompts), "--input", str(data),
           "--workers", str(workers), "--prompts-per-task", str(prompts_per_task), "--source", source]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        memory = sample_memory(proc)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode:
        sys.exit(f"{name} arm ({prompts} prompts, {workers} workers) failed:\n{stderr[-3000:]}")
    result = {**json.loads(stdout.strip().splitlines()[-1]), **memory}
    result["rate"] = result["prompts"] / result["seconds"]
    print(f"  {name:9} {result['prompts']:>10,} prompts {workers} worker(s): {result['seconds']:8.1f} s "
          f"{result['rate']:>10,.0f} prompts/s  peak {result['peak_mb']:,.0f} MB (anonymous "
          f"{result['peak_anon_mb']:,.0f}, all processes {result['peak_anon_mb_all']:,.0f})", file=sys.stderr, flush=True)
    return result


def fastest(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["seconds"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, nargs="+", default=[1_000_000, 4_000_000])
    p.add_argument("--baseline-prompts", type=int, default=50_000)
    p.add_argument("--ceiling-prompts", type=int, default=300_000)
    p.add_argument("--prompts-per-task", type=int, default=200_000)
    p.add_argument("--repeat", type=int, default=1,
                   help="run every arm this many times, in rounds; the fastest run of each arm counts")
    p.add_argument("--source", choices=["jsonl", "hub"], default="jsonl",
                   help="the builds read a .jsonl export (default) or a Hub snapshot folder through load_dataset")
    p.add_argument("--arm", choices=["ceiling", "ours", "baseline"], help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--input", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.arm:
        args.prompts = args.prompts[0]
        print(json.dumps(run_ceiling(args) if args.arm == "ceiling" else run_build(args)))
        return
    if not TWEETS.exists():
        sys.exit(f"real data not found: {TWEETS}")
    sizes = sorted(set(args.prompts))
    with tempfile.TemporaryDirectory(prefix="bench_build_") as work:
        ceilings, baselines, ours = [], [], {n: {1: [], 2: []} for n in sizes}
        for _ in range(args.repeat):  # every arm once per round, so a slow spell of the machine hits them all
            ceilings.append(arm(work, "ceiling", args.ceiling_prompts, 1, args.prompts_per_task))
            baselines.append(arm(work, "baseline", min(args.baseline_prompts, sizes[0]), 1, args.prompts_per_task,
                                 args.source))
            for n in sizes:
                for w in (1, 2):
                    ours[n][w].append(arm(work, "ours", n, w, args.prompts_per_task, args.source))
        ceiling, baseline = fastest(ceilings), fastest(baselines)
        ours = {n: {w: fastest(runs) for w, runs in by.items()} for n, by in ours.items()}

    per_size = {}
    for n, by_workers in ours.items():
        one, two = by_workers[1], by_workers[2]
        per_size[n] = {
            "prompts": one["prompts"],
            "ours_prompts_per_s_per_worker": round(one["rate"], 1),
            "ours_2_workers_prompts_per_s": round(two["rate"], 1),
            "scaling_2_workers": round(two["rate"] / one["rate"], 3),
            "fraction_of_ceiling": round(one["rate"] / ceiling["rate"], 3),
            "ratio_vs_baseline": round(one["rate"] / baseline["rate"], 2),
            "peak_mb": round(one["peak_mb"], 1),
            "peak_mb_2_workers": round(two["peak_mb"], 1),
            "peak_anon_mb": round(one["peak_anon_mb"], 1),
            "peak_anon_mb_2_workers": round(two["peak_anon_mb"], 1),
            "peak_anon_mb_2_workers_all": round(two["peak_anon_mb_all"], 1),
            "seconds_1_worker": round(one["seconds"], 1),
            "seconds_2_workers": round(two["seconds"], 1),
        }
    largest = per_size[sizes[-1]]
    efficiency = largest["scaling_2_workers"] / 2  # measured per-worker efficiency with 2 workers
    projected = {f"{cores}_cores": round(PAPER_PROMPTS / (largest["ours_prompts_per_s_per_worker"] * cores * efficiency) / 60, 1)
                 for cores in (2, 16)}

    print(f"render ceiling (compiled Template.render, no I/O, 1 core): {ceiling['rate']:,.0f} prompts/s "
          f"({ceiling['prompts']:,} prompts); the build's looped renderer (render_many) alone: "
          f"{ceiling['render_many_prompts_per_s']:,.0f} prompts/s")
    print(f"PromptSource-style baseline (1 worker): {baseline['rate']:,.0f} prompts/s ({baseline['prompts']:,} prompts)")
    print(f"\n{'prompts':>10} {'1 worker/s':>11} {'2 workers/s':>12} {'scaling':>8} {'of ceiling':>11} "
          f"{'vs baseline':>12} {'peak MB':>8} {'peak MB (2w)':>13} {'anon MB':>8} {'anon MB (2w, all)':>18}")
    for n, r in per_size.items():
        print(f"{r['prompts']:>10,} {r['ours_prompts_per_s_per_worker']:>11,.0f} {r['ours_2_workers_prompts_per_s']:>12,.0f} "
              f"{r['scaling_2_workers']:>7.2f}x {r['fraction_of_ceiling']:>11.2f} {r['ratio_vs_baseline']:>11.1f}x "
              f"{r['peak_mb']:>8,.0f} {r['peak_mb_2_workers']:>13,.0f} {r['peak_anon_mb']:>8,.0f} "
              f"{r['peak_anon_mb_2_workers_all']:>18,.0f}")
    peak_ratio = round(largest["peak_mb"] / per_size[sizes[0]]["peak_mb"], 3) if len(sizes) > 1 else None
    anon_ratio = round(largest["peak_anon_mb"] / per_size[sizes[0]]["peak_anon_mb"], 3) if len(sizes) > 1 else None
    if peak_ratio is not None:
        print(f"peak memory at {sizes[-1]:,} vs {sizes[0]:,} prompts: {peak_ratio:.2f}x (anonymous: {anon_ratio:.2f}x)")
    print(f"projected for the paper's {PAPER_PROMPTS:,} prompts: {projected['2_cores']} min on 2 cores, "
          f"{projected['16_cores']} min on 16 (extrapolated from the {sizes[-1]:,}-prompt run)")
    print(json.dumps({
        "sizes": sizes,
        "repeat": args.repeat,
        "source": args.source,
        "render_ceiling_prompts_per_s": round(ceiling["rate"], 1),
        "render_ceiling_runs_prompts_per_s": [round(r["rate"], 1) for r in ceilings],
        "render_many_prompts_per_s": round(ceiling["render_many_prompts_per_s"], 1),
        "baseline_prompts_per_s_per_worker": round(baseline["rate"], 1),
        "baseline_runs_prompts_per_s": [round(r["rate"], 1) for r in baselines],
        "baseline_prompts": baseline["prompts"],
        **{key: {str(n): r[key] for n, r in per_size.items()}
           for key in ("ours_prompts_per_s_per_worker", "ours_2_workers_prompts_per_s", "scaling_2_workers",
                       "fraction_of_ceiling", "ratio_vs_baseline", "peak_mb", "peak_mb_2_workers", "peak_anon_mb",
                       "peak_anon_mb_2_workers", "peak_anon_mb_2_workers_all", "seconds_1_worker", "seconds_2_workers")},
        "peak_mb_ratio_largest_vs_smallest": peak_ratio,
        "peak_anon_mb_ratio_largest_vs_smallest": anon_ratio,
        "projected_minutes_paper_prompts": projected,
    }))


if __name__ == "__main__":
    main()
