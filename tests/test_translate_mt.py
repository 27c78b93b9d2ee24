"""MT backends (transformers MarianMT, CTranslate2) on a tiny random Marian model with a sentencepiece tokenizer
trained in the test; length batching, out-of-memory back-off and the persistent segment cache."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from builders.translate.batching import length_batches, run_with_backoff
from builders.translate.cache import SegmentCache
from builders.translate.mt import CachedTranslator, CT2Translator, DecodeOptions, MarianTranslator, convert
from conftest import run_cli

GREEDY = DecodeOptions(beam_size=1, max_length=12)
SEGMENTS = ["Is this review positive or negative?", "The acting was superb.", "yes", "no",
            "Dr. Smith paid $3.50 for the U.S. edition.", "The acting was superb."]


@pytest.fixture(scope="module")
def marian(marian_dir):
    return MarianTranslator(str(marian_dir), GREEDY)


def test_marian_input_starts_with_the_target_language_token(marian):
    ids = marian.encode(["Hello world."])[0]
    assert ids[0] == marian.tokenizer.convert_tokens_to_ids(">>ara<<") and ids[-1] == marian.tokenizer.eos_token_id
    assert ">>ara<<" in marian.identity and "transformers-float32" in marian.identity


def test_translations_keep_order_and_each_distinct_segment_is_decoded_once(marian):
    before = marian.stats["segments"]
    out = marian.translate(SEGMENTS)
    assert len(out) == len(SEGMENTS) and out[1] == out[5]
    assert marian.stats["segments"] - before == len(set(SEGMENTS))
    assert len(set(out)) > 1  # the random model's output depends on its input
    # batched by length, the same as one at a time
    assert [marian.translate([s])[0] for s in SEGMENTS] == out


def test_ctranslate2_float32_equals_transformers_and_int8_runs(marian, marian_dir, ct2_dir, tmp_path):
    fp32 = CT2Translator(str(convert(str(marian_dir), tmp_path / "fp32", quantization=None)), GREEDY, compute_type="float32")
    assert fp32.translate(SEGMENTS) == marian.translate(SEGMENTS)
    int8 = CT2Translator(str(ct2_dir), GREEDY)
    assert int8.compute_type == "int8" and "ctranslate2-int8" in int8.identity
    out = int8.translate(SEGMENTS)
    assert len(out) == len(SEGMENTS) and all(isinstance(t, str) for t in out)
    assert int8.model_id == str(marian_dir)  # rows name the model it was converted from


def test_length_batches_sort_by_length_and_respect_the_token_budget():
    lengths = [5, 50, 7, 49, 6, 51, 8]
    batches = length_batches(lengths, max_tokens=100, max_size=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 3 and max(lengths[i] for i in b) * len(b) <= 100
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat)


def test_out_of_memory_halves_the_batch_instead_of_dying():
    calls = []

    def decode(batch):
        calls.append(len(batch))
        if len(batch) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [x * 10 for x in batch]

    backoffs = []
    assert run_with_backoff(list(range(8)), decode, backoffs.append) == [x * 10 for x in range(8)]
    assert calls[0] == 8 and max(calls[1:]) <= 4 and backoffs == [4, 2, 2]

    def broken(batch):
        raise ValueError("not a memory problem")

    with pytest.raises(ValueError):
        run_with_backoff([1, 2], broken)


def test_segment_cache_second_run_translates_nothing(marian, tmp_path):
    cache = SegmentCache(tmp_path / "mt", writer="w0")
    first = CachedTranslator(marian, cache)
    before = marian.stats["segments"]
    out = first.translate(SEGMENTS)
    assert marian.stats["segments"] - before == len(set(SEGMENTS))
    assert cache.stats == {"hits": 0, "misses": len(set(SEGMENTS)), "stored": len(set(SEGMENTS))}
    cache.merge()
    # a new process (new cache object) reads the merged store: nothing is decoded again
    again = SegmentCache(tmp_path / "mt", writer="w1")
    before = marian.stats["segments"]
    assert CachedTranslator(marian, again).translate(SEGMENTS) == out
    assert marian.stats["segments"] == before
    assert again.stats["hits"] == len(set(SEGMENTS)) and again.stats["misses"] == 0


def test_cache_keys_separate_models_and_decoding_settings(marian_dir, marian, tmp_path):
    beam = MarianTranslator(str(marian_dir), DecodeOptions(beam_size=2, max_length=12))
    cache = SegmentCache(tmp_path / "mt")
    assert CachedTranslator(marian, cache).key("yes") != CachedTranslator(beam, cache).key("yes")


def _writer(root: str, writer: str, start: int, n: int) -> None:
    cache = SegmentCache(root, writer=writer)
    for i in range(start, start + n, 50):
        cache.put_many({f"k{j}": f"v{j}" for j in range(i, min(i + 50, start + n))})
    cache.close()


def test_several_writer_processes_at_once_then_merge_loses_nothing(tmp_path):
    root = str(tmp_path / "cache")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(root, f"w{i}", i * 300, 400)) for i in range(3)]  # overlapping keys
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    cache = SegmentCache(root, writer="reader")
    assert cache.merge() == 3 * 300 + 100
    assert len(cache) == 1000
    got = cache.get_many([f"k{j}" for j in range(1000)])
    assert got == {f"k{j}": f"v{j}" for j in range(1000)} and cache.stats["hits"] == 1000
    assert not list((tmp_path / "cache").glob("shard-*"))



def test_convert_command_makes_a_ctranslate2_model(marian_dir, tmp_path):
    out = tmp_path / "ct2-int8"
    proc = run_cli("translate", "convert", "--mt-model", str(marian_dir), "--out", str(out), "--quantization", "int8")
    assert "ctranslate2" in proc.stdout and (out / "model.bin").exists() and (out / "source.spm").exists()
    model = CT2Translator(str(out), GREEDY)
    assert model.model.revision.endswith("+ct2:int8") and len(model.translate(SEGMENTS)) == len(SEGMENTS)
    again = run_cli("translate", "convert", "--mt-model", str(marian_dir), "--out", str(out), check=False)
    assert again.returncode == 2 and "--force" in again.stderr  # an existing folder is kept
