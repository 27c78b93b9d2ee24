"""`arabic-prompts mix` on data seeded to leak if it could: a build of real AJGT tweets (A) and a second build (B,
a user catalog made here) whose training rows are A's test tweets copied verbatim, one of them with a word added
(a different source text that still shares long n-grams with a test text), and an eval_only benchmark entry
with rows in every split. The mixture must take none of the copies and no benchmark row, flag the near-copy in
its 13-gram report, refuse it above the threshold, and stay a valid, reproducible dataset."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from builders.hub import load_built, validate
from builders.steps import BuildError
from builders.training.mixture import MixConfig, check_written, held_out, mix, resolve_input
from builders.training.sampling import allocate
from builders.cli import main as cli_main
from conftest import SHARED_DATA
from train_fixtures import cli

TOY_ENTRY = """\
name: {name}
pretty_name: {name}
hub_id: null
hub_note: made in the test
task: {task}
task_family: classification
license: cc-by-4.0
eval_only: {eval_only}
columns: {{text: text, label: label}}
labels:
  label: {{names: [neg, pos]}}
splits: {{train: train, test: test}}
local:
  format: csv
  files: {{train: train.csv, test: test.csv}}
"""
TOY_TEMPLATES = """\
dataset: {name}
templates:
  {uid}: !Template
    answer_choices: سلبي ||| إيجابي
    id: {uid}
    jinja: "ما شعور هذه الجملة؟ {{{{ text }}}} ||| {{{{ answer_choices[label] }}}}"
    metadata: !TemplateMetadata {{languages: [ar], metrics: [Accuracy], original_task: true, choices_in_prompt: false}}
    name: feeling
    reference: ''
"""


def toy_dataset(cat: Path, data: Path, name: str, task: str, uid: str, train: list[str], test: list[str],
                eval_only: bool = False) -> None:
    (cat / "catalog").mkdir(parents=True, exist_ok=True)
    (cat / "templates" / name).mkdir(parents=True, exist_ok=True)
    (cat / "catalog" / f"{name}.yaml").write_text(
        TOY_ENTRY.format(name=name, task=task, eval_only=str(eval_only).lower()), encoding="utf-8")
    (cat / "templates" / name / "templates.yaml").write_text(TOY_TEMPLATES.format(name=name, uid=uid),
                                                             encoding="utf-8")
    (data / name).mkdir(parents=True, exist_ok=True)
    for split, texts in (("train", train), ("test", test)):
        with open(data / name / f"{split}.csv", "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows([t, ("neg", "pos")[i % 2]] for i, t in enumerate(texts))


def rows(folder: Path, split: str | None = None) -> list[dict]:
    return [r for p in sorted((folder / "data").rglob("*.parquet")) for r in pq.read_table(p).to_pylist()
            if split is None or r["split"] == split]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    root = tmp_path_factory.mktemp("mix")
    a = root / "a"
    cli("build", "--datasets", "ajgt_sentiment", "--local", f"ajgt_sentiment={SHARED_DATA / 'ajgt'}",
        "--out", a, "--limit", "300")
    test_inputs = [r["inputs"] for r in rows(a, "test")]
    with open(SHARED_DATA / "ajgt" / "AJGT.csv", encoding="utf-8") as f:
        tweets = [r["Feed"].strip() for r in csv.DictReader(f)][:300]
    # the raw tweets that build A put in its test split (found in its test prompts, whatever the split key)
    test_tweets = [t for t in tweets if len(t) > 20 and any(t in x for x in test_inputs)]
    copies = test_tweets[:6]  # verbatim: the same source texts, in another build's train split
    long_one = max(test_tweets[6:], key=lambda t: len(t.split()))
    assert len(long_one.split()) >= 14
    near = long_one + " والله"  # another source text, but it shares the test tweet's 13-grams
    fresh = [f"جملة جديدة رقم {i} عن الطقس والسفر" for i in range(40)]
    cat, data = root / "cat", root / "data"
    toy_dataset(cat, data, "toy_copies", "toy_sentiment", "11111111-1111-4111-8111-111111111111",
                train=copies + [near] + fresh, test=[f"اختبار خاص رقم {i}" for i in range(6)])
    toy_dataset(cat, data, "toy_bench", "toy_benchmark", "22222222-2222-4222-8222-222222222222",
                train=[f"سؤال معيار للتدريب رقم {i}" for i in range(12)],
                test=[f"سؤال معيار للاختبار رقم {i}" for i in range(6)], eval_only=True)
    b = root / "b"
    cli("build", "--catalog-dir", cat, "--datasets", "toy_copies,toy_bench",
        "--local", f"toy_copies={data / 'toy_copies'}", "--local", f"toy_bench={data / 'toy_bench'}", "--out", b)
    return {"root": root, "a": a, "b": b, "copies": copies, "near": near, "test_tweets": test_tweets}


def held_ids(*folders: Path) -> set[str]:
    return {r["source_id"] for f in folders for r in rows(f, "test")}


def test_mix_never_emits_a_held_out_text_or_a_benchmark_row(seeded, capsys):
    a, b, root = seeded["a"], seeded["b"], seeded["root"]
    out = root / "mixture"
    assert cli_main(["mix", "--from", str(a), "--from", str(b), "--size", "100000", "--seed", "3", "--out", str(out),
                     "--validation-size", "1000", "--max-contamination", "0.5"]) == 0
    assert "13-gram contamination" in capsys.readouterr().out
    got = rows(out)
    recipe = json.loads((out / "mixture_recipe.json").read_text())
    # what would have leaked is exactly what was left out
    b_train = [r for r in rows(b) if r["split"] != "test"]
    assert recipe["excluded"]["test_source_id"] == sum(r["source_id"] in held_ids(a) for r in b_train) > 0
    assert recipe["excluded"]["eval_only"] == sum(r["dataset_name"] == "toy_bench" for r in b_train) > 0
    # and none of it is in the mixture: no held-out source text, no benchmark row, no test split
    assert not {r["source_id"] for r in got} & held_ids(a, b)
    assert {r["dataset_name"] for r in got} == {"ajgt_sentiment", "toy_copies"}
    assert {r["split"] for r in got} == {"train", "validation"}
    # checked independently of source_id: no test tweet's raw text is inside a mixture prompt
    for tweet in seeded["copies"]:
        assert not any(tweet in r["inputs"] for r in got)
    # everything else was taken (the size asked for is more than there is)
    assert recipe["size"] + recipe["validation_size"] == len(got) == sum(
        len(rows(f)) - len(rows(f, "test")) for f in (a, b)) - sum(recipe["excluded"].values())
    # the near-copy is a different text, so it may be trained on, but the 13-gram report flags it
    report = json.loads((out / "contamination.json").read_text())
    group = report["groups"][f"{a}/sentiment_analysis"]
    near_ids = {r["id"] for r in got if seeded["near"] in r["inputs"]}
    assert near_ids and near_ids <= set(report["mixture_examples"]) and group["contaminated"] == 1
    assert report["groups"]["benchmark toy_bench"]["kind"] == "benchmark"
    summary = validate(out)  # a dataset like the others: schema by kind, counts, leakage checks
    assert summary["checks"]["source_texts_in_two_splits"] == 0
    ds = load_built(out, "default")
    assert set(ds) == {"train", "validation"} and {"origin", "input"} <= set(ds["train"].column_names)
    card = (out / "README.md").read_text()
    assert "| test source id | " + str(recipe["excluded"]["test_source_id"]) + " |" in card


def test_mix_refuses_a_mixture_above_the_contamination_threshold(seeded, capsys):
    out = seeded["root"] / "refused"
    assert cli_main(["mix", "--from", str(seeded["a"]), "--from", str(seeded["b"]), "--size", "100000",
                     "--out", str(out), "--max-contamination", "0"]) == 2
    assert f"contamination above 0.00% for {seeded['a']}/sentiment_analysis" in capsys.readouterr().err
    assert not (out / "data").exists() and (out / "contamination.json").is_file()  # nothing to publish


def test_drop_contaminated_leaves_out_the_overlapping_rows_and_passes(seeded, tmp_path):
    res = mix(MixConfig(inputs=[str(seeded["a"]), str(seeded["b"])], size=100000, out=tmp_path / "clean",
                        max_contamination=0.0, drop_contaminated=True), log=lambda *_: None)
    near = [r for r in rows(seeded["b"]) if seeded["near"] in r["inputs"]]
    assert res.recipe["excluded"]["contaminated"] == len(near) > 0
    assert not any(seeded["near"] in r["inputs"] for r in rows(tmp_path / "clean"))
    assert res.contamination["passed"] and res.contamination["mixture_rows_overlapping"] == 0
    assert res.contamination["dropped"]["mixture_rows_overlapping"] == len(near)  # what the first scan found


def test_a_benchmark_folder_is_held_out_and_checked_against(seeded, tmp_path):
    """Build A given as a --benchmark (not an input): its test texts are kept out of a mixture of build B alone."""
    res = mix(MixConfig(inputs=[str(seeded["b"])], benchmarks=[str(seeded["a"])], size=1000, out=tmp_path / "m",
                        max_contamination=1.0), log=lambda *_: None)
    assert res.recipe["excluded"]["test_source_id"] == sum(
        r["source_id"] in held_ids(seeded["a"]) for r in rows(seeded["b"]) if r["split"] != "test") > 0
    assert not {r["source_id"] for r in rows(tmp_path / "m")} & held_ids(seeded["a"])
    group = res.contamination["groups"][f"benchmark {seeded['a']}/sentiment_analysis"]
    assert group["kind"] == "benchmark" and group["contaminated"] == 1  # the near-copy, again


def test_the_written_rows_are_checked_again_independently_of_the_selection(seeded):
    """The check after writing does not trust the selection: shown on shards that do hold test rows."""
    inp = resolve_input(str(seeded["a"]))
    held = held_out([inp], [], set(), 10)
    figures = check_written(seeded["a"] / "data", held, {"ajgt_sentiment"})
    n_test = len(rows(seeded["a"], "test"))
    assert figures["held_out_source_ids"] == figures["test_split_rows"] == n_test > 0
    assert figures["eval_only_rows"] == len(rows(seeded["a"]))


def test_stratified_by_task_under_a_cap_and_reproducible(seeded, tmp_path):
    a, b = seeded["a"], seeded["b"]
    one = mix(MixConfig(inputs=[str(a), str(b)], size=60, seed=7, out=tmp_path / "one", validation_size=10,
                        max_contamination=0.5), log=lambda *_: None)
    available = one.recipe["available"]["train"]["any"]
    assert one.recipe["by_task"] == allocate(available, 60) == {"sentiment_analysis": 30, "toy_sentiment": 30}
    capped = mix(MixConfig(inputs=[str(a), str(b)], size=60, seed=7, out=tmp_path / "capped", cap_per_task=20,
                           validation_size=10, max_contamination=0.5), log=lambda *_: None)
    assert capped.recipe["by_task"] == {"sentiment_analysis": 20, "toy_sentiment": 20}
    again = mix(MixConfig(inputs=[str(b), str(a)], size=60, seed=7, out=tmp_path / "again", validation_size=10,
                          max_contamination=0.5), log=lambda *_: None)
    ids = lambda folder: sorted(r["id"] for r in rows(folder))  # noqa: E731
    assert ids(tmp_path / "again") == ids(tmp_path / "one")  # the inputs' order does not matter
    other = mix(MixConfig(inputs=[str(a), str(b)], size=60, seed=8, out=tmp_path / "other", validation_size=10,
                          max_contamination=0.5), log=lambda *_: None)
    assert ids(tmp_path / "other") != ids(tmp_path / "one")
    assert one.recipe["by_template"] and sum(one.recipe["by_source"].values()) == 60


def test_translated_fraction_sets_the_native_translated_balance(seeded, tmp_path):
    # A stand-in for a translated-prompts build (the translation pipeline writes those): a copy of build A whose
    # manifest says kind translated-prompts. It is mixed with build B, so no row id is shared.
    translated = tmp_path / "translated"
    shutil.copytree(seeded["a"], translated)
    manifest = json.loads((translated / "build_manifest.json").read_text())
    (translated / "build_manifest.json").write_text(json.dumps({**manifest, "kind": "translated-prompts"}))
    res = mix(MixConfig(inputs=[str(seeded["b"]), str(translated)], size=40, seed=0, out=tmp_path / "m",
                        translated_fraction=0.25, validation_size=8, max_contamination=1.0), log=lambda *_: None)
    assert res.recipe["by_origin"] == {"native": 30, "translated": 10}
    assert {r["origin"] for r in rows(tmp_path / "m") if r["input"] == str(translated)} == {"translated"}
    with pytest.raises(BuildError, match=r"0.4: 600 native training rows wanted, \d+ available"):
        mix(MixConfig(inputs=[str(seeded["b"]), str(translated)], size=1000, out=tmp_path / "m2",
                      translated_fraction=0.4, max_contamination=1.0), log=lambda *_: None)


def test_allocation_is_water_filling_under_the_cap():
    assert allocate({"big": 1000, "small": 5, "mid": 40}, 60) == {"big": 28, "mid": 27, "small": 5}
    assert allocate({"big": 1000, "small": 5, "mid": 40}, 60, cap=20) == {"big": 20, "mid": 20, "small": 5}
    assert allocate({"a": 3, "b": 4}, 100) == {"a": 3, "b": 4}  # fewer rows than asked: all of them
    assert sum(allocate({f"t{i}": 10_000 for i in range(63)}, 800_000).values()) == 630_000
    assert sum(allocate({f"t{i}": 100_000 for i in range(63)}, 800_000).values()) == 800_000


def test_a_benchmark_the_catalog_flags_now_is_kept_out_of_a_build_made_before_it_was_flagged(seeded, tmp_path):
    """The leaderboard benchmarks are eval_only in the package catalog. A build whose manifest does not flag an
    entry (made before the flag, or by hand) still gives mix none of its rows: here a copy of build A whose rows
    are renamed to the catalog's EgyHellaSwag entry, with eval_only false in its manifest."""
    from builders.training.mixture import catalog_eval_only

    assert {"alghafa_mcq_exams_ar", "arabicmmlu_multiple_choice_qa", "mmmlu_ar_multiple_choice_qa",
            "egyhellaswag_sentence_completion"} <= catalog_eval_only()
    bench = "egyhellaswag_sentence_completion"
    old = tmp_path / "old"
    shutil.copytree(seeded["a"], old)
    for f in (old / "data").rglob("*.parquet"):
        t = pq.read_table(f)
        pq.write_table(t.set_column(t.schema.get_field_index("dataset_name"), "dataset_name",
                                    pa.array([bench] * len(t))), f)
    manifest = json.loads((old / "build_manifest.json").read_text())
    manifest["sources"] = [{**s, "name": bench, "eval_only": False} for s in manifest["sources"]]
    (old / "build_manifest.json").write_text(json.dumps(manifest))
    res = mix(MixConfig(inputs=[str(seeded["b"]), str(old)], size=100000, out=tmp_path / "m", validation_size=1000,
                        max_contamination=1.0), log=lambda *_: None)
    assert res.recipe["excluded"]["eval_only"] >= len(rows(old)) - len(rows(old, "test")) > 0
    assert bench not in {r["dataset_name"] for r in rows(tmp_path / "m")}
    assert res.recipe["size"] > 0  # build B's own rows were taken
