"""``arabic-prompts mix``: a training mixture sampled from built prompt datasets (native and translated), leak-free
by construction and by check, written as a dataset like the others (the builder's RowWriter, finalize, card,
validate and publish).

1. **held out**: every input's test split (every config) and every benchmark (rows of ``eval_only`` catalog
   entries in any split; ``--benchmark`` folders): their source_ids and normalised inputs, and their text for
   the 13-gram contamination report;
2. **candidates**: the train and validation rows of every input, minus (each counted by reason)
   rows of eval_only entries, rows whose source_id or normalised input is held out, train rows whose source_id
   is validation in any input (one split per text in the mixture too), and row ids already taken;
3. **allocation**: per split, the size is divided between native and translated rows (``--translated-fraction``;
   pooled when not given), then over tasks by water-filling (the same share each, at most ``--cap-per-task``,
   what small tasks cannot use going to the others: builders.training.sampling.allocate);
4. **selection**: in each (split, origin, task) the rows with the smallest seeded hashes of their ids;
5. **write**: the selected rows through datatrove (``SelectedRows`` -> the builder's ``RowWriter``) into staging,
   then the checks on what was written -- no held-out source_id or input, no eval_only row, the contamination
   report under its threshold -- and only then ``finalize`` (shards, manifest, leakage checks), the recipe
   (``mixture_recipe.json``) and the card.

Memory: about 40 bytes per candidate row and 16 per held-out n-gram.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep

from builders.finalize import MARKER, WORK, check_output_folder, finalize, mark_ours, read_manifest
from builders.hashes import hash64, hex64
from builders.schema import MIXTURE, MIXTURE_SCHEMA, PROMPT_FIELDS, PROMPTS
from builders.steps import BuildError
from builders.training.contamination import MAX_DF, HeldOut, summary
from builders.training.sampling import allocate, id_hashes, seeded_keys, smallest
from builders.textnorm import normalize

RECIPE_FILE = "mixture_recipe.json"
REPORT_FILE = "contamination.json"
SPLITS = ("train", "validation")  # a mixture never has a test split
ORIGINS = ("native", "translated")
REASONS = ("eval_only", "test_source_id", "test_input", "validation_source_id", "duplicate_id")


@dataclass
class MixConfig:
    inputs: list[str]
    size: int
    out: Path
    seed: int = 0
    validation_size: int | None = None  # default: max(50, size // 100)
    cap_per_task: int | None = None
    translated_fraction: float | None = None
    benchmarks: list[str] = field(default_factory=list)
    max_contamination: float = 0.01  # of any held-out group's documents
    drop_contaminated: bool = False  # leave out the mixture rows that share a 13-gram with held-out text
    max_df: int = MAX_DF
    workers: int = 1
    executor: str = "local"
    shard_size_mb: int = 256

    def __post_init__(self):
        self.out = Path(self.out)
        if not self.inputs:
            raise ValueError("mix needs at least one --from DIR")
        if self.size <= 0:
            raise ValueError(f"--size must be > 0, not {self.size}")
        if self.translated_fraction is not None and not 0 <= self.translated_fraction <= 1:
            raise ValueError(f"--translated-fraction must be in [0, 1], not {self.translated_fraction}")
        if self.validation_size is None:
            self.validation_size = max(50, self.size // 100)


@dataclass
class MixInput:
    name: str
    path: Path
    kind: str
    origin: str
    manifest: dict
    files: dict[str, dict[str, list[Path]]]  # config -> split -> shards
    eval_only: set[str]


def resolve_input(spec: str, benchmark: bool = False) -> MixInput:
    """A dataset folder of ours, or a Hub dataset id ``ORG/NAME[@REVISION]`` (downloaded with its manifest)."""
    path = Path(spec).expanduser()
    if not path.exists() and re.fullmatch(r"[\w.-]+/[\w.-]+(@[\w./-]+)?", spec):
        from huggingface_hub import snapshot_download

        repo_id, _, revision = spec.partition("@")
        path = Path(snapshot_download(repo_id, repo_type="dataset", revision=revision or None))
    manifest = read_manifest(path)
    if manifest is None:
        raise BuildError(f"--from {spec}: not a dataset made by arabic-prompts (no build_manifest.json)")
    kind = manifest.get("kind", PROMPTS)
    if kind == PROMPTS:
        origin = "native"
    elif kind.startswith("translated"):
        origin = "translated"
    elif benchmark:
        origin = "native"
    else:
        raise BuildError(f"--from {spec}: a {kind!r} dataset; mix samples prompt datasets (built or translated). "
                         "Train on other datasets (dialogues) by listing them in the recipe's `datasets`")
    files = {c: {s: [path / f for f in fs] for s, fs in splits.items()} for c, splits in manifest["files"].items()}
    for shards in (fs for splits in files.values() for fs in splits.values()):
        for f in shards:
            missing = sorted(set(PROMPT_FIELDS) - set(pq.read_schema(f).names))
            if missing:
                raise BuildError(f"--from {spec}: {f.name} lacks the prompt columns {missing}")
    flagged = {s["name"] for s in manifest.get("sources", []) if s.get("eval_only")}
    return MixInput(name=spec, path=path, kind=kind, origin=origin, manifest=manifest, files=files,
                    eval_only=flagged)


def catalog_eval_only() -> set[str]:
    """Catalog entries flagged eval_only now (a build made before an entry was flagged still keeps it out). Read
    once per process while the catalog files are unchanged (parsing its YAML takes seconds)."""
    from builders.catalog import PACKAGE_DIR

    files = tuple((p.name, p.stat().st_mtime_ns) for p in sorted((PACKAGE_DIR / "catalog").glob("*.yaml")))
    return set(_catalog_eval_only(files))


@functools.lru_cache(maxsize=2)
def _catalog_eval_only(files: tuple) -> frozenset[str]:
    from builders.catalog import load_catalog

    return frozenset(name for name, e in load_catalog().items() if e.eval_only)


def _texts(table: pa.Table) -> list[str]:
    return [f"{i}\n{t}" for i, t in zip(table["inputs"].to_pylist(), table["targets"].to_pylist())]


@dataclass
class Held:
    source_ids: np.ndarray  # test and benchmark source texts (sorted, unique)
    inputs: np.ndarray  # their normalised inputs (hashes)
    validation_ids: np.ndarray  # source texts that are validation in some input
    index: HeldOut


def held_out(inputs: list[MixInput], benchmarks: list[MixInput], eval_only: set[str], max_df: int) -> Held:
    sids, texts, val = [], [], []
    index = HeldOut(max_df=max_df)
    for inp in inputs:
        for config, splits in sorted(inp.files.items()):
            for f in splits.get("test", []):
                t = pq.read_table(f, columns=["source_id", "inputs", "targets", "dataset_name"])
                sids.append(hex64(t["source_id"]))
                texts.append(hash64(normalize(t["inputs"])))
                index.add(f"{inp.name}/{config}", "test", t["source_id"].to_pylist(), _texts(t))
                _add_benchmark_rows(index, t, eval_only)
            for f in splits.get("validation", []):
                val.append(hex64(pq.read_table(f, columns=["source_id"])["source_id"]))
    for bench in benchmarks:
        for config, splits in sorted(bench.files.items()):
            held = splits.get("test") or [f for fs in splits.values() for f in fs]
            for f in held:
                t = pq.read_table(f, columns=["source_id", "inputs", "targets"])
                sids.append(hex64(t["source_id"]))
                texts.append(hash64(normalize(t["inputs"])))
                index.add(f"benchmark {bench.name}/{config}", "benchmark", t["source_id"].to_pylist(), _texts(t))
    cat = lambda parts: np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.uint64)  # noqa: E731
    return Held(cat(sids), cat(texts), cat(val), index)


def _add_benchmark_rows(index: HeldOut, table: pa.Table, eval_only: set[str]) -> None:
    names = table["dataset_name"].to_pylist()
    rows = [i for i, n in enumerate(names) if n in eval_only]
    if rows:
        t = table.take(rows)
        for name in sorted(set(t["dataset_name"].to_pylist())):
            part = t.filter(pa.compute.equal(t["dataset_name"], name))
            index.add(f"benchmark {name}", "benchmark", part["source_id"].to_pylist(), _texts(part))


@dataclass
class Candidates:
    files: list[tuple[int, Path]]  # file index -> (input index, shard)
    file: np.ndarray
    row: np.ndarray
    split: np.ndarray  # index in SPLITS
    origin: np.ndarray  # index in ORIGINS
    task: np.ndarray  # index in tasks
    key: np.ndarray
    tasks: list[str]
    excluded: Counter


def candidates(inputs: list[MixInput], held: Held, eval_only: set[str], seed: int) -> Candidates:
    files, cols = [], {k: [] for k in ("file", "row", "split", "origin", "task", "key", "idh")}
    tasks: dict[str, int] = {}
    excluded: Counter = Counter()
    for n_in, inp in enumerate(inputs):
        for config, splits in sorted(inp.files.items()):
            for s, split in enumerate(SPLITS):
                for f in splits.get(split, []):
                    t = pq.read_table(f, columns=["id", "source_id", "inputs", "targets", "dataset_name", "task"])
                    names = np.array(t["dataset_name"].to_pylist(), dtype=object)
                    sid = hex64(t["source_id"])
                    reasons = [
                        ("eval_only", np.isin(names, list(eval_only)) if eval_only else np.zeros(len(t), bool)),
                        ("test_source_id", np.isin(sid, held.source_ids)),
                        ("test_input", np.isin(hash64(normalize(t["inputs"])), held.inputs)),
                        ("validation_source_id", np.isin(sid, held.validation_ids) if split == "train"
                         else np.zeros(len(t), bool)),
                    ]
                    keep = np.ones(len(t), bool)
                    for reason, mask in reasons:
                        excluded[reason] += int((keep & mask).sum())
                        keep &= ~mask
                    _add_benchmark_rows(held.index, t, eval_only)
                    rows = np.flatnonzero(keep)
                    files.append((n_in, f))
                    ids = t["id"].take(rows).to_pylist()
                    task_names = t["task"].to_pylist()
                    cols["file"].append(np.full(len(rows), len(files) - 1, np.int32))
                    cols["row"].append(rows.astype(np.int32))
                    cols["split"].append(np.full(len(rows), s, np.int8))
                    cols["origin"].append(np.full(len(rows), ORIGINS.index(inp.origin), np.int8))
                    cols["task"].append(np.array([tasks.setdefault(task_names[i], len(tasks)) for i in rows],
                                                 np.int32))
                    idh = id_hashes(ids)
                    cols["idh"].append(idh)
                    cols["key"].append(seeded_keys(idh, seed))
    arrays = {k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()}
    if len(arrays["idh"]):
        _, first = np.unique(arrays["idh"], return_index=True)  # the first input that has a row id keeps it
        unique = np.zeros(len(arrays["idh"]), bool)
        unique[first] = True
        excluded["duplicate_id"] += int((~unique).sum())
        arrays = {k: v[unique] for k, v in arrays.items()}
    return Candidates(files=files, file=arrays["file"].astype(np.int32), row=arrays["row"].astype(np.int32),
                      split=arrays["split"].astype(np.int8), origin=arrays["origin"].astype(np.int8),
                      task=arrays["task"].astype(np.int32), key=arrays["key"].astype(np.uint64),
                      tasks=sorted(tasks, key=tasks.get), excluded=excluded)


def plan(cand: Candidates, cfg: MixConfig) -> tuple[np.ndarray, dict]:
    """Indices of the selected candidates, and what was available and wanted per split/origin/task."""
    pooled = cfg.translated_fraction is None
    origin = np.zeros_like(cand.origin) if pooled else cand.origin
    n_tasks = len(cand.tasks)
    group = (cand.split.astype(np.int64) * len(ORIGINS) + origin) * max(1, n_tasks) + cand.task
    available_per_group = Counter(group.tolist())
    wanted: dict[int, int] = {}
    figures: dict = {"available": {}, "selected": {}}
    for s, split in enumerate(SPLITS):
        size = cfg.size if split == "train" else cfg.validation_size
        parts = [("any", 0, size)] if pooled else [
            ("translated", 1, round(size * cfg.translated_fraction)),
            ("native", 0, size - round(size * cfg.translated_fraction))]
        for label, o, n in parts:
            avail = {cand.tasks[t]: available_per_group.get((s * len(ORIGINS) + o) * max(1, n_tasks) + t, 0)
                     for t in range(n_tasks)}
            avail = {t: n_t for t, n_t in avail.items() if n_t}
            if split == "train" and not pooled and sum(avail.values()) < n:
                raise BuildError(f"--translated-fraction {cfg.translated_fraction}: {n} {label} training rows "
                                 f"wanted, {sum(avail.values())} available; change the fraction or --size")
            got = allocate(avail, n, cfg.cap_per_task)
            figures["available"].setdefault(split, {})[label] = avail
            figures["selected"].setdefault(split, {})[label] = {t: k for t, k in got.items() if k}
            for t, k in got.items():
                if k:
                    wanted[(s * len(ORIGINS) + o) * max(1, n_tasks) + cand.tasks.index(t)] = k
    picked = smallest(cand.key, group, wanted)
    return np.sort(picked), figures


class SelectedRows(PipelineStep):
    """Reads the selected rows of the input shards (a plan written by ``mix``) as documents for RowWriter:
    each rank takes every ``world_size``-th shard, rows in shard order, plus ``origin`` and ``input``."""

    name = "📋 selected rows"
    type = "📖 - READER"

    def __init__(self, plan_file: str):
        super().__init__()
        self.plan_file = plan_file

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        plan = json.loads(Path(self.plan_file).read_text(encoding="utf-8"))
        for item in plan["files"][rank::world_size]:
            table = pq.read_table(item["path"], columns=list(PROMPT_FIELDS)).take(item["rows"])
            for row in table.to_pylist():
                text, doc_id = row.pop("inputs"), row.pop("id")
                self.stat_update("rows")
                yield Document(text=text, id=doc_id, metadata={**row, "origin": item["origin"],
                                                               "input": item["input"]})


def _fingerprint(cfg: MixConfig, inputs: list[MixInput], benchmarks: list[MixInput]) -> str:
    blob = json.dumps({"cfg": {k: str(v) for k, v in asdict(cfg).items() if k not in ("out", "workers", "executor")},
                       "inputs": [(i.name, i.manifest.get("fingerprint"), i.kind) for i in inputs + benchmarks]},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def write_selected(cfg: MixConfig, cand: Candidates, picked: np.ndarray, inputs: list[MixInput], work: Path) -> Path:
    from builders.executors import ExecutorConfig, check_complete, make_executor
    from builders.steps.write import RowWriter

    by_file: dict[int, list[int]] = {}
    for f, r in zip(cand.file[picked].tolist(), cand.row[picked].tolist()):
        by_file.setdefault(f, []).append(r)
    items = [{"path": str(cand.files[f][1]), "input": inputs[cand.files[f][0]].name,
              "origin": inputs[cand.files[f][0]].origin, "rows": sorted(rows)} for f, rows in sorted(by_file.items())]
    plan_file = work / "plan.json"
    plan_file.write_text(json.dumps({"files": items}), encoding="utf-8")
    staging = work / "staging"
    shutil.rmtree(staging, ignore_errors=True)
    tasks = max(1, min(len(items), cfg.workers))
    executor = make_executor(ExecutorConfig(cfg.executor, cfg.workers), [
        SelectedRows(str(plan_file)),
        RowWriter(str(staging), MIXTURE_SCHEMA, output_filename="${task}/${split}/${rank}.parquet",
                  max_file_size=cfg.shard_size_mb * 2**20),
    ], tasks=tasks, logging_dir=work / "logs" / "mix-write", name="mix-write")
    executor.run()
    check_complete(executor, "mix-write")
    return staging


def check_written(staging: Path, held: Held, eval_only: set[str]) -> dict:
    """What was written, checked against the held-out sets again (independently of how rows were chosen)."""
    figures = {"rows": 0, "held_out_source_ids": 0, "held_out_inputs": 0, "eval_only_rows": 0, "test_split_rows": 0}
    for f in sorted(staging.rglob("*.parquet")):
        t = pq.read_table(f, columns=["source_id", "inputs", "dataset_name", "split"])
        figures["rows"] += len(t)
        figures["held_out_source_ids"] += int(np.isin(hex64(t["source_id"]), held.source_ids).sum())
        figures["held_out_inputs"] += int(np.isin(hash64(normalize(t["inputs"])), held.inputs).sum())
        figures["eval_only_rows"] += sum(n in eval_only for n in t["dataset_name"].to_pylist())
        figures["test_split_rows"] += sum(s not in SPLITS for s in t["split"].to_pylist())
    return figures


def scan_contamination(staging: Path, held: Held, threshold: float) -> dict:
    held.index.new_scan()
    overlapping, rows = [], 0
    for f in sorted(staging.rglob("*.parquet")):
        t = pq.read_table(f, columns=["id", "inputs", "targets"])
        rows += len(t)
        overlapping += held.index.scan(t["id"].to_pylist(), _texts(t))
    return held.index.report(threshold, rows, overlapping)


def drop_rows(staging: Path, ids: set[str]) -> int:
    """Remove the rows with these ids from the staged shards (the --drop-contaminated decontamination)."""
    dropped = 0
    for f in sorted(staging.rglob("*.parquet")):
        table = pq.read_table(f)
        keep = pa.array([i not in ids for i in table["id"].to_pylist()])
        if not pa.compute.all(keep).as_py():
            dropped += len(table) - pa.compute.sum(keep.cast(pa.int64())).as_py()
            kept = table.filter(keep)
            if len(kept):
                pq.write_table(kept, f)
            else:
                f.unlink()
    return dropped


def _counts(staging: Path) -> dict:
    c: dict[str, Counter] = {k: Counter() for k in ("by_task", "by_source", "by_template", "by_origin", "by_split")}
    per_split_task: dict[str, Counter] = {}
    for f in sorted(staging.rglob("*.parquet")):
        t = pq.read_table(f, columns=["task", "dataset_name", "template_name", "origin", "split"]).to_pydict()
        for task, ds, tpl, origin, split in zip(t["task"], t["dataset_name"], t["template_name"], t["origin"],
                                                t["split"]):
            per_split_task.setdefault(split, Counter())[task] += 1
            if split == "train":
                c["by_task"][task] += 1
                c["by_source"][ds] += 1
                c["by_template"][f"{ds}/{tpl}"] += 1
                c["by_origin"][origin] += 1
            c["by_split"][split] += 1
    out = {k: dict(sorted(v.items())) for k, v in c.items()}
    out["by_split_task"] = {s: dict(sorted(v.items())) for s, v in sorted(per_split_task.items())}
    return out


@dataclass
class MixResult:
    out: Path
    recipe: dict
    contamination: dict


def mix(cfg: MixConfig, log=print) -> MixResult:
    check_output_folder(cfg.out)
    inputs = [resolve_input(s) for s in cfg.inputs]
    benchmarks = [resolve_input(s, benchmark=True) for s in cfg.benchmarks]
    eval_only = catalog_eval_only().union(*(i.eval_only for i in inputs))
    fingerprint = _fingerprint(cfg, inputs, benchmarks)
    work = cfg.out / WORK
    if work.is_dir() and (cfg.out / MARKER).is_file():
        shutil.rmtree(work)  # an earlier run of ours (its marker says so): start afresh
    cfg.out.mkdir(parents=True, exist_ok=True)
    mark_ours(cfg.out, fingerprint)

    held = held_out(inputs, benchmarks, eval_only, cfg.max_df)
    cand = candidates(inputs, held, eval_only, cfg.seed)
    held.index.freeze()
    picked, figures = plan(cand, cfg)
    if not len(picked):
        raise BuildError("no row can go into the mixture (every candidate was held out or excluded)")
    staging = write_selected(cfg, cand, picked, inputs, work)

    checks = check_written(staging, held, eval_only)
    bad = {k: v for k, v in checks.items() if k != "rows" and v}
    if bad:
        raise BuildError(f"{cfg.out}: the selected rows fail the leak checks {bad} (a bug: please report it)")
    report = scan_contamination(staging, held, cfg.max_contamination)
    dropped = 0
    if cfg.drop_contaminated and report["mixture_rows_overlapping"]:
        log(summary(report))
        dropped = drop_rows(staging, set(report["mixture_overlapping_ids"]))
        log(f"left out the {dropped} mixture rows that share a 13-gram with held-out text; checking again")
        report = {**scan_contamination(staging, held, cfg.max_contamination), "dropped": report}
    (cfg.out / REPORT_FILE).write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    log(summary(report))
    if not report["passed"]:
        raise BuildError(f"contamination above {cfg.max_contamination:.2%} for {', '.join(report['failed'])}; "
                         f"see {cfg.out / REPORT_FILE} (rows sharing 13-grams with held-out text). Nothing was "
                         "written to data/. Raise --max-contamination only if these overlaps are expected")

    counts = _counts(staging)
    recipe = {
        "seed": cfg.seed, "size_requested": cfg.size, "size": counts["by_split"].get("train", 0),
        "validation_size_requested": cfg.validation_size, "validation_size": counts["by_split"].get("validation", 0),
        "cap_per_task": cfg.cap_per_task, "translated_fraction": cfg.translated_fraction,
        "inputs": [_describe(i) for i in inputs], "benchmarks": [_describe(b) for b in benchmarks],
        "eval_only_datasets": sorted(eval_only),
        "excluded": {**{r: cand.excluded.get(r, 0) for r in REASONS}, "contaminated": dropped},
        **figures, **counts, "checks": checks,
        "contamination": {k: report[k] for k in ("n", "max_df", "threshold", "passed", "mixture_rows_overlapping")}
        | {"max_fraction": max((g["fraction"] for g in report["groups"].values()), default=0.0)},
    }
    done = finalize(cfg.out, staging, kind=MIXTURE, schema=MIXTURE_SCHEMA,
                    manifest={"fingerprint": fingerprint, "mixture": recipe})
    (cfg.out / RECIPE_FILE).write_text(json.dumps(recipe, ensure_ascii=False, indent=1), encoding="utf-8")
    _write_card(cfg, done, recipe, report)
    return MixResult(cfg.out, recipe, report)


def _describe(inp: MixInput) -> dict:
    m = inp.manifest
    return {"name": inp.name, "path": str(inp.path), "kind": inp.kind, "origin": inp.origin,
            "fingerprint": m.get("fingerprint"), "tool_version": m.get("version"),
            "rows": m.get("counts", {}).get("by_config_split")}


def _write_card(cfg: MixConfig, done, recipe: dict, report: dict) -> Path:
    from builders.card import FAMILY_TO_HUB_TASK, card_data, write_card

    licenses, families = set(), set()
    for splits in done.files.values():
        for fs in splits.values():
            for f in fs:
                t = pq.read_table(cfg.out / f, columns=["license", "task_family"]).to_pydict()
                licenses.update(t["license"])
                families.update(t["task_family"])
    total = done.checks["rows"]
    data = card_data(cfg.out, done.files, MIXTURE_SCHEMA, licenses=sorted(licenses),
                     task_categories=[FAMILY_TO_HUB_TASK.get(f, "text-generation") for f in families]
                     + ["text-generation"], pretty_name=f"Arabic Prompts training mixture ({recipe['size']:,} rows)",
                     languages=["ar"], tags=["instruction-tuning", "prompts", "arabic", "mixture"], total=total)
    groups = sorted(report["groups"].items(), key=lambda kv: -kv[1]["fraction"])
    return write_card(cfg.out, data, "mixture.md.j2", recipe=recipe, contamination=report, groups=groups,
                      leakage=done.checks, total=total)
