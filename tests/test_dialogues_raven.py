"""RAVEN n-gram novelty and the hashed n-gram index: hand-computed examples, the reference algorithm on random
text, the index's spilling and sharding, and the plain-file command."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from conftest import run_cli
from dialogues_fixtures import cli, naive_pointwise, naive_summary, naive_training_ngrams

from builders.dialogues.ngram_index import NgramIndex, NgramIndexError, TokenHasher, build_index, ngram_hashes
from builders.dialogues.raven import pointwise_scores, raven_report

TRAIN = ["the cat sat on the mat", "the dog ran"]


@pytest.fixture
def index(tmp_path):
    return build_index(TRAIN, tmp_path / "idx", max_n=10, num_shards=4)


def test_pointwise_hand_computed(index):
    # training stream: the cat sat on the mat | the dog ran   (one stream: "mat the" spans the two lines)
    gen = "the cat ran on the mat the dog".split()
    s = pointwise_scores([gen], index)
    # the:   'the' seen, and nothing before it inside the generation -> capped at j+2 = 2
    # cat:   'cat', 'the cat' seen -> cap 3
    # ran:   'ran' seen, 'cat ran' novel -> 2;   on: 'ran on' novel -> 2
    # the:   'on the' seen, 'ran on the' novel -> 3;   mat: 'on the mat' seen, 'ran on the mat' novel -> 4
    # the:   'mat the' (across lines), 'the mat the', 'on the mat the' seen -> 5
    # dog:   ... 'on the mat the dog' seen, 'ran on the mat the dog' novel -> 6
    assert s["training"][0].tolist() == [2, 3, 2, 2, 3, 4, 5, 6]
    # context: the second 'the' (j=4) and third (j=6) were generated before; 'on the' / 'mat the' were not.
    # The first token has no context; like the reference we score it 2 (the n-gram starting the text is not tested)
    assert s["context"][0].tolist() == [2, 1, 1, 1, 2, 1, 2, 1]
    assert s["training_and_context"][0].tolist() == [2, 3, 2, 2, 3, 4, 5, 6]
    rep = raven_report([gen], index)
    nov = rep["training"]["novelty"]
    assert nov["1"] == 0.0  # every unigram was seen
    assert nov["2"] == pytest.approx(1 - 5 / 7)  # of 7 bigrams, those ending at tokens with score > 2: 5
    assert nov["5"] == pytest.approx(1 - 1 / 4)  # of 4 5-grams, 1 seen ('on the mat the dog')
    assert nov["9"] is None and nov["10"] is None  # an 8-token generation has no 9-grams
    assert rep["training"]["pointwise_truncated5"] == pytest.approx((2 + 3 + 2 + 2 + 3 + 4 + 5 + 5) / 8)
    assert rep["raven"] == pytest.approx(np.mean([v for v in nov.values() if v is not None]))


def test_prompt_only_counts_as_context(index):
    prompt, gen = "the dog".split(), "sat on a rug".split()
    s = pointwise_scores([gen], index, prompts=[prompt])
    # training: 'sat' seen, nothing before inside the generation -> 2; 'on': 'sat on' seen -> 3;
    #           'a', 'rug' unseen -> 1
    assert s["training"][0].tolist() == [2, 3, 1, 1]
    assert s["context"][0].tolist() == [1, 1, 1, 1]  # no generated word appears in 'the dog' or before it
    s = pointwise_scores(["dog dog".split()], index, prompts=[["dog"]])
    assert s["context"][0].tolist() == [2, 3]  # 'dog' in the prompt; 'dog dog' occurs before the last token


def test_eos_and_line_boundaries(tmp_path):
    gen = [["mat", "the"]]
    stream = build_index(TRAIN, tmp_path / "a", max_n=4)
    per_line = build_index(TRAIN, tmp_path / "b", max_n=4, cross_lines=False)
    with_eos = build_index(TRAIN, tmp_path / "c", max_n=4, eos="<eos>")
    assert pointwise_scores(gen, stream, max_n=4)["training"][0].tolist() == [2, 3]
    assert pointwise_scores(gen, per_line, max_n=4)["training"][0].tolist() == [2, 2]
    assert pointwise_scores(gen, with_eos, max_n=4)["training"][0].tolist() == [2, 2]
    assert pointwise_scores([["mat", "<eos>", "the"]], with_eos, max_n=4)["training"][0].tolist() == [2, 3, 4]


@pytest.mark.parametrize("seed, cross_lines, eos, with_prompts", [(0, True, None, True), (1, False, None, False),
                                                                   (2, True, "<eos>", True)])
def test_matches_the_reference_algorithm(tmp_path, seed, cross_lines, eos, with_prompts):
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(12)]  # a small vocabulary, so long n-grams repeat and the caps are reached
    train = [" ".join(rng.choices(vocab, k=rng.randint(0, 30))) for _ in range(60)]
    gens = [rng.choices(vocab, k=rng.randint(0, 25)) for _ in range(40)]
    gens.append(train[3].split()[:12])  # a copied passage: scores climb to the cap
    prompts = [rng.choices(vocab, k=rng.randint(0, 6)) for _ in gens] if with_prompts else None
    idx = build_index(train, tmp_path / "idx", max_n=6, num_shards=3, eos=eos, cross_lines=cross_lines,
                      chunk_tokens=50)
    ours = pointwise_scores(gens, idx, prompts, max_n=6)
    ref = naive_pointwise(gens, prompts, naive_training_ngrams(train, 6, eos, cross_lines), max_n=6)
    batched = pointwise_scores(gens, idx, prompts, max_n=6, batch_tokens=40)  # many small batches: the same
    for source in ref:
        assert [s.tolist() for s in ours[source]] == ref[source], source
        assert [s.tolist() for s in batched[source]] == ref[source], source
    rep = raven_report(gens, idx, prompts, max_n=6)
    for source in ref:
        expected = naive_summary(ref[source], 6)
        assert rep[source]["novelty"] == pytest.approx(expected["novelty"])
        assert rep[source]["pointwise_truncated5"] == pytest.approx(expected["pointwise_truncated5"])


def test_index_spills_and_shards_give_the_same_set(tmp_path):
    rng = random.Random(5)
    lines = [" ".join(f"t{rng.randint(0, 300)}" for _ in range(rng.randint(1, 40))) for _ in range(400)]
    one = build_index(lines, tmp_path / "one", max_n=5, num_shards=1)
    spilled = build_index(lines, tmp_path / "many", max_n=5, num_shards=7, chunk_tokens=1000, memory_budget_mb=0)
    merged = np.concatenate([np.load(tmp_path / "many" / f"shard-{k:05d}.npy") for k in range(7)])
    assert np.array_equal(np.sort(merged), np.load(tmp_path / "one" / "shard-00000.npy"))
    assert spilled.meta.distinct == one.meta.distinct == len(naive_training_ngrams(lines, 5))
    assert not list((tmp_path / "many").glob("ngram-runs-*"))  # spill files are removed
    probe = np.concatenate(ngram_hashes(TokenHasher()(["t1", "t2", "zzz"]), 3))
    assert spilled.contains(probe).tolist() == one.contains(probe).tolist()
    assert not spilled.contains(ngram_hashes(TokenHasher()(["never-seen"]), 1)[0]).any()
    with pytest.raises(NgramIndexError, match="not empty"):
        build_index(lines, tmp_path / "one")
    with pytest.raises(NgramIndexError, match="not an n-gram index"):
        NgramIndex(tmp_path)


def test_raven_command_on_plain_files(tmp_path, capsys):
    (tmp_path / "train.txt").write_text("\n".join(TRAIN) + "\n", encoding="utf-8")
    (tmp_path / "gen.txt").write_text("the cat ran on the mat the dog\nsat on a rug\n", encoding="utf-8")
    (tmp_path / "prompts.txt").write_text("a\nthe dog\n", encoding="utf-8")
    # the command itself, in a subprocess, as one compares it with the reference code on the same files
    proc = run_cli("dialogues", "raven", "--train", str(tmp_path / "train.txt"), "--generated",
                   str(tmp_path / "gen.txt"), "--prompts", str(tmp_path / "prompts.txt"), "--json")
    rep = json.loads(proc.stdout.strip().splitlines()[-1])
    idx = build_index(TRAIN, tmp_path / "idx", max_n=10)
    gens = [line.split() for line in (tmp_path / "gen.txt").read_text().splitlines()]
    prompts = [line.split() for line in (tmp_path / "prompts.txt").read_text().splitlines()]
    assert rep == json.loads(json.dumps(raven_report(gens, idx, prompts)))
    assert rep["generations"] == 2 and rep["tokens"] == 12 and 0 < rep["raven"] < 1
    table = cli(capsys, "dialogues", "raven", "--train", str(tmp_path / "train.txt"), "--generated",
                str(tmp_path / "gen.txt"), "--index", str(tmp_path / "saved"))
    assert "RAVEN = " in table and (tmp_path / "saved" / "meta.json").exists()
    again = cli(capsys, "dialogues", "raven", "--generated", str(tmp_path / "gen.txt"), "--index",
                str(tmp_path / "saved"), "--json")
    assert json.loads(again)["training"] == raven_report(gens, NgramIndex(tmp_path / "saved"))["training"]


def test_arrow_tokenization_is_pythons_split():
    from builders.dialogues.ngram_index import tokenize_lines

    lines = ["  مرحبا   بك\n", "", "\t", "a\u00a0b\u2003c\u3000d\x1ce", "كلمة\r\nأخرى ", "x"]
    tokens, lengths = tokenize_lines(lines, eos="<eos>")
    expected = [t for line in lines for t in line.split() + ["<eos>"]]
    assert lengths.tolist() == [len(line.split()) + 1 for line in lines]
    assert tokens.tolist() == TokenHasher()(expected).tolist()


def test_vectorised_hashes_and_arrow_line_reading(tmp_path):
    import pyarrow as pa

    from builders.dialogues.ngram_index import build_index_from_files, hash_strings, read_line_batches, read_lines

    words = ["", "a", "ب", "مرحبا", "hello world", "x" * 300, "a", "é"]
    arr = pa.array(["pad"] + words, pa.large_string()).slice(1)  # a sliced array: offsets do not start at 0
    hashes = hash_strings(arr)
    assert hashes.tolist() == [hash_strings(pa.array([w]))[0] for w in words]  # position-independent
    assert hashes[1] == hashes[6] and len(set(hashes.tolist())) == 7
    text = "سطر أول\r\nسطر ثان\rثالث\n\nخامس مع كلمة طويلةجدا\n" * 50 + "بلا نهاية"
    path = tmp_path / "t.txt"
    path.write_bytes(text.encode("utf-8"))
    expected = [line.rstrip("\r\n") for line in read_lines([path])]
    for block in (7, 13, 64, 1 << 20):  # blocks that cut "\r\n" pairs and multi-byte letters
        assert [x for b in read_line_batches([path], block) for x in b.to_pylist()] == expected, block
    a = build_index(read_lines([path]), tmp_path / "a", max_n=4, eos="<eos>")
    b = build_index_from_files([path], tmp_path / "b", max_n=4, eos="<eos>", chunk_tokens=20)
    assert a.meta.distinct == b.meta.distinct and a.meta.tokens == b.meta.tokens == len(text.split()) + 251
    assert np.array_equal(np.load(tmp_path / "a" / "shard-00000.npy"), np.load(tmp_path / "b" / "shard-00000.npy"))


def test_look_ups_are_exact_at_shard_edges_and_among_near_equal_hashes(tmp_path):
    """``contains`` orders queries by their top bits only (``query_order``): hashes that differ in their low bits
    alone, hashes right at shard boundaries and shard counts that do not divide 2**64 must still be answered
    exactly, as a set would."""
    from builders.dialogues.ngram_index import _boundaries, _ShardBuffers, query_order

    rng = np.random.default_rng(3)
    base = rng.integers(0, 2**63, 300, dtype=np.uint64) << np.uint64(1)
    bounds = _boundaries(7)
    edges = np.concatenate([bounds[1:], bounds[1:] - np.uint64(1), bounds[1:] + np.uint64(1)])
    near = np.concatenate([base ^ np.uint64(k) for k in range(1, 9)])  # same top bits, other low bits
    stored = np.unique(np.concatenate([base, edges[::2], np.array([0, 2**64 - 1], dtype=np.uint64)]))
    folder = tmp_path / "idx"
    folder.mkdir()
    buffers = _ShardBuffers(7, folder, 1 << 20)
    buffers.add(stored)
    for k in range(7):
        np.save(folder / f"shard-{k:05d}.npy", buffers.merge(k))
    (folder / "meta.json").write_text(json.dumps({"format": "arabic-prompts-ngram-index", "version": 2, "max_n": 1,
                                                  "num_shards": 7, "eos": None, "cross_lines": True}))
    queries = rng.permutation(np.concatenate([stored, near, edges, stored[:50]]))
    order = query_order(queries)
    assert sorted(order.tolist()) == list(range(queries.size))  # a permutation
    assert np.all(np.diff(queries[order] >> np.uint64(32)) >= 0)  # ordered by the top 32 bits
    expected = np.isin(queries, stored)
    assert NgramIndex(folder).contains(queries).tolist() == expected.tolist()
    assert 0 < expected.sum() < expected.size
