"""A build of every shared-data entry puts no source text in two splits, checked from the raw files.

The raw texts are read here straight from ../shared/data with csv/json/plain readers of our own (not the
builder's readers, keys or source_id), and searched as substrings of every prompt input of each split with an
Aho-Corasick automaton. Both sides are normalised the same way (spacing, diacritics, punctuation: the templates
strip diacritics or join tokens with spaces). Texts of fewer than MIN_WORDS words are left out: the builder
links identical texts of any length, and a text to any other text it shares a run of MIN_WORDS words with (a news
sentence of one dataset inside a document of another), but a short phrase inside an unrelated longer text is
chance, not a source text in two splits."""

from __future__ import annotations

import csv
import json
import re

import ahocorasick
import pyarrow.parquet as pq
import pytest

from builders.pipeline import BuildConfig, build
from builders.textnorm import normalize
from test_shared_data import SHARED

from builders.splits import SHINGLE_WORDS, WINDOW

MIN_WORDS = SHINGLE_WORDS + WINDOW - 1  # the run of shared words the builder's fingerprints always find
LIMIT = 300  # source rows per source split: the first rows, which every entry over one source reads alike


def _csv(path, column, **kw):
    with open(path, encoding="utf-8-sig", newline="") as f:
        return [r[column] for r in csv.DictReader(f, **kw)]


def _lines(path, field=None, sep="\t"):
    with open(path, encoding="utf-8-sig") as f:
        return [line.rstrip("\r\n").split(sep)[field] if field is not None else line.rstrip("\r\n")
                for line in f if line.strip()]


def _conll_sentences(path):
    sents, cur = [], []
    with open(path, encoding="utf-8-sig") as f:
        for line in f:
            if not line.strip():
                if cur:
                    sents.append(" ".join(cur))
                cur = []
            else:
                cur.append(line.split()[0])
    return sents + ([" ".join(cur)] if cur else [])


def raw_texts(shared) -> dict[str, list[str]]:
    """The source texts of each shared dataset, read from its raw files."""
    d = shared
    squad = [json.loads((d / "arcd" / f).read_text(encoding="utf-8")) for f in ("arcd-train.json", "arcd-test.json")]
    return {
        "ajgt": _csv(d / "ajgt" / "AJGT.csv", "Feed"),
        "akec_keyphrase_topic": [json.loads(x)["text"] for x in _lines(d / "akec_keyphrase_topic" / "akec.jsonl")],
        "anercorp": _conll_sentences(d / "anercorp" / "ANERCorp_CamelLab_test.txt"),
        "ans_stance": [t for sp in ("train", "dev", "test") for t in
                       _csv(d / "ans_stance" / "claim" / f"{sp}.csv", "claim_s")
                       + _csv(d / "ans_stance" / "stance" / f"{sp}.csv", "s1")
                       + _csv(d / "ans_stance" / "stance" / f"{sp}.csv", "s2")],
        "arcd": [p["context"] for doc in squad for a in doc["data"] for p in a["paragraphs"]]
                + [q["question"] for doc in squad for a in doc["data"] for p in a["paragraphs"] for q in p["qas"]],
        "arsarcasm": [t for f in ("ArSarcasm_train.csv", "ArSarcasm_test.csv") for t in _csv(d / "arsarcasm" / f, "tweet")],
        "astd": _lines(d / "astd" / "Tweets.txt", 0),
        "elsahar_multidomain_reviews": [t for f in ("ATT.csv", "PROD.csv", "RES1_first3000.csv", "RES2.csv")
                                        for t in _csv(d / "elsahar_multidomain_reviews" / f, "text")],
        "mawqif": [t for f in ("Mawqif_AllTargets_Train.csv", "Mawqif_AllTargets_Test.csv")
                   for t in _csv(d / "mawqif" / f, "text")],
        "metrec_poetry_meter": [re.sub(r"^\d+ ", "", x) for f in ("test.txt", "train_first25000.txt")
                                for x in _lines(d / "metrec_poetry_meter" / f)],
        "newsfane_gold": _conll_sentences(d / "newsfane_gold" / "NewsFANE_Gold_2014_170K.txt"),
        "osact2020": [t for f in ("OSACT2020-sharedTask-train.txt", "OSACT2020-sharedTask-dev.txt")
                      for t in _lines(d / "osact2020" / f, 0)],
        "t_hsab": _csv(d / "t_hsab" / "T-HSAB.csv", "text"),
        "tashkeela_diacritization": [t for f in ("val.txt", "test.txt") for t in _lines(d / "tashkeela_diacritization" / f)],
        "ud_arabic_pud_pos": [x.split("=", 1)[1].strip() for x in _lines(d / "ud_arabic_pud_pos" / "ar_pud-ud-test.conllu")
                              if x.startswith("# text =")],
    }


def _norm(texts: list[str]) -> list[str]:
    return normalize([t.replace("<LF>", " ") for t in texts]).to_pylist()


@pytest.fixture(scope="module")
def full_build(tmp_path_factory, shared_data):
    out = tmp_path_factory.mktemp("every_shared_entry") / "out"
    local = {name: str(shared_data / folder) for name, folder in SHARED.items()}
    res = build(BuildConfig(out=out, datasets=sorted(local), local=local, workers=2, limit=LIMIT,
                            prompts_per_task=20_000))
    return out, res


def test_no_raw_source_text_is_in_two_splits(full_build, shared_data):
    out, res = full_build
    texts = {t for ts in raw_texts(shared_data).values() for t in _norm(ts) if t and len(t.split(' ')) >= MIN_WORDS}
    automaton = ahocorasick.Automaton()
    for i, t in enumerate(sorted(texts)):
        automaton.add_word(t, i)
    automaton.make_automaton()
    seen: dict[int, set[str]] = {}
    for path in sorted((out / "data").rglob("*.parquet")):
        table = pq.read_table(path, columns=["inputs", "split"])
        for inputs, split in zip(_norm(table["inputs"].to_pylist()), table["split"].to_pylist()):
            for _, i in automaton.iter(inputs):
                seen.setdefault(i, set()).add(split)
    leaked = [i for i, s in seen.items() if len(s) > 1]
    words = sorted(texts)
    assert not leaked, f"{len(leaked)} raw texts in two splits, e.g. {[words[i][:60] for i in leaked[:3]]}"
    # the check looked at real data: thousands of raw texts were found in the prompts, in every split
    assert len(seen) > 3000, len(seen)
    assert {s for v in seen.values() for s in v} == {"train", "validation", "test"}
    checks = res.report["leakage"]
    assert checks["source_texts_in_two_splits"] == 0 and checks["inputs_in_two_splits"] == 0
    assert checks["duplicate_ids"] == 0


def test_the_build_links_texts_but_no_giant_component(full_build):
    _, res = full_build
    split = res.report["splitting"]
    assert split["components"] > 1000
    assert split["largest_component_rows"] < 0.01 * split["rows"], split


def test_split_assignment_range_by_range_writes_the_same_files(full_build, tmp_path, monkeypatch):
    """``AssignSplits`` reads the linking hashes one hash range at a time (memory stays flat as a build
    grows): with ranges of 2,000 hashes (dozens of ranges here) it writes byte for byte what the build wrote."""
    import shutil

    import builders.steps.assign as assign
    from builders.pipeline import select_entries
    from builders.steps.ingest import ingested_meta

    out, _ = full_build
    done = out / "_build"
    work = tmp_path / "_build"
    shutil.copytree(done / "sources", work / "sources", ignore=shutil.ignore_patterns("*.assigned.*"))
    local = {name: "unused" for name in SHARED}
    entries = select_entries(BuildConfig(out=tmp_path / "unused", datasets=sorted(local), local=local))
    hashes = sum(ingested_meta(work, e.name)["link_hashes"] for e in entries)
    monkeypatch.setattr(assign, "LINK_RANGE_HASHES", 2000)
    assert hashes > 20 * 2000  # so the assignment below really goes range by range
    list(assign.AssignSplits(entries, str(work)).run())
    assert (work / "splits.json").read_text() == (done / "splits.json").read_text()
    for e in entries:
        for suffix in (".assigned.parquet", ".assigned.json"):
            assert (work / "sources" / f"{e.name}{suffix}").read_bytes() == (done / "sources" / f"{e.name}{suffix}").read_bytes(), e.name
        rejected = f"rejected/assign-{e.name}.parquet"
        assert (work / rejected).exists() == (done / rejected).exists()
