"""Training throughput: padding-free packing vs plain padding, on the real prompt lengths of a shared-data build.

1. `arabic-prompts build` over every dataset in ../shared/data (the catalog entries of tests/test_shared_data.py),
   then every training prompt as the conversation the trainer sees (our chat template);
2. a byte-level BPE tokenizer trained here on those prompts (Qwen2's tokenizer cannot be downloaded), so the
   lengths are token counts of a real Arabic tokenizer, not characters;
3. packing efficiency, real tokens / tokens per batch:
   - plain padding (TRL's collator, padding_free off): batches of examples padded to the longest;
   - padding-free BFD packing (TRL's pack_dataset + collator, what the recipes use): the model gets the
     flattened rows with no pad token at all; the figure is the fill of the max_length rows (real tokens /
     rows x max_length), which is what a step costs in memory;
4. real tokens/s of a training step of a small random Qwen2 (TRL SFTTrainer.training_step, sdpa, CPU) for both,
   with about the same real tokens per step;
5. the 800K / 8M GPU runs: tokens per optimizer step of the recipes on this length distribution, steps, and an
   estimated time (an assumed GPU throughput, stated; not run here).

    .venv/bin/python tests/benchmarks/bench_train.py [--limit 200] [--steps 6]

Prints a table, ratios against plain padding measured in the same run, and one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from test_shared_data import SHARED  # noqa: E402  the catalog entry -> shared folder map (one place)

# the GPU recipes (training/recipes/qwen2-7b-*.yaml): rows of max_length per device, accumulation, GPUs
GPU = {"max_length": 4096, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 4, "gpus": 8}
# Assumed, not measured (no GPU here): a 7.6B model, LoRA with activation checkpointing ~ 8 N FLOPs per token
# (forward 2N, recomputed forward 2N, backward through activations 4N; no weight gradients for frozen weights),
# at 40% of an H100's 989 dense bf16 TFLOP/s.
PARAMS, FLOPS_PER_TOKEN, GPU_FLOPS, MFU = 7.6e9, 8, 989e12, 0.40


def build(out: Path, limit: int) -> Path:
    local = [a for name, folder in SHARED.items() for a in ("--local", f"{name}={SHARED_DATA / folder}")]
    subprocess.run([sys.executable, "-m", "builders.cli", "build", "--datasets", ",".join(sorted(SHARED)), *local,
                    "--out", str(out), "--limit", str(limit), "--workers", "2"], cwd=REPO, check=True,
                   capture_output=True, text=True)
    return out


def trained_tokenizer(texts: list[str], vocab: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from builders.training.formatting import prepare_tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                  additional_special_tokens=["<|im_start|>", "<|im_end|>"], model_max_length=8192)
    prepare_tokenizer(tok)
    return tok


def padded_efficiency(lengths: list[int], batch: int, seed: int = 0) -> float:
    """Real / total tokens of plain padded batches (random batches, each padded to its longest example)."""
    import random

    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    real = total = 0
    for i in range(0, len(order) - batch + 1, batch):
        chunk = [lengths[j] for j in order[i:i + batch]]
        real += sum(chunk)
        total += max(chunk) * len(chunk)
    return real / total


def bfd_fill(lengths: list[int], max_length: int) -> tuple[float, int, float]:
    """TRL's BFD packing of these lengths: (fill of the max_length rows, rows, examples per row)."""
    from datasets import Dataset
    from trl.data_utils import pack_dataset

    ds = Dataset.from_dict({"input_ids": [[1] * n for n in lengths], "labels": [[1] * n for n in lengths]})
    packed = pack_dataset(ds, max_length, "bfd")
    rows = packed["seq_lengths"]
    real = sum(sum(r) for r in rows)
    return real / (len(rows) * max_length), len(rows), len(lengths) / len(rows)


def step_throughput(model_dir: Path, data: Path, out: Path, packing: bool, batch: int, max_length: int,
                    steps: int) -> tuple[float, float]:
    """Real (non-pad) tokens/s and real tokens/step of SFTTrainer.training_step on this data."""
    import importlib.util

    from builders.training.config import parse_recipe

    spec = importlib.util.spec_from_file_location("sft", REPO / "training" / "sft.py")
    sft = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sft)
    trainer, _ = sft.build_trainer(*parse_recipe(REPO / "training" / "recipes" / "tiny-cpu.yaml", [
        "--model_name_or_path", str(model_dir), "--datasets", str(data), "--output_dir", str(out),
        "--dataset_eval_split", "none", "--packing", str(packing).lower(), "--max_length", str(max_length),
        "--per_device_train_batch_size", str(batch), "--max_steps", str(steps + 1), "--lora_dropout", "0"]))
    trainer.create_optimizer_and_scheduler(num_training_steps=steps + 1)
    trainer.current_gradient_accumulation_steps = 1  # what Trainer.train sets before its first step
    model = trainer.model.train()
    batches = iter(trainer.get_train_dataloader())
    trainer.training_step(model, next(batches))  # warm-up
    real, t0 = 0, time.perf_counter()
    for _ in range(steps):
        b = next(batches)
        # real tokens: the unpadded ones (padding-free batches have no padding at all)
        real += int(b["attention_mask"].sum()) if "attention_mask" in b else int(b["input_ids"].numel())
        trainer.training_step(model, b)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()
    seconds = time.perf_counter() - t0
    return real / seconds, real / steps


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--limit", type=int, default=200, help="source rows per source split in the build")
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--max-length", type=int, default=1024, help="packed row length of the step benchmark")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--work", help="keep the build here and reuse it when run again (default: a temporary folder)")
    args = p.parse_args(argv)
    import torch

    from builders.hub import load_built
    from builders.training.formatting import to_messages

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        tmp = Path(tmp)
        t0 = time.time()
        keep = Path(args.work) / f"build-{args.limit}" if args.work else None
        built = keep if keep and (keep / "build_manifest.json").is_file() else build(keep or tmp / "build", args.limit)
        train = load_built(built, "default", split="train")
        convs = [to_messages(r, r["id"]) for r in train]
        tok = trained_tokenizer([c[0]["content"] + "\n" + c[1]["content"] for c in convs], args.vocab)
        lengths = [len(x) for x in tok.apply_chat_template(convs, tokenize=True, return_dict=False)]
        tasks = len(set(train["task"]))
        build_s = time.time() - t0

        fits = [n for n in lengths if n <= GPU["max_length"]]
        pad_eff = {b: padded_efficiency(fits, b) for b in (8, 16, 32)}
        fill, rows, per_row = bfd_fill(fits, GPU["max_length"])
        fill_small, _, _ = bfd_fill([n for n in lengths if n <= args.max_length], args.max_length)

        # step throughput: a small random Qwen2 on this tokenizer, both arms with ~the same real tokens per step
        from transformers import Qwen2Config, Qwen2ForCausalLM

        torch.manual_seed(0)
        model_dir = tmp / "model"
        Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), hidden_size=128, intermediate_size=256,
                                     num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                                     max_position_embeddings=8192, tie_word_embeddings=True,
                                     pad_token_id=tok.pad_token_id)).save_pretrained(model_dir)
        tok.save_pretrained(model_dir)
        short = [n for n in lengths if n <= args.max_length]
        mean = sum(short) / len(short)
        padded_batch = max(1, round(2 * args.max_length * fill_small / mean))
        packed_tps, packed_tokens = step_throughput(model_dir, built, tmp / "run-packed", True, 2, args.max_length,
                                                    args.steps)
        padded_tps, padded_tokens = step_throughput(model_dir, built, tmp / "run-padded", False, padded_batch,
                                                    args.max_length, args.steps)

    # the GPU runs, from the measured length distribution (tokens per optimizer step of the recipes)
    tokens_per_step = GPU["per_device_train_batch_size"] * GPU["max_length"] * fill * \
        GPU["gradient_accumulation_steps"] * GPU["gpus"]
    mean_all = sum(fits) / len(fits)
    gpu_tps = MFU * GPU_FLOPS / (FLOPS_PER_TOKEN * PARAMS)
    runs = {}
    for name, n in (("800K", 800_000), ("8M", 8_000_000)):
        tokens = n * mean_all
        runs[name] = {"tokens": round(tokens), "steps": round(tokens / tokens_per_step),
                      "hours_8_gpus_estimated": round(tokens / (gpu_tps * GPU["gpus"]) / 3600, 2)}

    q = sorted(lengths)
    pct = {k: q[int(k / 100 * (len(q) - 1))] for k in (50, 90, 99)}
    print(f"\n{len(lengths):,} training prompts of {tasks} tasks (build {build_s:.0f} s); tokens per conversation "
          f"(BPE {len(tok):,} trained here): mean {sum(lengths) / len(lengths):.0f}, p50 {pct[50]}, p90 {pct[90]}, "
          f"p99 {pct[99]}, max {q[-1]}\n")
    print(f"{'packing efficiency (real / total tokens)':58} {'value':>8} {'vs padding':>11}")
    for b, e in pad_eff.items():
        print(f"{'plain padding, batch ' + str(b):58} {e:>8.3f} {'1.00x' if b == 16 else '':>11}")
    print(f"{'padding-free BFD, fill of ' + str(GPU['max_length']) + '-token rows':58} {fill:>8.3f} "
          f"{fill / pad_eff[16]:>10.2f}x")
    print(f"{'padding-free BFD, tokens the model sees that are real':58} {1.0:>8.3f} {1 / pad_eff[16]:>10.2f}x")
    print(f"  ({per_row:.1f} examples per {GPU['max_length']}-token row, {rows:,} rows)\n")
    print(f"{'training step, small Qwen2 on CPU (real tokens/s)':58} {'value':>8} {'vs padding':>11}")
    print(f"{'plain padding, batch ' + str(padded_batch) + ' (' + str(round(padded_tokens)) + ' real tokens/step)':58} "
          f"{padded_tps:>8.0f} {'1.00x':>11}")
    print(f"{'padding-free packing, 2 x ' + str(args.max_length) + ' (' + str(round(packed_tokens)) + ' real tokens/step)':58} "
          f"{packed_tps:>8.0f} {packed_tps / padded_tps:>10.2f}x\n")
    print(f"GPU recipes (not run here): {tokens_per_step:,.0f} tokens per optimizer step (4 x 4096 x {fill:.3f} x 4 "
          f"accumulation x 8 GPUs); assumed {gpu_tps:,.0f} tokens/s per GPU ({MFU:.0%} of {GPU_FLOPS / 1e12:.0f} "
          f"TFLOP/s, {FLOPS_PER_TOKEN}N FLOPs/token)")
    for name, r in runs.items():
        print(f"  {name}: {r['tokens']:,} tokens, {r['steps']:,} steps, ~{r['hours_8_gpus_estimated']} h on 8 GPUs")
    result = {"bench": "train", "prompts": len(lengths), "tasks": tasks, "tokenizer_vocab": len(tok),
              "mean_tokens": round(sum(lengths) / len(lengths), 1), "p50": pct[50], "p90": pct[90], "p99": pct[99],
              "padding_efficiency": {str(b): round(e, 4) for b, e in pad_eff.items()},
              "bfd_fill": round(fill, 4), "padding_free_real_fraction": 1.0, "examples_per_row": round(per_row, 2),
              "efficiency_ratio_vs_padding_b16": round(fill / pad_eff[16], 2),
              "step_tokens_per_s": {"padding_free": round(packed_tps), "padding": round(padded_tps)},
              "step_speedup": round(packed_tps / padded_tps, 2), "gpu_tokens_per_step": round(tokens_per_step),
              "gpu_runs_estimated": runs, "aim_efficiency_0_95_met": fill >= 0.95}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
