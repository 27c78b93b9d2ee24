"""Deploy the Gradio Space: upload ``space/`` as a Hub Space repo (sdk gradio).

Same rules as dataset publishing (builders/hub.py): the token comes from ``token``, ``HF_TOKEN`` or the
``hf auth login`` cache (huggingface_hub resolves it) and is never printed; ``endpoint`` or ``HF_ENDPOINT``
points at another Hub; unchanged content makes no new commit (``upload_folder`` skips files already on the
Hub and makes no empty commit).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

SPACE_DIR = Path(__file__).resolve().parents[1] / "space"
# local leftovers of running the app; everything else in space/ is the Space
SPACE_IGNORE = ["__pycache__", "**/__pycache__/**", "__pycache__/**", "*.pyc", ".gradio/**", "flagged/**",
                ".cache/**", ".venv/**"]
HEADER_KEYS = ("title", "emoji", "sdk", "sdk_version", "app_file", "license", "short_description")
# Space variables the app reads (space/README.md lists them all); --adapter / --base-model set the first two
VARIABLE_NAMES = re.compile(r"^[A-Z][A-Z0-9_]*$")


class SpaceFolderError(ValueError):
    """A folder that is not a deployable Space; the message names the file and what is wrong."""


def check_space(folder: str | Path) -> dict:
    """The README's Spaces header, after checking that the folder is a Gradio Space that can start."""
    import yaml

    folder = Path(folder)
    readme = folder / "README.md"
    if not readme.is_file():
        raise SpaceFolderError(f"{readme}: missing (a Space is configured by its README's YAML header)")
    text = readme.read_text(encoding="utf-8")
    if not text.startswith("---\n") or text.count("---\n") < 2:
        raise SpaceFolderError(f"{readme}: no YAML header between '---' lines")
    meta = yaml.safe_load(text.split("---\n", 2)[1]) or {}
    problems = [f"no '{k}'" for k in HEADER_KEYS if not meta.get(k)]
    if meta.get("sdk") and meta["sdk"] != "gradio":
        problems.append(f"sdk is {meta['sdk']!r}, not 'gradio'")
    if meta.get("app_file") and not (folder / meta["app_file"]).is_file():
        problems.append(f"app_file {meta['app_file']} does not exist")
    requirements = folder / "requirements.txt"
    pins = {}
    if requirements.is_file():
        for line in requirements.read_text(encoding="utf-8").splitlines():
            name, sep, version = line.split("#")[0].strip().partition("==")
            if sep:
                pins[name.strip().lower()] = version.strip()
    else:
        problems.append("no requirements.txt beside it")
    if meta.get("sdk_version") and pins.get("gradio") != str(meta["sdk_version"]):
        problems.append(f"sdk_version {meta['sdk_version']} differs from requirements.txt's gradio=={pins.get('gradio')}")
    if problems:
        raise SpaceFolderError(f"{readme}: not a deployable Gradio Space: " + "; ".join(problems))
    return meta


@dataclass
class DeployResult:
    repo_id: str
    commit: str | None
    created_commit: bool
    url: str


def deploy(repo_id: str, folder: str | Path = SPACE_DIR, endpoint: str | None = None, token: str | None = None,
           private: bool = False, variables: dict[str, str] | None = None, api=None) -> DeployResult:
    """Create the Space repo if needed (sdk gradio), upload ``folder``, set ``variables`` (e.g. ADAPTER)."""
    from huggingface_hub import HfApi

    from builders.hub import upload

    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id or ""):
        raise ValueError(f"--repo must look like ORG/NAME, not {repo_id!r}")
    for key in variables or {}:
        if not VARIABLE_NAMES.match(key):
            raise ValueError(f"Space variable names are upper case (A-Z, 0-9, _), not {key!r}")
    folder = Path(folder)
    if not folder.is_dir():
        raise SpaceFolderError(f"{folder}: no such folder (pass the Space folder, space/ in a checkout)")
    meta = check_space(folder)
    endpoint = endpoint or os.environ.get("HF_ENDPOINT")
    api = api or HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    commit, created = upload(api, repo_id, "space", folder, ignore_patterns=SPACE_IGNORE,
                             commit_message=f"arabic-prompts Space (gradio {meta['sdk_version']})")
    for key, value in (variables or {}).items():
        api.add_space_variable(repo_id, key, value)
    url = f"{(endpoint or 'https://huggingface.co').rstrip('/')}/spaces/{repo_id}"
    return DeployResult(repo_id, commit, created_commit=created, url=url)


def cmd_deploy(args) -> int:
    variables = {k: v for k, v in (("ADAPTER", args.adapter), ("BASE_MODEL", args.base_model)) if v}
    res = deploy(args.repo, folder=args.folder, endpoint=args.endpoint, private=args.private, variables=variables)
    what = f"new commit {res.commit[:8]}" if res.created_commit and res.commit else "no change, no new commit"
    print(f"deployed {args.folder} to {res.url} ({what})")
    for key, value in variables.items():
        print(f"Space variable {key}={value}")
    return 0


def add_cli(subparsers) -> None:
    """Register `space deploy` on an argparse subparsers object."""
    sp = subparsers.add_parser("space", help="the Gradio Space (space/)")
    ssub = sp.add_subparsers(dest="space_command", required=True)
    d = ssub.add_parser("deploy", help="upload space/ as a Hugging Face Space (sdk gradio)",
                        description="Create the Space repo if needed and upload the Space folder; unchanged "
                                    "content makes no new commit. The token comes from HF_TOKEN or the "
                                    "`hf auth login` cache and is never printed.")
    d.add_argument("--repo", required=True, help="ORG/NAME of the Space repo")
    d.add_argument("--endpoint", help="Hub endpoint (default: HF_ENDPOINT or huggingface.co)")
    d.add_argument("--private", action="store_true")
    d.add_argument("--folder", default=str(SPACE_DIR), help="the Space folder (default: space/ of this checkout)")
    d.add_argument("--adapter", help="set the Space variable ADAPTER (the LoRA adapter's Hub id)")
    d.add_argument("--base-model", help="set the Space variable BASE_MODEL")
    d.set_defaults(func=cmd_deploy)
