"""Shared set-ups of the training tests (session-scoped, made once per run): a tiny random Qwen2 with a byte-level
BPE tokenizer trained on real Arabic text (Qwen2's special tokens), a prompt dataset built by `arabic-prompts build`
from real shared files and a mixture `arabic-prompts mix` made of it (both in-process: a subprocess would import
the stack again), and one short run of the tiny recipe by `arabic-prompts train` (a real `accelerate launch` in a
subprocess) that several tests read. That run starts in the background as soon as its inputs exist and trains on
one core while the in-process tests use the other; the tests that read it wait for it."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import CLI, REPO, SHARED_DATA

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


def runs(labels) -> list[tuple[int, int]]:
    """Maximal [start, end) spans of trained (non -100) positions."""
    spans, start = [], None
    for i, v in enumerate(list(labels) + [-100]):
        if v != -100 and start is None:
            start = i
        elif v == -100 and start is not None:
            spans.append((start, i))
            start = None
    return spans


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


def cli(*args: str) -> None:
    """`arabic-prompts ARGS` in this process (builders.cli.main), failing the set-up when it fails."""
    from builders.cli import main

    assert main([str(a) for a in args]) == 0, f"arabic-prompts {' '.join(map(str, args))} failed"


@pytest.fixture(scope="session")
def train_build(tmp_path_factory) -> Path:
    """A build of real shared data (AJGT sentiment, ARCD extractive QA and its derived question writing) by the
    real builder."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    out = tmp_path_factory.mktemp("train_build") / "arabic-prompts"
    local = [a for name, folder in TRAIN_DATASETS.items() for a in ("--local", f"{name}={SHARED_DATA / folder}")]
    cli("build", "--datasets", ",".join(TRAIN_DATASETS), *local, "--out", out, "--limit", "100")
    return out


@pytest.fixture(scope="session")
def train_mixture(train_build, tmp_path_factory) -> Path:
    """A training mixture made by `arabic-prompts mix` from train_build."""
    out = tmp_path_factory.mktemp("train_mixture") / "mixture"
    cli("mix", "--from", train_build, "--size", "400", "--validation-size", "40", "--seed", "0", "--out", out)
    return out


# The launched run: 4 steps, evaluation and a checkpoint every 2 (the resume test restarts from checkpoint-2).
LAUNCHED = {"max_steps": 4, "save_steps": 2, "eval_steps": 2}


@dataclass
class Launch:
    proc: subprocess.Popen
    out: Path
    log: Path

    def result(self) -> Path:
        """The run folder, once the launched run has finished (its output in the failure message if it failed)."""
        rc = self.proc.wait(timeout=600)
        if rc != 0:
            raise AssertionError(f"arabic-prompts train failed ({rc}):\n{self.log.read_text()[-4000:]}")
        return self.out


@pytest.fixture(scope="session")
def launched_run(tiny_base, train_mixture, tmp_path_factory):
    """`arabic-prompts train training/recipes/tiny-cpu.yaml ...` (accelerate launch training/sft.py) on the mixture,
    started in the background; ``.result()`` waits for it. Stopped at the end of the session if nobody waited."""
    root = tmp_path_factory.mktemp("tiny_run")
    out, log = root / "run", root / "train.log"
    base = tmp_path_factory.getbasetemp()  # the caches conftest's _isolated_hf_cache gives the tests
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_DATASETS_CACHE": str(base / "hf_cache"), "HF_HOME": str(base / "hf_home")}
    with open(log, "w", encoding="utf-8") as f:
        proc = subprocess.Popen([*CLI, "train", str(RECIPE), *recipe_args(tiny_base, [train_mixture], out, **LAUNCHED)],
                                cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT)
    yield Launch(proc, out, log)
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.fixture(scope="session")
def tiny_run(launched_run) -> Path:
    """The launched run's folder: adapter, tokenizer, checkpoint-2 and checkpoint-4, training_run.json."""
    return launched_run.result()
