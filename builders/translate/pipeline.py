"""The translated-prompts build: English prompt collections -> segments -> Opus-MT -> CometKiwi -> a Hub folder.

Stages (datatrove pipelines of the steps in ``builders.translate.steps``, on the builder's executors):

0. english    English prompt rows (``builders.translate.english``: PromptSource entries through the builder
              itself, xP3, Super-NaturalInstructions), then a plan of row ranges
1. translate  ``EnglishRowsReader -> TranslatePrompts -> RowWriter -> PairBuckets`` (one task per range: MT
              workers); the (segment, translation) pairs go to hash buckets
2. score      ``ScoreBuckets`` (one task per bucket: QE workers): every unique pair scored once, in fixed chunks
3. merge      ``MergeCaches`` (one task): the workers' cache shards folded together
4. filter     ``RankParquetReader -> ScorePrompts -> RowWriter -> PromptSignatures``: scores from the cache,
              the all-segments threshold; kept rows get a config per collection and task, the others ``rejected``
5. find       the builder's ``FindDuplicates``: two English prompts can translate into one Arabic input, which
              must not sit in two splits
6. write      ``RankParquetReader -> DropDuplicates -> RowWriter`` into ``_build/staging/<config>/<split>/``

Then the builder's ``finalize`` places and checks the shards and writes the manifest (kind
``translated-prompts``); the run report, a ``qe_min`` histogram and the card follow. Translations and scores go
through persistent caches (``--cache-dir``): a second run translates and scores nothing done before. A killed
run started again skips the tasks datatrove recorded as finished and redoes the others; with the caches and
deterministic decoding the output is identical.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.pipeline.writers import ParquetWriter

from builders import __version__
from builders.executors import ExecutorConfig, check_complete, make_executor, slurm_done
from builders.finalize import MARKER, WORK, check_output_folder, finalize, mark_ours
from builders.schema import PROMPT_SCHEMA, REJECT_SCHEMA, TRANSLATED, TRANSLATED_SCHEMA, extend
from builders.steps import BuildError
from builders.steps.dedup import DropDuplicates, FindDuplicates, PromptSignatures
from builders.steps.rejects import reject_adapter
from builders.steps.write import RankParquetReader, RowWriter
from builders.translate import DEFAULT_MT_MODEL, DEFAULT_QE_MODEL
from builders.translate.cache import SegmentCache
from builders.translate.english import EnglishSources, english_files, set_aside_counts
from builders.translate.steps import (
    REJECTED,
    EnglishRowsReader,
    MergeCaches,
    PairBuckets,
    ScoreBuckets,
    ScorePrompts,
    TranslatePrompts,
)

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
# what the translate stage writes: the English prompt row plus its translation
TRANSLATED_WORK_SCHEMA = extend(PROMPT_SCHEMA, [
    ("source_collection", pa.string()), ("inputs_ar", pa.string()), ("targets_ar", pa.string()),
    ("answer_choices_ar", pa.list_(pa.string())), ("segments_en", pa.list_(pa.string())),
    ("segments_ar", pa.list_(pa.string())), ("mt_model", pa.string()),
])
SCORED_WORK_SCHEMA = extend(TRANSLATED_SCHEMA, [("config", pa.string())])  # what the score stage writes


def default_cache_dir() -> str:
    base = os.environ.get("ARABIC_PROMPTS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "arabic-prompts")
    return os.path.join(base, "translate")


@dataclass
class TranslateConfig:
    out: Path
    sources: EnglishSources
    mt_model: str = DEFAULT_MT_MODEL
    mt_backend: str = "transformers"  # transformers | ctranslate2
    qe_model: str = DEFAULT_QE_MODEL
    qe_encoder: str | None = None
    threshold: float = 0.7
    device: str = "cpu"
    workers: int = 1
    executor: str = "local"
    slurm: dict[str, Any] = field(default_factory=dict)
    ray: dict[str, Any] = field(default_factory=dict)
    cache_dir: str = field(default_factory=default_cache_dir)
    prompts_per_task: int = 20_000
    batch_size: int = 512  # prompts whose segments are translated / scored together
    beam_size: int = 4
    max_length: int = 256
    mt_precision: str | None = None  # transformers: float32/float16/bfloat16; ctranslate2: int8/float16/...
    qe_batch_size: int = 16
    qe_precision: str = "float32"
    corrections: str | None = None  # review-import's file; default OUT/corrections.jsonl

    def __post_init__(self):
        self.out = Path(self.out)
        self.executors = ExecutorConfig(self.executor, self.workers, self.slurm, self.ray)
        self.corrections = self.corrections or str(self.out / "corrections.jsonl")

    def mt_spec(self) -> dict:
        return {"model": self.mt_model, "backend": self.mt_backend, "device": self.device,
                "precision": self.mt_precision, "decode": {"beam_size": self.beam_size, "max_length": self.max_length}}

    def qe_spec(self) -> dict:
        return {"model": self.qe_model, "device": self.device, "encoder": self.qe_encoder,
                "batch_size": self.qe_batch_size, "precision": self.qe_precision}


@dataclass
class TranslateResult:
    out: Path
    report: dict
    manifest: dict


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def plan(files: dict[str, list[Path]], prompts_per_task: int) -> list[dict]:
    units = []
    for collection, paths in sorted(files.items()):
        for path in paths:
            n = pq.ParquetFile(path).metadata.num_rows
            units += [{"collection": collection, "file": str(path), "start": s, "end": min(n, s + prompts_per_task)}
                      for s in range(0, n, prompts_per_task)]
    return units


def _fingerprint(cfg: TranslateConfig, units: list[dict], qe: dict) -> str:
    corrections = Path(cfg.corrections)
    parts = {"version": __version__, "mt": cfg.mt_spec(), "qe": qe, "threshold": cfg.threshold,
             "units": [[u["collection"], _file_digest(Path(u["file"])), u["start"], u["end"]] for u in units],
             "corrections": _file_digest(corrections) if corrections.exists() else None, "batch": cfg.batch_size}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def run_stages(cfg: TranslateConfig, work: Path, units: list[dict], qe: dict) -> None:
    logs, ex = work / "logs", cfg.executors
    plan_path, buckets = str(work / "plan.json"), len(units)
    translate = make_executor(ex, [
        EnglishRowsReader(plan_path, "translate"),
        TranslatePrompts(cfg.mt_spec(), cfg.cache_dir, cfg.batch_size),
        RowWriter(str(work / "translated"), TRANSLATED_WORK_SCHEMA, output_filename="${rank}.parquet"),
        PairBuckets(str(work / "pairs"), buckets),
    ], tasks=len(units), logging_dir=logs / "1-translate", name="translate")
    score = make_executor(ex, [ScoreBuckets(qe, cfg.cache_dir, str(work / "pairs"))],
                          tasks=buckets, logging_dir=logs / "2-score", depends=translate, name="score")
    merge = make_executor(ex, [MergeCaches(cfg.cache_dir)], tasks=1, logging_dir=logs / "3-merge", depends=score,
                          name="merge")
    filt = make_executor(ex, [
        RankParquetReader(str(work / "translated"), text_key="inputs", id_key="id"),
        ScorePrompts(qe["identity"], cfg.qe_model, cfg.cache_dir, cfg.threshold, cfg.corrections),
        RowWriter(str(work / "scored"), SCORED_WORK_SCHEMA, output_filename="${rank}.parquet"),
        PromptSignatures(str(work / "dedup" / "sigs")),
    ], tasks=len(units), logging_dir=logs / "4-filter", depends=merge, name="filter")
    find = make_executor(ex, [FindDuplicates(str(work / "dedup" / "sigs"), str(work / "dedup" / "dups"))],
                         tasks=1, logging_dir=logs / "5-find", depends=filt, name="find")
    write = make_executor(ex, [
        RankParquetReader(str(work / "scored"), text_key="inputs", id_key="id"),
        DropDuplicates(str(work / "dedup" / "dups"),
                       exclusion_writer=ParquetWriter(str(work / "rejected" / "duplicates"),
                                                      adapter=reject_adapter("duplicate"), schema=REJECT_SCHEMA,
                                                      max_file_size=-1)),
        RowWriter(str(work / "staging"), TRANSLATED_SCHEMA, output_filename="${config}/${split}/${rank}.parquet"),
    ], tasks=len(units), logging_dir=logs / "6-write", depends=find, name="write")
    write.run()
    if cfg.executor != "slurm":
        for stage, name in ((translate, "translate"), (score, "score"), (merge, "merge"), (filt, "filter"),
                            (find, "find"), (write, "write")):
            check_complete(stage, name)


def _stats(logs: Path) -> dict:
    """The steps' counters summed over a stage's tasks (datatrove's stats.json per stage)."""
    total: dict[str, float] = {}
    path = logs / "stats.json"
    if not path.exists():
        return total
    for step in json.loads(path.read_text()):
        for key, value in (step.get("stats") or {}).items():
            n = value.get("total", value) if isinstance(value, dict) else value
            name = str(step.get("name", "")).split(": ", 1)[-1]  # "🌐 - TRANSLATE: translate" -> "translate"
            if isinstance(n, (int, float)):
                total[f"{name}/{key}"] = total.get(f"{name}/{key}", 0) + n
    return total


def build_report(out: Path, work: Path, files: dict, cfg: TranslateConfig) -> dict:
    rows = pq.read_table([out / f for splits in files.values() for fs in splits.values() for f in fs],
                         columns=["source_collection", "dataset_name", "qe_min", "reject_reason", "segments_en"]
                         ) if files else None
    recs = rows.to_pylist() if rows is not None else []
    unique = {hashlib.blake2b(s.encode(), digest_size=8).digest() for r in recs for s in r["segments_en"]}
    per_source: dict[str, dict[str, int]] = {}
    reasons: dict[str, int] = {}
    for r in recs:
        key = f"{r['source_collection']}/{r['dataset_name']}"
        d = per_source.setdefault(key, {"kept": 0, "rejected": 0})
        d["rejected" if r["reject_reason"] else "kept"] += 1
        if r["reject_reason"]:
            reasons[r["reject_reason"]] = reasons.get(r["reject_reason"], 0) + 1
    scored = [r["qe_min"] for r in recs if r["qe_min"] is not None]
    stats = {**_stats(work / "logs" / "1-translate"), **_stats(work / "logs" / "2-score"),
             **_stats(work / "logs" / "6-write")}
    return {
        "prompts": len(recs),
        "kept": sum(d["kept"] for d in per_source.values()),
        "rejected": sum(d["rejected"] for d in per_source.values()),
        "rejected_by_reason": dict(sorted(reasons.items())),
        "duplicates_dropped": int(stats.get("drop duplicates/dropped", 0)),
        # English rows that gave no prompt to translate (kept in _build/english/<collection>-rejected.parquet)
        "english_set_aside": set_aside_counts(work),
        "segments": int(stats.get("translate/segments", sum(len(r["segments_en"]) for r in recs))),
        "unique_segments": len(unique),
        "mt_cache": {"hits": int(stats.get("translate/mt_cache_hits", 0)),
                     "misses": int(stats.get("translate/mt_cache_misses", 0))},
        "qe_cache": {"hits": int(stats.get("score/qe_cache_hits", 0)),
                     "misses": int(stats.get("score/qe_cache_misses", 0))},
        "threshold": cfg.threshold,
        "kept_fraction_at": {f"{t:.1f}": (sum(1 for x in scored if x >= t) / len(scored) if scored else None)
                             for t in THRESHOLDS},
        "qe_min_histogram": _histogram(scored),
        "per_source": dict(sorted(per_source.items())),
        "mt_model": cfg.mt_model, "mt_backend": cfg.mt_backend, "qe_model": cfg.qe_model,
    }


def _histogram(values: list[float], bins: int = 20) -> dict:
    if not values:
        return {"edges": [], "counts": []}
    lo, hi = min(min(values), 0.0), max(max(values), 1.0)
    width = (hi - lo) / bins
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - lo) / width))] += 1
    return {"edges": [lo + i * width for i in range(bins + 1)], "counts": counts}


def plot_histogram(rep: dict, path: Path) -> Path | None:
    """``qe_min`` of every scored prompt, with the threshold: where a person would rather look than read."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    h = rep["qe_min_histogram"]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    if h["counts"]:
        edges = h["edges"]
        ax.bar(edges[:-1], h["counts"], width=edges[1] - edges[0], align="edge", color="#4c72b0", edgecolor="white")
    ax.axvline(rep["threshold"], color="#c44e52", linestyle="--", label=f"threshold {rep['threshold']}")
    ax.set_xlabel("qe_min (lowest CometKiwi score among a prompt's segments)")
    ax.set_ylabel("prompts")
    ax.set_title(f"{rep['kept']:,} kept, {rep['rejected']:,} rejected of {rep['prompts']:,} prompts")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def qe_spec(cfg: TranslateConfig) -> dict:
    """The QE settings plus the model's cache identity (resolved once here, not in every task)."""
    from builders.translate.models import resolve
    from builders.translate.qe import QE_ALLOW, qe_identity

    return {**cfg.qe_spec(), "identity": qe_identity(resolve(cfg.qe_model, allow_patterns=QE_ALLOW), cfg.qe_precision)}


def prepare(cfg: TranslateConfig) -> tuple[Path, list[dict], str, dict]:
    check_output_folder(cfg.out)
    work = cfg.out / WORK
    work.mkdir(parents=True, exist_ok=True)
    mark_ours(cfg.out, "pending")
    files = english_files(cfg.sources, work, cfg.workers)
    units = plan(files, cfg.prompts_per_task)
    if not units:
        raise BuildError("no English prompts to translate")
    qe = qe_spec(cfg)
    fingerprint = _fingerprint(cfg, units, qe)
    stamp = work / "fingerprint"
    if stamp.exists() and stamp.read_text() != fingerprint and (cfg.out / MARKER).exists():
        for name in ("logs", "translated", "pairs", "scored", "dedup", "rejected", "staging"):  # different inputs: earlier stages cannot be resumed
            shutil.rmtree(work / name, ignore_errors=True)
    mark_ours(cfg.out, fingerprint)
    stamp.write_text(fingerprint)
    (work / "plan.json").write_text(json.dumps({"units": units}))
    return work, units, fingerprint, qe


def finalize_run(cfg: TranslateConfig, work: Path, fingerprint: str) -> TranslateResult:
    from builders import card

    manifest = {"fingerprint": fingerprint, "mt_model": cfg.mt_model, "mt_backend": cfg.mt_backend,
                "qe_model": cfg.qe_model, "threshold": cfg.threshold,
                "sources": {"promptsource": cfg.sources.promptsource, "xp3": cfg.sources.xp3,
                            "natural_instructions": cfg.sources.natural_instructions}}
    # a rejected row and a kept row of one source text share their split, so the leakage check holds as is
    done = finalize(cfg.out, work / "staging", kind=TRANSLATED, schema=TRANSLATED_SCHEMA, manifest=manifest)
    rep = build_report(cfg.out, work, done.files, cfg)
    (cfg.out / "translate_report.json").write_text(json.dumps(rep, ensure_ascii=False, indent=1), encoding="utf-8")
    plot_histogram(rep, cfg.out / "qe_min_histogram.png")
    kept_files = {k: v for k, v in done.files.items() if k != REJECTED}
    # the default config has the kept rows only, in their splits; `rejected` is a config of its own
    data = card.card_data(cfg.out, done.files, TRANSLATED_SCHEMA, licenses=sorted(_licenses(cfg.out, done.files)),
                          task_categories=["text-generation", "translation"], pretty_name="Arabic Prompts (translated)",
                          languages=["ar", "en"], tags=["instruction-tuning", "prompts", "machine-translated", "arabic"],
                          total=rep["kept"], default_configs=sorted(kept_files))
    card.write_card(cfg.out, data, "translated_prompts.md.j2", report=rep, configs=sorted(kept_files),
                    files=done.files, manifest=done.manifest, thresholds=THRESHOLDS)
    return TranslateResult(cfg.out, rep, done.manifest)


def _licenses(out: Path, files: dict) -> set[str]:
    paths = [out / f for splits in files.values() for fs in splits.values() for f in fs]
    return set(pq.read_table(paths, columns=["license"]).column("license").to_pylist()) if paths else {"other"}


def translate(cfg: TranslateConfig) -> TranslateResult:
    """Every stage, then the folder. Run again after a kill: finished tasks are skipped."""
    for kind in ("mt", "qe"):  # fold what earlier (possibly killed) workers left in their cache shards
        SegmentCache(Path(cfg.cache_dir) / kind).merge()
    work, units, fingerprint, qe = prepare(cfg)
    run_stages(cfg, work, units, qe)
    if cfg.executor == "slurm" and not slurm_done(work / "logs" / "6-write", len(units)):
        raise BuildError(f"Slurm jobs submitted (logs in {work / 'logs'}); when they have finished, run the same "
                         f"command again to finalize {cfg.out}")
    for kind in ("mt", "qe"):
        SegmentCache(Path(cfg.cache_dir) / kind).merge()
    return finalize_run(cfg, work, fingerprint)
