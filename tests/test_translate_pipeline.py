"""End to end, offline: the shared PromptSource templates over small English rows written here and the shared
Super-NaturalInstructions files, translated by a tiny random Marian and scored by a tiny random CometKiwi-shaped
checkpoint (built by unbabel-comet), through `arabic-prompts translate` on datatrove."""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from builders.hub import load_built, validate
from builders.schema import TRANSLATED_SCHEMA
from conftest import CLI, REPO, run_cli
from translate_fixtures import PROMPTSOURCE, ROWS

THRESHOLD = 0.5  # the tiny random QE model's qe_min on the tiny random Marian's translations straddle it (about -0.1 to 1.2)
ENTRIES = {"en_imdb": "imdb", "en_super_glue_rte": "super_glue/rte", "en_ag_news": "ag_news"}


@pytest.fixture(scope="module")
def english(tmp_path_factory, shared_data) -> dict:
    root = tmp_path_factory.mktemp("english")
    local = {}
    for name, key in ENTRIES.items():
        folder = root / name
        folder.mkdir()
        (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS[key]), encoding="utf-8")
        if name == "en_imdb":
            (folder / "test.jsonl").write_text(json.dumps(ROWS[key][0]), encoding="utf-8")
        local[name] = folder
    xp3 = root / "xp3_en.jsonl"  # xP3-style prompted rows (inputs / targets), written here
    xp3.write_text("\n".join(json.dumps(r) for r in [
        {"inputs": "Translate to French: The park opened in 2020.", "targets": "Le parc a ouvert en 2020."},
        {"inputs": "Is this review positive or negative?\nReview: Works as described.", "targets": "positive"},
        {"inputs": "Summarise: nothing to say.", "targets": ""},  # no prompt: kept with the reason, counted
    ]), encoding="utf-8")
    return {"local": local, "ni": shared_data / "natural_instructions", "xp3": xp3}


def args(english, marian_dir, qe_dir, out, cache, *extra) -> list[str]:
    a = ["translate", "--out", str(out), "--sources", ",".join(ENTRIES), "--promptsource", str(PROMPTSOURCE),
         "--natural-instructions", str(english["ni"]), "--xp3", str(english["xp3"]), "--limit", "3", "--mt-model", str(marian_dir),
         "--qe-model", str(qe_dir), "--cache-dir", str(cache), "--max-length", "16", "--beam-size", "1",
         "--threshold", str(THRESHOLD), "--prompts-per-task", "12", *extra]
    for name, folder in english["local"].items():
        a += ["--local", f"{name}={folder}"]
    return a


def digest(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((out / "data").rglob("*.parquet"))}


def rows(out: Path, config: str | None = None) -> list[dict]:
    files = sorted((out / "data").rglob("*.parquet"))
    return [r for f in files if config is None or f.parent.name == config for r in pq.read_table(f).to_pylist()]


@pytest.fixture(scope="module")
def first(english, marian_dir, comet_reference, tmp_path_factory):
    root = tmp_path_factory.mktemp("translated")
    out, cache = root / "arabic-prompts-translated", root / "cache"
    proc = run_cli(*args(english, marian_dir, comet_reference["models"]["kiwi-patch"], out, cache, "--workers", "2"))
    return {"out": out, "cache": cache, "stdout": proc.stdout, "root": root}


def test_folder_is_a_valid_translated_dataset_with_the_fields_users_need(first):
    out = first["out"]
    summary = validate(out)  # the builder's validate: card YAML, schema of every shard, counts, leakage
    manifest = json.loads((out / "build_manifest.json").read_text())
    assert manifest["kind"] == "translated-prompts" and summary["rows"] == manifest["counts"]["total"]
    every = rows(out)
    assert every and all(list(r) == TRANSLATED_SCHEMA.names for r in every)
    assert all(r["machine_translated"] and r["language"] == "ar" and r["mt_model"] and r["qe_model"] and r["source_id"]
               for r in every)
    configs = {p.name for p in (out / "data").iterdir()}
    assert "rejected" in configs and any(c.startswith("promptsource-") for c in configs)
    assert {r["source_collection"] for r in every} == {"promptsource", "xp3", "natural_instructions"}
    kept = load_built(out, "default")  # the default config: kept rows only
    assert sum(len(kept[s]) for s in kept) == sum(1 for r in every if not r["reject_reason"])


def test_structure_is_kept_in_every_translated_prompt(first):
    for r in rows(first["out"]):
        assert r["inputs_en"].count("\n") == r["inputs"].count("\n")
        for url in ("https://example.org/budget",):
            assert (url in r["inputs_en"]) == (url in r["inputs"])
        if r["answer_choices"] and r["targets_en"] in r["answer_choices_en"]:  # fixed labels: a translated choice
            assert r["targets"] == r["answer_choices"][r["answer_choices_en"].index(r["targets_en"])]
        assert len(r["segments_en"]) == len(r["segments_ar"]) == len(r["segment_scores"])


def test_a_prompt_is_kept_only_if_every_segment_passes_and_rejects_say_why(first):
    every = rows(first["out"])
    kept = [r for r in every if not r["reject_reason"]]
    rejected = rows(first["out"], "rejected")
    assert kept and rejected and len(kept) + len(rejected) == len(every)
    for r in kept:
        assert all(s >= THRESHOLD for s in r["segment_scores"]) and (r["qe_min"] is None or r["qe_min"] >= THRESHOLD)
    below = [r for r in rejected if r["reject_reason"].startswith("segment below threshold")]
    assert below
    for r in below:
        assert r["failing_score"] == r["qe_min"] == min(s for s in r["segment_scores"] if not math.isnan(s))
        assert r["failing_score"] < THRESHOLD and " => " in r["failing_segment"]
        en, ar = r["failing_segment"].split(" => ", 1)
        assert r["segment_scores"][r["segments_en"].index(en)] == r["failing_score"] and ar in r["segments_ar"]


def test_report_card_and_histogram(first):
    out = first["out"]
    rep = json.loads((out / "translate_report.json").read_text())
    assert rep["prompts"] == rep["kept"] + rep["rejected"] == len(rows(out))
    assert 0 < rep["unique_segments"] < rep["segments"]  # template sentences repeat
    assert rep["mt_cache"]["misses"] > 0 and rep["qe_cache"]["misses"] > 0  # a cold cache on the first run
    assert set(rep["kept_fraction_at"]) == {"0.5", "0.6", "0.7", "0.8", "0.9"}
    assert rep["english_set_aside"] == {"xp3": {"empty targets": 1}}
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "- `xp3`, empty targets: 1" in card
    assert "config_name: rejected" in card and "qe_min_histogram.png" in card and f"threshold {THRESHOLD}" in card
    for source, d in rep["per_source"].items():
        assert f"| `{source}` | {d['kept']} | {d['rejected']} |" in card
    assert (out / "qe_min_histogram.png").read_bytes().startswith(b"\x89PNG")


def test_resume_after_sigkill_gives_identical_output(first, english, marian_dir, comet_reference, tmp_path):
    out, cache = tmp_path / "killed", tmp_path / "cache"  # a cold cache: the killed run is really translating
    cmd = [*CLI, *args(english, marian_dir, comet_reference["models"]["kiwi-patch"], out, cache)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    done = out / "_build" / "logs" / "1-translate" / "completions"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and not (done.exists() and any(done.iterdir())):
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "build_manifest.json").exists()
    run_cli(*args(english, marian_dir, comet_reference["models"]["kiwi-patch"], out, cache))
    assert digest(out) == digest(first["out"])
    validate(out)


def test_review_loop_and_a_second_run_that_translates_and_scores_nothing(first, english, marian_dir,
                                                                          comet_reference, tmp_path):
    import csv
    import shutil

    out = tmp_path / "reviewed"
    shutil.copytree(first["out"], out)
    review = tmp_path / "review"
    run_cli("translate", "review-export", "--out", str(out), "--per-source", "2", "--dest", str(review))
    with open(review / "review.csv", encoding="utf-8", newline="") as f:
        sample = list(csv.DictReader(f))
    sources = {r["source"] for r in sample}
    assert len(sources) == len(json.loads((out / "translate_report.json").read_text())["per_source"])
    assert all(sum(1 for r in sample if r["source"] == s) <= 2 for s in sources)
    from datasets import load_from_disk

    assert len(load_from_disk(str(review / "review_dataset"))) == len(sample)
    target = next(r for r in sample if r["kept"] == "False")  # a rejected row, corrected by a person
    target["corrected_inputs"] = "نص صححه مراجع بشري."
    with open(review / "review.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(sample[0]))
        w.writeheader()
        w.writerows(sample)
    proc = run_cli("translate", "review-import", "--out", str(out), "--file", str(review / "review.csv"))
    assert "recorded 1 corrections" in proc.stdout
    # the next build into the folder: the same cache, so nothing is translated or scored again
    run_cli(*args(english, marian_dir, comet_reference["models"]["kiwi-patch"], out, first["cache"]))
    rep = json.loads((out / "translate_report.json").read_text())
    assert rep["mt_cache"]["misses"] == 0 and rep["mt_cache"]["hits"] > 0
    assert rep["qe_cache"]["misses"] == 0 and rep["qe_cache"]["hits"] > 0
    fixed = next(r for r in rows(out) if r["id"] == target["id"])
    assert fixed["inputs"] == "نص صححه مراجع بشري." and fixed["human_corrected"] and not fixed["reject_reason"]
    assert fixed["targets"] == target["targets"] and fixed["machine_translated"]
    # every other row is exactly what the first run made
    before = {r["id"]: r for r in rows(first["out"])}
    after = {r["id"]: r for r in rows(out)}
    assert set(before) == set(after)
    same = lambda a, b: json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)  # noqa: E731
    assert all(same(before[k], after[k]) for k in before if k != target["id"])
    validate(out)


def test_corrections_file_last_correction_of_a_row_wins_and_a_bad_line_is_named(tmp_path):
    """One reader of ``corrections.jsonl`` for review-import and the translate run: the last correction of a
    row is the one applied; a line that is not a correction stops with the file and line."""
    from builders.translate.review import read_corrections

    path = tmp_path / "corrections.jsonl"
    assert read_corrections(path) == {} and read_corrections(None) == {}
    path.write_text('{"id": "a", "inputs": "x"}\n\n{"id": "b", "inputs": "y"}\n{"id": "a", "inputs": "z"}\n',
                    encoding="utf-8")
    assert {k: v["inputs"] for k, v in read_corrections(path).items()} == {"a": "z", "b": "y"}
    path.write_text('{"id": "a", "inputs": "x"}\n{"inputs": "no id"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"corrections\.jsonl, line 2: not a correction"):
        read_corrections(path)
    path.write_text('{"id": "a"\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 1: not a correction .*: Expecting"):
        read_corrections(path)
