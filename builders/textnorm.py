"""Text normalisation for split keys and leakage checks: two texts that differ only in spacing, tatweel,
diacritics, punctuation, invisible format marks (RLM, ZWNJ, BOM), letter case, alef/yaa/taa-marbuta spelling
or digit script normalise to the same string. Vectorised with pyarrow.compute (one call per batch, not per row); ``normalize_text`` is the same
for one string."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

# Arabic diacritics (tashkeel, Quranic marks, superscript alef) and tatweel
DIACRITICS = "[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed\u0640]"
_SPELLING = (("[\u0622\u0623\u0625\u0671]", "\u0627"),  # آ أ إ ٱ -> ا
             ("\u0649", "\u064a"),  # ى -> ي
             ("\u0629", "\u0647"))  # ة -> ه
_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "01234567890123456789")
_DIGIT_RX = "[\u0660-\u0669\u06f0-\u06f9]"


def normalize(values: pa.Array | pa.ChunkedArray | list[str | None]) -> pa.Array:
    """Normalised copies of ``values`` (nulls stay null)."""
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values, pa.string())
    arr = pc.utf8_lower(pc.utf8_normalize(arr, "NFKC"))
    arr = pc.replace_substring_regex(arr, DIACRITICS, "")
    for pattern, repl in _SPELLING:
        arr = pc.replace_substring_regex(arr, pattern, repl)
    if pc.any(pc.match_substring_regex(arr, _DIGIT_RX)).as_py():
        arr = pa.array([None if s is None else s.translate(_DIGITS) for s in arr.to_pylist()], pa.string())
    arr = pc.replace_substring_regex(arr, r"\p{Cf}", "")
    arr = pc.replace_substring_regex(arr, r"[\p{P}\p{S}]", " ")
    return pc.binary_join(pc.utf8_split_whitespace(pc.utf8_trim_whitespace(arr)), " ")


def normalize_text(text: str) -> str:
    return normalize([text])[0].as_py()
