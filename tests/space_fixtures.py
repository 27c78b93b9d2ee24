"""Fixtures of the Space tests: the Space's own venv (exactly space/requirements.txt), Debian's chromium, a build
of real shared data (the examples' source), a tiny random Qwen2 + LoRA adapter, and the app running in that venv.

Also a script: ``python tests/space_fixtures.py examples`` rebuilds space/examples.json from a build of the
shared data (the example prompts are real test prompts of that build)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SPACE = REPO / "space"
SHARED_DATA = REPO.parent / "shared" / "data"
CACHE = REPO / ".cache"
CHROMIUM = Path("/usr/bin/chromium")
# Chromium's flags on this machine: headless, no sandbox (root), and no background connections (the network is
# closed; Chromium otherwise retries Google's hosts at every start).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Example prompts: one per task family, from catalog entries that the shared data can build. The first task of
# each list that the build has is used, so a build with the Hub sources (XL-Sum, QALB) takes the real
# summarization and grammar-correction tasks; offline, their nearest shared-data tasks stand in.
EXAMPLE_SOURCES = {  # catalog entry -> folder under ../shared/data
    "ajgt_sentiment": "ajgt",
    "arcd_extractive_qa": "arcd",
    "metrec_hemistich_completion": "metrec_poetry_meter",
    "tashkeela_diacritization": "tashkeela_diacritization",
    "akec_keyphrase_extraction": "akec_keyphrase_topic",
}
EXAMPLE_LIMIT = 100  # source rows per source split: a quick build, and the same one every time
EXAMPLE_FAMILIES = [  # (family, tasks in order of preference, label per task)
    ("sentiment", ["sentiment_analysis"], {"sentiment_analysis": "تحليل المشاعر · sentiment"}),
    ("summarization", ["summarization", "headline_generation", "keyphrase_extraction"],
     {"summarization": "التلخيص · summarization", "headline_generation": "توليد العناوين · headline",
      "keyphrase_extraction": "الكلمات المفتاحية · keyphrases (summarization stand-in)"}),
    ("question_answering", ["extractive_qa"], {"extractive_qa": "سؤال وجواب · QA"}),
    ("grammar_correction", ["grammar_correction", "diacritization"],
     {"grammar_correction": "التصحيح النحوي · grammar correction",
      "diacritization": "تصحيح الكتابة: التشكيل · text correction (diacritics)"}),
    ("poetry", ["hemistich_completion", "poetry_generation"],
     {"hemistich_completion": "الشعر: إكمال البيت · poetry", "poetry_generation": "الشعر · poetry"}),
]
EXAMPLE_MAX_CHARS = 3500  # under the app's MAX_INPUT_CHARS (4000); the keyphrase articles are 3000+ characters


# ---------------------------------------------------------------------------------------------- examples
def build_example_source(out: Path) -> Path:
    """`arabic-prompts build` of the example datasets over ../shared/data (the README's --local command)."""
    args = [sys.executable, "-m", "builders.cli", "build", "--datasets", ",".join(EXAMPLE_SOURCES),
            "--out", str(out), "--limit", str(EXAMPLE_LIMIT), "--workers", "2"]
    for name, folder in EXAMPLE_SOURCES.items():
        args += ["--local", f"{name}={SHARED_DATA / folder}"]
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    if proc.returncode:
        raise AssertionError(f"example build failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return out


def split_prompts(build: Path, task: str, split: str = "test") -> list[dict]:
    """The rows of one task and split of a build, read from its parquet shards."""
    import pyarrow.parquet as pq

    files = sorted((build / "data" / task).glob(f"{split}-*.parquet"))
    return [r for f in files for r in pq.read_table(f).to_pylist() if r["split"] == split]


def make_examples(build: Path) -> dict:
    """One example per task family: the test prompt at the first quartile of length (typical, not huge)."""
    examples = []
    for family, tasks, labels in EXAMPLE_FAMILIES:
        task = next((t for t in tasks if (build / "data" / t).is_dir()), None)
        if task is None:
            raise AssertionError(f"{build}: no task of family {family} ({tasks})")
        rows = sorted((r for r in split_prompts(build, task) if len(r["inputs"]) <= EXAMPLE_MAX_CHARS),
                      key=lambda r: (len(r["inputs"]), r["id"]))
        row = rows[len(rows) // 4]
        examples.append({"label": labels[task], "family": family, "task": task, "dataset_name": row["dataset_name"],
                         "template_name": row["template_name"], "id": row["id"], "source_id": row["source_id"],
                         "text": row["inputs"]})
    return {"about": "Real test-split prompts of a build of the shared data (tests/space_fixtures.py examples); "
                     "the test test_space_examples checks each against a fresh build.",
            "build": {"datasets": sorted(EXAMPLE_SOURCES), "limit": EXAMPLE_LIMIT}, "examples": examples}


@pytest.fixture(scope="session")
def example_build(tmp_path_factory) -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the shared data is missing at {SHARED_DATA}")
    return build_example_source(tmp_path_factory.mktemp("space_examples") / "build")


# ---------------------------------------------------------------------------------------------- the Space venv
def requirements_hash() -> str:
    h = hashlib.sha256((SPACE / "requirements.txt").read_bytes())
    h.update(f"{sys.version_info[:3]}-{sys.platform}".encode())
    return h.hexdigest()[:16]


def make_space_venv() -> Path:
    """A venv with only space/requirements.txt installed, reused from .cache/ while the requirements match."""
    venv = CACHE / f"space-venv-{requirements_hash()}"
    python = venv / "bin" / "python"
    if (venv / ".complete").exists() and python.exists():
        return python
    CACHE.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{venv.name}.", dir=CACHE))
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(tmp)], check=True, timeout=300)
        # --no-compile: byte-compiling torch and gradio is most of an install's time; Python compiles on import
        proc = subprocess.run([str(tmp / "bin" / "python"), "-m", "pip", "install", "-q", "--no-compile",
                               "--disable-pip-version-check", "-r", str(SPACE / "requirements.txt")],
                              capture_output=True, text=True, timeout=1200)
        if proc.returncode:
            raise AssertionError(f"pip install -r space/requirements.txt failed:\n{proc.stderr[-3000:]}")
        (tmp / ".complete").write_text(requirements_hash())
        if (venv / ".complete").exists():  # another run finished first
            shutil.rmtree(tmp)
        else:
            shutil.rmtree(venv, ignore_errors=True)
            tmp.rename(venv)  # a venv's python finds its prefix from its own path (Python >= 3.11)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return python


@pytest.fixture(scope="session")
def space_python() -> Path:
    return _prepared("venv", make_space_venv)


# ---------------------------------------------------------------------------------------------- chromium
def ensure_chromium() -> Path:
    """Debian's chromium (apt-get, once per machine); never a browser downloaded by a test tool."""
    if not CHROMIUM.exists():
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "-o", "DPkg::Lock::Timeout=600", "chromium"]):
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
            if proc.returncode:
                raise AssertionError(f"{' '.join(cmd)} failed (chromium is needed by the Space's browser test):\n"
                                     f"{proc.stderr[-2000:]}")
    return CHROMIUM


@pytest.fixture(scope="session")
def chromium() -> Path:
    return _prepared("chromium", ensure_chromium)


# ---------------------------------------------------------------------------------------------- set-up early
class _Background(threading.Thread):
    def __init__(self, fn):
        super().__init__(daemon=True, name=f"space-setup-{fn.__name__}")
        self.fn, self.result, self.error = fn, None, None

    def run(self):
        try:
            self.result = self.fn()
        except BaseException as e:  # noqa: BLE001 -- raised in the fixture that needs it
            self.error = e


_BACKGROUND: dict[str, _Background] = {}


def _prepared(name: str, fn):
    job = _BACKGROUND.get(name)
    if job is None:
        return fn()
    job.join()
    if job.error is not None:
        raise job.error
    return job.result


def pytest_collection_modifyitems(session, config, items):
    """The two slow, mostly-waiting set-ups (pip filling the Space venv, apt fetching chromium) start right after
    collection, in the background, when a collected test needs them; the tests before them run meanwhile."""
    needed = {name for item in items for name in getattr(item, "fixturenames", ())}
    for name, fixture, fn in (("venv", "space_python", make_space_venv), ("chromium", "chromium", ensure_chromium)):
        if fixture in needed and name not in _BACKGROUND:
            _BACKGROUND[name] = _Background(fn)
            _BACKGROUND[name].start()


@pytest.fixture(scope="session")
def browser(chromium, tmp_path_factory):
    """A headless Chromium context (fresh profile) driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium_profile")), executable_path=str(chromium), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1200, "height": 900}, locale="ar")
        yield context
        context.close()


# ---------------------------------------------------------------------------------------------- tiny model
def make_tiny_chat_model(root: Path) -> tuple[Path, Path]:
    """A tiny random Qwen2 (base) and a tiny LoRA adapter on it (with the tokenizer and a ChatML chat
    template, as a trained adapter ships). The base's generation config suppresses the end tokens, so a reply
    runs to max_new_tokens and a test can stop it midway."""
    from peft import LoraConfig, get_peft_model
    from tiny_models import tiny_qwen2, tiny_tokenizer
    from transformers import GenerationConfig

    sys.path.insert(0, str(SPACE))
    from chat_engine import CHATML_TEMPLATE

    base, adapter = root / "base", root / "adapter"
    tokenizer = tiny_tokenizer(vocab_size=600)
    tokenizer.chat_template = CHATML_TEMPLATE
    model = tiny_qwen2(tokenizer, base)
    ends = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")]
    GenerationConfig(eos_token_id=ends, pad_token_id=tokenizer.pad_token_id, suppress_tokens=ends).save_pretrained(base)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    peft_model.save_pretrained(adapter, safe_serialization=True)
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(base)
    (adapter / "adapter_config.json").write_text(json.dumps(cfg, indent=2))
    tokenizer.save_pretrained(adapter)
    return base, adapter


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory) -> tuple[Path, Path]:
    return make_tiny_chat_model(tmp_path_factory.mktemp("space_model"))


# ---------------------------------------------------------------------------------------------- the app
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningApp:
    url: str
    process: subprocess.Popen
    log: Path
    status: Path
    secret: str

    def status_lines(self) -> list[dict]:
        if not self.status.exists():
            return []
        return [json.loads(line) for line in self.status.read_text(encoding="utf-8").splitlines() if line.strip()]

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def start_app(python: Path, env: dict, workdir: Path, timeout: float = 240) -> RunningApp:
    port = free_port()
    log, status = workdir / "app.log", workdir / "status.jsonl"
    secret = "hf_" + "SpaceTestSecret" + "0123456789abcdef"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADIO_", "HF_", "SPACE_"))}
    full_env.update(GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False",
                    HF_HUB_OFFLINE="1", HF_HOME=str(workdir / "hf_home"), HF_TOKEN=secret,
                    SPACE_DEBUG_STATUS=str(status), PYTHONUNBUFFERED="1", **env)
    with open(log, "wb") as out:
        process = subprocess.Popen([str(python), str(SPACE / "app.py")], cwd=workdir, env=full_env,
                                   stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    app = RunningApp(url, process, log, status, secret)
    deadline = time.monotonic() + timeout
    import urllib.request

    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the app exited with {process.returncode}:\n{app.log_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return app
        except OSError:
            time.sleep(0.5)
    stop_app(app)
    raise AssertionError(f"the app did not answer on {url} within {timeout}s:\n{app.log_text()[-3000:]}")


def stop_app(app: RunningApp) -> None:
    if app.process.poll() is None:
        app.process.terminate()
        try:
            app.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            app.process.kill()
            app.process.wait(timeout=20)


@pytest.fixture(scope="session")
def space_app(space_python, tiny_chat_model, tmp_path_factory):
    """The Space (app.py in its own venv) on 127.0.0.1, serving the tiny base model + LoRA adapter, paced
    at 50 ms per token (SPACE_TEST_TOKEN_DELAY, test only) so a reply can be stopped midway."""
    base, adapter = tiny_chat_model
    app = start_app(space_python, {"BASE_MODEL": str(base), "ADAPTER": str(adapter), "SPACE_TEST_TOKEN_DELAY": "0.05",
                                   "MAX_INPUT_CHARS": "300", "MAX_NEW_TOKENS": "40", "CONCURRENCY": "2"},
                    tmp_path_factory.mktemp("space_app"))
    yield app
    stop_app(app)


if __name__ == "__main__":
    if sys.argv[1:] != ["examples"]:
        sys.exit("usage: python tests/space_fixtures.py examples   (rewrites space/examples.json)")
    with tempfile.TemporaryDirectory() as tmp:
        data = make_examples(build_example_source(Path(tmp) / "build"))
    (SPACE / "examples.json").write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {SPACE / 'examples.json'}: " + ", ".join(e["task"] for e in data["examples"]))
