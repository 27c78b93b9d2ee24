"""Split assignment in bounded memory: ``builders.splits.Components`` joins rows one hash range at a time
(``AssignSplits`` reads a build's linking hashes range by range instead of all at once). Fed in many ranges it
must give exactly the components of the whole graph: checked against scipy's connected components of the
row/text graph built here, on random graphs made to hit every case (a text shared by more than
``max_link_rows`` rows, a row key equal to a text hash, rows with no texts, one hash twice in a row)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from builders.splits import Components, components_flat

SPREAD = np.uint64(0x9E3779B97F4A7C15)  # an odd multiplier: small ids become hashes over the whole 64-bit range


def random_graph(seed: int, rows: int = 400):
    rng = np.random.default_rng(seed)
    with np.errstate(over="ignore"):
        keys = rng.integers(1, rows // 2, rows).astype(np.uint64) * SPREAD  # some rows share a key
        counts = rng.integers(0, 6, rows)
        owner = np.repeat(np.arange(rows), counts)
        pool = rng.integers(1, rows, len(owner)).astype(np.uint64)
        pool[rng.random(len(owner)) < 0.15] = 7  # one text in many rows: a category that links nothing
        flat = pool * SPREAD
    flat[:3] = keys[:3]  # text hashes equal to row keys: one node
    return keys, owner, flat


def reference(keys, owner, flat, max_link_rows):
    """Components of the row/text graph, by scipy: rows that share a key or a text held at most max_link_rows
    times; each component's key is its smallest node (row key or linking text)."""
    values, counts = np.unique(flat, return_counts=True)
    linking = np.isin(flat, values[counts <= max_link_rows])
    nodes, inverse = np.unique(np.concatenate([keys, flat[linking]]), return_inverse=True)
    n = len(keys)
    row_node, text_node = inverse[:n], inverse[n:]
    graph = coo_matrix((np.ones(n + len(text_node)), (np.concatenate([np.arange(n), owner[linking]]),
                                                      np.concatenate([row_node, text_node]))),
                       shape=(n, len(nodes)))
    import scipy.sparse as sp

    full = sp.bmat([[None, graph], [graph.T, None]])
    _, label = connected_components(full, directed=False)
    label = label[:n]
    low = {}
    for r in range(n):
        low[label[r]] = min(low.get(label[r], 2**64), int(keys[r]))
    for r, h in zip(owner[linking], flat[linking]):
        low[label[r]] = min(low[label[r]], int(h))
    return label, np.array([low[label[r]] for r in range(n)], dtype=np.uint64), int(len(values)), int((counts > max_link_rows).sum())


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ranges", [1, 2, 7, 64])
def test_components_fed_range_by_range_are_the_components_of_the_whole_graph(seed, ranges):
    keys, owner, flat = random_graph(seed)
    linker = Components(keys, max_link_rows=5)
    for lo, hi in Components.ranges(ranges):
        mine = Components.in_range(flat, lo, hi)
        linker.add(owner[mine], flat[mine], lo, hi)
    comp, comp_key, figures = linker.result()
    label, low, distinct, categories = reference(keys, owner, flat, 5)
    # the same partition of the rows, the same component keys, components numbered in the order of their keys
    assert np.array_equal(comp_key[comp], low)
    assert len(comp_key) == len(np.unique(label))
    same_ref = label[:, None] == label[None, :]
    assert np.array_equal(comp[:, None] == comp[None, :], same_ref)
    assert np.all(np.diff(comp_key.astype(object)) > 0)
    assert figures["linking_hashes"] == distinct and figures["category_texts_not_linking"] == categories >= 1
    # the whole graph at once is the same
    whole = components_flat(keys, owner, flat, 5)
    assert np.array_equal(whole[0], comp) and np.array_equal(whole[1], comp_key) and whole[2] == figures
    # the case links something and leaves something apart
    assert 1 < len(comp_key) < len(keys)


def test_ranges_cover_every_hash_once():
    bounds = Components.ranges(5)
    probe = np.array([0, 1, 2**63, 2**64 - 1, *[(2**64 // 5) * b for b in range(5)]], dtype=np.uint64)
    hits = sum(Components.in_range(probe, lo, hi).astype(int) for lo, hi in bounds)
    assert np.all(hits == 1)
    # range_index (how the build files hashes by range) names the one range in_range says
    which = Components.range_index(probe, 5)
    for r, (lo, hi) in enumerate(bounds):
        assert np.array_equal(which == r, Components.in_range(probe, lo, hi))
    assert np.all(Components.range_index(probe, 1) == 0)


# ------------------------------------------------------------------ ingest: several tasks per dataset


def test_ingest_in_chunks_gives_the_output_of_one_task_per_dataset(tmp_path, monkeypatch):
    """Ingest runs ``INGEST_CHUNKS`` tasks per dataset, each keying every other block of rows; the blocks are
    read back in the source's order, so the first of two identical rows is the one kept and the output is
    byte for byte that of a single task. Blocks of 4 rows here, so rows, rejects and duplicates fall in many
    blocks of every chunk."""
    import builders.steps.ingest as ingest
    from builders.pipeline import BuildConfig, build
    from test_build import all_rows, data_digest
    from test_integrity import SENTIMENT, csv_file, entry, tweets

    texts = tweets(40)
    rows = [[t, str(i % 2)] for i, t in enumerate(texts)]
    rows[30] = list(rows[3])  # a duplicate source row, 27 rows (several blocks) after the first
    rows[12][0] = " "  # an empty text: a reject
    rows[21][1] = "7"  # an unknown label: a reject
    root = tmp_path / "cat"
    entry(root, "toy_tweets", {"text": "text", "label": "label"}, labels={"label": ["0", "1"]}, templates=SENTIMENT)
    csv_file(tmp_path / "data" / "train.csv", ["text", "label"], rows)
    monkeypatch.setattr(ingest, "BLOCK_ROWS", 4)
    outs = {}
    for chunks in (1, 3):
        monkeypatch.setattr(ingest, "INGEST_CHUNKS", chunks)
        out = tmp_path / f"out-{chunks}"
        outs[chunks] = build(BuildConfig(out=out, datasets=["toy_tweets"], local={"toy_tweets": str(tmp_path / "data")},
                                         catalog_dirs=[str(root)], workers=2))
        assert len(list((out / "_build" / "sources" / "toy_tweets").glob("*.parquet"))) == chunks
    assert data_digest(tmp_path / "out-1") == data_digest(tmp_path / "out-3")
    assert outs[1].report["skipped"] == outs[3].report["skipped"]
    skipped = outs[3].report["skipped"]["toy_tweets"]
    assert skipped["source: duplicate source row"] == 1 and skipped["source: empty text"] == 1
    duplicates = [r for p in (tmp_path / "out-3" / "_build" / "rejected").glob("assign-*.parquet")
                  for r in pq.read_table(p).to_pylist()]
    assert [r["source_row"] for r in duplicates] == [30]  # the later copy is the one set aside
    assert json.loads(duplicates[0]["content"])["text"] == texts[3]  # its record, read from the ingested rows
    assert len(all_rows(tmp_path / "out-3")) == (40 - 3) * len(SENTIMENT)
    # the records rendering reads by position (IngestedRows.take) are the ingested rows the assigned file names
    from builders.steps.assign import INGESTED_ROW, assigned_path
    from builders.steps.ingest import IngestedRows

    work = tmp_path / "out-3" / "_build"
    assigned = pq.read_table(assigned_path(work, "toy_tweets"))
    ingested = IngestedRows(work, "toy_tweets")
    whole = pa.concat_tables(ingested.tables(["source_row", "record"]))
    positions = assigned.column(INGESTED_ROW).to_numpy()
    assert len(ingested) == whole.num_rows == 40 - 2 and len(positions) == 40 - 3 and 30 not in assigned.column("source_row").to_pylist()
    taken = ingested.take(positions, ["source_row", "record"])
    assert taken.column("source_row").to_pylist() == assigned.column("source_row").to_pylist()
    assert taken.column("record").to_pylist() == whole.column("record").take(pa.array(positions)).to_pylist()
    assert ingested.take(np.array([5, 17]), ["record"]).column("record").to_pylist() == whole.column("record").to_pylist()[5:18:12]


def test_ingest_in_chunks_of_a_hub_snapshot_gives_the_output_of_one_task(tmp_path, monkeypatch):
    """Read through ``load_dataset``, each ingest task turns only its own blocks' rows into Python (the others
    come undecoded, ``read_hub``'s ``wanted``): the output must be byte for byte that of one task reading every
    row. Blocks of 4 rows and batches of 3, so a batch straddles two tasks' blocks and the splits end inside both."""
    import builders.sources as sources
    import builders.steps.ingest as ingest
    from builders.pipeline import BuildConfig, build
    from test_build import _hub_snapshot, all_rows, data_digest

    snap = tmp_path / "xnli"
    _hub_snapshot(snap, [f"ذهب الطالب رقم {i} إلى المدرسة صباحا." for i in range(11)])
    monkeypatch.setattr(ingest, "BLOCK_ROWS", 4)
    monkeypatch.setattr(sources, "HUB_BATCH_ROWS", 3)
    for chunks in (1, 3):
        monkeypatch.setattr(ingest, "INGEST_CHUNKS", chunks)
        build(BuildConfig(out=tmp_path / f"out-{chunks}", datasets=["xnli_ar_nli"], local={"xnli_ar_nli": str(snap)},
                          workers=1))
        assert len(list((tmp_path / f"out-{chunks}" / "_build" / "sources" / "xnli_ar_nli").glob("*.parquet"))) == chunks
    assert data_digest(tmp_path / "out-1") == data_digest(tmp_path / "out-3")
    own = ingest.ingested_meta(tmp_path / "out-3" / "_build", "xnli_ar_nli")["own_rows"]
    assert own == {"train": 11, "validation": 11, "test": 11}  # every row ingested once, under its own split
    rows = all_rows(tmp_path / "out-3")
    assert {r["source_id"] for r in rows} and len({(r["split"], r["inputs"]) for r in rows}) == len(rows)
    assert any("رقم 10 " in r["inputs"] for r in rows if r["split"] == "test")  # the last row of the last split


def test_hex64_a_slice_at_a_time_reads_every_id(monkeypatch):
    """hex64 decodes ids a slice of HEX_ROWS at a time (bounded memory): slices of 3 rows give int(v[:16], 16)
    for every value, and a bad value in a later slice is still refused."""
    import builders.hashes as hashes

    monkeypatch.setattr(hashes, "HEX_ROWS", 3)
    rng = np.random.default_rng(0)
    values = [f"{int(x):016x}ab" for x in rng.integers(0, 2**63, 10, dtype=np.int64)] + ["FFFFFFFFFFFFFFFF"]
    assert hashes.hex64(values).tolist() == [int(v[:16], 16) for v in values]
    with pytest.raises(ValueError, match="not hexadecimal"):
        hashes.hex64(values[:7] + ["zz" * 8])


def _checked_batches(texts: list[str], wrong: int | None = None) -> list:
    import pyarrow as pa

    from builders.hashes import hash64
    from builders.steps.dedup import INPUTS_HASH
    from builders.textnorm import normalize

    hashes = hash64(normalize(texts))
    if wrong is not None:
        hashes[wrong] ^= np.uint64(1)
    ids = [f"{i:024x}" for i in range(len(texts))]
    table = pa.table({"id": ids, "inputs": texts, "source_id": [f"{i:032x}" for i in range(len(texts))],
                      "split": ["train"] * len(texts), INPUTS_HASH: pa.array(hashes, pa.uint64())})
    return table.to_batches(max_chunksize=4)


@pytest.mark.parametrize("wrong", [None, 0, 7, 11])  # the first row, the last row of a later batch, the very last
def test_check_signatures_refuses_carried_inputs_hashes_that_do_not_match(tmp_path, wrong):
    from builders.steps import BuildError
    from builders.steps.verify import CheckSignatures

    texts = [f"نصّ رقم {i}، مع علامات!" for i in range(12)]
    step = CheckSignatures(str(tmp_path / "sigs"), verify_rows=2)
    if wrong is None:
        assert sum(b.num_rows for b in step.run(iter(_checked_batches(texts)))) == 12
        assert (tmp_path / "sigs" / "inputs" / "0000" / "00000.c4_sig").stat().st_size > 0
        return
    with pytest.raises(BuildError, match="do not match"):
        list(step.run(iter(_checked_batches(texts, wrong))))


def test_the_build_freezes_what_is_alive_while_its_stages_run_and_puts_it_back():
    import gc

    from builders.executors import frozen_gc

    before = gc.get_freeze_count()
    with frozen_gc():
        assert gc.get_freeze_count() > before  # the objects alive now are left out of the collector's scans
    assert gc.get_freeze_count() == 0


def test_workers_forked_from_the_forkserver_start_frozen():
    """What the forkserver imports last (builders.gc_frozen) freezes what it had loaded; a fresh interpreter
    stands in for the forkserver here."""
    import subprocess
    import sys

    code = "import gc; assert gc.get_freeze_count() == 0; import builders.gc_frozen; print(gc.get_freeze_count())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) > 1000


def test_the_forkserver_preloads_the_freeze_last():
    """What a build with workers > 1 sets (the same call, so the same global state a build leaves)."""
    from multiprocess import forkserver

    from builders import executors

    executors._preload_step_modules([])
    modules = forkserver._forkserver._preload_modules
    assert modules[-1] == "builders.gc_frozen" and "builders.steps.render" in modules


_WORKER_PROBE = '''
import json, os, sys
from pathlib import Path
from datatrove.pipeline.base import PipelineStep
from builders.executors import ExecutorConfig, make_executor, start_forkserver

class Probe(PipelineStep):
    name = "probe"

    def __init__(self, out):
        super().__init__()
        self.out = out

    def run(self, data=None, rank=0, world_size=1):
        from loguru._better_exceptions import ExceptionFormatter
        info = {"ppid": os.getppid(), "pandas": "pandas" in sys.modules,
                "lib_dirs_once": hasattr(ExceptionFormatter._get_lib_dirs, "cache_info")}
        Path(self.out, f"{rank}.json").write_text(json.dumps(info))
        return
        yield

if __name__ == "__main__":
    root, cfg = Path(sys.argv[1]), ExecutorConfig(workers=2)
    for stage, fork in (("first", True), ("later", False)):
        (root / stage).mkdir()
        ex = make_executor(cfg, [Probe(str(root / stage))], tasks=2, logging_dir=root / "logs" / stage, fork=fork)
        ex.run()
        if fork:
            start_forkserver(cfg)
    print(os.getpid())
'''


@pytest.mark.skipif(sys.platform != "linux", reason="the first stage forks only on Linux")
def test_the_first_stage_forks_from_the_build_and_later_stages_come_from_the_forkserver_with_pandas(tmp_path):
    """A build's first stage (ingest) forks its workers from the build's process, so it does not wait for the
    forkserver to start; the later stages' workers come from the forkserver (started after the first stage).
    Workers of both kinds start with pandas imported (pyarrow imports it on first use: 0.3 s a worker and
    stage otherwise). Run in a fresh interpreter, as a build is: the forkserver's preload is set once per process."""
    import subprocess

    script = tmp_path / "probe.py"
    script.write_text(_WORKER_PROBE)
    out = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True,
                         cwd=Path(__file__).parents[1])
    assert out.returncode == 0, out.stderr[-3000:]
    build_pid = int(out.stdout.split()[-1])
    seen = {stage: [json.loads((tmp_path / stage / f"{r}.json").read_text()) for r in range(2)]
            for stage in ("first", "later")}
    assert all(w["ppid"] == build_pid for w in seen["first"])
    assert all(w["ppid"] != build_pid for w in seen["later"]) and len({w["ppid"] for w in seen["later"]}) == 1
    assert all(w["pandas"] and w["lib_dirs_once"] for stage in seen.values() for w in stage)


def test_a_task_s_log_sinks_do_not_look_up_the_library_folders_again(monkeypatch):
    """datatrove adds two loguru sinks for every task; loguru's library folders (36 ``sysconfig`` look-ups a sink,
    some 6 ms) are worked out once per process, and are the folders loguru itself finds."""
    import io
    import sysconfig

    from loguru import logger
    from loguru._better_exceptions import ExceptionFormatter

    import builders.executors  # noqa: F401  (applies it)

    uncached = ExceptionFormatter._get_lib_dirs.__wrapped__  # functools.cache's wrapper keeps the function
    logger.remove(logger.add(io.StringIO()))  # the first sink of this process may work them out
    calls = []
    real = sysconfig.get_path
    monkeypatch.setattr(sysconfig, "get_path", lambda *a, **k: calls.append(a) or real(*a, **k))
    for _ in range(3):
        logger.remove(logger.add(io.StringIO()))
    assert calls == []  # none for the later sinks
    assert set(ExceptionFormatter._get_lib_dirs()) == set(uncached())
    assert calls  # the uncached function does look them up (so the count above could see it)


def test_texts_with_two_labels_counts_each_text_once():
    """Split assignment's count of texts kept with conflicting labels, against a count by dict: texts with
    one label (repeated), two and three labels; empty input."""
    from builders.steps.assign import texts_with_two_labels

    rng = np.random.default_rng(1)
    ids = rng.integers(0, 300, 5000).astype(np.uint64)
    labels = rng.choice(np.array([0, 1, 2], np.uint64), 5000, p=[0.9, 0.07, 0.03])
    seen: dict[int, set] = {}
    for i, lab in zip(ids.tolist(), labels.tolist()):
        seen.setdefault(i, set()).add(lab)
    expected = sum(len(v) > 1 for v in seen.values())
    assert 0 < expected < len(seen) and any(len(v) == 3 for v in seen.values())
    assert texts_with_two_labels(ids, labels) == expected
    assert texts_with_two_labels(np.zeros(0, np.uint64), np.zeros(0, np.uint64)) == 0


def test_row_writer_writes_dictionaries_and_statistics_only_where_asked_and_keeps_the_rows(tmp_path):
    """``use_dictionary`` and ``write_statistics`` reach the Parquet files as given (every column by default, as
    the published shards are written; none, or only the columns named, for a work file); the rows read back are
    the rows written, in order, and a column the schema lacks is refused by name."""
    from builders.steps.write import RowWriter

    schema = pa.schema([("id", pa.string()), ("inputs", pa.string()), ("split", pa.string())])
    batch = pa.RecordBatch.from_pydict({"id": [f"{i:08x}" for i in range(5000)],
                                        "inputs": [f"نص رقم {i}" for i in range(5000)],
                                        "split": ["train", "test"] * 2500}, schema=schema)
    options = {"default": {}, "none": {"use_dictionary": False, "write_statistics": False},
               "split": {"use_dictionary": ["split"], "write_statistics": ["split"]}}
    for folder, kwargs in options.items():
        writer = RowWriter(str(tmp_path / folder), schema, output_filename="${rank}.parquet", batch_size=2048, **kwargs)
        list(writer.run(iter([batch.slice(0, 3000), batch.slice(3000)]), rank=0))
    encodings, statistics = {}, {}
    for folder in options:
        meta = pq.ParquetFile(tmp_path / folder / "00000.parquet").metadata
        columns = [meta.row_group(0).column(c) for c in range(meta.num_columns)]
        encodings[folder] = {c.path_in_schema for c in columns if "RLE_DICTIONARY" in c.encodings}
        statistics[folder] = {c.path_in_schema for c in columns if c.is_stats_set}
        assert pq.read_table(tmp_path / folder / "00000.parquet").equals(pa.Table.from_batches([batch]))
        assert [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] == [2048, 2048, 904]
    assert encodings == {"default": {"id", "inputs", "split"}, "none": set(), "split": {"split"}}
    assert statistics == {"default": {"id", "inputs", "split"}, "none": set(), "split": {"split"}}
    for option in ("use_dictionary", "write_statistics"):
        with pytest.raises(ValueError, match=f"{option}.*targets"):
            RowWriter(str(tmp_path / "x"), schema, output_filename="${rank}.parquet", **{option: ["targets"]})


def test_row_writer_puts_each_row_of_mixed_batches_in_its_file_in_order(tmp_path):
    """Batches whose rows belong to several files (``${task}/${split}``, interleaved) are cut into one group per
    file: every file holds exactly its rows, in the order they came, in row groups of ``batch_size``."""
    from builders.steps.write import RowWriter

    schema = pa.schema([("id", pa.string()), ("inputs", pa.string()), ("task", pa.string()), ("split", pa.string())])
    rng = np.random.default_rng(3)
    n = 7000
    rows = {"id": [f"{i:08x}" for i in range(n)], "inputs": [f"نص {i}" for i in range(n)],
            "task": rng.choice(["sentiment", "dialect"], n).tolist(),
            "split": rng.choice(["train", "validation", "test"], n, p=[0.8, 0.05, 0.15]).tolist()}
    batch = pa.RecordBatch.from_pydict(rows, schema=schema)
    writer = RowWriter(str(tmp_path), schema, output_filename="${task}/${split}/${rank}.parquet", batch_size=1000)
    list(writer.run(iter([batch.slice(0, 2500), batch.slice(2500, 1), batch.slice(2501)]), rank=0))
    files = sorted(tmp_path.glob("*/*/00000.parquet"))
    assert len(files) == 6
    for path in files:
        task, split = path.parts[-3], path.parts[-2]
        want = [i for i in range(n) if rows["task"][i] == task and rows["split"][i] == split]
        table = pq.read_table(path)
        assert table.column("id").to_pylist() == [rows["id"][i] for i in want]
        sizes = [pq.ParquetFile(path).metadata.row_group(g).num_rows for g in range(pq.ParquetFile(path).num_row_groups)]
        assert sizes == [1000] * (len(want) // 1000) + ([len(want) % 1000] if len(want) % 1000 else [])


def test_row_writer_buffers_hold_only_their_own_rows(tmp_path):
    """A group waiting in the writer's buffer is a copy of its rows, not a slice of the incoming batch: a slice
    would keep every batch alive whole until the group's smallest file fills a row group (with a 5% split,
    twenty batches for one), which took peak memory at 4M prompts to 1.33x that at 1M."""
    from builders.steps.write import RowWriter

    schema = pa.schema([("id", pa.string()), ("inputs", pa.string()), ("split", pa.string())])
    n = 4000
    batch = pa.RecordBatch.from_pydict({"id": [f"{i:08x}" for i in range(n)], "inputs": ["نص " * 50 + str(i) for i in range(n)],
                                        "split": ["validation" if i % 20 == 0 else "train" for i in range(n)]},
                                       schema=schema)
    writer = RowWriter(str(tmp_path), schema, output_filename="${split}/${rank}.parquet", batch_size=10_000)
    writer.write_batch(batch, rank=0)  # nothing reaches a row group yet: both groups wait in the buffer
    held = {name: sum(t.get_total_buffer_size() for t in tables) for name, tables in writer._tables.items()}
    whole = batch.get_total_buffer_size()
    assert set(held) == {"validation/00000.parquet", "train/00000.parquet"}
    assert held["validation/00000.parquet"] < whole / 10  # its 200 rows, not the batch's 4,000
    writer.close()
    assert pq.read_table(tmp_path / "validation" / "00000.parquet").num_rows == n // 20


def test_prompt_filter_on_a_batch_sets_aside_what_prompt_problem_names(tmp_path):
    """The batch path looks one by one only at the prompts its column pass picks (braces, a "None", a blank
    side, a render error): it must set aside exactly the prompts ``prompt_problem`` names, with its reasons,
    blank sides of Unicode whitespace and a "None" inside a word included."""
    from datatrove.pipeline.writers import JsonlWriter

    from builders.steps.checks import PY_WHITESPACE, PromptFilter, prompt_problem

    cases = [("نص", "إيجابي"), ("", "x"), ("\u3000\u2028 ", "x"), ("نص", "\u00a0\t"), ("قيمة {{ x }}", "x"),
             ("None هنا", "x"), ("كلمة Nonexistent", "x"), ("نص", "None"), ("a %} b", "x"), ("{ واحد }", "x"),
             (PY_WHITESPACE.replace("-", ""), "x"), ("نص", "y")]
    n = len(cases)
    batch = pa.RecordBatch.from_pydict({
        "id": [f"{i:024x}" for i in range(n)], "inputs": [c[0] for c in cases], "targets": [c[1] for c in cases],
        "split": ["train"] * n,
        "render_error": [None] * (n - 1) + ["render error: boom"], "excluded": [None] * n,
        "data_has_jinja": [False] * n, "data_has_none": [i == 5 for i in range(n)]})
    expected = [prompt_problem(i, t, e, dn, dj, x) for i, t, e, dn, dj, x in zip(
        *(batch.column(c).to_pylist() for c in ("inputs", "targets", "render_error", "data_has_none",
                                                "data_has_jinja", "excluded")))]
    assert expected.count(None) == 4 and "empty inputs" in expected and "leftover jinja" in expected
    step = PromptFilter(exclusion_writer=JsonlWriter(str(tmp_path / "rejects"), compression=None))
    kept = pa.Table.from_batches(list(step.run(iter([batch]))))
    assert kept.column("id").to_pylist() == [f"{i:024x}" for i, r in enumerate(expected) if r is None]
    rejects = [json.loads(line) for f in sorted((tmp_path / "rejects").glob("*.jsonl")) for line in open(f)]
    assert sorted((r["id"], r["metadata"]["filter_reason"]) for r in rejects) == sorted(
        (f"{i:024x}", r) for i, r in enumerate(expected) if r is not None)


def _rss_anon_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:")) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the process's memory from Linux's /proc")
def test_release_free_memory_gives_the_pages_a_stage_freed_back_to_the_system():
    """What ingest leaves behind with 1 worker: many small objects freed, with something still alive after them
    in the heap, so the heap cannot shrink by itself. ``release_free_memory`` (run after ingest and after split
    assignment) gives those pages back."""
    from builders.executors import release_free_memory

    objects = [bytes(2000) + str(i).encode() for i in range(100_000)]  # ~200 MB from malloc, not Python's arenas
    pinned = bytes(2000) + b"pinned"  # allocated after them: the heap's top stays in use
    before = _rss_anon_mb()
    del objects
    freed = _rss_anon_mb()
    assert release_free_memory() is True
    after = _rss_anon_mb()
    assert freed > before - 50  # freeing alone gave (nearly) nothing back
    assert after < freed - 150, (before, freed, after)
    assert pinned.endswith(b"pinned")
