"""Local source formats and real-world quirks, read through the same code path as the build."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from builders.catalog import CatalogEntry
from builders.sources import REJECT, SourceError, read_local


def entry(local: dict, columns: dict | None = None) -> CatalogEntry:
    return CatalogEntry(name="ds", task="t", task_family="classification", license="mit",
                        columns=columns or {"text": "text"}, hub_id=None, hub_note="test", local=local)


def rows(e: CatalogEntry, path: Path, limit=None) -> list[tuple[str, int, dict]]:
    return list(read_local(e, path, limit))


def test_csv_bom_crlf_quoted_newlines_and_stray_header_spaces(tmp_path):
    f = tmp_path / "data.csv"
    f.write_bytes('\ufeff text , label \r\n"سطر أول\r\nسطر ثان",1\r\n"قال ""مرحبا""",0\r\n'.encode("utf-8"))
    got = rows(entry({"format": "csv"}), f)
    assert [r[2] for r in got] == [{"text": "سطر أول\r\nسطر ثان", "label": "1"}, {"text": 'قال "مرحبا"', "label": "0"}]
    assert [(s, i) for s, i, _ in got] == [("train", 0), ("train", 1)]


def test_headerless_tsv_and_malformed_row_kept_with_reason(tmp_path):
    f = tmp_path / "tweets.tsv"
    f.write_text('تغريدة "مقتبسة\tPOS\nتغريدة ثانية\tNEG\tزائد\n', encoding="utf-8")
    got = rows(entry({"format": "tsv", "header": False, "column_names": ["text", "label"]}), f)
    assert got[0][2] == {"text": 'تغريدة "مقتبسة', "label": "POS"}
    assert REJECT in got[1][2] and "line 2" in got[1][2][REJECT] and "3 fields" in got[1][2][REJECT]


def test_folder_with_split_files(tmp_path):
    (tmp_path / "train.csv").write_text("text\nأ\nب\n", encoding="utf-8")
    (tmp_path / "test.csv").write_text("text\nج\n", encoding="utf-8")
    e = entry({"format": "csv", "files": {"train": "train.csv", "test": "test.csv"}})
    assert [(s, r["text"]) for s, _, r in rows(e, tmp_path)] == [("train", "أ"), ("train", "ب"), ("test", "ج")]
    assert rows(e, tmp_path / "test.csv")[0][0] == "test"  # one file of the layout: split from its name
    with pytest.raises(SourceError, match="ds.*nothing.csv"):
        rows(entry({"format": "csv", "files": {"train": "nothing.csv"}}), tmp_path)


def test_squad_json_flattened(tmp_path):
    doc = {"version": "1.1", "data": [{"title": "مصر", "paragraphs": [{"context": "القاهرة عاصمة مصر.", "qas": [
        {"id": "q1", "question": "ما عاصمة مصر؟", "answers": [{"text": "القاهرة", "answer_start": 0}]}]}]}]}
    f = tmp_path / "arcd.json"
    f.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    [(split, i, rec)] = rows(entry({"format": "json"}), f)
    assert rec["question"] == "ما عاصمة مصر؟" and rec["answers"] == {"text": ["القاهرة"], "answer_start": [0]}
    assert rec["context"].startswith("القاهرة") and rec["title"] == "مصر"


def test_jsonl_hub_export_with_split_column_and_bad_line(tmp_path):
    f = tmp_path / "export.jsonl"
    f.write_text('{"text": "أ", "split": "test"}\n{not json}\n{"text": "ب", "split": "train"}\n', encoding="utf-8")
    got = rows(entry({"format": "csv"}), f)  # .jsonl is read as a Hub export whatever local.format says
    assert (got[0][0], got[0][2]) == ("test", {"text": "أ"})
    assert REJECT in got[1][2] and "line 2" in got[1][2][REJECT]
    assert (got[2][0], got[2][2]) == ("train", {"text": "ب"})


def test_parquet(tmp_path):
    f = tmp_path / "x.parquet"
    pq.write_table(pa.table({"text": ["أ", "ب"], "label": [0, 1]}), f)
    assert [r["label"] for _, _, r in rows(entry(None), f)] == [0, 1]


def test_conll_crlf_bom_tab_only_breaks(tmp_path):
    f = tmp_path / "ner.txt"
    f.write_bytes("\ufeffمحمد\tB-PERS\r\nفي\tO\r\n\t\r\nالقاهرة\tB-LOC\r\n".encode("utf-8"))
    got = rows(entry({"format": "conll"}), f)
    assert [r for _, _, r in got] == [{"tokens": ["محمد", "في"], "tags": ["B-PERS", "O"]},
                                      {"tokens": ["القاهرة"], "tags": ["B-LOC"]}]


def test_conllu_comments_and_multiword_tokens(tmp_path):
    f = tmp_path / "x.conllu"
    f.write_text(
        "# sent_id = s1\n# text = وبالقلم\n# text_en = and with the pen\n"
        "1-2\tوبالقلم\t_\t_\t_\t_\t_\t_\t_\t_\n1\tو\tو\tCCONJ\t_\t_\t0\troot\t_\t_\n2\tبالقلم\tقلم\tNOUN\t_\t_\t1\tconj\t_\t_\n\n",
        encoding="utf-8")
    [(_, _, rec)] = rows(entry({"format": "conllu"}), f)
    assert rec["tokens"] == ["و", "بالقلم"] and rec["upos"] == ["CCONJ", "NOUN"]
    assert rec["text_en"] == "and with the pen" and rec["sent_id"] == "s1"


def test_text_lines_with_pattern_and_index_files(tmp_path):
    (tmp_path / "all.txt").write_text("3 بيت أول # عجز\n0 بيت ثان # عجز\nسطر معطوب\n", encoding="utf-8")
    (tmp_path / "test.ids").write_text("1\n", encoding="utf-8")
    e = entry({"format": "text", "files": {"train": "all.txt"}, "pattern": r"^(?P<label>\d+) (?P<verse>.+)$",
               "index_files": {"test": "test.ids"}})
    got = rows(e, tmp_path)
    assert got[0] == ("train", 0, {"label": "3", "verse": "بيت أول # عجز"})
    assert got[1] == ("test", 0, {"label": "0", "verse": "بيت ثان # عجز"})
    assert "does not match" in got[2][2][REJECT]


def test_aligned_files(tmp_path):
    (tmp_path / "train.en").write_text("Cairo\nAmman\n", encoding="utf-8")
    (tmp_path / "train.ar").write_text("القاهرة\nعمان\n", encoding="utf-8")
    e = entry({"format": "aligned", "files": {"train": {"english": "train.en", "arabic": "train.ar"}}})
    assert [r for _, _, r in rows(e, tmp_path)] == [{"english": "Cairo", "arabic": "القاهرة"},
                                                   {"english": "Amman", "arabic": "عمان"}]
    (tmp_path / "train.ar").write_text("القاهرة\n", encoding="utf-8")
    with pytest.raises(SourceError, match="different line counts"):
        rows(e, tmp_path)


def test_limit_per_split(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_text("".join(json.dumps({"text": str(i), "split": "train" if i % 2 else "test"}) + "\n" for i in range(10)))
    got = rows(entry(None), f, limit=2)
    assert sorted((s, i) for s, i, _ in got) == [("test", 0), ("test", 1), ("train", 0), ("train", 1)]


def test_missing_path_and_unknown_layout(tmp_path):
    with pytest.raises(SourceError, match="ds.*does not exist"):
        rows(entry(None), tmp_path / "nope.csv")
    (tmp_path / "x.txt").write_text("a\n")
    with pytest.raises(SourceError, match="no local: spec"):
        rows(entry(None), tmp_path / "x.txt")


def test_prompted_jsonl_and_qe_pairs_name_the_file_and_line_of_a_bad_json_line(tmp_path):
    """xP3-style rows and `translate score` pairs share the JSON-lines reader: a bad line stops with its place."""
    from builders.steps import BuildError
    from builders.translate.cli import _read_pairs
    from builders.translate.english import jsonl_rows

    rows = tmp_path / "xp3.jsonl"
    rows.write_text('{"inputs": "Is it good?", "targets": "yes"}\n\n{"inputs": "broken\n', encoding="utf-8")
    with pytest.raises(BuildError, match=r"xp3\.jsonl, line 3: expected JSON"):
        list(jsonl_rows(rows, "xp3"))
    assert [r["targets"] for r in jsonl_rows(rows, "xp3", limit=1)] == ["yes"]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"src": "a", "mt": "b"}\nnot json\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"pairs\.jsonl, line 2: invalid JSON"):
        _read_pairs(pairs)


def test_prompted_rows_that_give_no_prompt_are_kept_with_the_reason_not_dropped(tmp_path):
    """xP3-style lines with empty inputs or targets and task instances without an output give no prompt:
    each is kept in the English rejects file with its reason, its place and its content."""
    from builders.steps import BuildError
    from builders.steps.rejects import RejectLog
    from builders.translate.english import (EnglishSources, english_files, jsonl_rows, natural_instruction_rows,
                                            rejects_path, set_aside_counts)

    xp3 = tmp_path / "xp3.jsonl"
    xp3.write_text("\n".join(json.dumps(r) for r in [
        {"inputs": "Is it good?", "targets": "yes"}, {"inputs": "  ", "targets": "no"},
        {"inputs": "Is it bad?", "targets": []}, {"inputs": "Why?", "targets": ["because"]}]), encoding="utf-8")
    log = RejectLog(tmp_path / "r.parquet")
    assert [r["targets"] for r in jsonl_rows(xp3, "xp3", rejects=log)] == ["yes", "because"]
    log.close()
    kept = pq.read_table(tmp_path / "r.parquet").to_pylist()
    assert [(r["reason"], r["source_row"], r["stage"], r["dataset_name"]) for r in kept] == [
        ("empty inputs", 2, "english", "xp3"), ("empty targets", 3, "english", "xp3")]
    assert json.loads(kept[1]["content"])["inputs"] == "Is it bad?"
    ni = tmp_path / "ni"
    ni.mkdir()
    (ni / "task001_demo.json").write_text(json.dumps({
        "Definition": ["Answer."], "Categories": ["Question Answering"], "Instances": [
            {"id": "a", "input": "1+1?", "output": ["2"]}, {"id": "b", "input": "2+2?", "output": []},
            {"id": "c", "input": "3+3?", "output": [" "]}]}), encoding="utf-8")
    log = RejectLog(tmp_path / "ni.parquet")
    assert [r["row"] for r in natural_instruction_rows(ni, rejects=log)] == ["a"]
    log.close()
    assert [(r["reason"], r["source_row"]) for r in pq.read_table(tmp_path / "ni.parquet").to_pylist()] == [
        ("empty output", 1), ("empty output", 2)]
    # english_files keeps them per collection; a second run with nothing to set aside leaves no stale file
    work = tmp_path / "work"
    english_files(EnglishSources(promptsource=[], xp3=str(xp3), natural_instructions=str(ni)), work)
    assert set_aside_counts(work) == {"xp3": {"empty inputs": 1, "empty targets": 1},
                                      "natural_instructions": {"empty output": 2}}
    xp3.write_text(json.dumps({"inputs": "Is it good?", "targets": "yes"}), encoding="utf-8")
    english_files(EnglishSources(promptsource=[], xp3=str(xp3)), work)
    assert not rejects_path(work, "xp3").exists() and set_aside_counts(work) == {}
    # a collection whose every row gives no prompt stops the run, and its rows are still kept with the reason
    xp3.write_text(json.dumps({"inputs": "Is it good?", "targets": ""}), encoding="utf-8")
    with pytest.raises(BuildError, match="xp3: no rows read"):
        english_files(EnglishSources(promptsource=[], xp3=str(xp3)), work)
    assert set_aside_counts(work) == {"xp3": {"empty targets": 1}}


def _hub_folder(tmp_path: Path):
    """A Hub-layout snapshot folder (parquet per split, features in the files, README configs) with the value
    kinds a Hub dataset gives: ClassLabel ids, a list of strings, a struct of lists (SQuAD answers), a null."""
    import datasets

    from test_catalog_check import write_snapshot

    features = datasets.Features({
        "text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"]),
        "tokens": datasets.Sequence(datasets.Value("string")),
        "answers": {"text": datasets.Sequence(datasets.Value("string")), "answer_start": datasets.Sequence(datasets.Value("int32"))},
    })

    def split(n: int, tag: str) -> dict[str, list]:
        return {"text": [None if i == 3 else f"نص {tag} {i}" for i in range(n)], "label": [i % 2 for i in range(n)],
                "tokens": [[f"كلمة{j}" for j in range(i % 4)] for i in range(n)],
                "answers": [{"text": [f"ج{i}"] * (i % 3), "answer_start": [i] * (i % 3)} for i in range(n)]}

    folder = write_snapshot(tmp_path, "someone/toy", None, {"train": split(23, "t"), "test": split(6, "x")}, features)
    return folder, datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "cache"))


def test_a_hub_snapshot_read_in_batches_gives_the_rows_of_iterating_the_dataset(tmp_path, monkeypatch):
    """``read_hub`` turns the rows into Python a batch at a time (``ds[lo:hi]``); the rows must be those of
    iterating each split row by row (the slow way it replaced), limit included. Batches of 4 rows here, so
    splits end inside a batch."""
    import builders.sources as sources

    monkeypatch.setattr(sources, "HUB_BATCH_ROWS", 4)
    folder, dsd = _hub_folder(tmp_path)
    e = CatalogEntry(name="toy", task="t", task_family="classification", license="mit", columns={"text": "text"},
                     hub_id="someone/toy")
    expected = [(s, i, r) for s, ds in dsd.items() for i, r in enumerate(ds)]
    assert [s for s, _, _ in expected].count("train") == 23 and expected[3][2]["text"] is None
    assert expected[5][2] == {"text": "نص t 5", "label": 1, "tokens": ["كلمة0"], "answers": {"text": ["ج5", "ج5"], "answer_start": [5, 5]}}
    assert list(sources.read_hub(e, str(folder))) == expected
    assert list(sources.read_local(e, folder)) == expected  # --local of a snapshot folder: the same path
    limited = list(sources.read_hub(e, str(folder), limit=10))
    assert limited == [(s, i, r) for s, i, r in expected if i < 10]


def test_a_hub_snapshot_leaves_the_rows_it_is_not_asked_for_undecoded(tmp_path, monkeypatch):
    """``wanted(seq)`` (rows numbered across the splits): the others come back with record None and the same
    (split, row) numbering, and a batch with no wanted row is never turned into Python."""
    import datasets

    import builders.sources as sources

    monkeypatch.setattr(sources, "HUB_BATCH_ROWS", 4)
    folder, dsd = _hub_folder(tmp_path)
    e = CatalogEntry(name="toy", task="t", task_family="classification", license="mit", columns={"text": "text"},
                     hub_id="someone/toy")
    expected = [(s, i, r) for s, ds in dsd.items() for i, r in enumerate(ds)]
    slices = []
    real_getitem = datasets.Dataset.__getitem__

    def getitem(self, key):  # records which slices were formatted (the real method does the work)
        slices.append((len(self), key))
        return real_getitem(self, key)

    monkeypatch.setattr(datasets.Dataset, "__getitem__", getitem)

    def wanted(seq: int) -> bool:
        return 8 <= seq < 10 or seq >= 25  # train rows 8-9; train has 23 rows, so test rows 2-5

    got = list(sources.read_hub(e, str(folder), wanted=wanted))
    assert [(s, i) for s, i, _ in got] == [(s, i) for s, i, _ in expected]
    assert [r for _, _, r in got] == [r if wanted(seq) else None for seq, (_, _, r) in enumerate(expected)]
    assert sum(r is not None for _, _, r in got) == 2 + 4
    # train (23 rows) in batches [0,4) [4,8) [8,12) ... and test (6 rows) in [0,4) [4,6): only the batches
    # holding a wanted row were formatted
    assert slices == [(23, slice(8, 12)), (6, slice(0, 4)), (6, slice(4, 6))]


def test_a_hub_snapshot_folder_given_with_local_is_read_as_the_hub_copy_even_for_an_entry_with_raw_files(tmp_path):
    """``--local NAME=FOLDER`` of a downloaded Hub snapshot: an entry whose catalog also describes the raw files
    (``local:``, here ASTD's Tweets.txt) reads the snapshot with its Hub columns and label ids, as the Hub
    read does; a folder with the raw files (a GitHub README beside them) is still read with the ``local:``
    spec; a folder with neither says what it looked for."""
    import datasets

    from builders.catalog import load_catalog
    from builders.sources import read_local, uses_local_layout
    from builders.steps.ingest import map_record
    from test_catalog_check import write_snapshot

    entry = load_catalog()["astd_sentiment"]
    assert entry.local and entry.hub_id
    features = datasets.Features({"tweet": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=entry.labels["label"].names)})
    snapshot = write_snapshot(tmp_path / "hub", entry.hub_id, None,
                              {"train": {"tweet": ["تغريدة أولى", "تغريدة ثانية"], "label": [2, 3]}}, features)
    assert not uses_local_layout(entry, snapshot)
    rows = list(read_local(entry, snapshot))
    assert [(s, i) for s, i, _ in rows] == [("train", 0), ("train", 1)]
    assert [map_record(entry, r, uses_local_layout(entry, snapshot))[0] for _, _, r in rows] == [
        {"text": "تغريدة أولى", "label": 2}, {"text": "تغريدة ثانية", "label": 3}]
    raw = tmp_path / "astd"
    raw.mkdir()
    (raw / "README.md").write_text("# ASTD\nArabic Sentiment Tweets Dataset\n", encoding="utf-8")
    (raw / "Tweets.txt").write_text("تغريدة\tPOS\nأخرى\tNEG\n", encoding="utf-8")
    (raw / "4class-balanced-test.txt").write_text("1\n", encoding="utf-8")
    (raw / "4class-balanced-validation.txt").write_text("", encoding="utf-8")
    assert uses_local_layout(entry, raw)
    assert [(s, i, r["text"]) for s, i, r in read_local(entry, raw)] == [("train", 0, "تغريدة"), ("test", 0, "أخرى")]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="no file matches 'Tweets.txt'"):
        list(read_local(entry, empty))
