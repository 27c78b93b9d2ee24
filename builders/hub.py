"""A built folder and the Hub: validate it, publish it as a tagged dataset version, load it back safely."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import yaml

PUBLISH_IGNORE = ["_build/**", "_build", ".cache/**"]
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


class ValidationError(ValueError):
    """A built folder that must not be published. The message lists every problem with its file."""


def read_card_yaml(folder: Path) -> dict:
    readme = Path(folder) / "README.md"
    if not readme.exists():
        raise ValidationError(f"{readme}: missing (a built folder has a dataset card)")
    text = readme.read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        raise ValidationError(f"{readme}: no YAML front matter")
    return yaml.safe_load(text.split("---\n", 2)[1]) or {}


def config_files(folder: Path, config: str) -> dict[str, list[Path]]:
    """split -> the parquet files of one config, resolved from the card's ``configs`` patterns."""
    folder = Path(folder)
    meta = read_card_yaml(folder)
    for cfg in meta.get("configs", []):
        if cfg["config_name"] == config:
            return {df["split"]: sorted(folder.glob(df["path"])) for df in cfg["data_files"]}
    names = [c["config_name"] for c in meta.get("configs", [])]
    raise ValidationError(f"{folder}: no config '{config}' (configs: {names})")


def load_built(folder: str | Path, config: str = "default", split: str | None = None, **kwargs):
    """``load_dataset`` on a local build that always returns the current rows.

    ``load_dataset(folder, config)`` keys its cache on the folder's name and configs, so a folder rebuilt in
    place can come back with the earlier build's rows. Naming the parquet files makes ``datasets`` key the
    cache on the files themselves (their path and modification time), so a rebuild is always seen.
    """
    from datasets import load_dataset

    files = {s: [str(p) for p in paths] for s, paths in config_files(Path(folder), config).items() if paths}
    return load_dataset("parquet", data_files=files, split=split, **kwargs)


def validate(folder: str | Path) -> dict:
    """Check schema, non-empty configs and counts against the manifest. Returns a summary or raises."""
    from builders.pipeline import ROW_SCHEMA

    folder = Path(folder)
    problems: list[str] = []
    manifest_path = folder / "build_manifest.json"
    if not manifest_path.exists():
        raise ValidationError(f"{manifest_path}: missing; is {folder} a folder made by `arabic-prompts build`?")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    meta = read_card_yaml(folder)
    for key in ("configs", "language", "license", "task_categories", "size_categories", "pretty_name"):
        if not meta.get(key):
            problems.append(f"README.md: YAML has no '{key}'")
    counts: dict[str, dict[str, int]] = {}
    for cfg in meta.get("configs", []):
        name = cfg["config_name"]
        for df in cfg.get("data_files", []):
            files = sorted(folder.glob(df["path"]))
            if not files:
                problems.append(f"config '{name}', split '{df['split']}': no file matches {df['path']}")
                continue
            rows = 0
            for f in files:
                schema = pq.read_schema(f)
                if not schema.equals(ROW_SCHEMA):
                    problems.append(f"{f.relative_to(folder)}: schema {schema.names} differs from the row schema")
                rows += pq.ParquetFile(f).metadata.num_rows
            if rows == 0:
                problems.append(f"config '{name}', split '{df['split']}': empty")
            if name != "default":
                counts.setdefault(name, {})[df["split"]] = rows
    expected = manifest.get("counts", {}).get("by_task_split", {})
    if counts != expected:
        problems.append(f"row counts {counts} do not match build_manifest.json {expected}")
    listed = {f for splits in manifest.get("files", {}).values() for fs in splits.values() for f in fs}
    present = {str(p.relative_to(folder)) for p in (folder / "data").rglob("*.parquet")} if (folder / "data").exists() else set()
    if listed != present:
        problems.append(f"data files differ from the manifest: extra {sorted(present - listed)[:5]}, "
                        f"missing {sorted(listed - present)[:5]}")
    if problems:
        raise ValidationError(f"{folder} is not valid:\n  - " + "\n  - ".join(problems))
    return {"configs": len(counts), "rows": sum(sum(s.values()) for s in counts.values())}


@dataclass
class PublishResult:
    repo_id: str
    tag: str
    commit: str
    created_commit: bool
    created_tag: bool


def publish(folder: str | Path, repo_id: str, version: str, endpoint: str | None = None,
            token: str | None = None, private: bool = False, api=None) -> PublishResult:
    """Validate, upload, tag ``vX.Y.Z``. Publishing unchanged content again makes no new commit.

    The token comes from ``token``, ``HF_TOKEN`` or the ``hf auth login`` cache (huggingface_hub resolves it);
    it is never printed. ``endpoint`` (or ``HF_ENDPOINT``) points at another Hub, a mirror or a local server.
    """
    from huggingface_hub import HfApi

    if not _VERSION.match(version):
        raise ValueError(f"--version must look like 1.2.3, not {version!r}")
    from builders.card import stamp_usage

    folder = Path(folder)
    validate(folder)
    tag = f"v{version}"
    stamp_usage(folder, repo_id, tag)  # the card's usage snippet names this repo and version
    api = api or HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT"), token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    before = _head(api, repo_id)
    # upload_folder is multi-commit and resumable in huggingface_hub 1.x (it supersedes upload_large_folder)
    # and skips files whose content is already on the Hub, so unchanged content makes no commit.
    info = api.upload_folder(
        repo_id=repo_id,
        repo_type="dataset",
        folder_path=str(folder),
        ignore_patterns=PUBLISH_IGNORE,
        delete_patterns=["data/**"],  # shards of an earlier version that this build no longer has
        commit_message=f"arabic-prompts {version}",
    )
    commit = getattr(info, "oid", None) or _head(api, repo_id)
    tags = {t.name: t.target_commit for t in api.list_repo_refs(repo_id, repo_type="dataset").tags}
    created_tag = False
    if tag in tags:
        if tags[tag] != commit:
            raise ValueError(f"{repo_id}: tag {tag} already points at {tags[tag][:8]}, not {commit[:8]}; bump --version")
    else:
        api.create_tag(repo_id, tag=tag, revision=commit, repo_type="dataset", tag_message=f"arabic-prompts {version}")
        created_tag = True
    return PublishResult(repo_id, tag, commit, created_commit=commit != before, created_tag=created_tag)


def _head(api, repo_id: str) -> str | None:
    try:
        return api.repo_info(repo_id, repo_type="dataset").sha
    except Exception:  # a new, empty repo has no head yet
        return None
