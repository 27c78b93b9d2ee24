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

``normalize_joined`` gives the same result for texts given as pieces, normalising each distinct piece once
(the build's rendered prompts share a template's words and a row's text).
"""

from __future__ import annotations

from collections import defaultdict
from itertools import chain

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Arabic diacritics (tashkeel, Quranic marks, superscript alef) and tatweel
DIACRITICS = "[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed\u0640]"
_DELETED = DIACRITICS[:-1] + r"]|\p{Cf}"  # diacritics, tatweel and format marks (RLM, ZWNJ, BOM, ...): one pass
# spellings unified: آ أ إ ٱ -> ا, ى -> ي, ة -> ه. Each is a two-byte UTF-8 letter to a two-byte letter, so
# ``_respell`` swaps the bytes in one numpy pass (a table of byte pairs) instead of a regex and two replaces
_SPELLING = {"\u0622": "\u0627", "\u0623": "\u0627", "\u0625": "\u0627", "\u0671": "\u0627",
             "\u0649": "\u064a", "\u0629": "\u0647"}


def _spelling_tables() -> tuple[np.ndarray, np.ndarray]:
    """A byte pair (first << 8 | second) -> the pair it becomes, and which bytes are a respelled letter's second."""
    pairs, second = np.arange(1 << 16, dtype=np.uint16), np.zeros(256, dtype=bool)
    for old, new in _SPELLING.items():
        a, b = old.encode(), new.encode()
        assert len(a) == len(b) == 2
        pairs[a[0] << 8 | a[1]] = b[0] << 8 | b[1]
        second[a[1]] = True
    return pairs, second


_PAIRS, _SECOND = _spelling_tables()
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
# a text that does not start with a stable starter (the stable characters that are not starters are diacritics)
_UNSAFE_START = f"^(?:{_NEEDS_NFKC}|{DIACRITICS})"


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
    return _collapse(_map_characters(_nfkc(arr, _needs_nfkc(arr))))


def _needs_nfkc(arr: pa.Array) -> pa.Array:
    return pc.fill_null(pc.match_substring_regex(arr, _NEEDS_NFKC), False)


def _nfkc(arr: pa.Array, needs: pa.Array) -> pa.Array:
    """NFKC of the values ``needs`` marks (the others are their own NFKC form, see the module docstring)."""
    return _where(arr, needs, lambda a: pc.utf8_normalize(a, "NFKC"))


def _map_characters(arr: pa.Array) -> pa.Array:
    """The steps after NFKC that change one character at a time (so a text's result is its pieces' results,
    joined): lower case, deletions, spelling, digits, punctuation and symbols to spaces."""
    arr = pc.utf8_lower(arr)
    arr = pc.replace_substring_regex(arr, _DELETED, "")
    arr = _respell(arr)
    arr = _where(arr, pc.fill_null(pc.match_substring_regex(arr, _DIGIT_RX), False),
                 lambda a: pa.array([s.translate(_DIGITS) for s in a.to_pylist()], pa.string()))
    return pc.replace_substring_regex(arr, r"[\p{P}\p{S}]", " ")


def _respell(arr: pa.Array) -> pa.Array:
    """``_SPELLING`` applied, on the UTF-8 bytes: a byte pair is respelled where its second byte is one of the
    letters' and the pair is one of them (a first byte of a two-byte letter is never a continuation byte, so a
    pair found so is a whole character). The offsets and nulls are kept as they are."""
    validity, offsets, data = arr.buffers()
    if data is None or not len(arr):
        return arr
    b = np.frombuffer(data, np.uint8)
    at = np.flatnonzero(_SECOND[b[1:]])  # pairs (at, at + 1) that may be one of the letters
    pairs = (b[at].astype(np.uint16) << 8) | b[at + 1]
    new = _PAIRS[pairs]
    changed = new != pairs
    if not changed.any():
        return arr
    out = b.copy()
    at, new = at[changed], new[changed]
    out[at], out[at + 1] = (new >> 8).astype(np.uint8), (new & 0xFF).astype(np.uint8)
    return pa.Array.from_buffers(pa.string(), len(arr), [validity, offsets, pa.py_buffer(out)],
                                 null_count=arr.null_count, offset=arr.offset)


def _collapse(arr: pa.Array) -> pa.Array:
    """Whitespace runs to one space, trimmed."""
    return pc.binary_join(pc.utf8_split_whitespace(pc.utf8_trim_whitespace(arr)), " ")


def normalize_joined(texts: list[list[str]]) -> pa.Array:
    """``normalize(["".join(pieces) for pieces in texts])``, with each distinct piece normalised once: a
    batch of rendered prompts is mostly the same pieces (a template's words in all its prompts, a row's text
    in every template's), so this does a fraction of the work of normalising every text whole.

    It is exact because every step after NFKC changes one character at a time (``_map_characters``), so a
    text maps to its pieces' maps joined, and the last step only collapses and trims whitespace: the joined
    result is the pieces' collapsed words, with one space where the boundary had whitespace. NFKC runs on the
    pieces that need it (``normalize`` skips it for a text only when every character is NFKC-stable, which
    holds for a text exactly when it holds for each of its pieces); NFKC a piece at a time is NFKC of the
    whole when every later piece starts with a stable starter, and a text where one does not is normalised
    whole. Pieces are strings (no nulls)."""
    return normalize_pieces(*piece_ids(texts))


def piece_ids(texts: list[list[str]] | list[tuple[str, ...]]) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """The texts' distinct pieces (in the order first seen), the index of each piece among them (texts in
    order) and each text's number of pieces: what ``normalize_pieces`` and ``join_pieces`` take. A piece seen
    again costs one dict look-up (its hash is cached on the string), not a copy into Arrow."""
    counts = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    ids: defaultdict[str, int] = defaultdict()
    ids.default_factory = ids.__len__  # a new piece gets the next index
    pid = np.fromiter(map(ids.__getitem__, chain.from_iterable(texts)), dtype=np.int64, count=int(counts.sum()))
    return pa.array(list(ids), pa.string()), pid, counts


def join_pieces(unique: pa.Array, pid: np.ndarray, counts: np.ndarray) -> pa.Array:
    """Each text's pieces joined (``piece_ids``'s output back to the texts), in Arrow."""
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), unique.take(pa.array(pid))), "")


def normalize_pieces(unique: pa.Array, pid: np.ndarray, counts: np.ndarray) -> pa.Array:
    """``normalize_joined`` of the texts given by ``piece_ids``."""
    ends = np.cumsum(counts)
    starts = ends - counts
    if not ends.size or not ends[-1]:
        return pa.array([""] * len(counts), pa.string())
    needs = _needs_nfkc(unique)
    # NFKC a piece at a time is NFKC of the text when each piece after the first starts with a stable starter
    # (no composition takes it as its second part, no mark reorders across it); a text with a piece that needs
    # NFKC and a piece that does not start so is normalised whole: it joins the distinct pieces as one more
    # piece of its own, so that one pass maps them all
    unstable = np.concatenate([[0], np.cumsum(_numpy(needs)[pid])])
    unsafe = _numpy(pc.fill_null(pc.match_substring_regex(unique, _UNSAFE_START), False))[pid]
    unsafe[starts[counts > 0]] = False
    unsafe = np.concatenate([[0], np.cumsum(unsafe)])
    whole = np.flatnonzero((unstable[ends] - unstable[starts] > 0) & (unsafe[ends] - unsafe[starts] > 0))
    n = len(unique)
    if len(whole):  # each has a piece that needs NFKC, so the whole text does
        whole_pid = np.concatenate([pid[starts[t]:ends[t]] for t in whole])
        unique = pa.concat_arrays([unique, join_pieces(unique, whole_pid, counts[whole])])
        needs = pa.concat_arrays([needs, pa.array(np.ones(len(whole), dtype=bool))])
    mapped_all = _map_characters(_nfkc(unique, needs))
    core_all = _collapse(mapped_all)
    mapped, core = mapped_all.slice(0, n), core_all.slice(0, n)
    length = pc.utf8_length(mapped)
    has_core = _numpy(pc.greater(pc.utf8_length(core), 0))[pid]
    lead = _numpy(pc.not_equal(length, pc.utf8_length(pc.utf8_ltrim_whitespace(mapped))))[pid]
    trail = _numpy(pc.not_equal(length, pc.utf8_length(pc.utf8_rtrim_whitespace(mapped))))[pid]
    # whitespace after a piece: a word piece that ends with some, or a piece of whitespace only (a piece whose
    # characters are all deleted is as if it were not there)
    after = np.where(has_core, trail, _numpy(pc.greater(length, 0))[pid])
    before = np.concatenate([[0], np.cumsum(after)])  # before[k]: pieces with whitespace after them, of 0..k-1
    words = np.flatnonzero(has_core)
    text_of = np.repeat(np.arange(len(counts)), counts)
    # the word before each word, and whether it is in the same text
    previous = np.concatenate([[-1], words[:-1]])
    joined = (previous >= starts[text_of[words]]) & (previous >= 0)
    space = joined & (lead[words] | (before[words] - before[np.maximum(previous, 0)] > 0))
    tokens = pc.binary_join_element_wise(pc.if_else(pa.array(space), " ", ""), core.take(pa.array(pid[words])), "")
    per_text = np.concatenate([[0], np.cumsum(np.bincount(text_of[words], minlength=len(counts)))])
    out = pc.binary_join(pa.ListArray.from_arrays(pa.array(per_text, pa.int32()), tokens), "")
    if len(whole):
        mask = np.zeros(len(counts), dtype=bool)
        mask[whole] = True
        out = pc.replace_with_mask(out, pa.array(mask), core_all.slice(n))
    return out


def _numpy(arr: pa.Array) -> np.ndarray:
    return arr.to_numpy(zero_copy_only=False)


def normalize_text(text: str) -> str:
    return normalize([text])[0].as_py()
