"""Where a build's time goes: one stage at a time under cProfile, on the benchmark's input (real ASTD tweets
repeated, see ``bench_build.py``), 1 worker (every task runs in this process, so the profile sees it all).

    python tests/benchmarks/profile_build.py --prompts 1000000 [--top 12] [--save profile_dir] [--source hub]

Prints, per stage, wall and CPU seconds, microseconds of CPU per prompt, and the functions with the most own
time (``tottime``) with their call counts, and the process's peak memory when each stage ended (a stage whose
figure jumps is the one that needs the memory); ``--save`` keeps each stage's pstats file. CPU time and call counts
are the figures to compare on a shared machine (wall time depends on what else runs). ``--times-only``: the
same table without cProfile, whose overhead inflates the stages that make many Python calls.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))

from bench_build import DATASET, write_input  # noqa: E402


class StageProfiles:
    """One cProfile per stage; a stage that starts another (datatrove runs ``depends`` first) pauses the outer."""

    def __init__(self, profile: bool = True):
        self.profile = profile
        self.profiles: dict[str, cProfile.Profile] = {}
        self.times: dict[str, list[float]] = {}
        self.stack: list[str] = []
        self.peaks: dict[str, float] = {}  # the process's peak RSS (MB) when the stage ended (stages end in pipeline order)

    def enter(self, name: str) -> None:
        if self.stack:
            self._pause(self.stack[-1])
        self.stack.append(name)
        self._resume(name)

    def leave(self) -> None:
        name = self.stack.pop()
        self._pause(name)
        self.peaks[name] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if self.stack:
            self._resume(self.stack[-1])

    def _resume(self, name: str) -> None:
        if self.profile:
            self.profiles.setdefault(name, cProfile.Profile()).enable()
        t = self.times.setdefault(name, [0.0, 0.0, 0.0, 0.0])
        t[2], t[3] = time.perf_counter(), time.process_time()

    def _pause(self, name: str) -> None:
        if self.profile:
            self.profiles[name].disable()
        t = self.times[name]
        t[0] += time.perf_counter() - t[2]
        t[1] += time.process_time() - t[3]

    def wrap(self, name: str, fn):
        def run(*args, **kwargs):
            self.enter(name)
            try:
                return fn(*args, **kwargs)
            finally:
                self.leave()
        return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=1_000_000)
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--save", help="folder for one .pstats file per stage")
    p.add_argument("--workers", type=int, default=1,
                   help="with --times-only: wall time per stage with this many workers (their CPU is not counted)")
    p.add_argument("--times-only", action="store_true",
                   help="time the stages without cProfile (its overhead inflates call-heavy stages)")
    p.add_argument("--prompts-per-task", type=int, default=200_000)
    p.add_argument("--source", choices=["jsonl", "hub"], default="jsonl",
                   help="the build reads a .jsonl export (default) or a Hub snapshot folder through load_dataset")
    args = p.parse_args()

    import builders.pipeline as pipeline
    from builders.catalog import load_catalog

    prof = StageProfiles(profile=not args.times_only)
    real_make = pipeline.make_executor

    def make_executor(cfg, steps, tasks, logging_dir, **kwargs):
        ex = real_make(cfg, steps, tasks=tasks, logging_dir=logging_dir, **kwargs)
        ex.run = prof.wrap(Path(logging_dir).name, ex.run)
        return ex

    pipeline.make_executor = make_executor
    pipeline.finalize = prof.wrap("finalize (shards, leakage checks)", pipeline.finalize)
    pipeline.report_mod.build_report = prof.wrap("report", pipeline.report_mod.build_report)
    pipeline.card.write_prompts_card = prof.wrap("card", pipeline.card.write_prompts_card)
    with tempfile.TemporaryDirectory(prefix="profile_build_") as work:
        data = Path(work) / f"input.{args.source}"
        write_input(data, args.prompts, len(load_catalog()[DATASET].templates), args.source)
        cfg = pipeline.BuildConfig(out=Path(work) / "out", datasets=[DATASET], local={DATASET: str(data)},
                                   workers=args.workers if args.times_only else 1, prompts_per_task=args.prompts_per_task)
        start, cpu = time.perf_counter(), time.process_time()
        res = pipeline.build(cfg)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    prompts = sum(res.report["by_dataset"].values()) + res.report["skipped_total"]
    print(f"{prompts:,} prompts rendered ({res.report['total']:,} kept), 1 worker: {wall:.1f} s wall, {cpu:.1f} s CPU, "
          f"{cpu / prompts * 1e6:.1f} us CPU/prompt")
    print(f"\n{'stage':36} {'wall s':>8} {'CPU s':>8} {'us CPU/prompt':>14} {'share':>6} {'peak MB':>8}")
    total_cpu = sum(t[1] for t in prof.times.values())
    for name, t in prof.times.items():
        print(f"{name:36} {t[0]:>8.1f} {t[1]:>8.1f} {t[1] / prompts * 1e6:>14.2f} {t[1] / total_cpu:>6.0%} {prof.peaks[name]:>8,.0f}")
    print(f"{'outside the stages (prepare, ...)':36} {'':>8} {cpu - total_cpu:>8.1f}")
    for name, profile in prof.profiles.items():
        out = io.StringIO()
        stats = pstats.Stats(profile, stream=out)
        stats.sort_stats("tottime").print_stats(args.top)
        print(f"\n== {name}: top {args.top} functions by own time")
        lines = out.getvalue().splitlines()
        start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
        print("\n".join(line for line in lines[start:] if line.strip()))
        if args.save:
            Path(args.save).mkdir(parents=True, exist_ok=True)
            stats.dump_stats(str(Path(args.save) / f"{name.split(' ')[0]}.pstats"))


if __name__ == "__main__":
    main()
