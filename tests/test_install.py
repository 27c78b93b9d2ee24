"""The core install works on its own: a clean venv with the project and no extras (no torch, no lighteval)
runs `arabic-prompts demo`, `build`, `validate` and `publish`, first from a wheel (`pip install .`, so the card
templates must ship inside the package), then from an editable install (`pip install -e .`). The Hub side of
publish is tests/fake_hub.py (no Hub is reachable here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO, SHARED_DATA


def _run(cmd: list[str], cwd: Path, env: dict, timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


PUBLISH = """
import sys
sys.path.insert(0, sys.argv[2])  # tests/, for the Hub stand-in only
import builders
from builders.hub import publish
from fake_hub import FakeHub
assert "site-packages" in builders.__file__ or sys.argv[3] == "editable", builders.__file__
hub = FakeHub()
res = publish(sys.argv[1], "org/core-install", "1.0.0", api=hub)
assert res.created_tag and any(p.startswith("data/") for p in hub.files), hub.files
print("published", res.commit)
"""


def test_core_install_runs_demo_build_validate_publish(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py, cli = venv / "bin" / "python", venv / "bin" / "arabic-prompts"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    work = tmp_path / "elsewhere"  # not the repo: the installed package, not the checkout, is imported
    work.mkdir()
    for mode in ("wheel", "editable"):
        target = ["-e", str(REPO)] if mode == "editable" else [str(REPO)]
        _run([str(py), "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", *target] if mode == "editable"
             else [str(py), "-m", "pip", "install", "-q", *target], work, env)
        _run([str(py), "-c", "import importlib.util as u; assert u.find_spec('torch') is None and "
                             "u.find_spec('lighteval') is None"], work, env)
        demo = _run([str(cli), "demo", "--out", str(work / f"demo-{mode}"), "--workers", "1"], work, env)
        assert "prompts in" in demo.stdout
        out = work / f"build-{mode}"
        _run([str(cli), "build", "--datasets", "ajgt_sentiment", "--local", f"ajgt_sentiment={SHARED_DATA / 'ajgt'}",
              "--out", str(out), "--limit", "80"], work, env)
        valid = _run([str(cli), "validate", str(out)], work, env)
        assert "valid" in valid.stdout and "0 in two splits" in valid.stdout
        assert "source_id" in (out / "README.md").read_text(encoding="utf-8")  # the card template shipped
        published = _run([str(py), "-c", PUBLISH, str(out), str(REPO / "tests"), mode], work, env)
        assert "published" in published.stdout
