"""original_task: false is honoured by the build: a derived template (metadata original_task: false) goes to the
task its derived_task names, or, naming none, stays out of its entry's evaluated test config (kept as a counted
reject with its reason); the card and the catalog count tasks the same way."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from builders.catalog import CatalogError, load_catalog
from builders.pipeline import BuildConfig, build
from builders.templates import TemplateError

CATALOG_YAML = """name: toy_pairs
hub_id: null
hub_note: written by the test
task: toy_translation
task_family: translation
license: mit
columns: {arabic: arabic, english: english}
split_key: [arabic]
splits: {train: train, test: test}
"""

TEMPLATES_YAML = """dataset: toy_pairs
templates:
  a1: !Template
    answer_choices: null
    id: a1
    jinja: 'ترجم إلى الإنجليزية: {{ arabic }} ||| {{ english }}'
    metadata: !TemplateMetadata
      languages: [ar]
      original_task: true
    name: ar_to_en
    reference: ''
  a2: !Template
    answer_choices: null
    id: a2
    jinja: 'ترجم إلى العربية: {{ english }} ||| {{ arabic }}'
    metadata: !TemplateMetadata
      derived_family: translation
      derived_task: toy_reverse
      languages: [ar]
      original_task: false
    name: en_to_ar
    reference: ''
  a3: !Template
    answer_choices: null
    id: a3
    jinja: 'كم كلمة في الجملة: {{ arabic }} ||| {{ arabic.split()|length }}'
    metadata: !TemplateMetadata
      languages: [ar]
      original_task: false
    name: count_words
    reference: ''
"""

ROWS = [("القطار يصل مساءً", "The train arrives in the evening", "train"),
        ("أحب القراءة كثيرًا", "I love reading a lot", "train"),
        ("المدينة جميلة في الربيع", "The city is beautiful in spring", "train"),
        ("الطقس بارد اليوم", "The weather is cold today", "test"),
        ("فتح المتحف أبوابه", "The museum opened its doors", "test")]


def toy(root, templates=TEMPLATES_YAML):
    cat = root / "cat"
    (cat / "catalog").mkdir(parents=True)
    (cat / "templates" / "toy_pairs").mkdir(parents=True)
    (cat / "catalog" / "toy_pairs.yaml").write_text(CATALOG_YAML, encoding="utf-8")
    (cat / "templates" / "toy_pairs" / "templates.yaml").write_text(templates, encoding="utf-8")
    data = root / "toy.jsonl"
    data.write_text("".join(json.dumps({"arabic": a, "english": e, "split": s}, ensure_ascii=False) + "\n" for a, e, s in ROWS),
                    encoding="utf-8")
    return cat, data


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("derived")
    cat, data = toy(root)
    out = root / "out"
    res = build(BuildConfig(out=out, datasets=["toy_pairs"], local={"toy_pairs": str(data)}, catalog_dirs=[str(cat)], workers=1))
    rows = [r for p in sorted((out / "data").rglob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    return out, res, rows


def test_derived_template_goes_to_its_own_task(built):
    out, res, rows = built
    reverse = [r for r in rows if r["template_name"] == "en_to_ar"]
    assert reverse and {r["task"] for r in reverse} == {"toy_reverse"} and {r["task_family"] for r in reverse} == {"translation"}
    assert {r["split"] for r in reverse} >= {"train", "test"}  # its own task config is evaluated too
    assert (out / "data" / "toy_reverse").is_dir()
    original = [r for r in rows if r["template_name"] == "ar_to_en"]
    assert {r["task"] for r in original} == {"toy_translation"} and any(r["split"] == "test" for r in original)


def test_derived_template_without_task_stays_out_of_the_test_config(built):
    out, res, rows = built
    counting = [r for r in rows if r["template_name"] == "count_words"]
    assert counting and {r["task"] for r in counting} == {"toy_translation"}
    assert "test" not in {r["split"] for r in counting}
    test_texts = {a for a, _, s in ROWS if s == "test"}
    assert not any(t in r["inputs"] for r in counting for t in test_texts)
    # nothing is lost silently: each left-out prompt is a counted reject with its reason
    skipped = res.report["skipped"]["toy_pairs"]
    key = next(k for k in skipped if "derived template without derived_task" in k)
    assert skipped[key] == sum(1 for *_, s in ROWS if s == "test")


def test_card_counts_and_lists_the_derived_task(built):
    out, res, rows = built
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "1 catalog entries over 1 distinct source datasets and 2 tasks" in card
    assert "| `toy_reverse` | translation | toy_pairs |" in card
    from builders.catalog_check import catalog_counts

    entry = load_catalog([out.parent / "cat"])["toy_pairs"]
    assert catalog_counts([entry]).tasks == 2


@pytest.mark.parametrize("metadata, message", [
    ("      derived_task: toy_reverse\n      original_task: true\n", "derived_task needs original_task: false"),
    ("      derived_task: Toy Reverse\n      derived_family: translation\n      original_task: false\n", "snake_case"),
    ("      derived_task: toy_reverse\n      original_task: false\n", "derived_family"),
])
def test_bad_derived_metadata_is_caught_before_reading_rows(tmp_path, metadata, message):
    broken = TEMPLATES_YAML.replace("      derived_family: translation\n      derived_task: toy_reverse\n      languages: [ar]\n"
                                    "      original_task: false\n", "      languages: [ar]\n" + metadata)
    cat, _ = toy(tmp_path, broken)
    entry = load_catalog([cat])["toy_pairs"]
    with pytest.raises((TemplateError, CatalogError), match=message):
        entry.check_templates()


def test_catalog_derived_tasks_are_catalog_tasks_of_the_same_family():
    """Every derived_task in the package catalog is the task of some entry, with that entry's family, so the
    evaluation's task list (eval_tasks STATIC_TASKS) names every config a build can produce."""
    catalog = load_catalog()
    families = {e.task: e.task_family for e in catalog.values()}
    derived = [(e.name, t.name, e.template_task(t)) for e in catalog.values() for t in e.check_templates()
               if t.metadata.get("original_task") is False]
    named = [(n, t, r) for n, t, r in derived if r]
    assert len(named) >= 8 and len(derived) > len(named)
    for name, tname, (task, family) in named:
        assert families.get(task) == family, (name, tname, task, family)
