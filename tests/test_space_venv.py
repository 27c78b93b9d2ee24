"""The Space as Spaces sees it: space/ on its own, with only space/requirements.txt installed, and the YAML
header of space/README.md that configures it."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml

SPACE = Path(__file__).resolve().parents[1] / "space"

IMPORT_CHECK = """
import importlib.util, json, sys
sys.path.insert(0, sys.argv[1])
import app
print(json.dumps({
    "builders_importable": importlib.util.find_spec("builders") is not None,
    "builders_loaded": any(m == "builders" or m.startswith("builders.") for m in sys.modules),
    "heavy_loaded_at_import": [m for m in ("torch", "transformers", "peft") if m in sys.modules],
    "spaces": app.spaces is not None,
    "build_demo": callable(app.build_demo),
    "gradio": sys.modules["gradio"].__version__,
}))
"""


def requirements() -> dict[str, str]:
    pins = {}
    for line in (SPACE / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"space/requirements.txt: {line!r} is not pinned with =="
            pins[name.lower()] = version
    return pins


def test_space_app_imports_with_only_its_requirements(space_python, tmp_path):
    # run outside the repository, so that nothing but the venv (and space/ itself) is on the path
    proc = subprocess.run([str(space_python), "-c", IMPORT_CHECK, str(SPACE)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen == {"builders_importable": False, "builders_loaded": False, "heavy_loaded_at_import": [],
                    "spaces": True, "build_demo": True, "gradio": requirements()["gradio"]}
    freeze = subprocess.run([str(space_python), "-m", "pip", "list", "--format=json"], capture_output=True,
                            text=True, timeout=120, check=True)
    installed = {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(freeze.stdout)}
    assert "arabic-prompts" not in installed
    for name, version in requirements().items():  # every pin is what the venv really runs
        assert installed.get(name.replace("_", "-")) in (version, f"{version}+cpu"), (name, installed.get(name))


def test_space_app_never_imports_builders_and_never_trusts_remote_code():
    for path in SPACE.glob("*.py"):
        source = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(from|import)\s+builders\b", source, re.M), path
        assert "trust_remote_code=True" not in source, path
    engine = (SPACE / "chat_engine.py").read_text(encoding="utf-8")
    assert "use_safetensors=True" in engine and '"adapter_model.safetensors"' in engine  # model and adapter
    app = (SPACE / "app.py").read_text(encoding="utf-8")
    assert "server_name=" not in app and "server_port=" not in app  # Gradio reads GRADIO_SERVER_NAME / _PORT


def test_space_readme_header_configures_a_gradio_space():
    text = (SPACE / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n", 2)[1])
    for key in ("title", "emoji", "sdk", "sdk_version", "app_file", "models", "datasets", "license",
                "short_description"):
        assert meta.get(key), f"space/README.md: no {key!r}"
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == requirements()["gradio"]
    assert (SPACE / meta["app_file"]).is_file() and len(meta["short_description"]) <= 60
    assert meta["models"] == ["Qwen/Qwen2-7B"] and meta["datasets"] == ["arabic-prompts/arabic-prompts"]
    assert requirements()["torch"] == "2.13.0"
