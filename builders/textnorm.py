"""Text normalisation for split keys and leakage checks: two texts that differ only in spacing, tatweel,
diacritics, punctuation, invisible format marks (RLM, ZWNJ, BOM), letter case, alef/yaa/taa-marbuta spelling
or digit script normalise to the same string. Vectorised with pyarrow.compute (one call per batch, not per row); ``normalize_text`` is the same
for one string.

The steps, in order: NFKC, lower case, diacritics/tatweel and format marks removed, alef/yaa/taa-marbuta
spelling unified, Arabic-Indic digits to ASCII, punctuation and symbols to spaces, whitespace collapsed and
trimmed. Two shortcuts keep it cheap on the hot path of a build (every prompt's inputs are normalised) and
give exactly the same result:

- NFKC runs only on the texts that hold a character outside ``NFKC_STABLE``: characters that NFKC leaves as
  they are, that no canonical composition takes as its second part, and that are starters (or marks this
  normalisation deletes anyway). A text made only of them is its own NFKC form, up to the order of marks that
  are deleted next (checked character by character in ``tests/test_throughput_textnorm.py``).
- Digits are translated only in the texts that have Arabic-Indic digits.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

# Arabic diacritics (tashkeel, Quranic marks, superscript alef) and tatweel
DIACRITICS = "[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed\u0640]"
_DELETED = DIACRITICS[:-1] + r"]|\p{Cf}"  # diacritics, tatweel and format marks (RLM, ZWNJ, BOM, ...): one pass
_ALEFS = ("[\u0622\u0623\u0625\u0671]", "\u0627")  # آ أ إ ٱ -> ا
_LITERAL_SPELLING = (("\u0649", "\u064a"),  # ى -> ي
                     ("\u0629", "\u0647"))  # ة -> ه
_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "01234567890123456789")
_DIGIT_RX = "[\u0660-\u0669\u06f0-\u06f9]"

# Characters whose texts need no NFKC pass (see the module docstring), in the blocks Arabic text and its
# tweets use: ASCII, Latin, Arabic, general punctuation, variation selectors, emoji. Generated from the Unicode
# tables and checked character by character by the tests.
NFKC_STABLE = (
    r"\x{0}-\x{9f}\x{a1}-\x{a7}\x{a9}\x{ab}-\x{ae}\x{b0}-\x{b1}\x{b6}-\x{b7}\x{bb}\x{bf}-\x{131}\x{134}-"
    r"\x{13e}\x{141}-\x{148}\x{14a}-\x{17e}\x{180}-\x{1c3}\x{1cd}-\x{1f0}\x{1f4}-\x{24f}\x{600}-\x{652}"
    r"\x{656}-\x{674}\x{679}-\x{6ff}\x{750}-\x{77f}\x{200b}-\x{2010}\x{2012}-\x{2016}\x{2018}-\x{2023}"
    r"\x{2027}-\x{202e}\x{2030}-\x{2032}\x{2035}\x{2038}-\x{203b}\x{203d}\x{203f}-\x{2046}\x{204a}-"
    r"\x{2056}\x{2058}-\x{205e}\x{2060}-\x{2064}\x{2066}-\x{206f}\x{fe00}-\x{fe0f}\x{1f300}-\x{1f6d7}"
    r"\x{1f6dd}-\x{1f6ec}\x{1f6f0}-\x{1f6fc}\x{1f700}-\x{1f773}\x{1f780}-\x{1f7d8}\x{1f7e0}-\x{1f7eb}"
    r"\x{1f7f0}\x{1f800}-\x{1f80b}\x{1f810}-\x{1f847}\x{1f850}-\x{1f859}\x{1f860}-\x{1f887}\x{1f890}-"
    r"\x{1f8ad}\x{1f8b0}-\x{1f8b1}\x{1f900}-\x{1fa53}\x{1fa60}-\x{1fa6d}\x{1fa70}-\x{1fa74}\x{1fa78}-"
    r"\x{1fa7c}\x{1fa80}-\x{1fa86}\x{1fa90}-\x{1faac}\x{1fab0}-\x{1faba}\x{1fac0}-\x{1fac5}\x{1fad0}-"
    r"\x{1fad9}\x{1fae0}-\x{1fae7}\x{1faf0}-\x{1faf6}"
)
_NEEDS_NFKC = f"[^{NFKC_STABLE}]"


def _where(arr: pa.Array, mask: pa.Array, fn) -> pa.Array:
    """``arr`` with ``fn`` applied to the values where ``mask`` is true (only those are computed)."""
    if not pc.any(mask).as_py():
        return arr
    return pc.replace_with_mask(arr, mask, fn(arr.filter(mask)))


def normalize(values: pa.Array | pa.ChunkedArray | list[str | None]) -> pa.Array:
    """Normalised copies of ``values`` (nulls stay null)."""
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values, pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type != pa.string():
        arr = arr.cast(pa.string())
    if not len(arr):
        return arr
    arr = _where(arr, pc.fill_null(pc.match_substring_regex(arr, _NEEDS_NFKC), False),
                 lambda a: pc.utf8_normalize(a, "NFKC"))
    arr = pc.utf8_lower(arr)
    arr = pc.replace_substring_regex(arr, _DELETED, "")
    arr = pc.replace_substring_regex(arr, *_ALEFS)
    for old, new in _LITERAL_SPELLING:
        arr = pc.replace_substring(arr, old, new)
    arr = _where(arr, pc.fill_null(pc.match_substring_regex(arr, _DIGIT_RX), False),
                 lambda a: pa.array([s.translate(_DIGITS) for s in a.to_pylist()], pa.string()))
    arr = pc.replace_substring_regex(arr, r"[\p{P}\p{S}]", " ")
    return pc.binary_join(pc.utf8_split_whitespace(pc.utf8_trim_whitespace(arr)), " ")


def normalize_text(text: str) -> str:
    return normalize([text])[0].as_py()
