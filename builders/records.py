"""JSON of source rows and records: ``to_json``, the one encoding every stage writes (sorted keys, UTF-8, str()
for what JSON lacks), and ``from_json``, ``json.loads`` of a str with the same value and the same errors, about
2.5x faster on the short records of a build (it calls the C scanner directly and leaves the rare text it
cannot take that way, leading whitespace or a BOM say, to ``json.loads``)."""

from __future__ import annotations

import json
from typing import Any

_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, default=str)  # one encoder, not one per call
_SCAN = json.JSONDecoder().scan_once  # json.loads's own decoder settings (strict, no hooks)
_JSON_WHITESPACE = " \t\n\r"  # what JSON allows around a value (str.isspace allows more)


def to_json(value: Any) -> str:
    """``json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)``."""
    return _ENCODER.encode(value)


def from_json(text: str) -> Any:
    """``json.loads(text)``: a value that starts the text and is followed by JSON whitespace at most is scanned
    directly; anything else goes to ``json.loads`` (which returns it or raises the error it always would)."""
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:
        return json.loads(text)
    if end != len(text) and text[end:].strip(_JSON_WHITESPACE):
        return json.loads(text)
    return value
