"""Shared test helpers. Real data comes from ../shared/data (read-only, never copied into the repo)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["space_fixtures", "translate_fixtures", "dialogues_fixtures", "train_fixtures"]

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CLI = [sys.executable, "-m", "builders.cli"]

# datatrove's forkserver workers and `datasets` must not reach for the network in tests
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


EVAL_TASKS_FILE = REPO / "eval_tasks" / "arabic_prompts.py"


def load_eval_tasks(name: str = "arabic_prompts_under_test"):
    """Import eval_tasks/arabic_prompts.py afresh, as lighteval does with --custom-tasks (it is no package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, EVAL_TASKS_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def real_arabic_pairs(n: int, seed: int = 0, articles: int | None = None, context_chars: int = 1500) -> list[tuple[str, str]]:
    """(reference, prediction) pairs from real Arabic text (AJGT tweets, ARCD answers and contexts): each
    reference with a perturbed copy (dropped, swapped and diacritised words, alef variants), with another
    text, or with itself. Used by the ROUGE tests and the ROUGE benchmark."""
    import csv
    import json
    import random

    with open(SHARED_DATA / "ajgt" / "AJGT.csv", encoding="utf-8") as f:
        texts = [r["Feed"].strip() for r in csv.DictReader(f)]
    squad = json.loads((SHARED_DATA / "arcd" / "arcd-test.json").read_text(encoding="utf-8"))
    for art in squad["data"][:articles]:
        for para in art["paragraphs"][: 3 if articles else None]:
            texts.append(para["context"][:context_chars])
            texts += [q["answers"][0]["text"] for q in para["qas"]]
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        target = texts[rng.randrange(len(texts))]
        words = target.split()
        kind = i % 3
        if kind == 0:
            words = [w for w in words if rng.random() > 0.3]
            if len(words) > 2:
                j = rng.randrange(len(words) - 1)
                words[j], words[j + 1] = words[j + 1], words[j]
            pred = " ".join(w.replace("ا", "أ", 1) if rng.random() < 0.2 else w + "َ" if rng.random() < 0.2 else w
                            for w in words)
        elif kind == 1:
            pred = texts[rng.randrange(len(texts))]
        else:
            pred = target
        pairs.append((target, pred))
    return pairs


def run_cli(*args: str, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([*CLI, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"arabic-prompts {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_hf_cache(tmp_path_factory, monkeypatch):
    """Each test session gets its own datasets cache, so no test passes on rows cached by another run."""
    cache = tmp_path_factory.getbasetemp() / "hf_cache"
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.getbasetemp() / "hf_home"))
