"""Check catalog facts against the Hub's own metadata: ``arabic-prompts catalog check``.

For every catalog entry with a ``hub_id``, read what the Hub says at the pinned revision and compare it with the
entry: the repository and revision exist, the config exists, every mapped column exists, ClassLabel names and
their order equal ``labels.names``, every mapped source split exists, and the card's license matches. Each fact is
``ok``, ``wrong`` (the Hub contradicts the entry) or ``unknown`` (the Hub could not be read, or does not say).

The Hub is read through its real client code: ``HfApi.dataset_info`` for the repository, revision and card, and
``datasets`` (``get_dataset_config_names``, ``get_dataset_split_names``, ``load_dataset_builder(...).info``; a
streamed first row when the card declares no features) for configs, splits and columns. ``--endpoint`` points both
at another Hub (a mirror, a local server); ``--snapshots DIR`` reads downloaded snapshots instead, one folder per
dataset at ``DIR/<owner>/<name>`` (the layout of ``huggingface_hub.snapshot_download(local_dir=...)``).

It also counts the catalog: ``catalog_counts`` is the one place that says "N catalog entries over M distinct
source datasets and K tasks" (entries over one dataset count once, by ``source_dataset``).

Only the standard library is imported at module level (``arabic-prompts --help`` works on a core install).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

OK, WRONG, UNKNOWN = "ok", "wrong", "unknown"


# ------------------------------------------------------------------------------------------------ counts


@dataclass(frozen=True)
class CatalogCounts:
    entries: int
    sources: int
    tasks: int

    def sentence(self) -> str:
        return f"{self.entries} catalog entries over {self.sources} distinct source datasets and {self.tasks} tasks"


def catalog_counts(entries) -> CatalogCounts:
    """Entries, distinct source datasets (``source_dataset``, default ``hub_id``) and tasks (the entries' own and
    the tasks their derived templates name) of catalog entries."""
    entries = list(entries)
    tasks = {e.task for e in entries} | {r[0] for e in entries for r in map(e.template_task, e.templates) if r}
    return CatalogCounts(len(entries), len({e.source_dataset for e in entries}), len(tasks))


# ------------------------------------------------------------------------------------------------- facts


@dataclass
class Fact:
    entry: str
    fact: str
    status: str
    detail: str = ""


@dataclass
class HubView:
    """What the Hub (or a snapshot) says about one dataset at one revision; ``None`` where it could not be read."""

    exists: bool | None = None
    sha: str | None = None
    license: Any = None  # str, list of str, or None when the card states none
    card_read: bool = False
    configs: list[str] | None = None
    error: str = ""


def _norm_license(value: Any) -> set[str]:
    values = value if isinstance(value, (list, tuple)) else [value]
    return {str(v).strip().lower() for v in values if v not in (None, "")}


def _label_names(feature) -> list[str] | None:
    """ClassLabel names of a feature (also inside a Sequence/list), else None."""
    import datasets

    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    inner = getattr(feature, "feature", None)
    if isinstance(feature, (datasets.Sequence, getattr(datasets, "List", datasets.Sequence))) and inner is not None:
        return _label_names(inner)
    if isinstance(feature, list) and feature:
        return _label_names(feature[0])
    return None


def _short(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".replace("\n", " ")
    return text if len(text) <= 160 else text[:157] + "..."


class HubReader:
    """Reads Hub metadata online (optionally at another endpoint) or from a folder of snapshots."""

    def __init__(self, endpoint: str | None = None, snapshots: str | Path | None = None, token: str | None = None):
        self.endpoint = endpoint
        self.snapshots = Path(snapshots) if snapshots else None
        self.token = token
        self._views: dict[tuple, HubView] = {}
        self._scratch = tempfile.mkdtemp(prefix="arabic-prompts-check-")

    def close(self) -> None:
        shutil.rmtree(self._scratch, ignore_errors=True)

    # the dataset a `datasets` call should read: the Hub id, or its snapshot folder
    def path(self, hub_id: str) -> str:
        return str(self.snapshots / hub_id) if self.snapshots else hub_id

    def _kwargs(self, revision: str | None) -> dict:
        # a snapshot is one revision already; a throwaway cache keeps a refreshed snapshot from being read stale
        if self.snapshots:
            return {"cache_dir": self._scratch}
        return {"revision": revision, "token": self.token}

    @contextlib.contextmanager
    def endpoint_set(self) -> Iterator[None]:
        """Point huggingface_hub and datasets at ``--endpoint`` while reading (both read it at import time)."""
        if not self.endpoint:
            yield
            return
        import datasets.config
        import huggingface_hub.constants as hc

        url = self.endpoint.rstrip("/")
        patch = [(hc, "ENDPOINT", url), (hc, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}"),
                 (datasets.config, "HF_ENDPOINT", url),
                 (datasets.config, "HUB_DATASETS_URL", url + "/datasets/{repo_id}/resolve/{revision}/{path}")]
        saved = [(module, attr, getattr(module, attr)) for module, attr, _ in patch]
        saved_env = os.environ.get("HF_ENDPOINT")
        for module, attr, value in patch:
            setattr(module, attr, value)
        os.environ["HF_ENDPOINT"] = url
        try:
            yield
        finally:
            for module, attr, value in saved:
                setattr(module, attr, value)
            if saved_env is None:
                os.environ.pop("HF_ENDPOINT", None)
            else:
                os.environ["HF_ENDPOINT"] = saved_env

    def view(self, hub_id: str, revision: str | None) -> HubView:
        key = (hub_id, revision)
        if key not in self._views:
            self._views[key] = self._read_view(hub_id, revision)
        return self._views[key]

    def _read_view(self, hub_id: str, revision: str | None) -> HubView:
        import datasets

        view = HubView()
        if self.snapshots:
            folder = self.snapshots / hub_id
            if not folder.is_dir():  # not downloaded: says nothing about the Hub
                view.error = f"no snapshot folder {folder}"
                return view
            view.exists = True
            readme = folder / "README.md"
            if readme.is_file():
                from huggingface_hub import DatasetCard

                view.license = DatasetCard.load(readme).data.to_dict().get("license")
                view.card_read = True
        else:
            from huggingface_hub import HfApi
            from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

            try:
                info = HfApi(endpoint=self.endpoint, token=self.token).dataset_info(hub_id, revision=revision)
            except RevisionNotFoundError as e:
                view.exists, view.error = True, f"revision {revision!r} not found: {_short(e)}"
                view.sha = None
                return view
            except RepositoryNotFoundError as e:
                view.exists, view.error = False, _short(e)
                return view
            except Exception as e:  # offline, timeout, a server error: nothing is known
                view.error = _short(e)
                return view
            view.exists, view.sha = True, info.sha
            card = info.card_data.to_dict() if info.card_data is not None else {}
            view.license, view.card_read = card.get("license"), True
        try:
            view.configs = list(datasets.get_dataset_config_names(self.path(hub_id), **self._kwargs(revision)))
        except Exception as e:
            view.error = view.error or f"configs: {_short(e)}"
        return view

    def splits(self, hub_id: str, config: str | None, revision: str | None) -> list[str]:
        import datasets

        return list(datasets.get_dataset_split_names(self.path(hub_id), config, **self._kwargs(revision)))

    def features(self, hub_id: str, config: str | None, revision: str | None, split: str | None):
        """The declared features, else those of a streamed first row (a card without dataset_info)."""
        import datasets

        builder = datasets.load_dataset_builder(self.path(hub_id), config, **self._kwargs(revision))
        if builder.info.features is not None:
            return builder.info.features
        if split is None:
            return None
        stream = datasets.load_dataset(self.path(hub_id), config, split=split, streaming=True, **self._kwargs(revision))
        if stream.features is None:
            stream = stream._resolve_features()
        return stream.features


def check_entry(entry, reader: HubReader) -> list[Fact]:
    """Every fact of one catalog entry, compared with what the Hub says."""
    name = entry.name
    if not entry.hub_id:
        return [Fact(name, "hub_id", UNKNOWN, f"local-only entry ({entry.hub_note or 'no hub_id'})")]
    facts: list[Fact] = []
    with reader.endpoint_set():
        view = reader.view(entry.hub_id, entry.revision)
        where = entry.hub_id + (f"@{entry.revision}" if entry.revision else "")
        if view.exists is False:
            return [Fact(name, "hub_id", WRONG, f"{entry.hub_id} does not exist ({view.error})")]
        if view.exists is None:
            return [Fact(name, "hub_id", UNKNOWN, f"cannot read {where}: {view.error}")]
        facts.append(Fact(name, "hub_id", OK, entry.hub_id))
        if not reader.snapshots:
            if view.sha is None:
                facts.append(Fact(name, "revision", WRONG, view.error))
                return facts
            facts.append(Fact(name, "revision", OK, f"{entry.revision or 'main'} = {view.sha[:12]}"))
        facts.append(_license_fact(entry, view))
        config_fact = _config_fact(entry, view)
        facts.append(config_fact)
        if config_fact.status == WRONG:
            return facts
        try:
            split_names = reader.splits(entry.hub_id, entry.hub_config, entry.revision)
        except Exception as e:
            split_names = None
            facts.append(Fact(name, "splits", UNKNOWN, f"cannot read splits: {_short(e)}"))
        if split_names is not None:
            for split in entry.splits:
                ok = split in split_names
                facts.append(Fact(name, f"split {split}", OK if ok else WRONG,
                                  "exists" if ok else f"not a split of {where}; splits are {split_names}"))
        first_split = next((s for s in entry.splits if split_names and s in split_names), None)
        try:
            features = reader.features(entry.hub_id, entry.hub_config, entry.revision, first_split)
        except Exception as e:
            features, why = None, f"cannot read features: {_short(e)}"
        else:
            why = "the Hub declares no features"
        facts += _column_facts(entry, features, why)
    return facts


def _license_fact(entry, view: HubView) -> Fact:
    ours, theirs = _norm_license(entry.license), _norm_license(view.license)
    if not view.card_read:
        return Fact(entry.name, "license", UNKNOWN, "no dataset card")
    if not theirs:
        if ours <= {"unknown", "other"}:
            return Fact(entry.name, "license", OK, "the card states none")
        return Fact(entry.name, "license", UNKNOWN, f"the card states none; the entry says {entry.license} (from the original release)")
    if ours & theirs:
        return Fact(entry.name, "license", OK, entry.license)
    return Fact(entry.name, "license", WRONG, f"the card says {view.license}, the entry {entry.license}")


def _config_fact(entry, view: HubView) -> Fact:
    if view.configs is None:
        return Fact(entry.name, "config", UNKNOWN, view.error)
    if entry.hub_config:
        if entry.hub_config in view.configs:
            return Fact(entry.name, "config", OK, entry.hub_config)
        return Fact(entry.name, "config", WRONG, f"no config {entry.hub_config!r}; configs are {view.configs}")
    if len(view.configs) <= 1 or "default" in view.configs:
        return Fact(entry.name, "config", OK, view.configs[0] if view.configs else "default")
    return Fact(entry.name, "config", WRONG, f"several configs and none named: {view.configs[:8]}")


def _column_facts(entry, features, why: str) -> list[Fact]:
    name = entry.name
    if features is None:
        return [Fact(name, f"column {col}", UNKNOWN, why) for col in dict.fromkeys(entry.columns.values())]
    facts = []
    for col in dict.fromkeys(entry.columns.values()):
        ok = col in features
        facts.append(Fact(name, f"column {col}", OK if ok else WRONG,
                          "exists" if ok else f"no such column; columns are {sorted(features)}"))
    for var, spec in entry.labels.items():
        col = entry.columns[var]
        if col not in features:
            continue
        names = _label_names(features[col])
        ours = [str(n) for n in spec.names]
        if names is not None and spec.ids:
            ok = names == ours
            facts.append(Fact(name, f"labels {var}", OK if ok else WRONG,
                              f"ClassLabel {names}" if ok else f"ClassLabel names {names}, the entry says {ours}"))
        elif names is not None:
            facts.append(Fact(name, f"labels {var}", WRONG,
                              f"{col} is a ClassLabel {names} (integer ids): the entry needs ids: true and names in that order"))
        else:
            facts.append(Fact(name, f"labels {var}", UNKNOWN, f"{col} is {features[col]!r}, not a ClassLabel: names not declared"))
    return facts


def check_catalog(entries, reader: HubReader, progress=None) -> list[Fact]:
    facts: list[Fact] = []
    for i, entry in enumerate(entries):
        if progress:
            progress(i, entry)
        facts += check_entry(entry, reader)
    return facts


def format_table(facts: list[Fact]) -> str:
    width = max([len(f.entry) for f in facts] + [5])
    fwidth = max([len(f.fact) for f in facts] + [4])
    lines = [f"{'entry':{width}}  {'fact':{fwidth}}  {'status':7}  detail"]
    lines += [f"{f.entry:{width}}  {f.fact:{fwidth}}  {f.status:7}  {f.detail}" for f in facts]
    return "\n".join(lines)


def summary(facts: list[Fact]) -> dict[str, int]:
    counts = {OK: 0, WRONG: 0, UNKNOWN: 0}
    for f in facts:
        counts[f.status] += 1
    return counts


# --------------------------------------------------------------------------------------------------- CLI


def cmd_check(args) -> int:
    from builders.catalog import load_catalog, select

    entries = select(load_catalog(args.catalog_dir or [], override=args.override),
                     [n.strip() for n in args.datasets.split(",")] if args.datasets else None)
    token = os.environ.get("HF_TOKEN") if not args.snapshots else None  # never printed
    reader = HubReader(endpoint=args.endpoint, snapshots=args.snapshots, token=token)
    where = f"snapshots in {args.snapshots}" if args.snapshots else (args.endpoint or "the Hub")
    print(f"checking {len(entries)} catalog entries against {where}", file=sys.stderr)
    try:
        facts = check_catalog(entries, reader, progress=lambda i, e: print(f"  [{i + 1}/{len(entries)}] {e.name}", file=sys.stderr))
    finally:
        reader.close()
    shown = [f for f in facts if f.status != OK] if args.problems_only else facts
    print(format_table(shown))
    counts = summary(facts)
    print(f"\n{len(entries)} entries: {counts[OK]} facts ok, {counts[WRONG]} wrong, {counts[UNKNOWN]} unknown")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(f) for f in facts], ensure_ascii=False, indent=1), encoding="utf-8")
    return 1 if counts[WRONG] else 0


def add_cli(subparsers) -> None:
    """Adds ``check`` under the ``catalog`` command (whose sub-commands parser cli.py exposes as ``subcommands``)."""
    catalog = subparsers.choices["catalog"]
    ch = catalog.subcommands.add_parser(
        "check", help="compare catalog facts with the Hub's metadata (ids, configs, columns, labels, splits, license)")
    ch.add_argument("--datasets", help="comma-separated catalog names (default: every entry)")
    ch.add_argument("--catalog-dir", action="append", help="extra DIR with catalog/ and templates/ (repeatable)")
    ch.add_argument("--override", action="store_true", help="a --catalog-dir entry may replace a package entry")
    ch.add_argument("--endpoint", help="Hub endpoint (a mirror or a local server); default HF_ENDPOINT or huggingface.co")
    ch.add_argument("--snapshots", help="folder of downloaded dataset snapshots, one per dataset at DIR/<owner>/<name>")
    ch.add_argument("--problems-only", action="store_true", help="print only the facts that are wrong or unknown")
    ch.add_argument("--json", help="also write every fact to this JSON file")
    ch.set_defaults(func=cmd_check)
