"""Read a catalog entry's source rows: from the Hub with ``datasets.load_dataset``, or from local files.

Every reader yields ``(source_split, row_index, record)``; ``record`` has the source's own column names.
A record that cannot be parsed carries ``REJECT`` (the reason) instead of being dropped, so nothing is
lost silently. Local formats: csv, tsv, json (records or SQuAD layout), jsonl, parquet, CoNLL, CoNLL-U,
plain text lines (optionally parsed with a regex) and line-aligned files. Files are read as UTF-8 with an
optional BOM, any line ending, quoted fields with newlines, stray spaces in header names, headerless files.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from builders.catalog import CatalogEntry
from builders.records import from_json

REJECT = "__reject__"
Row = tuple[str, int, dict[str, Any]]
_RECORD_SUFFIXES = {".jsonl": "jsonl", ".json": "json", ".parquet": "parquet"}

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class SourceError(ValueError):
    """A source that cannot be read at all (missing file, unknown layout). Names dataset and file."""


# --------------------------------------------------------------------------------------------- Hub


HUB_BATCH_ROWS = 1000  # rows of a Hub dataset formatted to Python at a time


def read_hub(entry: CatalogEntry, path: str | None = None, limit: int | None = None,
             revision: str | None = None, wanted: Callable[[int], bool] | None = None) -> Iterator[Row]:
    """Rows of ``load_dataset(hub_id, hub_config, revision=...)``; ``path`` may be a local Hub-layout folder.
    ``revision`` (the commit ``resolve_revision`` found) pins the read to exactly what the manifest records.

    The rows are turned into Python ``HUB_BATCH_ROWS`` at a time (``ds[lo:hi]``, the same values as iterating
    the dataset, ~25x cheaper per row). ``wanted(seq)`` (rows numbered from 0 across the splits, in order)
    says which rows the caller needs: the others come with record ``None``, and a batch of none is not read."""
    import datasets

    target = path or entry.hub_id
    if not target:
        raise SourceError(f"dataset '{entry.name}': no hub_id ({entry.hub_note}); give --local {entry.name}=PATH")
    # A local snapshot gets a throwaway cache: datasets keys its cache of a local folder on the folder's name
    # and configs, so a refreshed folder (or another with the same name) would come back with the old rows,
    # or fail its split-size check against them.
    scratch = tempfile.mkdtemp(prefix="arabic-prompts-snapshot-") if path else None
    kwargs = {"cache_dir": scratch} if path else {"revision": revision or entry.revision}
    try:
        try:
            dsd = datasets.load_dataset(target, entry.hub_config, **kwargs)
        except Exception as e:  # offline, gated, missing config ...: say which dataset and how to work around it
            raise SourceError(
                f"dataset '{entry.name}': cannot load {target!r} (config={entry.hub_config}, "
                f"revision={None if path else revision or entry.revision}): {type(e).__name__}: {e}. "
                f"Offline? Download it once or pass --local {entry.name}=PATH"
            ) from e
        seq = 0
        for split, ds in dsd.items():
            n = len(ds) if limit is None else min(len(ds), limit)
            for lo in range(0, n, HUB_BATCH_ROWS):
                hi = min(n, lo + HUB_BATCH_ROWS)
                want = [True] * (hi - lo) if wanted is None else [wanted(s) for s in range(seq + lo, seq + hi)]
                if not any(want):
                    yield from ((split, i, None) for i in range(lo, hi))
                    continue
                batch = ds[lo:hi]  # {column: values}
                names = list(batch)
                records = (dict(zip(names, values)) for values in zip(*batch.values())) if names else ({} for _ in want)
                for i, w, record in zip(range(lo, hi), want, records):
                    yield split, i, record if w else None
            seq += n
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


# ------------------------------------------------------------------------------------------ local


def _open_text(path: Path):
    return open(path, encoding="utf-8-sig", newline="")


def _csv_rows(path: Path, spec: dict, fmt: str) -> Iterator[dict]:
    delimiter = spec.get("delimiter") or ("\t" if fmt == "tsv" else ",")
    quoting = csv.QUOTE_MINIMAL if (fmt == "csv" or spec.get("quoting")) else csv.QUOTE_NONE
    with _open_text(path) as f:
        reader = csv.reader(f, delimiter=delimiter, quoting=quoting)
        if spec.get("header", True):
            header = [h.strip() for h in next(reader, [])]
        else:
            header = list(spec.get("column_names") or [])
            if not header:
                raise SourceError(f"file {path}: headerless ({fmt}) needs local.column_names")
        for line_no, fields in enumerate(reader, start=2 if spec.get("header", True) else 1):
            if not fields or all(not x.strip() for x in fields):
                continue
            if len(fields) != len(header):
                yield {REJECT: f"malformed row at line {line_no} of {path.name}: {len(fields)} fields, expected {len(header)}"}
                continue
            yield dict(zip(header, fields))


def _squad_rows(doc: dict) -> Iterator[dict]:
    for article in doc["data"]:
        for para in article.get("paragraphs", []):
            for qa in para.get("qas", []):
                answers = qa.get("answers", [])
                yield {
                    "id": qa.get("id"),
                    "title": article.get("title", ""),
                    "context": para.get("context"),
                    "question": qa.get("question"),
                    "answers": {
                        "text": [a.get("text") for a in answers],
                        "answer_start": [a.get("answer_start") for a in answers],
                    },
                }


def _json_rows(path: Path) -> Iterator[dict]:
    try:
        with _open_text(path) as f:
            doc = json.load(f)
    except json.JSONDecodeError as e:
        raise SourceError(f"file {path}: invalid JSON at line {e.lineno}: {e.msg}") from e
    if isinstance(doc, dict) and isinstance(doc.get("data"), list) and doc["data"] and "paragraphs" in doc["data"][0]:
        yield from _squad_rows(doc)
    elif isinstance(doc, dict) and isinstance(doc.get("data"), list):
        yield from doc["data"]
    elif isinstance(doc, list):
        yield from doc
    else:
        raise SourceError(f"file {path}: expected a list of records, {{'data': [...]}} or SQuAD layout")


def json_lines(lines: Iterable[str]) -> Iterator[tuple[int, Any, str | None]]:
    """(line number, parsed value, None) for each non-blank JSON line, or (line number, None, the parser's
    message) for a line that is not JSON, so each caller decides between a reject and an error."""
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield line_no, from_json(line), None
        except json.JSONDecodeError as e:
            yield line_no, None, e.msg


def _jsonl_rows(path: Path) -> Iterator[dict]:
    with _open_text(path) as f:
        for line_no, record, error in json_lines(f):
            if error:
                yield {REJECT: f"invalid JSON at line {line_no} of {path.name}: {error}"}
            else:
                yield record if isinstance(record, dict) else {REJECT: f"line {line_no} of {path.name} is not an object"}


def _parquet_rows(path: Path) -> Iterator[dict]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        yield from batch.to_pylist()


def _conll_rows(path: Path, spec: dict) -> Iterator[dict]:
    tokens: list[str] = []
    tags: list[str] = []
    with open(path, encoding="utf-8-sig") as f:  # universal newlines: CRLF files work
        for line_no, line in enumerate(f, start=1):
            line = line.strip()
            if not line or line.startswith("-DOCSTART-"):
                if tokens:
                    yield {"tokens": tokens, "tags": tags}
                tokens, tags = [], []
                continue
            parts = line.split()
            if len(parts) < 2:
                yield {REJECT: f"malformed token line {line_no} of {path.name}: {line[:60]!r}"}
                continue
            tokens.append(parts[0])
            tags.append(parts[-1])
    if tokens:
        yield {"tokens": tokens, "tags": tags}


_CONLLU_FIELDS = ("id", "tokens", "lemmas", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")


def _conllu_rows(path: Path, spec: dict) -> Iterator[dict]:
    def empty() -> dict:
        return {name: [] for name in _CONLLU_FIELDS if name != "id"}

    sent, comments = empty(), {}
    with open(path, encoding="utf-8-sig") as f:
        for line_no, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                if sent["tokens"]:
                    yield {**comments, **sent}
                sent, comments = empty(), {}
            elif line.startswith("#"):
                key, sep, value = line[1:].partition("=")
                if sep:
                    comments[key.strip()] = value.strip()
            else:
                cols = line.split("\t")
                if len(cols) != 10:
                    yield {REJECT: f"malformed CoNLL-U line {line_no} of {path.name}: {len(cols)} columns"}
                    continue
                if "-" in cols[0] or "." in cols[0]:  # multiword ranges and empty nodes
                    continue
                for name, value in zip(_CONLLU_FIELDS[1:], cols[1:]):
                    sent[name].append(value)
    if sent["tokens"]:
        yield {**comments, **sent}


def _text_rows(path: Path, spec: dict) -> Iterator[dict]:
    pattern = re.compile(spec["pattern"]) if spec.get("pattern") else None
    names = spec.get("column_names")
    delimiter = spec.get("delimiter")
    with open(path, encoding="utf-8-sig") as f:
        for line_no, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if pattern:
                m = pattern.match(line)
                yield m.groupdict() if m else {REJECT: f"line {line_no} of {path.name} does not match local.pattern"}
            elif names and delimiter:
                parts = line.split(delimiter, len(names) - 1)
                if len(parts) != len(names):
                    yield {REJECT: f"malformed line {line_no} of {path.name}: {len(parts)} fields, expected {len(names)}"}
                else:
                    yield dict(zip(names, parts))
            else:
                yield {(names or ["text"])[0]: line}


def _aligned_rows(files: dict[str, Path]) -> Iterator[dict]:
    handles = {col: open(p, encoding="utf-8-sig") for col, p in files.items()}
    try:
        for line_no, lines in enumerate(zip(*handles.values(), strict=True), start=1):
            yield {col: line.rstrip("\r\n") for col, line in zip(handles, lines)}
    except ValueError as e:
        raise SourceError(f"aligned files {sorted(map(str, files.values()))} have different line counts") from e
    finally:
        for h in handles.values():
            h.close()


def read_file(path: Path, fmt: str, spec: dict) -> Iterator[dict]:
    if fmt in ("csv", "tsv"):
        return _csv_rows(path, spec, fmt)
    if fmt == "json":
        return _json_rows(path)
    if fmt == "jsonl":
        return _jsonl_rows(path)
    if fmt == "parquet":
        return _parquet_rows(path)
    if fmt == "conll":
        return _conll_rows(path, spec)
    if fmt == "conllu":
        return _conllu_rows(path, spec)
    if fmt == "text":
        return _text_rows(path, spec)
    raise SourceError(f"file {path}: unknown format {fmt!r}")


def _resolve(root: Path, pattern: str, name: str) -> list[Path]:
    found = sorted(Path(p) for p in glob.glob(str(root / pattern)))
    if not found:
        raise SourceError(f"dataset '{name}': no file matches {pattern!r} under {root}")
    return found


def _split_files(entry: CatalogEntry, root: Path, spec: dict) -> dict[str, Any]:
    """source split -> files (or, for ``aligned``, column -> file) for a local copy."""
    files = spec.get("files")
    if root.is_file():
        if not files or len(files) == 1:
            return {next(iter(files)) if files else spec.get("default_split", "train"): [root]}
        for split, pattern in files.items():  # a single file of a multi-file layout: match its name
            if isinstance(pattern, str) and root.match(Path(pattern).name):
                return {split: [root]}
        return {spec.get("default_split", "train"): [root]}
    if not files:
        raise SourceError(f"dataset '{entry.name}': {root} is a folder; its catalog entry needs local.files")
    out: dict[str, Any] = {}
    for split, pattern in files.items():
        if isinstance(pattern, dict):
            out[split] = {col: _resolve(root, p, entry.name)[0] for col, p in pattern.items()}
        else:
            patterns = pattern if isinstance(pattern, list) else [pattern]
            out[split] = [p for pat in patterns for p in _resolve(root, pat, entry.name)]
    return out


def _read_index(path: Path) -> set[int]:
    with open(path, encoding="utf-8-sig") as f:
        return {int(line) for line in f if line.strip()}


def _has_local_files(entry: CatalogEntry, root: Path) -> bool:
    """Whether the files of the entry's ``local:`` spec are all in the folder ``root`` (``_split_files`` finds
    them)."""
    try:
        _split_files(entry, root, entry.local)
    except SourceError:
        return False
    return True


def is_hub_snapshot(root: Path) -> bool:
    """Whether the folder ``root`` is laid out as a Hub dataset repo: a dataset card whose metadata names its
    configs or features (``configs`` / ``dataset_info``), a ``dataset_infos.json``, or parquet data files."""
    from huggingface_hub.repocard import metadata_load

    if (root / "dataset_infos.json").is_file() or next(root.rglob("*.parquet"), None) is not None:
        return True
    readme = root / "README.md"
    meta = metadata_load(readme) if readme.is_file() else None
    return bool(meta and ("configs" in meta or "dataset_info" in meta))


def uses_local_layout(entry: CatalogEntry, path: str | Path | None) -> bool:
    """True when ``path`` is read with the entry's ``local:`` spec (its columns and labels), False when it is
    a Hub snapshot folder or a .jsonl/.json/.parquet export of the Hub copy (Hub column names). A folder is
    the raw files when the spec's files are in it, else a Hub snapshot when it looks like one."""
    if path is None or not entry.local:
        return False
    root = Path(path)
    if root.is_dir():
        return _has_local_files(entry, root) or not is_hub_snapshot(root)
    suffix_fmt = _RECORD_SUFFIXES.get(root.suffix.lower()) if root.is_file() else None
    return not suffix_fmt or entry.local.get("format") == suffix_fmt


def read_local(entry: CatalogEntry, path: str | Path, limit: int | None = None,
               wanted: Callable[[int], bool] | None = None) -> Iterator[Row]:
    """Rows of a local copy given with ``--local NAME=PATH`` (``wanted``: see ``read_source``)."""
    root = Path(path)
    if not root.exists():
        raise SourceError(f"dataset '{entry.name}': local path {root} does not exist")
    suffix_fmt = _RECORD_SUFFIXES.get(root.suffix.lower()) if root.is_file() else None
    local_layout = uses_local_layout(entry, root)
    if root.is_dir() and not local_layout:
        # a downloaded Hub snapshot (README configs / data files)
        yield from read_hub(entry, str(root), limit, wanted=wanted)
        return
    if local_layout:
        spec = dict(entry.local)
    elif suffix_fmt:
        spec = {"format": suffix_fmt, "split_column": "split"}  # an export of the Hub copy: Hub column names
    else:
        raise SourceError(
            f"dataset '{entry.name}': {root.name} is not .jsonl/.json/.parquet and the entry has no local: spec"
        )
    fmt = spec["format"]
    split_column = spec.get("split_column")
    for split, files in _split_files(entry, root, spec).items():
        if fmt == "aligned":
            records = _aligned_rows(files)
        else:
            records = (r for f in files for r in read_file(f, fmt, spec))
        counters: dict[str, int] = {}
        index_sets = {s: _read_index(_resolve(root if root.is_dir() else root.parent, p, entry.name)[0])
                      for s, p in (spec.get("index_files") or {}).items()}
        for n, record in enumerate(records):
            if split_column and REJECT not in record and split_column in record:
                row_split = str(record.pop(split_column))
            elif index_sets:
                row_split = next((s for s, ids in index_sets.items() if n in ids), spec.get("default_split", "train"))
            else:
                row_split = split
            i = counters.get(row_split, 0)
            counters[row_split] = i + 1
            if limit is not None and i >= limit:
                continue
            yield row_split, i, record


def read_source(entry: CatalogEntry, local_path: str | os.PathLike | None = None, limit: int | None = None,
                revision: str | None = None, wanted: Callable[[int], bool] | None = None) -> Iterator[Row]:
    """All source rows of an entry: from ``local_path`` when given, else from the Hub (at ``revision``).
    ``wanted``: see ``read_hub`` (Hub datasets and snapshot folders skip the rows it refuses; local files
    are read whole: a row's split may be one of its columns)."""
    if local_path is not None:
        return read_local(entry, local_path, limit, wanted)
    return read_hub(entry, None, limit, revision, wanted)


def resolve_revision(entry: CatalogEntry, api=None) -> str | None:
    """The commit the entry's Hub revision (a branch, tag or ``refs/convert/parquet``) points at now, from
    ``HfApi.dataset_info``; None when the Hub cannot be asked (offline): then the pinned revision is used as is.
    A revision that is already a commit sha is returned without asking."""
    if not entry.hub_id:
        return None
    if entry.revision and re.fullmatch(r"[0-9a-f]{40}", entry.revision):
        return entry.revision
    try:
        if api is None:
            from huggingface_hub import HfApi

            api = HfApi()
        return api.dataset_info(entry.hub_id, revision=entry.revision).sha
    except Exception as e:  # offline, gated, unknown id: the read reports it (or works from the cache)
        print(f"note: could not resolve the Hub revision of '{entry.name}' ({entry.hub_id}@{entry.revision or 'main'}): "
              f"{type(e).__name__}; building from the pinned revision", file=sys.stderr)
        return None


def source_fingerprint(entry: CatalogEntry, local_path: str | None, resolved: str | None = None) -> str:
    """What identifies the source's content: local files' sizes and mtimes, or the Hub id at its resolved
    commit (so an upstream change makes a new build instead of reusing old rows)."""
    if local_path is None:
        return f"hub:{entry.hub_id}:{entry.hub_config}@{resolved or entry.revision or 'main'}"
    root = Path(local_path)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    parts = [f"{p.relative_to(root) if root.is_dir() else p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files]
    return "local:" + "|".join(parts)
