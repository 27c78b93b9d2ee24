"""Quality filters on valid conversations: Arabic-script ratio per turn and length bounds (one reason each),
plus the text normalisation and word tokenizer shared by the exact and near-duplicate (MinHash) stages.

Arabic-script ratio of a turn = letters in the Arabic-script blocks / all letters (digits, punctuation and spaces
count for neither), so a turn with an English name or a Latin acronym keeps a high ratio, a turn in English fails.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from builders.templates import strip_diacritics

_ARABIC_BLOCKS = ((0x0600, 0x06FF), (0x0750, 0x077F), (0x0870, 0x089F), (0x08A0, 0x08FF), (0xFB50, 0xFDFF),
                  (0xFE70, 0xFEFF))
_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+", re.UNICODE)


def _is_arabic(ch: str) -> bool:
    o = ord(ch)
    return any(lo <= o <= hi for lo, hi in _ARABIC_BLOCKS)


def arabic_ratio(text: str) -> float:
    """Share of the letters of ``text`` that are in Arabic script (1.0 for a text without letters)."""
    letters = [ch for ch in text if unicodedata.category(ch).startswith("L")]
    if not letters:
        return 1.0
    return sum(map(_is_arabic, letters)) / len(letters)


def words(text: str) -> list[str]:
    return _WORD.findall(text)


@dataclass(frozen=True)
class FilterConfig:
    min_arabic_ratio: float = 0.7  # per turn
    min_turn_words: int = 2
    max_turn_words: int = 400
    min_words: int = 20  # whole conversation
    max_words: int = 3000

    def check(self, messages: list[dict]) -> str | None:
        """None when the conversation passes, else the first failing reason, ``"<kind>: <detail>"``."""
        total = 0
        for i, msg in enumerate(messages, 1):
            ratio = arabic_ratio(msg["content"])
            if ratio < self.min_arabic_ratio:
                return f"low arabic ratio: {ratio:.2f} < {self.min_arabic_ratio} in turn {i}"
            n = len(words(msg["content"]))
            if n < self.min_turn_words:
                return f"turn too short: turn {i} has {n} words < {self.min_turn_words}"
            if n > self.max_turn_words:
                return f"turn too long: turn {i} has {n} words > {self.max_turn_words}"
            total += n
        if total < self.min_words:
            return f"conversation too short: {total} words < {self.min_words}"
        if total > self.max_words:
            return f"conversation too long: {total} words > {self.max_words}"
        return None


def normalized(messages: list[dict]) -> str:
    """What duplicate detection compares: the turns without diacritics, tatweel or extra whitespace."""
    return "\n".join(f"{m['role']}: {_SPACE.sub(' ', strip_diacritics(m['content'])).strip()}" for m in messages)


def reason_kind(reason: str) -> str:
    """The stable part of a reason, counted in the report: ``"turn too short: turn 2 has 1 words < 2"`` -> its kind."""
    return reason.split(":", 1)[0].strip()
