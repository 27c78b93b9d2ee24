"""The fast normalisation (NFKC only where a text needs it, one deletion pass, digits only where there are
some) gives exactly what the plain step-by-step definition gives: on real shared-data texts, on rendered
prompts, and on random strings made of the characters that could tell them apart (marks that compose, marks
that reorder, presentation forms, compatibility characters, Hangul jamo, odd spaces, format marks)."""

from __future__ import annotations

import random
import sys
import unicodedata

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from builders import textnorm
from builders.textnorm import NFKC_STABLE, normalize, normalize_joined, normalize_text

_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "01234567890123456789")


def reference(values: list[str | None]) -> list[str | None]:
    """The definition, one step at a time over every text (the builder's normalisation before the shortcuts)."""
    arr = pa.array(values, pa.string())
    arr = pc.utf8_lower(pc.utf8_normalize(arr, "NFKC"))
    arr = pc.replace_substring_regex(arr, textnorm.DIACRITICS, "")
    for pattern, repl in (("[\u0622\u0623\u0625\u0671]", "\u0627"), ("\u0649", "\u064a"), ("\u0629", "\u0647")):
        arr = pc.replace_substring_regex(arr, pattern, repl)
    arr = pa.array([None if s is None else s.translate(_DIGITS) for s in arr.to_pylist()], pa.string())
    arr = pc.replace_substring_regex(arr, r"\p{Cf}", "")
    arr = pc.replace_substring_regex(arr, r"[\p{P}\p{S}]", " ")
    return pc.binary_join(pc.utf8_split_whitespace(pc.utf8_trim_whitespace(arr)), " ").to_pylist()


def _stable_codepoints() -> list[int]:
    import re

    ranges = re.findall(r"\\x\{([0-9a-f]+)\}(?:-\\x\{([0-9a-f]+)\})?", NFKC_STABLE)
    assert "".join(f"\\x{{{a}}}" + (f"-\\x{{{b}}}" if b else "") for a, b in ranges) == NFKC_STABLE
    return [cp for a, b in ranges for cp in range(int(a, 16), int(b or a, 16) + 1)]


def _composition_seconds() -> set[int]:
    seconds = set()
    for cp in range(sys.maxunicode + 1):
        d = unicodedata.decomposition(chr(cp))
        if d and not d.startswith("<") and len(d.split()) == 2:
            seconds.add(int(d.split()[1], 16))
    return seconds


def test_every_nfkc_stable_character_needs_no_nfkc_pass():
    """What the shortcut relies on, for each character it lets through: NFKC (Arrow's and Python's) leaves it
    as it is, no canonical composition takes it as its second part, it is not a Hangul jamo (composed by rule),
    and it is a starter or a mark the normalisation deletes (so reordering marks cannot show)."""
    import re

    deleted = re.compile(textnorm.DIACRITICS)
    cps = _stable_codepoints()
    assert len(cps) > 2500 and 0x627 in cps and 0x651 in cps and 0x654 not in cps and 0xfe8d not in cps
    chars = [chr(c) for c in cps]
    arrow = pc.utf8_normalize(pa.array(chars), "NFKC").to_pylist()
    seconds = _composition_seconds()
    bad = []
    for cp, ch, nf in zip(cps, chars, arrow):
        if nf != ch or unicodedata.normalize("NFKC", ch) != ch or cp in seconds or 0x1100 <= cp <= 0x11ff:
            bad.append(hex(cp))
        elif unicodedata.combining(ch) and not (deleted.match(ch) or unicodedata.category(ch) == "Cf"):
            bad.append(hex(cp))
    assert not bad, bad[:20]


# characters that could make the shortcut differ: composing marks (madda, hamza above/below), reordering
# marks, precomposed letters, presentation forms and ligatures, compatibility characters, Hangul, spaces
_TRICKY = ("\u0627\u0648\u064a\u0647\u0629\u0649\u0622\u0623\u0625\u0671\u0624\u0626\u0653\u0654\u0655\u0651"
           "\u064e\u064b\u0650\u0652\u0670\u0640\u06d6\u06e1\ufe8d\ufef7\ufefb\ufdf2\u0660\u0669\u06f4\u00e9e"
           "\u0301\u0308\u0328\u01d8\u1e17A\u00c5\u212b\u00a0\u2009\u3000\u00a8\u00b4\u2026\uff21\u00bd\u2460"
           "\u1100\u1161\u11a8\uac00\u0b47\u0b3e\u09c7\u09be\u200c\u200f\ufeff\u00ad\u061c\U0001f602\ufe0f"
           "\u2764 \t\n,.؟«»!-_()")


def _fuzz(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(_TRICKY) for _ in range(rng.randint(0, 12))) for _ in range(n)]


def test_fast_normalisation_equals_the_definition_on_tricky_strings():
    texts = _fuzz(20_000) + [None, "", "   ", "\u0627\u0654\u0651", "\u0648\u0651\u0654", "e\u0651\u0301",
                             "\u00e9\u0651", "\u01d8\u0656", "١٢٣ ۴۵۶", "\ufefb\u0651"]
    assert normalize(texts).to_pylist() == reference(texts)


def test_fast_normalisation_equals_the_definition_on_real_texts(shared_data):
    from test_shared_leakage import raw_texts

    texts = [t for ts in raw_texts(shared_data).values() for t in ts]
    assert len(texts) > 100_000
    for start in range(0, len(texts), 50_000):
        chunk = texts[start:start + 50_000]
        assert normalize(chunk).to_pylist() == reference(chunk)


def test_rendered_prompts_normalise_as_defined(shared_data):
    from builders.catalog import load_catalog

    templates = load_catalog()["astd_sentiment"].templates
    rows = []
    with open(shared_data / "astd" / "Tweets.txt", encoding="utf-8-sig") as f:
        for line in f:
            text, _, _ = line.rstrip("\n").rpartition("\t")
            rows.append({"text": text, "label": 0})
    inputs = [t.render(r)[0] for r in rows[:2000] for t in templates]
    assert normalize(inputs).to_pylist() == reference(inputs)
    # most prompts take the shortcut (their templates and tweets need no NFKC): the check above covers both
    needs = pc.match_substring_regex(pa.array(inputs), textnorm._NEEDS_NFKC)
    assert 0 < pc.sum(needs).as_py() < 0.5 * len(inputs)


def _cuts(texts: list[str], seed: int = 1) -> list[list[str]]:
    """Each text cut at random places (none, or up to six), sometimes with an empty piece."""
    rng = random.Random(seed)
    out = []
    for t in texts:
        cuts = sorted(rng.choices(range(len(t) + 1), k=rng.randint(0, 6)))
        pieces = [t[a:b] for a, b in zip([0] + cuts, cuts + [len(t)])]
        if rng.random() < 0.1:
            pieces.insert(rng.randint(0, len(pieces)), "")
        out.append(pieces)
    return out


def test_normalising_pieces_equals_normalising_the_joined_texts_on_tricky_strings():
    """Cut anywhere, tricky characters on both sides of every cut (a mark after a letter, a presentation form
    or an ellipsis at the start of a piece, whitespace or deleted marks only in a piece): the same result."""
    rng = random.Random(2)
    texts = _fuzz(20_000, seed=3)
    pieces = _cuts(texts) + [[rng.choice(_TRICKY) for _ in range(rng.randint(0, 6))] for _ in range(20_000)]
    pieces += [[], [""], ["e", "\u0301"], ["\u0627", "\u0654"], ["a", "\u064b", "\u0301"], ["x ", "\u2026", " y"],
               ["\u0651"], [" ", "\u0640", " "], ["A", "\u0640", "B"]]
    joined = ["".join(p) for p in pieces]
    assert normalize_joined(pieces).to_pylist() == normalize(joined).to_pylist() == reference(joined)
    assert textnorm.join_pieces(*textnorm.piece_ids(pieces)).to_pylist() == joined


def test_normalising_pieces_equals_normalising_the_joined_texts_on_real_prompts(shared_data):
    """The build's own cut (around each row's longest text) and random cuts, on rendered ASTD prompts."""
    from builders.catalog import load_catalog
    from builders.steps.render import input_pieces
    from builders.textnorm import join_pieces, piece_ids

    templates = load_catalog()["astd_sentiment"].templates
    with open(shared_data / "astd" / "Tweets.txt", encoding="utf-8-sig") as f:
        rows = [{"text": line.rstrip("\n").rpartition("\t")[0], "label": 0} for line in f][:3000]
    inputs = [t.render(r)[0] for r in rows for t in templates]
    pieces = input_pieces(rows, inputs, len(templates))
    assert ["".join(p) for p in pieces] == inputs
    assert sum(p[1] != "" for p in pieces) > 0.9 * len(inputs)  # the tweet is cut out of nearly every prompt
    unique, pid, counts = piece_ids(pieces)
    assert join_pieces(unique, pid, counts).to_pylist() == inputs  # the build's inputs column, from the pieces
    assert len(unique) < len(rows) + 50 * len(templates)  # each tweet and each template's words once
    expected = normalize(inputs).to_pylist()
    assert normalize_joined(pieces).to_pylist() == expected
    assert normalize_joined(_cuts(inputs)).to_pylist() == expected


@pytest.mark.parametrize("text, expected", [
    ("إِلَى الْمَدْرَسَةِ ـ ٤٥", "الي المدرسه 45"),
    ("\ufefb  \u200fشيء\u200c،  Hello!", "لا شيء hello"),
    ("أؤ\u0654", "اؤ"),
])
def test_normalize_text_examples(text, expected):
    assert normalize_text(text) == expected


def test_respelling_on_the_bytes_equals_replacing_the_letters():
    """``_respell`` swaps UTF-8 byte pairs: the same as replacing the letters, in a sliced array with nulls,
    next to characters that share one of the letters' bytes (؉ is D8 89 where ى is D9 89; U+0889 and U+08A2
    carry A2/89 as continuation bytes) and at the very end of the buffer."""
    letters = "\u0622\u0623\u0625\u0671\u0649\u0629"
    others = "\u0609\u0889\u08a2\u0627\u064a\u0647 a\u00e9\U0001f602"
    rng = random.Random(4)
    texts = ["".join(rng.choice(letters + others) for _ in range(rng.randint(0, 9))) for _ in range(5000)]
    arr = pa.array(["x"] + texts + [None, "", letters], pa.string()).slice(1)
    expected = [None if t is None else t.translate(str.maketrans(textnorm._SPELLING)) for t in arr.to_pylist()]
    out = textnorm._respell(arr)
    assert out.to_pylist() == expected and out.null_count == 1
    assert textnorm._respell(pa.array(["abc", None])).to_pylist() == ["abc", None]  # nothing to respell
    assert expected[-1] == "\u0627" * 4 + "\u064a\u0647"
