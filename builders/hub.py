"""A built folder and the Hub: validate it, publish it as a tagged dataset version, load it back safely.

Works for every dataset the project writes (prompts, translated prompts, dialogues, mixtures): the folder's
``build_manifest.json`` names its ``kind``, and ``builders.schema.SCHEMAS[kind]`` is the schema its shards must
have. Imports neither datatrove nor the pipeline.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from builders.leakage import check_rows, leakage_problems
from builders.schema import PROMPTS, schema_for

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


def _glob(folder: Path, path: str | list[str]) -> list[Path]:
    """The files of a ``data_files`` path: one pattern or a list of them (as the Hub's card YAML allows)."""
    return sorted({p for pattern in ([path] if isinstance(path, str) else path) for p in folder.glob(pattern)})


def config_files(folder: Path, config: str) -> dict[str, list[Path]]:
    """split -> the parquet files of one config, resolved from the card's ``configs`` patterns."""
    folder = Path(folder)
    meta = read_card_yaml(folder)
    for cfg in meta.get("configs", []):
        if cfg["config_name"] == config:
            return {df["split"]: _glob(folder, df["path"]) for df in cfg["data_files"]}
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


def validate(folder: str | Path, schema: pa.Schema | None = None) -> dict:
    """Check the card's YAML, every shard's schema (``schema``, else the one of the manifest's ``kind``), no
    empty config, counts and files against the manifest, unique row ids, and leakage: no source text
    (``source_id``) and no normalised input in two splits. Returns a summary with the checks' figures, or
    raises ValidationError listing every problem."""
    folder = Path(folder)
    problems: list[str] = []
    manifest_path = folder / "build_manifest.json"
    if not manifest_path.exists():
        raise ValidationError(f"{manifest_path}: missing; is {folder} a folder made by `arabic-prompts build`?")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    try:
        schema = schema or schema_for(manifest.get("kind", PROMPTS))
    except ValueError as e:
        raise ValidationError(f"{manifest_path}: {e}") from e
    meta = read_card_yaml(folder)
    for key in ("configs", "language", "license", "task_categories", "size_categories", "pretty_name"):
        if not meta.get(key):
            problems.append(f"README.md: YAML has no '{key}'")
    counts: dict[str, dict[str, int]] = {}
    shards: set[Path] = set()
    for cfg in meta.get("configs", []):
        name = cfg["config_name"]
        for df in cfg.get("data_files", []):
            files = _glob(folder, df["path"])
            if not files:
                problems.append(f"config '{name}', split '{df['split']}': no file matches {df['path']}")
                continue
            rows = 0
            for f in files:
                found = pq.read_schema(f)
                if not found.equals(schema):
                    problems.append(f"{f.relative_to(folder)}: schema {found.names} differs from the row schema "
                                    f"{schema.names}")
                rows += pq.ParquetFile(f).metadata.num_rows
                shards.add(f)
            if rows == 0:
                problems.append(f"config '{name}', split '{df['split']}': empty")
            if name != "default":
                counts.setdefault(name, {})[df["split"]] = rows
    expected = manifest.get("counts", {}).get("by_config_split", {})
    if counts != expected:
        problems.append(f"row counts {counts} do not match build_manifest.json {expected}")
    listed = {f for splits in manifest.get("files", {}).values() for fs in splits.values() for f in fs}
    present = {str(p.relative_to(folder)) for p in (folder / "data").rglob("*.parquet")} if (folder / "data").exists() else set()
    if listed != present:
        problems.append(f"data files differ from the manifest: extra {sorted(present - listed)[:5]}, "
                        f"missing {sorted(listed - present)[:5]}")
    checks = check_rows(sorted(shards), text_column="inputs" if "inputs" in schema.names else None,
                        group_column="source_id" if "source_id" in schema.names else None)
    problems += [f"leakage check: {p}" for p in leakage_problems(checks)]
    if problems:
        raise ValidationError(f"{folder} is not valid:\n  - " + "\n  - ".join(problems))
    return {"configs": len(counts), "rows": sum(sum(s.values()) for s in counts.values()), "checks": checks}


@dataclass
class PublishResult:
    repo_id: str
    tag: str
    commit: str
    created_commit: bool
    created_tag: bool


def _git_blob_sha(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _local_files(folder: Path) -> dict[str, Path]:
    from huggingface_hub.utils import filter_repo_objects

    paths = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    return {p: folder / p for p in filter_repo_objects(paths, ignore_patterns=PUBLISH_IGNORE)}


def same_content(api, repo_id: str, revision: str, folder: Path, repo_type: str = "dataset",
                 ignore: tuple[str, ...] = (".gitattributes",)) -> bool:
    """True when the repo at ``revision`` holds exactly the files of ``folder`` (publish's ignore patterns
    applied), compared by content hash (LFS sha256, else git blob sha1) without uploading anything."""
    local = _local_files(folder)
    remote = {}
    for item in api.list_repo_tree(repo_id, revision=revision, repo_type=repo_type, recursive=True):
        if getattr(item, "blob_id", None) is None or item.path in ignore:
            continue  # folders; files the Hub adds itself
        remote[item.path] = item
    if set(remote) != set(local):
        return False
    for path, item in remote.items():
        lfs = getattr(item, "lfs", None)
        if lfs is not None:
            sha = lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)
            if sha != hashlib.sha256(local[path].read_bytes()).hexdigest():
                return False
        elif item.blob_id != _git_blob_sha(local[path]):
            return False
    return True


def publish(folder: str | Path, repo_id: str, version: str, endpoint: str | None = None,
            token: str | None = None, private: bool = False, api=None) -> PublishResult:
    """Validate, check the tag, upload, tag ``vX.Y.Z``. Publishing unchanged content again makes no new commit.

    A tag that already exists must point at exactly this content: that is checked before anything is sent, so
    a refused publish changes nothing on the Hub. The token comes from ``token``, ``HF_TOKEN`` or the
    ``hf auth login`` cache (huggingface_hub resolves it); it is never printed. ``endpoint`` (or
    ``HF_ENDPOINT``) points at another Hub, a mirror or a local server.
    """
    from huggingface_hub import HfApi

    from builders.card import stamp_usage

    if not _VERSION.match(version):
        raise ValueError(f"--version must look like 1.2.3, not {version!r}")
    folder = Path(folder)
    validate(folder)
    tag = f"v{version}"
    stamp_usage(folder, repo_id, tag)  # the card's usage snippet names this repo and version
    api = api or HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT"), token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    tags = {t.name: t.target_commit for t in api.list_repo_refs(repo_id, repo_type="dataset").tags}
    if tag in tags:  # a version is immutable: the same content is a no-op, other content is refused
        if not same_content(api, repo_id, tags[tag], folder):
            raise ValueError(f"{repo_id}: tag {tag} already points at {tags[tag][:8]}, whose content differs from "
                             f"{folder}; nothing was uploaded. Bump --version")
        return PublishResult(repo_id, tag, tags[tag], created_commit=False, created_tag=False)
    # upload_folder is multi-commit and resumable in huggingface_hub 1.x (it supersedes upload_large_folder)
    commit, created = upload(api, repo_id, "dataset", folder, ignore_patterns=PUBLISH_IGNORE,
                             delete_patterns=["data/**"],  # shards of an earlier version this build no longer has
                             commit_message=f"arabic-prompts {version}")
    api.create_tag(repo_id, tag=tag, revision=commit, repo_type="dataset", tag_message=f"arabic-prompts {version}")
    return PublishResult(repo_id, tag, commit, created_commit=created, created_tag=True)


def head(api, repo_id: str, repo_type: str = "dataset") -> str | None:
    """The repo's current commit, or None for a new, empty repo."""
    try:
        return api.repo_info(repo_id, repo_type=repo_type).sha
    except Exception:  # a new, empty repo has no head yet
        return None


def upload(api, repo_id: str, repo_type: str, folder: Path | str, **kwargs) -> tuple[str | None, bool]:
    """``upload_folder``, then the commit the repo is at and whether the upload made it (huggingface_hub skips
    files whose content is already on the Hub, so unchanged content makes no commit)."""
    before = head(api, repo_id, repo_type)
    info = api.upload_folder(repo_id=repo_id, repo_type=repo_type, folder_path=str(folder), **kwargs)
    commit = getattr(info, "oid", None) or head(api, repo_id, repo_type)
    return commit, commit != before
