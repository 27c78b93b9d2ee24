"""``builders.records`` stands in for the json module on the hot paths: ``from_json`` for ``json.loads`` (every
JSONL line a build reads, every record it renders) must give the same value, or the same error, for any text;
``to_json`` must give exactly ``json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)``."""

from __future__ import annotations

import datetime
import json
import random
from decimal import Decimal

import pytest

from builders.records import from_json, to_json

TEXTS = [
    '{"a": 1, "b": [1, 2.5, -3e4, true, false, null], "c": {"d": "ه\\u0629\\n\\"x\\""}}',
    '{"text": "تغريدة", "label": 2}\n', '{"text": "تغريدة"}\r\n', '[]', '"s"', '12', '-0.0', '1e999', 'NaN',
    '-Infinity', '{"big": 123456789012345678901234567890}', '{"lone": "\\ud800"}', '"\\u00e9"',
    # around the value: JSON whitespace is allowed, other Unicode whitespace is extra data
    ' {"a": 1}', '\t[1]\n', '{"a": 1} \t\n\r ', '{"a": 1}\x0c', '{"a": 1}\u00a0', '{"a": 1}\u2028', '{"a": 1}\x85',
    # not JSON at all, or more than one value
    '', ' ', '\n', '\ufeff{"a": 1}', '{"a": 1}{"b": 2}', '{"a": 1} x', '{"a": }', '{"a": 1', "{'a': 1}", 'tru',
    '[1, 2,]', '{"a": "\x01"}', '"\\x"', 'null null',
]


def outcome(fn, text: str):
    try:
        return "value", fn(text)
    except json.JSONDecodeError as e:
        return "error", (e.msg, e.pos, e.lineno, e.colno)


@pytest.mark.parametrize("text", TEXTS)
def test_from_json_gives_what_json_loads_gives(text):
    expected = outcome(json.loads, text)
    got = outcome(from_json, text)
    if expected[0] == "value" and expected[1] != expected[1]:  # NaN
        assert got[0] == "value" and got[1] != got[1]
    else:
        assert got == expected
        assert type(got[1]) is type(expected[1])


def test_from_json_reads_back_every_record_to_json_writes_and_random_damage_to_them():
    rng = random.Random(7)
    alphabet = ['"', "\\", "{", "}", "[", "]", ":", ",", " ", "\n", "\x0c", "\u00a0", "a", "1", "ة", "|", "e", "-", "."]
    rows = [{"text": "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))), "label": rng.randint(-5, 5),
             "tokens": [rng.choice(alphabet) * rng.randint(0, 3) for _ in range(rng.randint(0, 4))],
             "score": rng.random(), "none": None} for _ in range(300)]
    checked = {"value": 0, "error": 0}
    for row in rows:
        text = to_json(row)
        assert from_json(text) == row
        for _ in range(5):  # the same record with a character dropped, doubled or replaced
            i = rng.randrange(len(text))
            damaged = rng.choice([text[:i] + text[i + 1:], text[:i] + text[i] + text[i:],
                                  text[:i] + rng.choice(alphabet) + text[i + 1:], text + rng.choice(alphabet)])
            expected = outcome(json.loads, damaged)
            assert outcome(from_json, damaged) == expected, damaged
            checked[expected[0]] += 1
    assert checked["value"] > 100 and checked["error"] > 100  # both kinds were compared


def dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def test_to_json_is_json_dumps_with_the_builds_settings():
    rng = random.Random(11)
    alphabet = ['"', "\\", "\n", "\x00", "\x1f", "\u2028", "\ud800", "é", "ة", "|", "a", " ", "😀"]

    def value(depth: int):
        kind = rng.randrange(9 if depth < 3 else 6)
        if kind == 0:
            return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
        if kind == 1:
            return rng.choice([0, -1, 2**63, -(10**30), True, False, None])
        if kind == 2:
            return rng.choice([0.1, -0.0, 1e300, 1e-320, float("nan"), float("inf"), -float("inf"), rng.random()])
        if kind == 3:
            return rng.choice([datetime.date(2020, 2, 29), Decimal("1.10"), b"bytes", frozenset({1}), (1, "t")])
        if kind in (4, 5):
            return "".join(rng.choice(alphabet) for _ in range(3))
        if kind in (6, 7):
            return {"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 3))): value(depth + 1)
                    for _ in range(rng.randint(0, 4))}
        return [value(depth + 1) for _ in range(rng.randint(0, 4))]

    values = [value(0) for _ in range(2000)] + ["plain", "", 5, None, [], {}, {"b": 1, "a": [1.5, None]}]
    for v in values:
        assert to_json(v) == dumps(v)
    assert to_json({"a": object}) == dumps({"a": object})  # default=str for what JSON lacks
    with pytest.raises(TypeError):
        to_json({1: "a", "b": 2})  # keys of two kinds cannot be sorted: the same error as json.dumps
    with pytest.raises(TypeError):
        dumps({1: "a", "b": 2})
