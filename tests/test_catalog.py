"""The package catalog: real entries, templates that fit their columns and labels, user catalogs."""

from __future__ import annotations

import re

import pytest

from builders.catalog import CatalogError, load_catalog

CATALOG = load_catalog()
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def test_catalog_size_and_task_spread():
    tasks = {e.task for e in CATALOG.values()}
    sources = {e.source_dataset for e in CATALOG.values()}
    assert len(sources) >= 80 and len(tasks) >= 70, (len(sources), len(tasks))
    for required in ("country_dialect_identification", "dialect_to_english_translation", "poetry_era_classification",
                     "poetry_rhyme_identification", "poetry_theme_classification", "story_writing", "dictionary_definition",
                     "root_identification", "claim_article_stance", "semantic_textual_similarity", "math_word_problems"):
        assert required in tasks, required
    for required in ("summarization", "headline_generation", "grammar_correction", "extractive_qa",
                     "named_entity_recognition", "pos_tagging", "diacritization", "transliteration",
                     "dialect_identification", "natural_language_inference", "stance_detection",
                     "emotion_classification", "sentiment_analysis", "creative_writing"):
        assert required in tasks, required
    assert tasks & {"open_qa", "closed_qa", "multiple_choice_qa"}


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_entry_is_complete_and_templates_fit(name):
    e = CATALOG[name]
    assert e.hub_id is None and e.hub_note or HUB_ID.match(e.hub_id), e.hub_id
    assert e.license and e.columns
    templates = e.check_templates()  # variables exist, answer_choices match label names
    assert 2 <= len(templates) <= 8, len(templates)
    assert len({t.id for t in templates}) == len(templates)
    arabic_instructions = 0
    for t in templates:
        assert "|||" in t.jinja
        instruction = re.sub(r"\{\{.*?\}\}|\{%.*?%\}", "", t.jinja, flags=re.S)
        arabic_instructions += bool(re.search("[\u0600-\u06ff]", instruction))
        if e.task_family == "classification" and t.fixed_choices:
            assert all(re.search("[\u0600-\u06ff]", c) for c in t.fixed_choices), t.fixed_choices
    # every template but at most one (a bare instruction-following prompt) wraps the row in Arabic instructions
    assert arabic_instructions >= len(templates) - 1, f"{name}: instructions are not Arabic"


def test_every_shared_arabic_dataset_has_an_entry(shared_data):
    readme = (shared_data / "README.md").read_text(encoding="utf-8")
    first_table = readme.split("## Arabic datasets")[1].split("##")[0]
    names = re.findall(r"^\| (\w+) \|", first_table, flags=re.M)
    names = [n for n in names if n != "name"]
    assert len(names) == 16
    covered = {str(e.description) + " " + e.name + " " + str(e.local) for e in CATALOG.values() if e.local}
    blob = " ".join(covered).lower()
    prefixes = {n: n.split("_")[0] for n in names}
    missing = [n for n, p in prefixes.items() if p not in blob]
    assert not missing, missing


def test_split_key_eval_only_and_source_dataset_are_set():
    """split_key on every entry (entries over one source key on the same text); eval_only on the Open Arabic LLM
    Leaderboard benchmarks; local-only entries name the dataset they read, so it counts once."""
    import yaml

    leaderboard = ("OALL/", "MBZUAI/ArabicMMLU", "MBZUAI/MadinahQA", "MBZUAI/human_translated_arabic_mmlu",
                   "Omartificial-Intelligence-Space/Arabic_Openai_MMMLU", "UBC-NLP/EgyHellaSwag")
    by_source: dict[str, set] = {}
    for e in CATALOG.values():
        raw = yaml.safe_load(e.source_file.read_text(encoding="utf-8"))
        assert raw.get("split_key"), e.name
        assert e.eval_only == bool(e.hub_id and e.hub_id.startswith(leaderboard)), e.name
        if not e.hub_id:
            assert raw.get("source_dataset"), f"{e.name}: a local-only entry names its source_dataset"
        key_text = tuple(sorted(e.columns[v] for v in e.split_key))
        by_source.setdefault((e.source_dataset, e.hub_config), set()).add(key_text if not e.local else tuple(e.split_key))
    # entries over one Hub dataset and config key on the same source columns (QA: the passage, tweets: the tweet)
    for source, keys in by_source.items():
        assert len(keys) == 1, (source, keys)
    for name in ("mlqa_ar_extractive_qa", "mlqa_ar_question_generation", "xquad_ar_extractive_qa", "arabic_squad_extractive_qa"):
        assert CATALOG[name].split_key == ["context"], name  # the passage, never the question
    for name in ("arcd_extractive_qa", "arcd_answer_sentence_selection"):
        assert CATALOG[name].split_key == ["title", "context"], name  # ARCD: the article and its passage


def user_catalog(root, mutate_entry=lambda t: t, mutate_templates=lambda t: t) -> None:
    """A --catalog-dir with 'my_tweets': a copy of ajgt_sentiment, optionally altered."""
    src = CATALOG["ajgt_sentiment"]
    (root / "catalog").mkdir()
    (root / "templates" / "my_tweets").mkdir(parents=True)
    text = src.source_file.read_text(encoding="utf-8").replace("name: ajgt_sentiment", "name: my_tweets")
    (root / "catalog" / "my_tweets.yaml").write_text(mutate_entry(text), encoding="utf-8")
    templates = mutate_templates(src.templates_file.read_text(encoding="utf-8"))
    (root / "templates" / "my_tweets" / "templates.yaml").write_text(templates, encoding="utf-8")


def test_user_catalog_dir_adds_entries(tmp_path):
    user_catalog(tmp_path)
    merged = load_catalog([tmp_path])
    assert "my_tweets" in merged and len(merged) == len(CATALOG) + 1
    assert merged["my_tweets"].check_templates()


@pytest.mark.parametrize(
    "mutation, message",
    [
        (lambda t: t.replace("task: sentiment_analysis\n", ""), "missing required key 'task'"),
        (lambda t: t.replace("task_family: classification", "task_family: vibes"), "task_family 'vibes'"),
        (lambda t: t.replace("name: my_tweets", "name: other"), "must equal the file name"),
        (lambda t: t.replace("splits:\n  train: train\n", "splits:\n  train: training\n"), "must map to one of"),
    ],
)
def test_bad_entries_name_the_file(tmp_path, mutation, message):
    user_catalog(tmp_path, mutate_entry=mutation)
    with pytest.raises(CatalogError, match=message) as err:
        load_catalog([tmp_path])
    assert "my_tweets.yaml" in str(err.value)


def test_template_with_unknown_variable_is_caught_before_reading_rows(tmp_path):
    user_catalog(tmp_path, mutate_templates=lambda t: re.sub(r"\{\{\s*text\b", "{{ tweet", t, count=1))
    entry = load_catalog([tmp_path])["my_tweets"]
    with pytest.raises(Exception, match=r"my_tweets.*undefined variable.*tweet"):
        entry.check_templates()


def test_label_ids_and_local_names():
    from builders.catalog import LabelSpec

    spec = LabelSpec(names=["-1", "1"], ids=True)
    assert spec.to_index("-1") == 0 and spec.to_index("1") == 1  # a local copy storing names
    assert spec.to_index(1) == 1 and spec.to_index(0) == 0  # the Hub's ClassLabel ids
    assert spec.to_index(2) is None and spec.to_index("maybe") is None
    named = LabelSpec(names=["neg", "pos"])
    assert named.to_index(" pos ") == 1 and named.to_index("x") is None
    assert LabelSpec(names=[-1, 1]).to_index(1.0) == 1  # "1.0" read by a typed reader
