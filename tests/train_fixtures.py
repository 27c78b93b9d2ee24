"""Shared set-ups of the training tests (session-scoped, made once per run): a tiny random Qwen2 with a byte-level
BPE tokenizer trained on real Arabic text (Qwen2's special tokens), a prompt dataset built by `arabic-prompts build`
from real shared files, and one short training run of the tiny recipe that several tests read."""

from __future__ import annotations

import importlib.util
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import REPO, SHARED_DATA, run_cli

RECIPE = REPO / "training" / "recipes" / "tiny-cpu.yaml"
TRAIN_DATASETS = {"ajgt_sentiment": "ajgt", "arcd_extractive_qa": "arcd"}
# Smaller steps than the tiny recipe's, so the tests stay fast on 2 shared cores.
FAST = {"max_length": 256, "per_device_train_batch_size": 2, "per_device_eval_batch_size": 4, "max_eval_samples": 16}
# The tiny model's embeddings (tied with its LM head, which LoRA leaves frozen) are scaled up from the 0.02 init:
# at that init a 32-wide model cannot move any logit by more than about one nat, whatever the adapter learns. A
# pretrained model's embeddings are as large; the scale only lets a tiny LoRA show that it learns.
EMBED_SCALE = 10.0


def load_sft():
    """training/sft.py as a module (it is a script, not part of the package)."""
    if "arabic_prompts_sft" not in sys.modules:
        spec = importlib.util.spec_from_file_location("arabic_prompts_sft", REPO / "training" / "sft.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["arabic_prompts_sft"] = module
        spec.loader.exec_module(module)
    return sys.modules["arabic_prompts_sft"]


def recipe_args(base: Path, datasets, out: Path, **overrides) -> list[str]:
    """Overrides of the tiny recipe: the tiny model, the data, the output folder, FAST, then any recipe key."""
    args = ["--model_name_or_path", str(base), "--datasets", *[str(d) for d in datasets], "--output_dir", str(out)]
    for key, value in {**FAST, **overrides}.items():
        args += [f"--{key}", str(value)]
    return args


def parse(base: Path, datasets, out: Path, **overrides):
    from builders.training.config import parse_recipe

    return parse_recipe(RECIPE, recipe_args(base, datasets, out, **overrides))


@contextmanager
def one_thread():
    """Torch on one thread while a test trains: on 2 cores shared by other jobs, two threads made each tiny step
    about five times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def single_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # for the training subprocesses too
    with one_thread():
        yield


def tiny_trainable_qwen2(tokenizer, out: Path, **kwargs):
    import torch

    from tiny_models import tiny_qwen2

    model = tiny_qwen2(tokenizer, **kwargs)
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(EMBED_SCALE)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return model


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """A tiny random Qwen2ForCausalLM (safetensors) + tokenizer with <|im_start|>, <|im_end|>, <|endoftext|>."""
    from tiny_models import tiny_tokenizer

    out = tmp_path_factory.mktemp("tiny_base") / "tiny-qwen2"
    tiny_trainable_qwen2(tiny_tokenizer(vocab_size=800), out, hidden_size=32, layers=2)
    return out


@pytest.fixture(scope="session")
def train_build(tmp_path_factory) -> Path:
    """A build of real shared data (AJGT sentiment, ARCD extractive QA) by the real builder."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    out = tmp_path_factory.mktemp("train_build") / "arabic-prompts"
    local = [a for name, folder in TRAIN_DATASETS.items() for a in ("--local", f"{name}={SHARED_DATA / folder}")]
    run_cli("build", "--datasets", ",".join(TRAIN_DATASETS), *local, "--out", str(out), "--limit", "100")
    return out


@pytest.fixture(scope="session")
def train_mixture(train_build, tmp_path_factory) -> Path:
    """A training mixture made by `arabic-prompts mix` from train_build."""
    out = tmp_path_factory.mktemp("train_mixture") / "mixture"
    run_cli("mix", "--from", str(train_build), "--size", "400", "--validation-size", "40", "--seed", "0",
            "--out", str(out))
    return out


@pytest.fixture(scope="session")
def tiny_run(tiny_base, train_mixture, tmp_path_factory) -> Path:
    """The tiny recipe trained for 4 steps in-process on the mixture (eval and a checkpoint every 2 steps)."""
    out = tmp_path_factory.mktemp("tiny_run") / "run"
    with one_thread():
        load_sft().main(*parse(tiny_base, [train_mixture], out, max_steps=4, save_steps=2, eval_steps=2))
    return out
