"""End-to-end builds on real shared data and on small files made here, through the real datatrove pipeline."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from builders.catalog import load_catalog
from builders.hub import load_built, validate
from builders.pipeline import ROW_FIELDS, BuildConfig, BuildError, build
from builders.templates import TemplateError
from conftest import CLI, REPO

CATALOG = load_catalog()
TOY_CATALOG = """\
name: toy_sentiment
pretty_name: Toy sentiment
hub_id: null
hub_note: made in the test
task: toy_sentiment
task_family: classification
license: cc-by-4.0
columns: {text: text, label: label}
labels:
  label: {names: [neg, pos]}
splits: {train: train, test: test}
local:
  format: csv
  files: {train: train.csv, test: test.csv}
"""

TOY_TEMPLATES = """\
dataset: toy_sentiment
templates:
  11111111-1111-4111-8111-111111111111: !Template
    answer_choices: سلبي ||| إيجابي
    id: 11111111-1111-4111-8111-111111111111
    jinja: "ما شعور هذه الجملة؟ {{ text }} ||| {{ answer_choices[label] }}"
    metadata: !TemplateMetadata {languages: [ar], metrics: [Accuracy], original_task: true, choices_in_prompt: false}
    name: feeling
    reference: ''
  22222222-2222-4222-8222-222222222222: !Template
    answer_choices: سلبي ||| إيجابي
    id: 22222222-2222-4222-8222-222222222222
    jinja: "{{ text }}\\nهل الجملة إيجابية أم سلبية؟ ||| {{ answer_choices[label] }}"
    metadata: !TemplateMetadata {languages: [ar], metrics: [Accuracy], original_task: true, choices_in_prompt: true}
    name: choices
    reference: ''
"""


def make_toy(root: Path, train_rows: list[tuple[str, str]], test_rows: list[tuple[str, str]], jinja_extra: str = "") -> tuple[Path, Path]:
    """A user catalog dir (--catalog-dir) and a data folder (--local) for one small dataset."""
    cat = root / "cat"
    (cat / "catalog").mkdir(parents=True, exist_ok=True)
    (cat / "templates" / "toy_sentiment").mkdir(parents=True, exist_ok=True)
    (cat / "catalog" / "toy_sentiment.yaml").write_text(TOY_CATALOG, encoding="utf-8")
    (cat / "templates" / "toy_sentiment" / "templates.yaml").write_text(TOY_TEMPLATES + jinja_extra, encoding="utf-8")
    data = root / "data"
    data.mkdir(exist_ok=True)
    for name, rows in (("train.csv", train_rows), ("test.csv", test_rows)):
        lines = ["text,label"] + [f'"{t}",{label}' for t, label in rows]
        (data / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return cat, data


def data_digest(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((out / "data").rglob("*.parquet"))}


def all_rows(out: Path) -> list[dict]:
    return [r for p in sorted((out / "data").rglob("*.parquet")) for r in pq.read_table(p).to_pylist()]


# ------------------------------------------------------------------------------------------ shared data


@pytest.fixture(scope="module")
def shared_build(tmp_path_factory, shared_data):
    out = tmp_path_factory.mktemp("shared") / "arabic-prompts"
    proc = subprocess.run(
        [*CLI, "build", "--datasets", "ajgt_sentiment,arcd_extractive_qa,astd_sentiment",
         "--local", f"ajgt_sentiment={shared_data / 'ajgt'}", "--local", f"arcd_extractive_qa={shared_data / 'arcd'}",
         "--local", f"astd_sentiment={shared_data / 'astd'}", "--out", str(out), "--workers", "2", "--limit", "300",
         "--prompts-per-task", "500"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_cli_build_as_written_makes_a_hub_dataset_folder(shared_build):
    out, proc = shared_build
    assert "sentiment_analysis" in proc.stdout and "extractive_qa" in proc.stdout
    files = sorted(str(p.relative_to(out)) for p in (out / "data").rglob("*.parquet"))
    assert files and all(f.split("/")[2].split("-")[0] in ("train", "validation", "test") for f in files)
    assert any(f.startswith("data/extractive_qa/test-00000-of-") for f in files)
    summary = validate(out)
    assert summary["configs"] == 3  # sentiment_analysis, extractive_qa and question_generation (ARCD's derived template)
    card = (out / "README.md").read_text(encoding="utf-8")
    for needle in ("configs:", "config_name: default", "language:", "task_categories:", "size_categories:",
                   "pretty_name:", "load_dataset(", "| `ajgt_sentiment` |", "@article{elsheikh2024creating"):
        assert needle in card, needle
    png = (out / "build_report.png").read_bytes()  # prompts per task and split, as a chart
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    manifest = json.loads((out / "build_manifest.json").read_text())
    assert {s["name"] for s in manifest["sources"]} == {"ajgt_sentiment", "arcd_extractive_qa", "astd_sentiment"}
    assert all(s["templates"] for s in manifest["sources"]) and manifest["version"]


def test_rows_have_aya_fields_arabic_targets_and_no_leftovers(shared_build):
    out, _ = shared_build
    rows = all_rows(out)
    assert rows and all(list(r) == ROW_FIELDS for r in rows)
    for r in rows:
        assert r["inputs"].strip() and r["targets"].strip()
        assert "None" not in r["targets"] and "{{" not in r["inputs"] and "|||" not in r["inputs"]
        if r["task_family"] == "classification":
            assert r["targets"] in r["answer_choices"]
            assert any("\u0600" <= ch <= "\u06ff" for ch in r["targets"]), r["targets"]
    assert len({r["id"] for r in rows}) == len(rows)


def test_the_work_file_is_lz4_without_statistics_or_dictionaries_for_distinct_values_and_shards_keep_them(shared_build):
    """The render stage's work file (read once, whole, by the write stage): lz4, no statistics, no dictionary
    for the columns of distinct values; the published shards keep Parquet's dictionaries and min/max
    statistics (smaller files, and row groups a reader can skip, for the people who download them)."""
    out, _ = shared_build

    def columns(path):
        meta = pq.ParquetFile(path).metadata
        return {meta.schema.column(c).name: meta.row_group(0).column(c) for c in range(meta.num_columns)}

    work = sorted((out / "_build" / "rendered").glob("*.parquet"))
    assert work
    for path in work[:3]:
        cols = columns(path)
        assert {c.compression for c in cols.values()} == {"LZ4"}
        assert not any(c.is_stats_set for c in cols.values())
        assert all("RLE_DICTIONARY" not in cols[c].encodings for c in ("id", "source_id", "inputs"))
        assert "RLE_DICTIONARY" in cols["task"].encodings
    shard = columns(sorted((out / "data").rglob("*.parquet"))[0])
    assert all("RLE_DICTIONARY" in shard[c].encodings and shard[c].is_stats_set for c in ("inputs", "task", "split"))


def test_splits_follow_source_and_never_share_an_example(shared_build):
    out, _ = shared_build
    work = out / "_build" / "sources"
    for name in ("ajgt_sentiment", "arcd_extractive_qa", "astd_sentiment"):
        src = pq.read_table(work / f"{name}.assigned.parquet").to_pylist()
        keys = [(r["source_split"], r["source_row"]) for r in src]
        assert len(keys) == len(set(keys))  # each source example has exactly one output split
        test_sources = [k for k, v in CATALOG[name].splits.items() if v == "test"]
        if name == "arcd_extractive_qa":  # the source's own test split stays test
            assert test_sources and {r["split"] for r in src if r["source_split"] in test_sources} == {"test"}
        if name == "ajgt_sentiment":  # train-only source: validation and test carved from train
            assert {r["split"] for r in src} == {"train", "validation", "test"}
    # prompts of one split never repeat inputs+targets of another split (dedup keeps the test copy)
    seen: dict[tuple, str] = {}
    for r in all_rows(out):
        key = (r["inputs"], r["targets"])
        assert seen.setdefault(key, r["split"]) == r["split"]


def test_load_dataset_reads_the_folder(shared_build):
    from datasets import load_dataset

    out, _ = shared_build
    ds = load_dataset(str(out), "extractive_qa", cache_dir=str(out.parent / "cache_plain"))
    assert set(ds) <= {"train", "validation", "test"} and len(ds["test"]) > 0
    assert ds["test"][0]["task"] == "extractive_qa"
    safe = load_built(out, "default")
    assert sum(len(s) for s in safe.values()) == json.loads((out / "build_report.json").read_text())["total"]


def test_build_is_deterministic(shared_build, tmp_path, shared_data):
    out, _ = shared_build
    again = tmp_path / "again"
    build(BuildConfig(out=again, datasets=["astd_sentiment", "ajgt_sentiment", "arcd_extractive_qa"],
                      local={"ajgt_sentiment": str(shared_data / "ajgt"), "arcd_extractive_qa": str(shared_data / "arcd"),
                             "astd_sentiment": str(shared_data / "astd")},
                      workers=1, limit=300, prompts_per_task=500))
    assert sorted(r["id"] for r in all_rows(again)) == sorted(r["id"] for r in all_rows(out))
    assert data_digest(again) == data_digest(out)


# ------------------------------------------------------------------------------------------ small files


def test_rejected_rows_are_kept_with_reasons_and_duplicates_removed(tmp_path):
    cat, data = make_toy(
        tmp_path,
        train_rows=[("جملة جيدة", "pos"), ("جملة سيئة", "neg"), ("  ", "pos"), ("نص غريب", "maybe"),
                    ("جملة مكررة", "pos"), ("جملة مكررة", "pos"), ("في الاختبار أيضا", "neg")],
        test_rows=[("في الاختبار أيضا", "neg"), ("اختبار", "pos")],
    )
    (data / "train.csv").write_text((data / "train.csv").read_text() + '"صف معطوب",pos,زائد\n', encoding="utf-8")
    out = tmp_path / "out"
    res = build(BuildConfig(out=out, datasets=["toy_sentiment"], local={"toy_sentiment": str(data)},
                            catalog_dirs=[str(cat)], workers=1))
    rep = res.report
    skipped = rep["skipped"]["toy_sentiment"]
    assert skipped["source: empty text"] == 1
    assert skipped["source: unknown label 'maybe'"] == 1
    assert skipped["source: malformed row"] == 1
    # a repeated train row, and the train copy of a test row (its text is test, so the copy is test too,
    # and then the same row twice): two duplicate source rows, set aside before rendering
    assert skipped["source: duplicate source row"] == 2
    rows = all_rows(out)
    texts = [(r["inputs"], r["split"]) for r in rows if "في الاختبار أيضا" in r["inputs"]]
    assert texts and {s for _, s in texts} == {"test"}  # the test copy stays
    assert sum(1 for r in rows if "جملة مكررة" in r["inputs"]) == 2
    rejected = [r for p in (out / "_build" / "rejected").rglob("*.parquet") for r in pq.read_table(p).to_pylist()]
    assert len(rejected) == rep["skipped_total"] == 5
    assert all(r["reason"] and r["dataset_name"] == "toy_sentiment" for r in rejected)
    # 10 source rows - 3 rejected - 2 duplicates = 5 rows x 2 templates
    assert rep["total"] == len(rows) == 10


def test_sandbox_escape_in_a_user_template_stops_the_build(tmp_path):
    evil = """  33333333-3333-4333-8333-333333333333: !Template
    id: 33333333-3333-4333-8333-333333333333
    jinja: "{{ text.__class__.__mro__[1].__subclasses__() }} ||| x"
    metadata: !TemplateMetadata {languages: [ar]}
    name: escape
    reference: ''
"""
    cat, data = make_toy(tmp_path, [("جملة", "pos")], [("أخرى", "neg")], jinja_extra=evil)
    with pytest.raises(TemplateError) as err:
        build(BuildConfig(out=tmp_path / "out", datasets=["toy_sentiment"], local={"toy_sentiment": str(data)},
                          catalog_dirs=[str(cat)], workers=1))
    msg = str(err.value)
    assert "toy_sentiment" in msg and "escape" in msg and "row train:0" in msg and "unsafe" in msg


def test_missing_column_names_dataset_and_column(tmp_path):
    cat, data = make_toy(tmp_path, [("جملة", "pos")], [("أخرى", "neg")])
    (data / "train.csv").write_text("tweet,label\n\"جملة\",pos\n", encoding="utf-8")
    with pytest.raises(BuildError, match=r"toy_sentiment.*no column 'text'"):
        build(BuildConfig(out=tmp_path / "out", datasets=["toy_sentiment"], local={"toy_sentiment": str(data)},
                          catalog_dirs=[str(cat)], workers=1))


def test_malformed_json_file_fails_naming_the_file(tmp_path):
    cat, data = make_toy(tmp_path, [("جملة", "pos")], [("أخرى", "neg")])
    bad = tmp_path / "broken.json"
    bad.write_text('{"data": [ {"text": "x",', encoding="utf-8")
    proc = subprocess.run([*CLI, "build", "--datasets", "toy_sentiment", "--local", f"toy_sentiment={bad}",
                           "--catalog-dir", str(cat), "--out", str(tmp_path / "out")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "broken.json" in proc.stderr and "invalid JSON" in proc.stderr


def test_rebuilt_folder_loads_current_rows(tmp_path):
    """datasets caches a local folder by name and configs; our loader must return the rebuilt rows."""
    cat, data = make_toy(tmp_path, [("النسخة الأولى", "pos")], [("اختبار أول", "neg")])
    out = tmp_path / "x"
    cfg = dict(out=out, datasets=["toy_sentiment"], local={"toy_sentiment": str(data)}, catalog_dirs=[str(cat)], workers=1)
    build(BuildConfig(**cfg))
    first = load_built(out, "toy_sentiment", split="test")
    assert "اختبار أول" in first[0]["inputs"]
    make_toy(tmp_path, [("النسخة الثانية", "neg"), ("صف جديد", "pos")], [("اختبار ثان", "pos")])
    build(BuildConfig(**cfg))
    second = load_built(out, "toy_sentiment", split="test")
    assert all("اختبار ثان" in r["inputs"] for r in second)
    assert len(load_built(out, "toy_sentiment", split="train")) == len(all_rows(out)) - len(second) - len(
        [r for r in all_rows(out) if r["split"] == "validation"])
    # another folder with the same name and configs is not served from the first one's cache either
    other = tmp_path / "y" / "x"
    make_toy(tmp_path, [("مجلد آخر", "neg")], [("اختبار ثالث", "neg")])
    build(BuildConfig(**{**cfg, "out": other}))
    assert "اختبار ثالث" in load_built(other, "toy_sentiment", split="test")[0]["inputs"]


# ------------------------------------------------------------------------------------- kill and resume


def _build_cmd(out: Path, shared: Path) -> list[str]:
    return [*CLI, "build", "--datasets", "metrec_poetry_meter,astd_sentiment",
            "--local", f"metrec_poetry_meter={shared / 'metrec_poetry_meter'}",
            "--local", f"astd_sentiment={shared / 'astd'}", "--out", str(out), "--workers", "2",
            "--limit", "2500", "--prompts-per-task", "1500", "--shard-size-mb", "1"]


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 240) -> bool:
    start = time.time()
    while time.time() - start < timeout:
        if proc.poll() is not None:
            return False
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.05)
    raise AssertionError("build never reached the kill point")


def test_kill_and_resume_gives_the_uninterrupted_result(tmp_path, shared_data):
    clean = tmp_path / "clean"
    subprocess.run(_build_cmd(clean, shared_data), cwd=REPO, check=True, capture_output=True, timeout=600)
    expected = data_digest(clean)
    assert len(expected) > 2

    out = tmp_path / "killed"
    completions = lambda stage: out / "_build" / "logs" / stage / "completions"  # noqa: E731
    kill_points = [
        lambda: completions("2-render").exists() and len(list(completions("2-render").iterdir())) >= 2,
        lambda: completions("4-write").exists() and len(list(completions("4-write").iterdir())) >= 1,
    ]
    killed = 0
    for ready in kill_points:
        proc = subprocess.Popen(_build_cmd(out, shared_data), cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        killed += _kill_when(proc, ready)
    assert killed >= 1
    subprocess.run(_build_cmd(out, shared_data), cwd=REPO, check=True, capture_output=True, timeout=600)
    assert data_digest(out) == expected
    rows = all_rows(out)
    assert len(rows) == len({r["id"] for r in rows}) == sum(len(pq.read_table(clean / f)) for f in expected)


# ------------------------------------------------------------------------------------------------- Ray


def test_ray_executor_gives_the_same_rows(tmp_path, shared_data):
    ray = pytest.importorskip("ray")
    local = {"ajgt_sentiment": str(shared_data / "ajgt"), "t_hsab_hate_speech": str(shared_data / "t_hsab")}
    common = dict(datasets=sorted(local), local=local, limit=200, prompts_per_task=400)
    build(BuildConfig(out=tmp_path / "local", workers=2, **common))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        build(BuildConfig(out=tmp_path / "ray", workers=2, executor="ray", ray={"mem_per_cpu_gb": 1}, **common))
    finally:
        ray.shutdown()
    assert data_digest(tmp_path / "ray") == data_digest(tmp_path / "local")


def test_declared_but_absent_test_split_is_carved_from_train(tmp_path):
    rows = [(f"جملة رقم {i}", "pos" if i % 2 else "neg") for i in range(60)]
    cat, data = make_toy(tmp_path, rows, [])  # the catalog declares test, the local copy has none
    res = build(BuildConfig(out=tmp_path / "out", datasets=["toy_sentiment"], local={"toy_sentiment": str(data)},
                            catalog_dirs=[str(cat)], workers=1))
    src = pq.read_table(tmp_path / "out" / "_build" / "sources" / "toy_sentiment.assigned.parquet").to_pylist()
    splits = {r["split"] for r in src}
    assert splits == {"train", "validation", "test"}
    assert set(res.report["by_task_split"]["toy_sentiment"]) == splits


def _hub_snapshot(folder: Path, premises: list[str]) -> None:
    """A folder laid out as facebook/xnli's Hub repo (config 'ar', parquet per split, ClassLabel ids)."""
    import pyarrow as pa

    (folder / "ar").mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation", "test"):
        # each row its own hypothesis: rows that share a text are linked into one split by the builder
        rows = [{"premise": f"{p} ({split})", "hypothesis": f"الجو جميل اليوم في {split} رقم {i}.", "label": i % 3}
                for i, p in enumerate(premises)]
        pq.write_table(pa.Table.from_pylist(rows), folder / "ar" / f"{split}-00000-of-00001.parquet")
    (folder / "README.md").write_text(
        "---\nconfigs:\n- config_name: ar\n  data_files:\n"
        + "".join(f"  - split: {s}\n    path: ar/{s}-*\n" for s in ("train", "validation", "test")) + "---\n",
        encoding="utf-8")


def test_hub_code_path_reads_a_local_hub_snapshot_and_sees_a_refreshed_one(tmp_path):
    """`datasets.load_dataset(hub_id, config)` with the Hub id replaced by a local snapshot folder."""
    snap = tmp_path / "xnli"
    _hub_snapshot(snap, ["خرج الأطفال إلى الحديقة.", "أغلق المتجر أبوابه مبكرا."])
    cfg = dict(datasets=["xnli_ar_nli"], local={"xnli_ar_nli": str(snap)}, workers=1)
    res = build(BuildConfig(out=tmp_path / "a", **cfg))
    rows = all_rows(tmp_path / "a")
    assert {r["split"] for r in rows} == {"train", "validation", "test"}
    assert all(r["targets"] in r["answer_choices"] for r in rows if r["answer_choices"])
    assert res.report["source_rows"]["xnli_ar_nli"] == {"train": 2, "validation": 2, "test": 2}
    _hub_snapshot(snap, ["وصل القطار في موعده.", "نجح الطلاب في الامتحان.", "سافرت العائلة إلى البحر."])
    build(BuildConfig(out=tmp_path / "b", **cfg))
    fresh = all_rows(tmp_path / "b")
    assert any("وصل القطار" in r["inputs"] for r in fresh)
    assert not any("خرج الأطفال" in r["inputs"] for r in fresh)
