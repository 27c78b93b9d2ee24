"""``push-adapter``: a training run's adapter, tokenizer, chat template and model card to a Hub model repo.

The rules are those of dataset publishing (builders/hub.py): check first and refuse on failure; ``HfApi`` with
``--endpoint`` / ``HF_ENDPOINT`` and the token from ``HF_TOKEN`` or the login cache (never printed); the same content
again makes no commit; ``--version X.Y.Z`` tags ``vX.Y.Z``, and a tag that already points at other content is
refused (bump the version) before anything is uploaded. Only the files listed below leave the run folder:
checkpoints, optimizer states and pickles (training_args.bin) never do.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from builders.hub import same_content, upload
from builders.training.card import render_card

REQUIRED_FILES = ("adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json")
OPTIONAL_FILES = ("tokenizer.json", "chat_template.jinja", "special_tokens_map.json", "vocab.json", "merges.txt",
                  "tokenizer.model", "added_tokens.json", "generation_config.json", "training_run.json")
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


class AdapterError(ValueError):
    """A run folder that must not be published; the message names the file."""


@dataclass
class PushResult:
    repo_id: str
    commit: str | None
    created_commit: bool
    tag: str | None
    created_tag: bool
    files: list[str]


def check_run(run_dir: Path) -> list[str]:
    """The files to publish, or AdapterError naming what is missing or unsafe."""
    if not run_dir.is_dir():
        raise AdapterError(f"{run_dir}: not a folder")
    missing = [f for f in REQUIRED_FILES if not (run_dir / f).is_file()]
    if missing:
        raise AdapterError(f"{run_dir}: missing {', '.join(missing)} (is it a finished run of training/sft.py?)")
    tokenizer_config = json.loads((run_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    if not (run_dir / "chat_template.jinja").is_file() and not tokenizer_config.get("chat_template"):
        raise AdapterError(f"{run_dir}: the tokenizer has no chat template")
    if (run_dir / "adapter_model.bin").exists():
        raise AdapterError(f"{run_dir}: holds a pickled adapter_model.bin; only safetensors are published")
    return [f for f in (*REQUIRED_FILES, *OPTIONAL_FILES) if (run_dir / f).is_file()]


def stage(run_dir: Path, files: list[str], card: str, base_model: str, out: Path) -> Path:
    """A folder with exactly what is published: the files, the card, and adapter_config.json naming the Hub base
    model (a run trained from a local copy of the base records that local path)."""
    for name in files:
        shutil.copy2(run_dir / name, out / name)
    config = json.loads((run_dir / "adapter_config.json").read_text(encoding="utf-8"))
    if config.get("base_model_name_or_path") != base_model:
        config["base_model_name_or_path"] = base_model
        (out / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (out / "README.md").write_text(card, encoding="utf-8")
    return out


def push_adapter(run_dir: str | Path, repo_id: str, version: str | None = None, base_model: str | None = None,
                 datasets: list[str] | None = None, endpoint: str | None = None, token: str | None = None,
                 private: bool = False, api=None) -> PushResult:
    from huggingface_hub import HfApi

    run_dir = Path(run_dir)
    if version is not None and not _VERSION.match(version):
        raise ValueError(f"--version must look like 1.2.3, not {version!r}")
    files = check_run(run_dir)
    card = render_card(run_dir, repo_id, base_model, datasets)  # validated; raises before any network call
    base = base_model or json.loads((run_dir / "training_run.json").read_text(encoding="utf-8"))["base_model"]
    (run_dir / "README.md").write_text(card, encoding="utf-8")  # the local folder carries the same card
    api = api or HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT"), token=token)
    tag = f"v{version}" if version else None
    with tempfile.TemporaryDirectory(prefix="push-adapter-") as tmp:
        folder = stage(run_dir, files, card, base, Path(tmp))
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        tags = {t.name: t.target_commit for t in api.list_repo_refs(repo_id, repo_type="model").tags}
        if tag in tags:  # decided before any upload: a refused push leaves the repo as it was
            if not same_content(api, repo_id, tags[tag], folder, repo_type="model"):
                raise ValueError(f"{repo_id}: tag {tag} already points at other content ({tags[tag][:8]}); "
                                 "bump --version")
            return PushResult(repo_id, tags[tag], False, tag, False, sorted(p.name for p in folder.iterdir()))
        commit, created = upload(api, repo_id, "model", folder, ignore_patterns=[],
                                 delete_patterns=[],  # never delete what we did not write
                                 commit_message=f"arabic-prompts adapter{' ' + version if version else ''}")
        created_tag = False
        if tag:
            api.create_tag(repo_id, tag=tag, revision=commit, repo_type="model",
                           tag_message=f"arabic-prompts adapter {version}")
            created_tag = True
        return PushResult(repo_id, commit, created, tag, created_tag,
                          sorted(p.name for p in folder.iterdir()))
