"""The topic x country grid (data files), the cells sampled from it and the versioned generation prompt."""

from __future__ import annotations

import re

import pytest
import yaml

from builders.dialogues.filters import arabic_ratio
from builders.dialogues.grid import (COUNTRY_FIELDS, GRID_DIR, TOPIC_FIELDS, GridError, Topic, _load, load_countries,
                                     load_topics, make_cells)
from builders.dialogues.prompt import DialoguePrompt
from builders.templates import TemplateError

# Arab League members where Arabic is official but not the majority's spoken language (the dialect rule)
ARAB_LEAGUE_MSA = {"somalia", "djibouti", "comoros"}
LINGUA_FRANCA = {"chad": "shu", "south_sudan": "pga"}


def _arabic_only(text: str) -> bool:
    """Every letter is in Arabic script (digits, spaces and punctuation allowed)."""
    return arabic_ratio(text) == 1.0 and any(ch.isalpha() for ch in text)


def test_grid_counts_and_unique_keys():
    topics, countries = load_topics(), load_countries()
    assert len(topics) == 93 and len(countries) == 151
    assert len({t.key for t in topics}) == 93
    assert len({c.key for c in countries}) == 151
    assert len({c.iso2 for c in countries}) == 151
    assert len({t.name_ar for t in topics}) == 93 and len({c.name_ar for c in countries}) == 151
    assert len({c.name_en for c in countries}) == 151


def test_every_field_present_and_arabic_fields_in_arabic_script():
    for raw in yaml.safe_load((GRID_DIR / "topics.yaml").read_text(encoding="utf-8"))["topics"]:
        assert set(raw) == set(TOPIC_FIELDS), raw["key"]
    for raw in yaml.safe_load((GRID_DIR / "countries.yaml").read_text(encoding="utf-8"))["countries"]:
        assert set(raw) == set(COUNTRY_FIELDS), raw["key"]
    for t in load_topics():
        assert _arabic_only(t.name_ar) and _arabic_only(t.description_ar), t.key
        assert arabic_ratio(t.name_en) == 0.0 and t.description_en.endswith("."), t.key
    for c in load_countries():
        assert _arabic_only(c.name_ar) and _arabic_only(c.dialect_ar), c.key
        assert re.fullmatch(r"[A-Z]{2}", c.iso2), c.key  # a quoted string: YAML would read NO (Norway) as false
        assert re.fullmatch(r"[a-z]{3}", c.dialect_code), c.key


def test_dialect_rule():
    countries = {c.key: c for c in load_countries()}
    league = {k for k, c in countries.items() if c.arab_league}
    assert len(league) == 22
    for key, c in countries.items():
        if c.arab_league and key not in ARAB_LEAGUE_MSA:
            assert not c.is_msa and c.region == "arab_world", key  # a spoken dialect
        elif key in LINGUA_FRANCA:
            assert c.dialect_code == LINGUA_FRANCA[key], key
        else:
            assert c.is_msa and c.dialect_en == "Modern Standard Arabic" and c.dialect_ar == "العربية الفصحى", key
    assert countries["egypt"].dialect_code == "arz" and countries["morocco"].dialect_code == "ary"
    assert countries["iraq"].dialect_code == "acm" and countries["mauritania"].dialect_code == "mey"
    assert {countries[k].dialect_code for k in ("jordan", "lebanon", "palestine", "syria")} == {"apc"}


def test_a_broken_grid_file_is_refused_naming_the_entry(tmp_path):
    bad = tmp_path / "topics.yaml"
    bad.write_text("topics:\n  - {key: food, name_en: Food, name_ar: طعام, description_en: x.}\n", encoding="utf-8")
    with pytest.raises(GridError, match=r"entry 0 \(food\): missing or empty \['description_ar'\]"):
        _load(bad, "topics", TOPIC_FIELDS, Topic)
    bad.write_text("topics:\n" + "".join(
        "  - {key: food, name_en: Food, name_ar: طعام, description_en: x., description_ar: ي}\n" for _ in range(2)),
        encoding="utf-8")
    with pytest.raises(GridError, match="entry 1 .*duplicate key 'food'"):
        _load(bad, "topics", TOPIC_FIELDS, Topic)
    with pytest.raises(GridError, match="unknown countries"):
        make_cells(countries=["atlantis"])


def test_cells_and_seeds_are_stable_whatever_else_is_sampled():
    full = make_cells(per_cell=2, seed=7, topics=["cooking", "football"], countries=["egypt", "japan"])
    assert [c.key for c in full] == ["cooking/egypt/0", "cooking/egypt/1", "cooking/japan/0", "cooking/japan/1",
                                     "football/egypt/0", "football/egypt/1", "football/japan/0", "football/japan/1"]
    alone = make_cells(per_cell=2, seed=7, topics=["football"], countries=["japan"])
    assert [c.seed for c in alone] == [c.seed for c in full[-2:]]
    assert len({c.seed for c in full}) == len(full)
    assert [c.seed for c in make_cells(per_cell=2, seed=8, topics=["football"], countries=["japan"])] != \
        [c.seed for c in alone]
    sample = make_cells(seed=3, max_cells=50)
    assert len(sample) == 50 and sample == make_cells(seed=3, max_cells=50)
    assert len(make_cells()) == 93 * 151


def test_prompt_renders_every_cell_in_the_sandbox():
    prompt = DialoguePrompt.load()
    assert re.fullmatch(r"topic_country_dialogue-v1-[0-9a-f]{8}", prompt.prompt_version)
    for cell in make_cells():
        text = prompt.render(cell, 6)
        assert cell.country.name_ar in text and cell.topic.name_ar in text and "6" in text
        assert (("الفصحى" in text) == cell.country.is_msa) and (cell.country.is_msa or cell.country.dialect_ar in text)
        assert "{{" not in text and f"{prompt.user_label}: ..." in text


def test_prompt_errors_and_version(tmp_path):
    src = (GRID_DIR.parent / "prompts" / "dialogue.yaml").read_text(encoding="utf-8")
    cell = make_cells(topics=["cooking"], countries=["egypt"])[0]
    typo = tmp_path / "typo.yaml"
    typo.write_text(src.replace("{{ topic_ar }}", "{{ topik_ar }}"), encoding="utf-8")
    with pytest.raises(TemplateError, match="'topik_ar' is undefined"):
        DialoguePrompt.load(typo).render(cell, 6)
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text(src.replace("{{ topic_ar }}", "{{ topic_ar.__class__.__mro__ }}"), encoding="utf-8")
    with pytest.raises(TemplateError, match="unsafe"):
        DialoguePrompt.load(unsafe).render(cell, 6)
    endless = tmp_path / "endless.yaml"  # the sandbox's output bound holds for the dialogue prompt too
    loops = "{% for i in range(1000) %}{% for j in range(1000) %}{{ topic_ar }}{% endfor %}{% endfor %}"
    endless.write_text(src.replace("{{ topic_ar }}", loops), encoding="utf-8")
    with pytest.raises(TemplateError, match="longer than"):
        DialoguePrompt.load(endless).render(cell, 6)
    edited = tmp_path / "edited.yaml"
    edited.write_text(src.replace("واقعية", "طبيعية"), encoding="utf-8")
    assert DialoguePrompt.load(edited).prompt_version != DialoguePrompt.load().prompt_version


def test_grid_and_preview_commands(capsys):
    from dialogues_fixtures import cli

    out = cli(capsys, "dialogues", "grid", "countries")
    assert len([line for line in out.splitlines() if line.strip()]) == 151 + 1
    assert "93 topics x 151 countries = 14043 cells" in out and "egypt" in out and "arz" in out
    shown = cli(capsys, "dialogues", "preview", "--topic", "coffee_tea", "--country", "kuwait", "--prompt-format",
                "jais")
    assert "### Instruction: اسمك جيس" in shown and "اللهجة الكويتية" in shown and "### Response: [|AI|]" in shown
