"""Build integrity: one split per source text across entries, tasks and datasets; source_id on every row;
output folders that are not ours are never touched; the sandbox; catalog shadowing; Hub revisions.
Each test builds the case that would break its guarantee (two entries over one source, a test text in another
dataset's train, a user's data/ folder, a mutating template, ...)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest

from builders.catalog import CatalogError, load_catalog
from builders.hub import validate
from builders.pipeline import BuildConfig, BuildError, build
from builders.templates import TemplateError, load_templates
from conftest import REPO

TEMPLATE = """  {uid}: !Template
    answer_choices: {choices}
    id: {uid}
    jinja: "{jinja}"
    metadata: !TemplateMetadata {{languages: [ar], metrics: [Accuracy], original_task: true}}
    name: {name}
    reference: ''
"""


def entry(root: Path, name: str, columns: dict, labels: dict | None = None, splits: dict | None = None,
          files: dict | None = None, templates: list[tuple[str, str, str]] | None = None, extra: str = "") -> None:
    """One user catalog entry (catalog/<name>.yaml + templates) reading csv files of a --local folder."""
    (root / "catalog").mkdir(parents=True, exist_ok=True)
    (root / "templates" / name).mkdir(parents=True, exist_ok=True)
    lines = [f"name: {name}", "hub_id: null", "hub_note: made in the test", f"task: {name}",
             "task_family: classification", "license: cc-by-4.0",
             "columns: {" + ", ".join(f"'{k}': '{v}'" for k, v in columns.items()) + "}"]
    if labels:
        lines.append("labels:")
        lines += [f"  '{var}': {{names: [{', '.join(repr(n) for n in names)}]}}" for var, names in labels.items()]
    splits = splits or {"train": "train"}
    lines.append("splits: {" + ", ".join(f"{k}: {v}" for k, v in splits.items()) + "}")
    files = files or {s: f"{s}.csv" for s in splits}
    lines += ["local:", "  format: csv", "  files: {" + ", ".join(f"{k}: {v}" for k, v in files.items()) + "}"]
    (root / "catalog" / f"{name}.yaml").write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    body = "".join(TEMPLATE.format(uid=f"{i:08d}-0000-4000-8000-{zlib.crc32(name.encode()):012d}", choices=c,
                                   jinja=j, name=n) for i, (n, j, c) in enumerate(templates or []))
    (root / "templates" / name / "templates.yaml").write_text(f"dataset: {name}\ntemplates:\n{body}", encoding="utf-8")


def csv_file(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(header)] + [",".join(f'"{v}"' for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def rows_of(out: Path) -> list[dict]:
    return [r for p in sorted((out / "data").rglob("*.parquet")) for r in pq.read_table(p).to_pylist()]


WORDS = ("الطقس السفر العمل المدينة البحر الجبل القطار المطار الكتاب المدرسة السوق الحديقة المطر الشمس القمر "
         "النهر الطريق البيت الصديق العائلة المباراة الفريق الملعب الجمهور الهدف الحكم اللاعب المدرب الفوز الخسارة "
         "الطعام المطعم القهوة الشاي الخبز الفاكهة السيارة الحافلة الدراجة الشارع الجسر الميناء السفينة الرحلة "
         "الفندق الغرفة الصباح المساء الليل النهار الشتاء الصيف الربيع الخريف").split()


def tweets(n: int, prefix: str = "تغريدة") -> list[str]:
    """Distinct texts (no two share a run of five words, so none are linked by the builder's fingerprints)."""
    import random

    return [f"{prefix} {i} " + " ".join(random.Random(f"{prefix}{i}").sample(WORDS, 7)) for i in range(n)]


SENTIMENT = [("s", "ما شعور التغريدة؟ {{ text }} ||| {{ answer_choices[label] }}", "سلبي ||| إيجابي")]
OFFENSE = [("o", "هل هذه التغريدة مسيئة؟ {{ tweet }} ||| {{ answer_choices[offense] }}", "لا ||| نعم")]


def test_two_entries_over_one_source_give_each_text_one_split(tmp_path):
    """The old builder carved each entry independently (hash of entry name + record): about a quarter of the
    texts landed in train for one task and test for the other."""
    cat, data = tmp_path / "cat", tmp_path / "data"
    texts = tweets(80)
    csv_file(data / "train.csv", ["tweet", "sent", "off"],
             [[t, ["neg", "pos"][i % 2], ["no", "yes"][i % 3 == 0]] for i, t in enumerate(texts)])
    entry(cat, "toy_sent", {"text": "tweet", "label": "sent"}, {"label": ["neg", "pos"]}, templates=SENTIMENT)
    entry(cat, "toy_off", {"tweet": "tweet", "offense": "off"}, {"offense": ["no", "yes"]}, templates=OFFENSE)
    out = tmp_path / "out"
    build(BuildConfig(out=out, datasets=["toy_off", "toy_sent"], local={"toy_off": str(data), "toy_sent": str(data)},
                      catalog_dirs=[str(cat)]))
    rows = rows_of(out)
    split_of: dict[str, set] = {}
    for r in rows:
        text = next(t for t in texts if t in r["inputs"])
        split_of.setdefault(text, set()).add(r["split"])
    assert len(split_of) == 80 and all(len(s) == 1 for s in split_of.values())
    assert {s for v in split_of.values() for s in v} == {"train", "validation", "test"}  # carved, not all train
    # source_id: one per text, the same in both tasks
    ids = {}
    for r in rows:
        ids.setdefault(r["source_id"], set()).add(r["task"])
    assert len(ids) == 80 and all(v == {"toy_sent", "toy_off"} for v in ids.values())
    assert validate(out)["checks"]["source_texts_in_two_splits"] == 0


def test_same_text_with_other_spacing_or_label_stays_in_one_split(tmp_path):
    """Within one dataset: whitespace/diacritics variants and conflicting labels of one text."""
    cat, data = tmp_path / "cat", tmp_path / "data"
    base = tweets(60)
    rows = [[t, "pos"] for t in base]
    rows += [["  " + t.replace(" ", "   ") + " ", "pos"] for t in base[:20]]  # spacing variants, same label
    rows += [[t + "!!", "neg"] for t in base[20:40]]  # punctuation variants with the other label
    csv_file(data / "train.csv", ["text", "label"], rows)
    entry(cat, "toy_sent", {"text": "text", "label": "label"}, {"label": ["neg", "pos"]}, templates=SENTIMENT)
    out = tmp_path / "out"
    res = build(BuildConfig(out=out, datasets=["toy_sent"], local={"toy_sent": str(data)}, catalog_dirs=[str(cat)]))
    by_text: dict[str, set] = {}
    for r in rows_of(out):
        text = next(t for t in base if " ".join(t.split()) in " ".join(r["inputs"].split()))
        by_text.setdefault(text, set()).add(r["split"])
    assert all(len(s) == 1 for s in by_text.values())
    split = res.report["splitting"]
    assert split["duplicate_source_rows"] == 20  # the spacing variants: same text, same label, kept once
    assert split["conflicting_label_texts"] == 20  # kept once per label, in one split
    assert res.report["skipped"]["toy_sent"]["source: duplicate source row"] == 20


def test_a_text_that_is_test_in_one_dataset_is_test_in_another(tmp_path):
    cat, a, b = tmp_path / "cat", tmp_path / "a", tmp_path / "b"
    texts = tweets(40)
    csv_file(a / "train.csv", ["text", "label"], [[t, "pos"] for t in texts[:30]])
    csv_file(a / "test.csv", ["text", "label"], [[t, "neg"] for t in texts[30:]])
    # dataset b has the test texts of a in its train split (with other punctuation), and nothing else is test
    csv_file(b / "train.csv", ["tweet", "off"], [[t + "؟", "no"] for t in texts])
    entry(cat, "toy_sent", {"text": "text", "label": "label"}, {"label": ["neg", "pos"]},
          splits={"train": "train", "test": "test"}, templates=SENTIMENT)
    entry(cat, "toy_off", {"tweet": "tweet", "offense": "off"}, {"offense": ["no", "yes"]}, templates=OFFENSE,
          extra="split_fractions: {validation: 0.0, test: 0.0}\n")
    out = tmp_path / "out"
    res = build(BuildConfig(out=out, datasets=["toy_off", "toy_sent"], local={"toy_off": str(b), "toy_sent": str(a)},
                            catalog_dirs=[str(cat)]))
    rows = rows_of(out)
    sent_split = {next(t for t in texts if t in r["inputs"]): r["split"] for r in rows if r["task"] == "toy_sent"}
    for r in (r for r in rows if r["task"] == "toy_off"):
        text = next(t for t in texts if t in r["inputs"])
        assert r["split"] == sent_split[text], r["inputs"]  # toy_off itself carves nothing (fractions 0)
        assert r["split"] == "test" or text in texts[:30]
    moved = res.report["splitting"]["by_dataset"]["toy_off"]["moved_to_higher_split"]
    assert moved["test"] == 10 and moved.get("validation", 0) == sum(v == "validation" for v in sent_split.values())


def test_texts_shared_through_another_column_are_linked(tmp_path):
    """A sentence pair whose second sentence is a claim of another task (as in ANS): the pair, its first
    sentence's rows and the claim's rows share one split."""
    cat, pairs, claims = tmp_path / "cat", tmp_path / "pairs", tmp_path / "claims"
    s1, s2 = tweets(50, "خبر"), tweets(50, "ادعاء")
    csv_file(pairs / "train.csv", ["s1", "s2", "stance"], [[a, b, "agree"] for a, b in zip(s1, s2)])
    csv_file(claims / "train.csv", ["claim", "fake"], [[b, "no"] for b in s2])
    entry(cat, "toy_pairs", {"a": "s1", "b": "s2", "label": "stance"}, {"label": ["agree", "disagree"]},
          templates=[("p", "{{ a }} / {{ b }} ||| {{ answer_choices[label] }}", "يتفق ||| يختلف")])
    entry(cat, "toy_claims", {"claim": "claim", "label": "fake"}, {"label": ["no", "yes"]},
          templates=[("c", "هل الخبر كاذب؟ {{ claim }} ||| {{ answer_choices[label] }}", "لا ||| نعم")])
    out = tmp_path / "out"
    res = build(BuildConfig(out=out, datasets=["toy_claims", "toy_pairs"],
                            local={"toy_claims": str(claims), "toy_pairs": str(pairs)}, catalog_dirs=[str(cat)]))
    split_of: dict[str, set] = {}
    for r in rows_of(out):
        for t in s2:
            if t in r["inputs"]:
                split_of.setdefault(t, set()).add(r["split"])
    assert len(split_of) == 50 and all(len(v) == 1 for v in split_of.values())
    assert res.report["splitting"]["components"] == 50


def test_a_category_column_does_not_link_everything(tmp_path):
    """A low-cardinality text column (a target, a meter) in the key would chain every row into one component
    and put the whole dataset in one split; texts shared by more than MAX_LINK_ROWS rows link nothing."""
    from builders.splits import MAX_LINK_ROWS

    cat, data = tmp_path / "cat", tmp_path / "data"
    n = 2 * MAX_LINK_ROWS + 50
    csv_file(data / "train.csv", ["text", "target", "label"],
             [[t, ["اللقاح", "المرأة"][i % 2], "pos"] for i, t in enumerate(tweets(n))])
    entry(cat, "toy_target", {"text": "text", "target": "target", "label": "label"}, {"label": ["neg", "pos"]},
          templates=[("t", "{{ target }}: {{ text }} ||| {{ answer_choices[label] }}", "سلبي ||| إيجابي")])
    out = tmp_path / "out"
    res = build(BuildConfig(out=out, datasets=["toy_target"], local={"toy_target": str(data)}, catalog_dirs=[str(cat)]))
    split = res.report["splitting"]
    assert split["components"] == n and split["largest_component_rows"] == 1
    assert split["category_texts_not_linking"] == 2
    assert set(res.report["by_task_split"]["toy_target"]) == {"train", "validation", "test"}


# ----------------------------------------------------------------------------------------- output safety


def _toy(tmp_path) -> tuple[Path, Path]:
    cat, data = tmp_path / "cat", tmp_path / "data"
    csv_file(data / "train.csv", ["text", "label"], [[t, "pos"] for t in tweets(30)])
    entry(cat, "toy_sent", {"text": "text", "label": "label"}, {"label": ["neg", "pos"]}, templates=SENTIMENT)
    return cat, data


def test_build_refuses_a_folder_that_is_not_ours_and_touches_nothing(tmp_path):
    cat, data = _toy(tmp_path)
    mine = tmp_path / "project"
    (mine / "data").mkdir(parents=True)
    (mine / "data" / "thesis.csv").write_text("precious\n")
    (mine / "notes.txt").write_text("mine\n")
    before = sorted(str(p.relative_to(mine)) for p in mine.rglob("*"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's code, run from the user's folder
    proc = subprocess.run([sys.executable, "-m", "builders.cli", "build", "--datasets", "toy_sent", "--local",
                           f"toy_sent={data}", "--catalog-dir", str(cat), "--out", "."], cwd=mine, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "refusing to write" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(str(p.relative_to(mine)) for p in mine.rglob("*")) == before
    assert (mine / "data" / "thesis.csv").read_text() == "precious\n"


def test_rebuilding_our_folder_deletes_only_our_files(tmp_path):
    cat, data = _toy(tmp_path)
    out = tmp_path / "out"
    cfg = dict(out=out, datasets=["toy_sent"], local={"toy_sent": str(data)}, catalog_dirs=[str(cat)])
    build(BuildConfig(**cfg))
    (out / ".gitattributes").write_text("*.parquet filter=lfs\n")  # a Hub clone's file beside our build
    csv_file(data / "train.csv", ["text", "label"], [[t, "neg"] for t in tweets(12, "نص")])
    build(BuildConfig(**cfg))  # our earlier build: rebuilt in place
    assert (out / ".gitattributes").read_text() == "*.parquet filter=lfs\n"
    assert all("نص" in r["inputs"] for r in rows_of(out))
    assert validate(out)["rows"] == len(rows_of(out))
    stray = next((out / "data").rglob("*.parquet")).parent / "extra-00000-of-00001.parquet"
    stray.write_bytes(b"not ours")
    with pytest.raises(BuildError, match="did not write"):
        build(BuildConfig(**cfg))
    assert stray.read_bytes() == b"not ours"


def test_an_interrupted_first_build_is_ours_to_resume(tmp_path):
    """A build killed before finalize has no manifest yet; its marker makes the folder ours."""
    from builders.finalize import MARKER

    cat, data = _toy(tmp_path)
    out = tmp_path / "out"
    (out / "_build").mkdir(parents=True)
    (out / MARKER).write_text(json.dumps({"tool": "arabic-prompts"}))
    build(BuildConfig(out=out, datasets=["toy_sent"], local={"toy_sent": str(data)}, catalog_dirs=[str(cat)]))
    assert rows_of(out)


# -------------------------------------------------------------------------------------- templates, catalog


def _templates_file(tmp_path, *templates: str) -> Path:
    path = tmp_path / "templates.yaml"
    path.write_text("dataset: t\ntemplates:\n" + "".join(templates), encoding="utf-8")
    return path


def test_a_template_cannot_change_the_row_the_next_one_renders(tmp_path):
    mutating = TEMPLATE.format(uid="a", choices="null", name="pop",
                               jinja="{% set _ = answers.pop(0) %}{{ q }} ||| {{ answers[0] }}")
    plain = TEMPLATE.format(uid="b", choices="null", name="plain", jinja="{{ q }} ||| {{ answers[0] }}")
    first, second = load_templates(_templates_file(tmp_path, mutating, plain))
    row = {"q": "ما عاصمة مصر؟", "answers": ["القاهرة", "الإسكندرية"]}
    with pytest.raises(TemplateError, match="unsafe") as err:
        first.render(row, "train:0")
    assert not err.value.row_level  # a template bug stops the build, naming it
    assert row["answers"] == ["القاهرة", "الإسكندرية"]
    assert second.render(row)[1] == "القاهرة"


def test_separator_inside_data_never_leaks_the_placeholder(tmp_path):
    tpl = TEMPLATE.format(uid="c", choices="'{{ options | join(\" ||| \") }}'", name="opts",
                          jinja="{{ q }} {{ answer_choices | join(', ') }} ||| {{ answer_choices[gold] }}")
    (t,) = load_templates(_templates_file(tmp_path, tpl))
    inputs, targets, choices = t.render({"q": "اختر", "options": ["أ ||| ب", "ج", ["د ||| هـ"][0]], "gold": 0})
    assert choices == ["أ ||| ب", "ج", "د ||| هـ"] and targets == "أ ||| ب"
    assert not any("\ue000" in x or "\ue001" in x for x in [inputs, targets, *choices])


def test_output_is_bounded(tmp_path):
    huge = TEMPLATE.format(uid="d", choices="null", name="huge", jinja="{{ 'x' * 100000000 }} ||| y")
    loop = TEMPLATE.format(uid="e", choices="null", name="loop",
                           jinja="{% for i in range(100000) %}{{ q }}{% endfor %} ||| y")
    a, b = load_templates(_templates_file(tmp_path, huge, loop))
    with pytest.raises(TemplateError, match="unsafe|exceeds"):
        a.render({"q": "x"})
    with pytest.raises(TemplateError, match="longer than") as err:
        b.render({"q": "نص طويل " * 3})
    assert err.value.row_level  # the row is rejected with its reason


def test_duplicate_template_ids_are_refused(tmp_path):
    one = TEMPLATE.format(uid="same", choices="null", name="one", jinja="{{ q }} ||| a")
    two = TEMPLATE.format(uid="same", choices="null", name="two", jinja="{{ q }} ||| b")
    with pytest.raises(TemplateError, match="'same' appears twice"):  # two entries under one key
        load_templates(_templates_file(tmp_path, one, two))
    other_key = two.replace("  same: !Template", "  other: !Template")  # two keys, one id inside
    with pytest.raises(TemplateError, match="two templates with id 'same'"):
        load_templates(_templates_file(tmp_path, one, other_key))


def test_a_user_entry_shadowing_a_package_entry_needs_override(tmp_path):
    src = load_catalog()["ajgt_sentiment"]
    (tmp_path / "catalog").mkdir()
    (tmp_path / "templates" / "ajgt_sentiment").mkdir(parents=True)
    (tmp_path / "catalog" / "ajgt_sentiment.yaml").write_text(
        src.source_file.read_text(encoding="utf-8").replace("license: afl-3.0", "license: cc-by-4.0"), encoding="utf-8")
    (tmp_path / "templates" / "ajgt_sentiment" / "templates.yaml").write_text(
        src.templates_file.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(CatalogError, match="already defined by .*--override"):
        load_catalog([tmp_path])
    assert load_catalog([tmp_path], override=True)["ajgt_sentiment"].license == "cc-by-4.0"


def test_a_catalog_key_written_twice_is_refused(tmp_path):
    """A catalog file that names a key twice (two `license:` lines) stops with the file and the key, instead of
    YAML's silent last-one-wins."""
    src = load_catalog()["ajgt_sentiment"]
    (tmp_path / "catalog").mkdir()
    (tmp_path / "templates" / "ajgt_user").mkdir(parents=True)
    text = src.source_file.read_text(encoding="utf-8").replace("name: ajgt_sentiment", "name: ajgt_user")
    (tmp_path / "catalog" / "ajgt_user.yaml").write_text(text + "license: cc-by-4.0\n", encoding="utf-8")
    (tmp_path / "templates" / "ajgt_user" / "templates.yaml").write_text(
        src.templates_file.read_text(encoding="utf-8").replace("dataset: ajgt_sentiment", "dataset: ajgt_user"),
        encoding="utf-8")
    with pytest.raises(CatalogError, match=r"ajgt_user\.yaml.*'license' appears twice"):
        load_catalog([tmp_path])


# ------------------------------------------------------------------------------------------ Hub revisions


class FakeHubApi:
    """The Hub's dataset_info (mock: no Hub is reachable here): the commit a revision points at."""

    def __init__(self, sha: str):
        self.sha, self.asked = sha, []

    def dataset_info(self, repo_id, revision=None):
        self.asked.append((repo_id, revision))
        return SimpleNamespace(sha=self.sha)


def test_the_resolved_hub_commit_is_recorded_and_an_upstream_change_rebuilds(tmp_path, monkeypatch):
    """A Hub-read entry: the manifest records the commit its revision resolved to, the read is pinned to it,
    and a new upstream commit changes the fingerprint (the old work files are not reused). The Hub is mocked:
    dataset_info answers a sha, and load_dataset(hub_id, revision=sha) serves rows made here."""
    import datasets

    reads = []

    def fake_load_dataset(path, name=None, revision=None, **kwargs):
        reads.append((path, name, revision))
        texts = tweets(20, "نسخة" + revision[:2])
        return datasets.DatasetDict({"train": datasets.Dataset.from_dict(
            {"text": texts, "label": [i % 2 for i in range(20)]})})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    cfg = dict(datasets=["ajgt_sentiment"])
    api = FakeHubApi("a1" * 20)
    first = build(BuildConfig(out=tmp_path / "out", **cfg), api=api)
    source = first.manifest["sources"][0]
    assert api.asked == [("komari6/ajgt_twitter_ar", None)]  # the catalog pins no revision: main, resolved
    assert source["resolved_revision"] == "a1" * 20 and source["revision"] is None
    assert reads[-1] == ("komari6/ajgt_twitter_ar", "plain_text", "a1" * 20)
    again = build(BuildConfig(out=tmp_path / "out", **cfg), api=FakeHubApi("a1" * 20))
    assert again.manifest["fingerprint"] == first.manifest["fingerprint"]
    changed = build(BuildConfig(out=tmp_path / "out", **cfg), api=FakeHubApi("b2" * 20))
    assert changed.manifest["fingerprint"] != first.manifest["fingerprint"]
    assert changed.manifest["sources"][0]["resolved_revision"] == "b2" * 20
    assert all("نسخةb2" in r["inputs"] for r in rows_of(tmp_path / "out"))


# ------------------------------------------------------------------------------------------------ structure


def test_schema_is_at_the_bottom_and_publishing_needs_no_datatrove():
    code = ("import sys, builders.schema; assert not [m for m in sys.modules if m.startswith('builders.')"
            " and m != 'builders.schema'], sys.modules.keys();"
            "import builders.hub, builders.card;"
            "assert not [m for m in sys.modules if m.startswith('datatrove')];"
            "assert 'builders.pipeline' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)


def test_every_package_folder_is_installed():
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.relative_to(REPO).parent.parts) for p in (REPO / "builders").rglob("*.py")
             if "__pycache__" not in p.parts}
    assert found <= listed, sorted(found - listed)


def test_rows_holding_the_separator_build_as_render_gives_them(tmp_path):
    """The render stage looks for '|||' in each row's record (one vectorised pass) before asking the row itself:
    a row whose data holds it must still be rendered as ``Template.render`` renders it (the separator kept in
    the inputs, not taken for the template's), and the rows around it too."""
    from builders.catalog import load_catalog
    from builders.pipeline import BuildConfig, build

    texts = tweets(12)
    for i in (2, 7):
        texts[i] = texts[i].replace(" ", " ||| ", 1)  # the separator inside the data
    cat, data = tmp_path / "cat", tmp_path / "data"
    csv_file(data / "train.csv", ["text", "label"], [[t, ["neg", "pos"][i % 2]] for i, t in enumerate(texts)])
    entry(cat, "toy_sep", {"text": "text", "label": "label"}, {"label": ["neg", "pos"]}, templates=SENTIMENT)
    build(BuildConfig(out=tmp_path / "out", datasets=["toy_sep"], local={"toy_sep": str(data)},
                      catalog_dirs=[str(cat)], workers=1))
    (tpl,) = load_catalog([cat])["toy_sep"].templates
    got = {r["inputs"]: r["targets"] for r in rows_of(tmp_path / "out")}
    expected = dict(tpl.render({"text": t, "label": i % 2})[:2] for i, t in enumerate(texts))
    assert got == expected
    assert sum("|||" in inputs for inputs in got) == 2
