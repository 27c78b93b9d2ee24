"""Parsing model output into conversations, validating them, and the Arabic-script and length filters."""

from __future__ import annotations

import json

import pytest
from dialogues_fixtures import EGYPTIAN, ENGLISH, GULF, TOO_SHORT, WITH_PREAMBLE

from builders.dialogues.conversations import ConversationsError, format_conversation, read_conversations
from builders.dialogues.filters import FilterConfig, arabic_ratio, normalized, reason_kind
from builders.dialogues.parse import parse_and_validate, parse_conversation, validate

U, A = "المستخدم", "المساعد"


def test_parses_plain_and_markdown_labels():
    plain = parse_and_validate(EGYPTIAN, U, A, 6)
    assert plain.ok and [m["role"] for m in plain.messages] == ["user", "assistant"] * 3
    assert plain.messages[0]["content"] == "صباح الخير، عايز أعرف أحسن طريقة أعمل بيها كشري في البيت."
    bold = parse_and_validate(GULF, U, A, 6)
    assert bold.ok and bold.messages[1]["content"].startswith("وعليكم السلام!")
    assert not any("*" in m["content"] for m in bold.messages)


def test_preamble_is_dropped_and_continuation_lines_kept():
    parsed = parse_and_validate(WITH_PREAMBLE, U, A, 6)
    assert parsed.ok and parsed.dropped_preamble == "بالتأكيد! إليك المحادثة المطلوبة:"
    text = f"{U}: سؤال أول عن الطقس؟\nوسؤال في سطر ثان\n{A} : جواب\n1. {U}： شكرا لك\n- {A}: العفو"
    parsed = parse_conversation(text, U, A)
    assert [m["content"] for m in parsed.messages] == ["سؤال أول عن الطقس؟\nوسؤال في سطر ثان", "جواب", "شكرا لك",
                                                       "العفو"]


@pytest.mark.parametrize("text, turns, reason", [
    ("لا أعرف", 6, "no turns found"),
    (f"{A}: أهلا\n{U}: مرحبا", 2, "first turn not by the user"),
    (f"{U}: أهلا\n{U}: مرحبا", 2, "roles do not alternate: turn 2"),
    (f"{U}: أهلا\n{A}:   \n{U}: مرحبا", 3, "empty turn: turn 2"),
    (TOO_SHORT, 6, "wrong turn count: 2 turns, expected 6"),
    (EGYPTIAN, 4, "wrong turn count: 6 turns, expected 4"),
])
def test_validation_reasons(text, turns, reason):
    assert parse_and_validate(text, U, A, turns).reason == reason


def test_format_and_parse_round_trip():
    messages = parse_conversation(GULF, U, A).messages
    again = parse_conversation(format_conversation(messages), U, A)
    assert again.messages == messages and validate(again.messages, 6) is None


def test_arabic_ratio_counts_letters_only():
    assert arabic_ratio("مرحبا 123 !") == 1.0
    assert arabic_ratio("hello") == 0.0
    assert arabic_ratio("زرت Paris") == pytest.approx(3 / 8)  # 3 Arabic letters of 8
    assert arabic_ratio("١٢٣ ...") == 1.0  # no letters at all


def test_filter_reasons():
    cfg = FilterConfig()
    assert cfg.check(parse_conversation(EGYPTIAN, U, A).messages) is None
    english = cfg.check(parse_conversation(ENGLISH, U, A).messages)
    assert english.startswith("low arabic ratio: 0.00 < 0.7 in turn 1") and reason_kind(english) == "low arabic ratio"
    short = cfg.check(parse_conversation(TOO_SHORT, U, A).messages)
    assert short == "conversation too short: 9 words < 20"  # 4 + 5 words
    one_word = [{"role": "user", "content": "مرحبا"}, {"role": "assistant", "content": "أهلا وسهلا بك"}]
    assert cfg.check(one_word) == "turn too short: turn 1 has 1 words < 2"
    assert FilterConfig(max_words=30).check(parse_conversation(EGYPTIAN, U, A).messages).startswith(
        "conversation too long")


def test_normalized_text_ignores_diacritics_and_spacing():
    a = [{"role": "user", "content": "مَرْحَبًا   بِكَ"}]
    b = [{"role": "user", "content": "مرحبا بك"}]
    assert normalized(a) == normalized(b) == "user: مرحبا بك"


def test_conversation_files_name_the_bad_line_or_row(tmp_path):
    good = {"messages": [{"role": "user", "content": "مرحبا"}, {"role": "assistant", "content": "أهلا"}]}
    path = tmp_path / "conv.jsonl"
    path.write_text(f"{json.dumps(good)}\n\n{{not json\n", encoding="utf-8")
    with pytest.raises(ConversationsError, match=r"conv.jsonl line 3: not JSON"):
        read_conversations(path)
    path.write_text(f"{json.dumps(good)}\n{json.dumps({'messages': [{'role': 'narrator', 'content': 'x'}]})}\n",
                    encoding="utf-8")
    with pytest.raises(ConversationsError, match=r"conv.jsonl row 1: message 0 is not"):
        read_conversations(path)
    path.write_text(json.dumps(good) + "\n", encoding="utf-8")
    assert read_conversations(path) == [good]
