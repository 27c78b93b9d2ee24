"""The human check loop: a stratified sample of a translated folder for people to read and correct, and the
corrections brought back.

``export_sample`` takes up to N rows per source (collection / dataset), kept and rejected alike, chosen by a
hash of the row id (the same sample every time), and writes them as ``review.csv`` (English, Arabic, scores, and
empty ``corrected_inputs`` / ``corrected_targets`` columns to fill in) and as a ``datasets`` folder
(``review_dataset/``, ``load_from_disk``). ``import_corrections`` reads the filled-in CSV and records each
correction by row id in ``OUT/corrections.jsonl``; the next ``arabic-prompts translate`` into OUT applies them
(the corrected text replaces the machine output, the row is kept and marked ``human_corrected: true``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from pathlib import Path

import pyarrow.parquet as pq

from builders.sources import json_lines

REVIEW_COLUMNS = ("id", "source", "split", "kept", "qe_min", "reject_reason", "failing_segment", "inputs_en",
                  "inputs", "targets_en", "targets", "corrected_inputs", "corrected_targets")


def _rows(out: Path) -> list[dict]:
    files = sorted((Path(out) / "data").rglob("*.parquet"))
    if not files:
        raise ValueError(f"{out}: no data/ shards; is it a folder made by `arabic-prompts translate`?")
    return [r for f in files for r in pq.read_table(f).to_pylist()]


def export_sample(out: str | Path, dest: str | Path, per_source: int, seed: int = 0) -> dict[str, int]:
    """Write ``dest/review.csv`` and ``dest/review_dataset/``; returns rows per source."""
    from datasets import Dataset

    by_source: dict[str, list[dict]] = {}
    for r in _rows(Path(out)):
        by_source.setdefault(f"{r['source_collection']}/{r['dataset_name']}", []).append(r)
    sample = []
    for source, rs in sorted(by_source.items()):
        rs.sort(key=lambda r: hashlib.sha256(f"{seed}\x1f{r['id']}".encode()).hexdigest())
        for r in rs[:per_source]:
            sample.append({"id": r["id"], "source": source, "split": r["split"], "kept": not r["reject_reason"],
                           "qe_min": r["qe_min"], "reject_reason": r["reject_reason"] or "",
                           "failing_segment": r["failing_segment"] or "", "inputs_en": r["inputs_en"],
                           "inputs": r["inputs"], "targets_en": r["targets_en"], "targets": r["targets"],
                           "corrected_inputs": "", "corrected_targets": ""})
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / "review.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=REVIEW_COLUMNS)
        w.writeheader()
        w.writerows(sample)
    Dataset.from_list(sample).save_to_disk(str(dest / "review_dataset"))
    counts: dict[str, int] = {}
    for s in sample:
        counts[s["source"]] = counts.get(s["source"], 0) + 1
    return counts


def read_corrections(path: str | Path | None) -> dict[str, dict]:
    """The corrections recorded in ``corrections.jsonl`` (row id -> its last correction); none when the file
    does not exist. A line that is not a correction is an error naming the file and line."""
    if not path or not Path(path).exists():
        return {}
    out = {}
    with open(path, encoding="utf-8") as f:
        for line_no, c, error in json_lines(f):
            if error or not isinstance(c, dict) or "id" not in c:
                raise ValueError(f"{path}, line {line_no}: not a correction (JSON with an 'id')"
                                 + (f": {error}" if error else ""))
            out[c["id"]] = c
    return out


def import_corrections(out: str | Path, review_csv: str | Path, reviewer: str = "") -> int:
    """Record the corrections of a filled-in ``review.csv`` in ``OUT/corrections.jsonl`` (by row id; a later
    correction of a row replaces an earlier one). Returns how many rows were corrected."""
    out = Path(out)
    known = {r["id"]: r for r in _rows(out)}
    path = out / "corrections.jsonl"
    existing = read_corrections(path)
    n = 0
    with open(review_csv, encoding="utf-8", newline="") as f:
        for line_no, row in enumerate(csv.DictReader(f), start=2):
            ci, ct = (row.get("corrected_inputs") or "").strip(), (row.get("corrected_targets") or "").strip()
            if not ci and not ct:
                continue
            rid = row.get("id", "")
            if rid not in known:
                raise ValueError(f"{review_csv}, line {line_no}: row id {rid!r} is not in {out}")
            base = known[rid]
            existing[rid] = {"id": rid, "inputs": ci or base["inputs"], "targets": ct or base["targets"],
                             "reviewer": reviewer, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            n += 1
    path.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for _, c in sorted(existing.items())),
                    encoding="utf-8")
    return n
