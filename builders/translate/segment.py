"""Segmentation that keeps a prompt's structure: translatable segments and the literal text around them.

A prompt is cut into ``Piece`` objects whose texts, joined, give the prompt back byte for byte. Pieces of kind
``literal`` are kept as they are (newlines, indentation, list markers such as ``- `` / ``A. `` / ``(3) ``, the
colon after a label, URLs, e-mail addresses, inline and fenced code, numbers and anything without a letter);
the others are translated one by one and put back in their place, so a translated prompt has the same lines,
options, labels and code as the English one:

- ``label``: a short heading at the start of a line before a colon (``Question:``, ``Sentence 1:``);
- ``choice``: a whole line, list item or comma-separated item that is one of the row's answer choices, so it
  is translated exactly like the choice itself (a fixed-label target stays one of the translated choices);
- ``sentence``: a sentence inside a line, found by pysbd (rule-based, pure Python, offline; see ``split_sentences``).

Segments are normalised (NFC, runs of whitespace to one space) before translation and caching.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

LITERAL, SENTENCE, LABEL, CHOICE = "literal", "sentence", "label", "choice"
MAX_SEGMENT_CHARS = 600  # longer sentences are cut at a clause boundary (Marian reads 512 tokens at most)

_LINE = re.compile(r"(\r\n|\n|\r)")
_FENCE = re.compile(r"^[ \t]*(```|~~~)")
_INDENT = re.compile(r"^[ \t]+")
# "- ", "* ", "• ", "1. ", "2) ", "A. ", "b) ", "(c) ", "[1] ", "Q1. " are list markers, kept as they are
_MARKER = re.compile(r"^(?:[-*•+>]|\d{1,3}[.)]|[A-Za-z][.)]|\([A-Za-z0-9]{1,3}\)|\[[A-Za-z0-9]{1,3}\])[ \t]+")
# a label: 1-4 words, the first capitalised, then a colon followed by a space or the end of the line
_LABEL = re.compile(r"^([A-Z][\w'’()&/-]*(?:[ \t][\w'’()&/-]+){0,3}?)([ \t]*:)(?=[ \t]|$)")
# kept verbatim inside a line: URLs, e-mail addresses, inline code
_PROTECTED = re.compile(r"https?://[^\s<>\"']+|www\.[^\s<>\"']+|[\w.+-]+@[\w-]+\.[\w.-]+|`[^`\n]+`")
_LETTER = re.compile(r"[^\W\d_]")
_WS = re.compile(r"\s+")
_CLAUSE = re.compile(r"(?<=[;:,])[ \t]+|[ \t]+")


class SegmentationError(RuntimeError):
    """Segments that do not join back into the original text (a bug, never expected)."""


@dataclass(frozen=True, slots=True)
class Piece:
    text: str
    kind: str = LITERAL

    @property
    def translatable(self) -> bool:
        return self.kind != LITERAL


def normalize(segment: str) -> str:
    """The form a segment is translated, cached and scored in: NFC, whitespace runs -> one space, stripped."""
    return _WS.sub(" ", unicodedata.normalize("NFC", segment)).strip()


# ------------------------------------------------------------------------------------ sentences


@lru_cache(maxsize=1)
def _segmenter():
    import pysbd

    # clean=False: pysbd returns the text as it is (with clean=True it rewrites it); no char_span, we align
    # ourselves so that joining the pieces is exact whatever pysbd does to whitespace
    return pysbd.Segmenter(language="en", clean=False)


def split_sentences(text: str) -> list[str]:
    """English sentences of one line, by pysbd (the Golden Rules: abbreviations, decimals, initials,
    ellipses, quotes). Returned as pysbd gives them; ``segment`` aligns them back onto the text."""
    return _segmenter().segment(text) if text.strip() else []


def _cut_long(sentence: str, limit: int) -> list[str]:
    """A sentence longer than ``limit`` characters, cut after clause punctuation or at spaces (joins back)."""
    parts, start = [], 0
    while len(sentence) - start > limit:
        window = sentence[start:start + limit]
        cut = max((m.end() for m in _CLAUSE.finditer(window) if m.start() > 0), default=0)
        if cut == 0:
            cut = limit
        parts.append(sentence[start:start + cut])
        start += cut
    parts.append(sentence[start:])
    return parts


def _emit(out: list[Piece], text: str, kind: str) -> None:
    """Append ``text`` with its surrounding whitespace as literal pieces; no-letter text stays literal."""
    if not text:
        return
    core = text.strip()
    if not core or not _LETTER.search(core):
        out.append(Piece(text))
        return
    lead, trail = text[: len(text) - len(text.lstrip())], text[len(text.rstrip()):]
    if lead:
        out.append(Piece(lead))
    out.append(Piece(core, kind))
    if trail:
        out.append(Piece(trail))


def _sentences(out: list[Piece], chunk: str, choices: frozenset[str], limit: int) -> None:
    """Sentence pieces of a chunk of one line (no URLs or code inside it)."""
    if chunk.strip() in choices:
        _emit(out, chunk, CHOICE)
        return
    cursor = 0
    for sent in split_sentences(chunk):
        core = sent.strip()
        if not core:
            continue
        at = chunk.find(core, cursor)
        if at < 0 or _LETTER.search(chunk[cursor:at]):  # pysbd changed the text: keep the rest whole
            break
        if at > cursor:
            out.append(Piece(chunk[cursor:at]))
        kind = CHOICE if core in choices else SENTENCE
        for part in _cut_long(core, limit) if kind == SENTENCE else [core]:
            _emit(out, part, kind)
        cursor = at + len(core)
    if cursor < len(chunk):
        rest = chunk[cursor:]
        for part in _cut_long(rest, limit) if len(rest.strip()) > limit else [rest]:
            _emit(out, part, SENTENCE)


def _choice_list(rest: str, choices: frozenset[str]) -> list[Piece] | None:
    """``yes, no, maybe`` or ``positive or negative`` where every item is an answer choice."""
    if not choices:
        return None
    items = re.split(r"(\s*,\s*(?:or\s+)?|\s+or\s+)", rest)
    words = items[0::2]
    if len(words) < 2 or not all(w.strip() in choices for w in words):
        return None
    out: list[Piece] = []
    for i, item in enumerate(items):
        if i % 2:
            out.append(Piece(item))
        else:
            _emit(out, item, CHOICE)
    return out


def _line(line: str, choices: frozenset[str], limit: int) -> list[Piece]:
    out: list[Piece] = []
    rest = line
    for rx in (_INDENT, _MARKER):
        m = rx.match(rest)
        if m:
            out.append(Piece(m.group(0)))
            rest = rest[m.end():]
    m = _LABEL.match(rest)
    if m and rest.strip() not in choices:
        _emit(out, m.group(1), LABEL)
        out.append(Piece(m.group(2)))
        rest = rest[m.end():]
    listed = _choice_list(rest, choices)
    if listed is not None:
        return out + listed
    cursor = 0
    for m in _PROTECTED.finditer(rest):
        _sentences(out, rest[cursor:m.start()], choices, limit)
        out.append(Piece(m.group(0)))
        cursor = m.end()
    _sentences(out, rest[cursor:], choices, limit)
    return out


@lru_cache(maxsize=200_000)
def _line_cached(line: str, choices: frozenset[str], limit: int) -> tuple[Piece, ...]:
    return tuple(_line(line, choices, limit))


def segment(text: str, choices: Sequence[str] = (), max_chars: int = MAX_SEGMENT_CHARS) -> list[Piece]:
    """The pieces of ``text``; ``choices`` are the row's answer choices. ``"".join`` of the texts is ``text``."""
    choice_set = frozenset(c.strip() for c in choices if c and c.strip())
    out: list[Piece] = []
    in_code = False
    for part in _LINE.split(text):
        if not part:
            continue
        if _LINE.fullmatch(part):
            out.append(Piece(part))
            continue
        fence = bool(_FENCE.match(part))
        if in_code or fence:
            out.append(Piece(part))
            in_code = in_code != fence  # a fence line opens or closes a code block
            continue
        out.extend(_line_cached(part, choice_set, max_chars))
    merged = _merge_literals(out)
    if "".join(p.text for p in merged) != text:
        raise SegmentationError(f"segments do not join back into the text: {text[:120]!r}")
    return merged


def segment_target(target: str, choices: Sequence[str] = (), max_chars: int = MAX_SEGMENT_CHARS) -> list[Piece]:
    """A target: one of the answer choices (translated as that choice), or segmented like an input."""
    stripped = target.strip()
    if stripped and stripped in {c.strip() for c in choices}:
        pieces: list[Piece] = []
        _emit(pieces, target, CHOICE)
        return pieces
    return segment(target, choices, max_chars)


def _merge_literals(pieces: list[Piece]) -> list[Piece]:
    out: list[Piece] = []
    for p in pieces:
        if out and not p.translatable and not out[-1].translatable:
            out[-1] = Piece(out[-1].text + p.text)
        else:
            out.append(p)
    return out


def segments_of(pieces: Sequence[Piece]) -> list[str]:
    """The normalised translatable segments of ``pieces``, in order (repeats kept)."""
    return [normalize(p.text) for p in pieces if p.translatable]


def reassemble(pieces: Sequence[Piece], translations: Mapping[str, str] | Callable[[str], str]) -> str:
    """Join ``pieces`` with every translatable one replaced by the translation of its normalised text."""
    get = translations.__getitem__ if isinstance(translations, Mapping) else translations
    return "".join(get(normalize(p.text)) if p.translatable else p.text for p in pieces)
