"""Every Arabic dataset in ../shared/data builds from its real files, and its prompts are checked."""

from __future__ import annotations

import re

import pyarrow.parquet as pq
import pytest

from builders.catalog import load_catalog
from builders.pipeline import BuildConfig, build

# catalog entry -> folder under shared/data (the 16 datasets of the first table of its README)
SHARED = {
    "ajgt_sentiment": "ajgt",
    "akec_keyphrase_extraction": "akec_keyphrase_topic",
    "akec_topic_classification": "akec_keyphrase_topic",
    "anercorp_entity_counting": "anercorp",
    "anercorp_location_extraction": "anercorp",
    "anercorp_ner": "anercorp",
    "anercorp_person_extraction": "anercorp",
    "anetac_back_transliteration": "anetac_transliteration",
    "anetac_entity_type": "anetac_transliteration",
    "anetac_transliteration": "anetac_transliteration",
    "ans_claim_verification": "ans_stance",
    "ans_stance": "ans_stance",
    "arcd_answer_sentence_selection": "arcd",
    "arcd_extractive_qa": "arcd",
    "arsarcasm_dialect": "arsarcasm",
    "arsarcasm_sarcasm": "arsarcasm",
    "arsarcasm_sentiment": "arsarcasm",
    "arsarcasm_tweet_profiling": "arsarcasm",
    "astd_sentiment": "astd",
    "astd_subjectivity": "astd",
    "elsahar_att_sentiment": "elsahar_multidomain_reviews",
    "elsahar_prod_sentiment": "elsahar_multidomain_reviews",
    "elsahar_res2_sentiment": "elsahar_multidomain_reviews",
    "elsahar_res_sentiment": "elsahar_multidomain_reviews",
    "mawqif_sarcasm": "mawqif",
    "mawqif_sentiment": "mawqif",
    "mawqif_stance": "mawqif",
    "mawqif_target_identification": "mawqif",
    "metrec_hemistich_completion": "metrec_poetry_meter",
    "metrec_poetry_meter": "metrec_poetry_meter",
    "newsfane_fine_grained_ner": "newsfane_gold",
    "newsfane_organization_extraction": "newsfane_gold",
    "newsfane_person_role_classification": "newsfane_gold",
    "osact2020_hate_speech": "osact2020",
    "osact2020_offense_severity": "osact2020",
    "osact2020_offensive": "osact2020",
    "t_hsab_hate_speech": "t_hsab",
    "tashkeela_diacritization": "tashkeela_diacritization",
    "tashkeela_undiacritization": "tashkeela_diacritization",
    "tashkeela_word_diacritization": "tashkeela_diacritization",
    "ud_arabic_pud_dependency_parsing": "ud_arabic_pud_pos",
    "ud_arabic_pud_dependency_relations": "ud_arabic_pud_pos",
    "ud_arabic_pud_lemmatization": "ud_arabic_pud_pos",
    "ud_arabic_pud_morphology": "ud_arabic_pud_pos",
    "ud_arabic_pud_pos": "ud_arabic_pud_pos",
    "ud_arabic_pud_tokenization": "ud_arabic_pud_pos",
    "ud_arabic_pud_translation": "ud_arabic_pud_pos",
}
ARABIC = re.compile("[\u0600-\u06ff]")


@pytest.fixture(scope="module")
def shared_build(tmp_path_factory, shared_data):
    out = tmp_path_factory.mktemp("all_shared") / "out"
    local = {name: str(shared_data / folder) for name, folder in SHARED.items()}
    res = build(BuildConfig(out=out, datasets=sorted(local), local=local, workers=2, limit=120,
                            prompts_per_task=2000))
    rows = [r for p in sorted((out / "data").rglob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    return res, rows


def test_every_shared_folder_is_mapped(shared_data):
    readme = (shared_data / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Arabic datasets")[1].split("##")[0]
    folders = {n for n in re.findall(r"^\| (\w+) \|", table, flags=re.M) if n != "name"}
    assert folders == set(SHARED.values())
    catalog = load_catalog()
    assert all(catalog[name].local for name in SHARED)


@pytest.mark.parametrize("name", sorted(SHARED))
def test_dataset_builds_with_clean_arabic_prompts(shared_build, name):
    res, rows = shared_build
    mine = [r for r in rows if r["dataset_name"] == name]
    assert res.report["by_dataset"].get(name, 0) == len(mine) > 0
    entry = load_catalog()[name]
    # every template is there, except that a derived template naming no derived_task has no test prompts
    # (original_task: false, SCHEMA.md): on a test-only source such as UD PUD it has none at all
    splits = {r["split"] for r in mine}
    expected = {t.name for t in entry.templates if entry.template_task(t) is not None or splits - {"test"}}
    assert {r["template_name"] for r in mine} == expected
    kept_out = [t for t in entry.templates if entry.template_task(t) is None]
    for r in mine:
        assert r["split"] != "test" or r["template_name"] not in {t.name for t in kept_out}, r["template_name"]
    if kept_out and "test" in splits:
        assert res.report["skipped"][name]["render: derived template without derived_task, kept out of the test config"] > 0
    for r in mine:
        for field in ("inputs", "targets"):
            text = r[field]
            assert text.strip(), (name, field)
            assert not re.search(r"(?<!\w)None(?!\w)", text), (name, text[:80])
            assert "{{" not in text and "{%" not in text and "|||" not in text, (name, text[:80])
        assert ARABIC.search(r["inputs"]), r["inputs"][:80]
        if entry.task_family == "classification" and r["answer_choices"]:
            assert r["targets"] in r["answer_choices"], (name, r["targets"])
            assert ARABIC.search(r["targets"]), (name, r["targets"])  # a label rendered as Arabic text
    # a source's own test split stays test
    if any(v == "test" for v in entry.splits.values()):
        assert any(r["split"] == "test" for r in mine)
