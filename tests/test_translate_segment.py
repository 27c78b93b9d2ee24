"""Segmentation keeps a prompt's structure: shared PromptSource templates over small English rows, and the shared
Super-NaturalInstructions task files."""

from __future__ import annotations

import re

import pytest

from builders.translate.segment import (
    CHOICE,
    LABEL,
    LITERAL,
    SENTENCE,
    normalize,
    reassemble,
    segment,
    segment_target,
    segments_of,
)
from translate_fixtures import natural_instruction_texts, rendered_prompts

PROMPTS = rendered_prompts()


def fake_ar(segment_text: str) -> str:
    """A stand-in translation that is visibly different from its source and keeps no ASCII letters."""
    return "«" + "".join(chr(0x0627 + (ord(c) % 26)) if c.isalpha() else c for c in segment_text) + "»"


def test_rendered_prompts_cover_the_shared_templates():
    templates = {(p["dataset"], p["template"]) for p in PROMPTS}
    assert len(templates) >= 150 and len({p["dataset"] for p in PROMPTS}) >= 18


@pytest.mark.parametrize("side", ["inputs", "targets"])
def test_promptsource_prompts_round_trip_byte_for_byte(side):
    for p in PROMPTS:
        text = p[side]
        pieces = segment_target(text, p["answer_choices"]) if side == "targets" else segment(text, p["answer_choices"])
        assert "".join(piece.text for piece in pieces) == text, (p["dataset"], p["template"])
        # untranslated segments put back in place (normalisation aside) give the text again
        same = {normalize(piece.text): piece.text for piece in pieces if piece.translatable}
        assert reassemble(pieces, same) == text
        assert all(re.search(r"[^\W\d_]", piece.text) for piece in pieces if piece.translatable)


def test_natural_instructions_texts_round_trip_byte_for_byte():
    texts = natural_instruction_texts()
    assert len(texts) > 150
    n_segments = 0
    for text in texts:
        pieces = segment(text)
        assert "".join(p.text for p in pieces) == text
        n_segments += len(segments_of(pieces))
    assert n_segments > len(texts)  # definitions and passages are split into sentences


STRUCTURED = """EXAM
1. Answer by yes or no.

Document: Dr. Smith paid $3.50 for the U.S. edition in 2019. Was it worth it? See https://example.com/a?b=1 now.
Question: is it cheap?
Options:
- yes
- no
  (c) 42
Answer: 17.5
```python
print("Do not translate. This is code.")
```
Run `len(x)` first, then email help@example.org today."""


def test_structure_is_kept_when_segments_are_translated():
    pieces = segment(STRUCTURED, ["yes", "no"])
    out = reassemble(pieces, fake_ar)
    assert out.count("\n") == STRUCTURED.count("\n")
    for kept in ("https://example.com/a?b=1", 'print("Do not translate. This is code.")', "`len(x)`",
                 "help@example.org", "\n1. ", "\n- ", "\n  (c) 42\n", ": 17.5\n", "```python\n", "$3.50", ": "):
        assert kept in out, kept
    by_kind = {}
    for p in pieces:
        by_kind.setdefault(p.kind, []).append(p.text)
    assert by_kind[LABEL] == ["Document", "Question", "Options", "Answer"]
    assert by_kind[CHOICE] == ["yes", "no"]
    # sentences split inside a line, abbreviations and decimals left whole
    assert "Dr. Smith paid $3.50 for the U.S. edition in 2019." in by_kind[SENTENCE]
    assert "Was it worth it?" in by_kind[SENTENCE]
    # nothing with a letter is left untranslated except URLs, e-mail and code
    leftovers = [p.text for p in pieces if p.kind == LITERAL and re.search(r"[A-Za-z]", p.text)]
    assert all(re.search(r"https://|@|`|```|\(c\)", t) for t in leftovers), leftovers
    # every English letter outside them was translated
    stripped = re.sub(r"https://\S+|\S+@\S+|`[^`]+`|```python\n.*?```|\(c\)", "", out, flags=re.S)
    assert not re.search(r"[A-Za-z]", stripped), stripped


def test_answer_choices_are_translated_once_so_fixed_targets_stay_choices():
    fixed = [p for p in PROMPTS if p["fixed_choices"] and p["targets"] in p["answer_choices"]]
    assert len(fixed) > 60
    for p in fixed:
        target = segment_target(p["targets"], p["answer_choices"])
        choices_ar = {c: reassemble(segment_target(c, p["answer_choices"]), fake_ar) for c in p["answer_choices"]}
        assert [q.kind for q in target if q.translatable] in ([CHOICE], [])  # numeric choices stay literal
        assert reassemble(target, fake_ar) == choices_ar[p["targets"]]
        assert reassemble(target, fake_ar) in choices_ar.values()


def test_choices_listed_in_the_input_are_translated_like_the_choices():
    text = "Is this review positive or negative?\nOPTIONS:\n- negative\n- positive\nChoose one: negative, positive"
    pieces = segment(text, ["negative", "positive"])
    listed = [p.text for p in pieces if p.kind == CHOICE]
    assert listed == ["negative", "positive", "negative", "positive"]
    assert segment_target("positive", ["negative", "positive"]) == [p for p in pieces if p.kind == CHOICE][1:2]


def test_numeric_choices_and_numbers_are_literal():
    assert [p.kind for p in segment_target("3", ["1", "2", "3"])] == [LITERAL]
    pieces = segment("Rate it from 1 to 5.\n4\n3.5 / 5")
    assert segments_of(pieces) == ["Rate it from 1 to 5."]


def test_a_sentence_longer_than_the_limit_is_cut_and_joins_back():
    long = ("word, " * 300).strip()
    pieces = segment(long, max_chars=200)
    parts = segments_of(pieces)
    assert len(parts) >= 9 and all(len(s) <= 200 for s in parts)
    assert "".join(p.text for p in pieces) == long


def test_normalize_collapses_whitespace_and_composes():
    assert normalize("  Caf\u0065\u0301   is\tnice ") == "Caf\u00e9 is nice"
