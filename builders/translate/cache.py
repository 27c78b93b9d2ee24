"""Persistent caches of translations and QE scores, safe with many workers on one machine or many.

Template sentences repeat across millions of prompts, so every unique segment is translated once per model and
every unique (source, translation) pair is scored once per QE model; a second run translates and scores nothing
it has done before. Keys are hashes of the normalised text and of the model identity (id, revision and the
settings that change the output, such as the backend, quantization and beam size).

Design: one writer per shard, merged. A cache is a folder with ``main.sqlite`` and ``shard-<writer>.sqlite``
files. Each worker process writes only its own shard (committed batch by batch, so a SIGKILL loses at most the
batch in flight) and reads its shard, the merged ``main.sqlite`` and an in-memory copy of what it has seen.
``merge()`` folds finished shards into ``main.sqlite`` under a file lock; the pipeline calls it before and after
its stages, when no worker writes. Why not one SQLite file in WAL mode for everyone: WAL needs shared memory
between the processes, so it is only safe on one host, and Slurm or Ray workers on several nodes share the
cache over a network file system, where SQLite's locking cannot be trusted. With one writer per file there is
no write concurrency to get wrong; a segment two workers meet before a merge is translated twice, not lost.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

_SCHEMA = "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, value) WITHOUT ROWID"


def cache_key(*parts: str) -> str:
    """A stable key for a cache entry: the model identity and the normalised text(s)."""
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:40]


def _connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        con = sqlite3.connect(path, check_same_thread=False)
        con.execute("PRAGMA journal_mode=DELETE")  # a rollback journal: nothing needs shared memory
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute(_SCHEMA)
        con.commit()
    return con


class SegmentCache:
    """A key -> value store (translations as text, scores as float) in ``root``, written by one writer.

    ``stats`` counts lookups answered from the cache (``hits``), those that were not (``misses``) and the
    entries this writer stored (``stored``).
    """

    def __init__(self, root: str | Path, writer: str | None = None, memory_limit: int = 2_000_000):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.writer = writer or f"{socket.gethostname()}-{os.getpid()}"
        self.memory: dict[str, Any] = {}
        self.memory_limit = memory_limit
        self.stats = {"hits": 0, "misses": 0, "stored": 0}
        self._main: sqlite3.Connection | None = None
        self._shard: sqlite3.Connection | None = None

    # -------------------------------------------------------------------------------- connections

    @property
    def main_path(self) -> Path:
        return self.root / "main.sqlite"

    @property
    def shard_path(self) -> Path:
        return self.root / f"shard-{self.writer}.sqlite"

    def _main_con(self) -> sqlite3.Connection | None:
        if self._main is None and self.main_path.exists():
            self._main = _connect(self.main_path, readonly=True)
        return self._main

    def _shard_con(self) -> sqlite3.Connection:
        if self._shard is None:
            self._shard = _connect(self.shard_path)
        return self._shard

    def close(self) -> None:
        for con in (self._main, self._shard):
            if con is not None:
                con.close()
        self._main = self._shard = None

    def __getstate__(self) -> dict:  # datatrove pickles steps into worker processes: no open connections
        state = dict(self.__dict__)
        state.update(_main=None, _shard=None, memory={})
        return state

    # ------------------------------------------------------------------------------------ lookups

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The cached values of ``keys`` (missing keys are left out); counts one hit or miss per key."""
        keys = list(dict.fromkeys(keys))
        found = {k: self.memory[k] for k in keys if k in self.memory}
        todo = [k for k in keys if k not in found]
        for con in (self._shard, self._main_con()):
            if con is None or not todo:
                continue
            for i in range(0, len(todo), 500):
                chunk = todo[i:i + 500]
                rows = con.execute(f"SELECT key, value FROM entries WHERE key IN ({','.join('?' * len(chunk))})",
                                   chunk).fetchall()
                found.update(rows)
            todo = [k for k in todo if k not in found]
        self.stats["hits"] += len(found)
        self.stats["misses"] += len(keys) - len(found)
        self._remember(found)
        return found

    def put_many(self, items: Mapping[str, Any]) -> None:
        """Store new entries in this writer's shard (one transaction)."""
        if not items:
            return
        con = self._shard_con()
        with con:
            con.executemany("INSERT OR REPLACE INTO entries (key, value) VALUES (?, ?)", list(items.items()))
        self.stats["stored"] += len(items)
        self._remember(items)

    def _remember(self, items: Mapping[str, Any]) -> None:
        if len(self.memory) + len(items) > self.memory_limit:
            self.memory.clear()
        self.memory.update(items)

    def __len__(self) -> int:
        n = 0
        for path in [self.main_path, *self.root.glob("shard-*.sqlite")]:
            if path.exists():
                con = _connect(path, readonly=True)
                n += con.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
                con.close()
        return n

    # -------------------------------------------------------------------------------------- merge

    def merge(self) -> int:
        """Fold every shard into ``main.sqlite`` and remove the shards; returns the entries added.
        Call it when no worker is writing (the pipeline does, before and after its stages)."""
        self.close()
        added = 0
        with _locked(self.root / "merge.lock"):
            shards = sorted(self.root.glob("shard-*.sqlite"))
            if not shards:
                return 0
            con = _connect(self.main_path)
            for shard in shards:
                before = con.total_changes
                con.execute("ATTACH DATABASE ? AS shard", (str(shard),))
                try:
                    with con:
                        con.execute("INSERT OR IGNORE INTO entries SELECT key, value FROM shard.entries")
                except sqlite3.DatabaseError:  # a shard with no table yet (killed while creating it)
                    pass
                con.execute("DETACH DATABASE shard")
                added += con.total_changes - before
                shard.unlink()
                for extra in (shard.with_name(shard.name + "-journal"),):
                    extra.unlink(missing_ok=True)
            con.close()
        return added


@contextlib.contextmanager
def _locked(path: Path):
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
