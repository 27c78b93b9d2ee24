"""The translation pipeline's datatrove steps, one job each:

- ``EnglishRowsReader``: the rows ``[start, end)`` of one English prompt file (this rank's plan unit), with a
  progress bar;
- ``TranslatePrompts``: segment inputs, targets and answer choices (``segment``), translate every unique segment
  of a batch of prompts through the cached translator, put the prompts back together;
- ``ScorePrompts``: CometKiwi on every (segment, translation) pair through the cached scorer, ``qe_min``, the
  all-segments threshold, human corrections; a prompt that fails is routed to the ``rejected`` config with the
  failing segment and its score;

Models are loaded once per worker process (``_models``) and reused by every task that process runs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep
from tqdm.auto import tqdm

from builders.translate.review import read_corrections
from builders.translate.segment import reassemble, segment, segment_target, segments_of

REJECTED = "rejected"
_models: dict[str, object] = {}


def _cached(key: str, make):
    if key not in _models:
        _models[key] = make()
    return _models[key]


def config_name(collection: str, task: str) -> str:
    """The output config of a kept row: one per source collection and task (never starting with 'r', so the
    card's default config can leave ``rejected`` out)."""
    return f"{collection}-{task}"


class EnglishRowsReader(PipelineStep):
    name = "english rows"
    type = "📖 - READER"

    def __init__(self, plan: str, stage: str):
        super().__init__()
        self.plan, self.stage = plan, stage

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        unit = json.loads(Path(self.plan).read_text())["units"][rank]
        table = pq.read_table(unit["file"]).slice(unit["start"], unit["end"] - unit["start"])
        rows = table.to_pylist()
        self.stat_update("prompts", value=len(rows))
        for row in tqdm(rows, desc=f"{self.stage} {unit['collection']} [{rank}]", unit=" prompts", mininterval=2):
            meta = {k: v for k, v in row.items() if k not in ("id", "inputs")}
            meta["source_collection"] = unit["collection"]
            yield Document(text=row["inputs"], id=row["id"], metadata=meta)


def _batches(data, size: int):
    batch: list[Document] = []
    for doc in data:
        batch.append(doc)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class TranslatePrompts(PipelineStep):
    """English prompt documents -> the same documents with Arabic ``inputs_ar`` / ``targets_ar`` / choices and
    their segments, ``batch_size`` prompts at a time (their unique segments are translated together)."""

    name = "translate"
    type = "🌐 - TRANSLATE"

    def __init__(self, mt: dict, cache_dir: str, batch_size: int = 512):
        super().__init__()
        self.mt, self.cache_dir, self.batch_size = mt, cache_dir, batch_size

    def translator(self):
        from builders.translate.cache import SegmentCache
        from builders.translate.mt import CachedTranslator, DecodeOptions, load_translator

        def make():
            o = self.mt
            tr = load_translator(o["model"], o["backend"], device=o["device"], options=DecodeOptions(**o["decode"]),
                                 precision=o.get("precision"), threads=o.get("threads", 0))
            return CachedTranslator(tr, SegmentCache(Path(self.cache_dir) / "mt"))

        return _cached(json.dumps(self.mt, sort_keys=True), make)

    def run(self, data, rank: int = 0, world_size: int = 1):
        tr = self.translator()
        hits0, misses0 = tr.cache.stats["hits"], tr.cache.stats["misses"]
        for batch in _batches(data, self.batch_size):
            parsed = []
            for doc in batch:
                meta = doc.metadata
                choices = list(meta.get("answer_choices") or [])
                pieces_in = segment(doc.text, choices)
                pieces_tg = segment_target(meta["targets"], choices)
                pieces_ch = [segment_target(c, choices) for c in choices]
                parsed.append((pieces_in, pieces_tg, pieces_ch))
            todo = [s for p_in, p_tg, p_ch in parsed for pieces in (p_in, p_tg, *p_ch) for s in segments_of(pieces)]
            unique = list(dict.fromkeys(todo))
            table = dict(zip(unique, tr.translate(unique)))
            self.stat_update("segments", value=len(todo))
            self.stat_update("unique_segments_in_batches", value=len(unique))
            for doc, (p_in, p_tg, p_ch) in zip(batch, parsed):
                meta = doc.metadata
                segs = list(dict.fromkeys(s for pieces in (p_in, p_tg, *p_ch) for s in segments_of(pieces)))
                meta.update(inputs_ar=reassemble(p_in, table), targets_ar=reassemble(p_tg, table),
                            answer_choices_ar=[reassemble(p, table) for p in p_ch],
                            segments_en=segs, segments_ar=[table[s] for s in segs], mt_model=tr.model_id)
                yield doc
        self.stat_update("mt_cache_hits", value=tr.cache.stats["hits"] - hits0)
        self.stat_update("mt_cache_misses", value=tr.cache.stats["misses"] - misses0)


def pair_bucket(src: str, mt: str, buckets: int) -> int:
    return int(hashlib.blake2b(f"{src}\x1f{mt}".encode(), digest_size=8).hexdigest(), 16) % buckets


class PairBuckets(PipelineStep):
    """End of the translate stage: this rank's (segment, translation) pairs, split by a hash into ``buckets``
    files (``<folder>/b<bucket>/<rank>.jsonl``), so that the score stage scores each unique pair exactly once."""

    name = "pair buckets"
    type = "🪣 - BUCKETS"

    def __init__(self, folder: str, buckets: int):
        super().__init__()
        self.folder, self.buckets = folder, buckets

    def run(self, data, rank: int = 0, world_size: int = 1):
        buckets: dict[int, set[tuple[str, str]]] = {}
        for doc in data:
            for src, mt in zip(doc.metadata["segments_en"], doc.metadata["segments_ar"]):
                if mt.strip():
                    buckets.setdefault(pair_bucket(src, mt, self.buckets), set()).add((src, mt))
            yield doc
        for b, pairs in buckets.items():
            path = Path(self.folder) / f"b{b:05d}" / f"{rank:05d}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in sorted(pairs)), encoding="utf-8")
            tmp.replace(path)


class ScoreBuckets(PipelineStep):
    """One bucket of unique pairs (rank = bucket), scored in fixed chunks of the sorted pairs. A chunk is scored
    as a whole unless the cache has all of it, so every pair's score comes from the same batch whether the run
    went through in one go or was killed and resumed (scores depend on batch composition at float precision)."""

    name = "score"
    type = "🎯 - QE"

    def __init__(self, qe: dict, cache_dir: str, folder: str, chunk: int = 256):
        super().__init__()
        self.qe, self.cache_dir, self.folder, self.chunk = qe, cache_dir, folder, chunk

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        from builders.translate.cache import SegmentCache, cache_key
        from builders.translate.qe import QEOptions, load_qe

        pairs: set[tuple[str, str]] = set()
        for f in sorted((Path(self.folder) / f"b{rank:05d}").glob("*.jsonl")):
            pairs.update(tuple(json.loads(line)) for line in f.read_text(encoding="utf-8").splitlines() if line)
        ordered = sorted(pairs, key=lambda p: (len(p[0]) + len(p[1]), p))
        cache = SegmentCache(Path(self.cache_dir) / "qe")
        model = None
        o = self.qe
        for i in tqdm(range(0, len(ordered), self.chunk), desc=f"score [{rank}]", unit=" chunks", mininterval=2):
            chunk = ordered[i:i + self.chunk]
            keys = [cache_key("qe", o["identity"], s, t) for s, t in chunk]
            if len(cache.get_many(keys)) == len(keys):
                continue
            if model is None:
                model = _cached(json.dumps(o, sort_keys=True), lambda: load_qe(
                    o["model"], device=o["device"], encoder=o.get("encoder"),
                    options=QEOptions(batch_size=o["batch_size"], precision=o["precision"])))
                if model.identity != o["identity"]:
                    raise RuntimeError(f"QE model identity changed: {model.identity} != {o['identity']}")
            scores = model.score([p[0] for p in chunk], [p[1] for p in chunk])
            cache.put_many(dict(zip(keys, scores)))
            self.stat_update("pairs_scored", value=len(chunk))
        self.stat_update("pairs", value=len(ordered))
        self.stat_update("qe_cache_hits", value=cache.stats["hits"])
        self.stat_update("qe_cache_misses", value=cache.stats["misses"])
        cache.close()
        return
        yield


class MergeCaches(PipelineStep):
    """One task between stages: fold the workers' cache shards into the merged stores."""

    name = "merge caches"
    type = "🗃️ - CACHE"

    def __init__(self, cache_dir: str):
        super().__init__()
        self.cache_dir = cache_dir

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        from builders.translate.cache import SegmentCache

        for kind in ("mt", "qe"):
            self.stat_update(f"{kind}_merged", value=SegmentCache(Path(self.cache_dir) / kind).merge())
        return
        yield


class ScorePrompts(PipelineStep):
    """Every segment pair's score from the merged QE cache, ``qe_min``, the all-segments threshold and human
    corrections; turns the document into the output row (kept, or ``rejected`` with why)."""

    name = "filter"
    type = "🎯 - QE"

    def __init__(self, qe_identity: str, qe_model: str, cache_dir: str, threshold: float,
                 corrections: str | None = None, batch_size: int = 2048):
        super().__init__()
        self.qe_identity, self.qe_model, self.cache_dir, self.threshold = qe_identity, qe_model, cache_dir, threshold
        self.corrections, self.batch_size = corrections, batch_size

    def run(self, data, rank: int = 0, world_size: int = 1):
        from builders.translate.cache import SegmentCache, cache_key

        cache = SegmentCache(Path(self.cache_dir) / "qe")
        corrections = read_corrections(self.corrections)
        for batch in _batches(data, self.batch_size):
            pairs = list(dict.fromkeys((s, t) for d in batch
                                       for s, t in zip(d.metadata["segments_en"], d.metadata["segments_ar"]) if t.strip()))
            keys = {p: cache_key("qe", self.qe_identity, *p) for p in pairs}
            found = cache.get_many(keys.values())
            missing = [p for p, k in keys.items() if k not in found]
            if missing:
                raise RuntimeError(f"{len(missing)} segment pairs have no score (e.g. {missing[0]!r}); the score "
                                   f"stage did not finish")
            scores = {p: float(found[k]) for p, k in keys.items()}
            for doc in batch:
                yield self._row(doc, scores, corrections.get(doc.id))
        cache.close()

    def _row(self, doc: Document, scores: dict, correction: dict | None) -> Document:
        qe_model = self.qe_model
        meta = doc.metadata
        seg_en, seg_ar = meta["segments_en"], meta["segments_ar"]
        seg_scores = [scores.get((s, t)) for s, t in zip(seg_en, seg_ar)]
        reason = failing = failing_score = None
        if any(not t.strip() for t in seg_ar):
            i = next(i for i, t in enumerate(seg_ar) if not t.strip())
            reason, failing = "empty translation", f"{seg_en[i]} => {seg_ar[i]}"
        valid = [x for x in seg_scores if x is not None]
        qe_min = min(valid) if valid else None
        choices_ar = meta["answer_choices_ar"]
        if reason is None and len(set(choices_ar)) < len(choices_ar):
            reason = "answer choices collide after translation"
            failing = " | ".join(choices_ar)
        if reason is None and qe_min is not None and qe_min < self.threshold:
            i = seg_scores.index(qe_min)
            reason, failing, failing_score = f"segment below threshold {self.threshold}", f"{seg_en[i]} => {seg_ar[i]}", qe_min
        inputs, targets = meta["inputs_ar"], meta["targets_ar"]
        if correction:  # a human correction overrides the machine output and is kept
            inputs, targets, reason, failing, failing_score = correction["inputs"], correction["targets"], None, None, None
        self.stat_update("rejected" if reason else "kept")
        row = {
            "source_id": meta["source_id"], "targets": targets, "dataset_name": meta["dataset_name"],
            "task": meta["task"], "task_family": meta["task_family"], "template_id": meta["template_id"],
            "template_name": meta["template_name"], "answer_choices": choices_ar, "split": meta["split"],
            "language": "ar", "license": meta["license"], "inputs_en": doc.text, "targets_en": meta["targets"],
            "answer_choices_en": list(meta.get("answer_choices") or []),
            "source_collection": meta["source_collection"], "segments_en": seg_en, "segments_ar": seg_ar,
            "segment_scores": [float("nan") if x is None else x for x in seg_scores], "qe_min": qe_min,
            "mt_model": meta["mt_model"], "qe_model": qe_model, "machine_translated": True,
            "human_corrected": bool(correction), "reject_reason": reason, "failing_segment": failing,
            "failing_score": failing_score,
            "config": REJECTED if reason else config_name(meta["source_collection"], meta["task"]),
        }
        return Document(text=inputs, id=doc.id, metadata=row)
