"""JSON of source rows and records: ``to_json``, the one encoding every stage writes (sorted keys, UTF-8, str()
for what JSON lacks), and ``from_json``, ``json.loads`` of a str with the same value and the same errors. Both
call the json module's C encoder and scanner directly, made once: ``json.dumps`` makes a new encoder for every
call and ``json.loads`` matches whitespace around every value, which on the short records of a build is most
of their cost (to_json 1.8 -> 0.9 us per row, from_json 1.5 -> 0.5)."""

from __future__ import annotations

import json
from json.encoder import c_make_encoder, encode_basestring
from typing import Any

_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, default=str)
# the encoder json.dumps(..., ensure_ascii=False, sort_keys=True, default=str) makes per call, made once; without
# the check for circular references (a row is made of JSON or Arrow values: it cannot hold itself)
_C_ENCODER = c_make_encoder and c_make_encoder(None, str, encode_basestring, None, _ENCODER.key_separator,
                                                _ENCODER.item_separator, True, False, True)
_SCAN = json.JSONDecoder().scan_once  # json.loads's own decoder settings (strict, no hooks)
_JSON_WHITESPACE = " \t\n\r"  # what JSON allows around a value (str.isspace allows more)


def to_json(value: Any) -> str:
    """``json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)``."""
    if _C_ENCODER is None or isinstance(value, str):
        return _ENCODER.encode(value)
    return "".join(_C_ENCODER(value, 0))


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
