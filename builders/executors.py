"""Executors for a stage: datatrove's local processes, Slurm job arrays or Ray tasks (never our own)."""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builders.steps import BuildError

EXECUTORS = ("local", "slurm", "ray")
LAZY_IMPORTS = ("pandas",)  # what the libraries the steps use import on first use (see _lazy_imports)


@dataclass
class ExecutorConfig:
    executor: str = "local"  # local | slurm | ray
    workers: int = 1
    slurm: dict[str, Any] = field(default_factory=dict)  # partition, time, cpus_per_task, ... for SlurmPipelineExecutor
    ray: dict[str, Any] = field(default_factory=dict)  # cpus_per_task, mem_per_cpu_gb, ... for RayPipelineExecutor

    def __post_init__(self):
        if self.executor not in EXECUTORS:
            raise ValueError(f"--executor must be one of {', '.join(EXECUTORS)}, not {self.executor!r}")


def make_executor(cfg: ExecutorConfig, pipeline: list, tasks: int, logging_dir: Path, depends=None, name: str = "",
                  local: bool = False, fork: bool = False):
    """A datatrove executor for one stage. ``local`` forces local processes (stages that read each source once,
    or decide for the whole build, run where the command runs). ``fork``: the stage's local workers are forked
    from this process, which has imported the steps already, instead of coming from the forkserver, whose start
    (a new interpreter importing every step module, 1-2 s) would hold up the stage; for a first stage only,
    before this process has run work of its own (on Linux; elsewhere the forkserver as usual). Call
    ``start_forkserver`` after it."""
    workers = max(1, min(cfg.workers, tasks))
    if cfg.executor == "slurm" and not local:
        from datatrove.executor import SlurmPipelineExecutor

        opts = {"time": "24:00:00", "partition": "cpu", "job_name": f"arabic-prompts-{name}", **cfg.slurm}
        return SlurmPipelineExecutor(pipeline, tasks=tasks, workers=cfg.workers if cfg.workers > 1 else -1,
                                     logging_dir=str(logging_dir), depends=depends, **opts)
    if cfg.executor == "ray" and not local:
        from datatrove.executor import RayPipelineExecutor

        return RayPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=str(logging_dir),
                                   depends=depends, **cfg.ray)
    from datatrove.executor import LocalPipelineExecutor

    start = "fork" if fork and sys.platform == "linux" else "forkserver"
    if workers > 1:
        _preload_step_modules(pipeline)
        if start == "fork":  # what the forkserver would preload and this process has not imported yet
            for module in _lazy_imports():
                importlib.import_module(module)
            gc.freeze()  # out of the collector's scans, here and in the forked workers (see frozen_gc)
    return LocalPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=str(logging_dir), depends=depends,
                                 start_method=start)


def _cache_loguru_lib_dirs() -> None:
    """datatrove sets its loguru sinks up again for every task (``add_task_logger``: two ``logger.add``), and
    loguru works out the interpreter's library folders for each sink it adds (``ExceptionFormatter._get_lib_dirs``,
    36 ``sysconfig`` look-ups, about 6 ms): some 12 ms a task, half a second of a 1M-prompt build with 1 worker.
    The folders do not change while a build runs, so they are worked out once per process. Only where loguru
    has that method (it is loguru's own); otherwise loguru goes on as it does."""
    try:
        from loguru._better_exceptions import ExceptionFormatter
    except ImportError:
        return
    lib_dirs = getattr(ExceptionFormatter, "_get_lib_dirs", None)
    if callable(lib_dirs) and not hasattr(lib_dirs, "cache_info"):
        ExceptionFormatter._get_lib_dirs = staticmethod(functools.cache(lambda: tuple(lib_dirs())))


_cache_loguru_lib_dirs()  # here, in the workers forked from this process, and in the forkserver (preloaded)


def start_forkserver(cfg: ExecutorConfig) -> None:
    """Start the forkserver of the later stages' local workers now, without waiting for it: it imports the steps
    (``_preload_step_modules``) while this process runs a one-task stage, instead of before the next stage's
    first task."""
    if cfg.workers > 1 and cfg.executor == "local":
        from multiprocess import forkserver

        forkserver.ensure_running()


def _preload_step_modules(pipeline: list) -> None:
    """datatrove's local workers come from a forkserver (its default start method): have the forkserver import
    the modules of the steps once, so each worker of each stage is forked with them loaded instead of importing
    pyarrow, datatrove, jinja2 and the builder again (seconds per worker per stage). Only takes effect for the
    forkserver's first start in this process, so every module of ``builders.steps`` is preloaded then; modules
    it lacks are still imported by the workers as usual."""
    import pkgutil

    import multiprocess

    import builders.steps

    # every step module of the builder, not only this stage's: the forkserver preloads only when it first
    # starts, and the later stages' workers come from the same forkserver
    ours = {f"builders.steps.{m.name}" for m in pkgutil.iter_modules(builders.steps.__path__)}
    modules = sorted({type(step).__module__ for step in pipeline} | ours | {"datatrove.executor.local", __name__})
    modules += _lazy_imports()
    # __main__: the default; builders.gc_frozen last: it freezes what the others created
    multiprocess.get_context("forkserver").set_forkserver_preload(["__main__", *modules, "builders.gc_frozen"])


def _lazy_imports() -> list[str]:
    """The ``LAZY_IMPORTS`` that are installed. pyarrow imports pandas the first time it makes a table from
    Python objects, which every stage's steps do: some 0.3 s in each worker of each stage, unless the worker
    comes with it imported."""
    return [m for m in LAZY_IMPORTS if importlib.util.find_spec(m) is not None]


def release_free_memory() -> bool:
    """Give the memory this process has freed back to the system (glibc's ``malloc_trim``: free pages inside
    the heap, which the heap keeps otherwise). After a stage that ran here (ingest and split assignment with
    1 worker), the millions of small objects it freed leave pages the next stages' Arrow buffers cannot use:
    without this, the build's peak grew with the size of its ingest. False where there is no glibc."""
    import ctypes

    try:
        return bool(ctypes.CDLL(None).malloc_trim(0))
    except (OSError, AttributeError):
        return False


@contextlib.contextmanager
def frozen_gc():
    """The objects alive now (modules, catalog, templates) left out of the garbage collector's scans while the
    stages run in this process (``gc.freeze``; workers forked from the forkserver get the same from
    ``builders.gc_frozen``), put back afterwards."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def check_complete(executor, stage: str) -> None:
    missing = executor.get_incomplete_ranks(range(executor.world_size))
    if missing:
        raise BuildError(
            f"stage '{stage}': {len(missing)} task(s) did not finish (ranks {missing[:10]}); "
            f"see {executor.logging_dir.path}/logs and run the same command again to resume"
        )


def slurm_done(logging_dir: Path, tasks: int) -> bool:
    """True when a Slurm stage's completion markers cover all its tasks (then the folder can be finalized)."""
    done = Path(logging_dir) / "completions"
    return done.exists() and len(list(done.iterdir())) >= tasks
