"""Where a model comes from: a Hub id (``snapshot_download``, pinned to a revision) or a local folder, and the
revision string that identifies its weights in the caches. Shared by the MT and QE backends."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class ResolvedModel:
    path: Path  # a local folder with the files
    model_id: str  # what rows record (the Hub id, or the folder as given)
    revision: str  # a Hub commit, or a content hash of a local folder


def folder_fingerprint(path: Path) -> str:
    """A content hash of the files of a local model folder (names and bytes), so a changed model is a new
    cache namespace. Hashes every file once (about a second for a 300 MB Marian model)."""
    digest = hashlib.sha256()
    for f in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        digest.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()[:20]


def resolve(id_or_path: str | Path, revision: str | None = None, allow_patterns: list[str] | None = None) -> ResolvedModel:
    """A local folder as it is, or a Hub repo downloaded (or found in the cache) at ``revision``."""
    path = Path(id_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"model {id_or_path}: expected a folder, found a file")
        return ResolvedModel(path.resolve(), str(id_or_path), folder_fingerprint(path))
    from huggingface_hub import snapshot_download

    try:
        local = Path(snapshot_download(str(id_or_path), revision=revision, allow_patterns=allow_patterns))
    except Exception as e:  # offline, gated, unknown id: say which model and what to do
        raise ValueError(
            f"model {id_or_path!r} (revision {revision or 'main'}): cannot download it: {type(e).__name__}: {e}. "
            f"Offline or gated? Download it once (`hf download {id_or_path}`) or pass a local folder"
        ) from e
    commit = local.name if _COMMIT.match(local.name) else (revision or "main")
    return ResolvedModel(local, str(id_or_path), commit)
