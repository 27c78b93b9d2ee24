"""A stand-in for the Hub's side of ``huggingface_hub.HfApi`` (mock: no Hub is reachable here, and no installable
local server speaks the Hub API). Content-addressed like the real one. Imports only the standard library and
huggingface_hub, so the clean-venv install test can use it too."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from huggingface_hub.utils import filter_repo_objects


@dataclass
class FakeHub:
    """The Hub's side of HfApi (mock: no Hub is reachable here). Content-addressed like the real one: each
    commit is a snapshot; files tracked by LFS (parquet, as the Hub's default .gitattributes says) are listed
    with their sha256, the others with their git blob sha1."""

    files: dict | None = None
    commits: list | None = None
    tags: dict | None = None

    def __post_init__(self):
        self.files, self.commits, self.tags, self.calls, self.snapshots = {}, [], {}, [], {}

    def create_repo(self, repo_id, repo_type=None, private=False, exist_ok=False, **kwargs):
        self.calls.append(("create_repo", repo_id, repo_type))

    def repo_info(self, repo_id, repo_type=None):
        if not self.commits:
            raise FileNotFoundError("empty repo")
        return SimpleNamespace(sha=self.commits[-1])

    def upload_folder(self, repo_id, repo_type, folder_path, ignore_patterns, delete_patterns, commit_message, **kw):
        self.calls.append(("upload_folder", repo_id, repo_type))
        root = Path(folder_path)
        paths = [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()]
        local = {}
        for p in filter_repo_objects(paths, ignore_patterns=ignore_patterns):
            data = (root / p).read_bytes()
            local[p] = (hashlib.sha256(data).hexdigest(), hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest())
        new = {p: h for p, h in self.files.items() if not any(Path(p).match(d) for d in delete_patterns) or p in local}
        new.update(local)
        if new != self.files or not self.commits:
            self.files = new
            self.commits.append(hashlib.sha1(json.dumps(sorted(new.items())).encode()).hexdigest())
            self.snapshots[self.commits[-1]] = dict(new)
        return SimpleNamespace(oid=self.commits[-1])

    def list_repo_tree(self, repo_id, revision=None, repo_type=None, recursive=False):
        for path, (sha256, blob) in self.snapshots[revision].items():
            lfs = {"sha256": sha256} if path.endswith(".parquet") else None
            yield SimpleNamespace(path=path, blob_id=blob if lfs is None else "lfs-pointer", lfs=lfs)

    def list_repo_refs(self, repo_id, repo_type=None):
        return SimpleNamespace(tags=[SimpleNamespace(name=n, target_commit=c) for n, c in self.tags.items()])

    def create_tag(self, repo_id, tag, revision, repo_type=None, tag_message=None):
        assert tag not in self.tags
        self.calls.append(("create_tag", repo_id, tag))
        self.tags[tag] = revision
