"""Translation throughput: naive per-prompt transformers ``generate`` vs ours (segment cache + length batching +
CTranslate2 int8), and CometKiwi pairs/s: our port vs unbabel-comet's ``predict``. On demand, not a test.

    .venv/bin/python tests/benchmarks/bench_translate.py [--rows 40] [--naive-prompts 40] [--length 16]

The MT model has random weights and the real Helsinki-NLP/opus-mt-en-ar shape (d_model 512, 6+6 layers, 8 heads,
FFN 2048, vocabulary 62,802 as in its config), with a sentencepiece tokenizer trained here. Both arms decode a
fixed number of tokens per segment (min = max length, greedy), so they do the same work per segment. Prompts are
the shared PromptSource templates over real English text (Super-NaturalInstructions inputs) and the
Super-NaturalInstructions tasks, Tk-Instruct style. The naive arm translates the first ``--naive-prompts``
prompts (one ``generate`` per prompt over its segments, no cache, float32); ours translates all of them. Rates
are segments per second of the whole job (segmentation and reassembly included). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from translate_fixtures import (  # noqa: E402
    NATURAL_INSTRUCTIONS,
    build_comet_reference,
    comet_venv,
    english_texts,
    run_comet,
    template_files,
    tiny_marian,
)

# template files whose variables a plain English text (and a label) fill
TEXT_DATASETS = ("imdb", "ag_news", "emotion", "tweet_eval/sentiment", "tweet_eval/irony", "tweet_eval/hate")


def prompts(rows: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    """(inputs, answer_choices) of every text template over ``rows`` real English texts, plus Tk-Instruct
    prompts of the shared Super-NaturalInstructions tasks."""
    from builders.templates import TemplateError, load_templates
    from builders.translate.english import natural_instruction_rows

    texts = [t for t in english_texts() if 40 < len(t) < 600]
    rng = random.Random(seed)
    rng.shuffle(texts)
    out = []
    files = template_files()
    for name in TEXT_DATASETS:
        for tpl in load_templates(files[name]):
            n_labels = len(tpl.fixed_choices or [0, 1])
            for i, text in enumerate(texts[:rows]):
                try:
                    inputs, _, choices = tpl.render({"text": text, "label": i % n_labels})
                except TemplateError:
                    continue
                out.append((inputs, choices))
    out += [(r["inputs"], []) for r in natural_instruction_rows(NATURAL_INSTRUCTIONS)]
    return out


def naive(model_dir: Path, items: list[tuple[str, list[str]]], length: int) -> tuple[int, float]:
    """One ``generate`` per prompt over its segments (what a plain transformers loop does)."""
    import torch
    from transformers import MarianMTModel, MarianTokenizer

    from builders.translate.segment import reassemble, segment, segments_of

    tok = MarianTokenizer.from_pretrained(str(model_dir))
    model = MarianMTModel.from_pretrained(str(model_dir)).eval()
    n = 0
    start = time.perf_counter()
    for text, choices in items:
        pieces = segment(text, choices)
        segs = segments_of(pieces)
        if not segs:
            continue
        batch = tok([">>ara<< " + s for s in segs], return_tensors="pt", padding=True, truncation=True)
        with torch.inference_mode():
            gen = model.generate(**batch, num_beams=1, do_sample=False, max_new_tokens=length, min_new_tokens=length,
                                 forced_eos_token_id=None)
        table = dict(zip(segs, tok.batch_decode(gen, skip_special_tokens=True)))
        reassemble(pieces, table)
        n += len(segs)
    return n, time.perf_counter() - start


def ours(ct2_dir: Path, items: list[tuple[str, list[str]]], length: int, cache_dir: Path) -> tuple[int, int, float]:
    """Segment every prompt, translate the unique segments through the cache in length-sorted CTranslate2 int8
    batches, reassemble. Returns (segments, unique segments, seconds)."""
    from builders.translate.cache import SegmentCache
    from builders.translate.mt import CachedTranslator, CT2Translator, DecodeOptions
    from builders.translate.segment import reassemble, segment, segments_of

    tr = CachedTranslator(CT2Translator(str(ct2_dir), DecodeOptions(beam_size=1, max_length=length, min_length=length,
                                                                    max_batch_size=64)),
                          SegmentCache(cache_dir))
    start = time.perf_counter()
    n, seen = 0, set()
    for i in range(0, len(items), 512):  # the pipeline's batch of prompts
        chunk = items[i:i + 512]
        parsed = [segment(text, choices) for text, choices in chunk]
        segs = [s for pieces in parsed for s in segments_of(pieces)]
        unique = list(dict.fromkeys(segs))
        table = dict(zip(unique, tr.translate(unique)))
        for pieces in parsed:
            reassemble(pieces, table)
        n += len(segs)
        seen.update(unique)
    return n, len(seen), time.perf_counter() - start


def qe_rates(n_pairs: int) -> dict:
    from builders.translate.models import resolve
    from builders.translate.qe import CometKiwi

    ref = build_comet_reference()
    model_dir = ref["models"]["kiwi-sparsemax"]
    rng = random.Random(1)
    base = ref["pairs"][:-2]
    pairs = [{"src": rng.choice(base)["src"], "mt": rng.choice(base)["mt"]} for _ in range(n_pairs)]
    with tempfile.TemporaryDirectory() as tmp:
        pairs_file = Path(tmp) / "pairs.jsonl"
        pairs_file.write_text("\n".join(json.dumps(p, ensure_ascii=False) for p in pairs), encoding="utf-8")
        run_comet(comet_venv(), "predict", str(pairs_file), str(Path(tmp) / "out.json"), str(model_dir))
        comet = json.loads((Path(tmp) / "out.json").read_text())[str(model_dir)]
    model = CometKiwi(resolve(str(model_dir)))
    start = time.perf_counter()
    scores = model.score([p["src"] for p in pairs], [p["mt"] for p in pairs])
    seconds = time.perf_counter() - start
    return {"pairs": n_pairs, "ours_pairs_per_s": n_pairs / seconds, "comet_pairs_per_s": n_pairs / comet["seconds"],
            "max_abs_diff": max(abs(a - b) for a, b in zip(scores, comet["scores"]))}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=40, help="English texts per text template")
    p.add_argument("--naive-prompts", type=int, default=40, help="prompts the naive arm translates")
    p.add_argument("--length", type=int, default=16, help="tokens decoded per segment (both arms)")
    p.add_argument("--qe-pairs", type=int, default=2000)
    args = p.parse_args()

    from builders.translate.mt import convert

    items = prompts(args.rows)
    random.Random(0).shuffle(items)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        model_dir = tiny_marian(tmp / "opus-mt-en-ar-shaped", d_model=512, layers=6, heads=8, ffn=2048,
                                vocab_size=62802, spm_vocab=4000, init_std=0.02)
        ct2_dir = convert(str(model_dir), tmp / "ct2-int8", quantization="int8")
        setup = time.perf_counter() - t0
        n_naive, s_naive = naive(model_dir, items[:args.naive_prompts], args.length)
        n_ours, n_unique, s_ours = ours(ct2_dir, items, args.length, tmp / "cache")
    naive_rate, ours_rate = n_naive / s_naive, n_ours / s_ours
    qe = qe_rates(args.qe_pairs)
    result = {
        "prompts": len(items), "segments": n_ours, "unique_segments": n_unique,
        "unique_segment_ratio": round(n_unique / n_ours, 4), "decoded_tokens_per_segment": args.length,
        "naive_prompts": args.naive_prompts, "naive_segments": n_naive,
        "naive_segments_per_s": round(naive_rate, 2), "ours_segments_per_s": round(ours_rate, 2),
        "speedup": round(ours_rate / naive_rate, 1), "setup_s": round(setup, 1),
        "qe_pairs": qe["pairs"], "qe_ours_pairs_per_s": round(qe["ours_pairs_per_s"], 1),
        "qe_comet_pairs_per_s": round(qe["comet_pairs_per_s"], 1),
        "qe_speedup": round(qe["ours_pairs_per_s"] / qe["comet_pairs_per_s"], 2),
        "qe_max_abs_diff": qe["max_abs_diff"],
    }
    print(f"{'arm':44} {'segments':>9} {'seconds':>8} {'segments/s':>11}")
    print(f"{'naive: transformers generate per prompt':44} {n_naive:>9} {s_naive:>8.1f} {naive_rate:>11.2f}")
    print(f"{'ours: cache + length batches + CT2 int8':44} {n_ours:>9} {s_ours:>8.1f} {ours_rate:>11.2f}")
    print(f"speed-up {result['speedup']}x; unique segments {n_unique}/{n_ours} = {result['unique_segment_ratio']}")
    print(f"QE pairs/s: ours {result['qe_ours_pairs_per_s']} vs comet predict {result['qe_comet_pairs_per_s']} "
          f"({result['qe_speedup']}x; max |diff| {qe['max_abs_diff']:.2e})")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
