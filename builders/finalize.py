"""Turn a pipeline's staged shards into a Hub dataset folder, for any row schema: shards named
``data/<config>/<split>-XXXXX-of-YYYYY.parquet``, the leakage and uniqueness checks, and
``build_manifest.json``. The caller then writes its report and card (``builders.card``).

Output safety: ``check_output_folder`` lets a pipeline write only into a new or empty folder or an earlier
output of ours, and a rebuild deletes only the files an earlier manifest (or an interrupted finalize) lists.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from builders import __version__
from builders.leakage import check_rows, leakage_problems
from builders.steps import BuildError

TOOL = "arabic-prompts"
MANIFEST = "build_manifest.json"
WORK = "_build"
MARKER = f"{WORK}/{TOOL}.json"  # written when a build starts: an interrupted build is ours too
PLACING = f"{WORK}/placing.json"  # the shards finalize is about to place (an interrupted finalize is ours)
OUR_FILES = ("README.md", MANIFEST, "build_report.json", "build_report.png")


def read_manifest(out: Path) -> dict | None:
    path = Path(out) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("tool") == TOOL else None


def _listed(manifest: dict | None) -> set[str]:
    return {f for splits in (manifest or {}).get("files", {}).values() for fs in splits.values() for f in fs}


def check_output_folder(out: Path) -> None:
    """Refuse (raising BuildError, touching nothing) unless ``out`` is new, empty, or an earlier output of ours
    whose ``data/`` holds only files we wrote."""
    out = Path(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise BuildError(f"--out {out}: is a file, not a folder")
    if not any(out.iterdir()):
        return
    manifest = read_manifest(out)
    if manifest is None and not (out / MARKER).is_file():
        raise BuildError(
            f"--out {out}: the folder is not empty and holds no earlier arabic-prompts build ({MANIFEST} or "
            f"{MARKER}); refusing to write there so nothing of yours is overwritten. Choose a new or empty folder."
        )
    ours = _listed(manifest) | set(_placing(out))
    data = out / "data"
    strangers = sorted(str(p.relative_to(out)) for p in data.rglob("*") if p.is_file()
                       and str(p.relative_to(out)) not in ours) if data.is_dir() else []
    if strangers:
        raise BuildError(f"--out {out}: data/ holds files this tool did not write ({', '.join(strangers[:5])}"
                         f"{' ...' if len(strangers) > 5 else ''}); move them away or choose another folder")


def _placing(out: Path) -> list[str]:
    path = Path(out) / PLACING
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []


def mark_ours(out: Path, fingerprint: str) -> None:
    (Path(out) / WORK).mkdir(parents=True, exist_ok=True)
    (Path(out) / MARKER).write_text(json.dumps({"tool": TOOL, "version": __version__, "fingerprint": fingerprint}),
                                    encoding="utf-8")


def _shard_key(name: str) -> tuple[int, int]:
    # datatrove names rotated files "NNN_RRRRR.parquet" (file counter, rank) or "RRRRR.parquet"
    parts = name.removesuffix(".parquet").split("_")
    return (int(parts[-1]), int(parts[0]) if len(parts) > 1 else 0)


def place_shards(out: Path, staging: Path) -> dict[str, dict[str, list[str]]]:
    """Link ``staging/<config>/<split>/*.parquet`` to ``data/<config>/<split>-XXXXX-of-YYYYY.parquet`` (after
    removing the shards an earlier output of ours listed). Returns config -> split -> files."""
    out = Path(out)
    plan: list[tuple[Path, str]] = []
    for config_dir in sorted(p for p in staging.iterdir() if p.is_dir()) if staging.exists() else []:
        for split_dir in sorted(p for p in config_dir.iterdir() if p.is_dir()):
            shards = sorted(split_dir.glob("*.parquet"), key=lambda p: _shard_key(p.name))
            for i, src in enumerate(shards):
                plan.append((src, f"data/{config_dir.name}/{split_dir.name}-{i:05d}-of-{len(shards):05d}.parquet"))
    old = _listed(read_manifest(out)) | set(_placing(out))
    (out / PLACING).write_text(json.dumps(sorted(old | {rel for _, rel in plan})), encoding="utf-8")
    for rel in old:  # only what we wrote
        (out / rel).unlink(missing_ok=True)
    files: dict[str, dict[str, list[str]]] = {}
    for src, rel in plan:
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, target)
        except OSError:
            shutil.copyfile(src, target)
        config, split = rel.split("/")[1], rel.split("/")[2].split("-")[0]
        files.setdefault(config, {}).setdefault(split, []).append(rel)
    for d in sorted((out / "data").glob("*"), reverse=True) if (out / "data").is_dir() else []:
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()  # a config of an earlier build that this one no longer has (we emptied it)
    return files


def counts(out: Path, files: dict[str, dict[str, list[str]]]) -> dict[str, dict[str, int]]:
    """config -> split -> rows, from the shards' footers."""
    return {c: {s: sum(pq.ParquetFile(Path(out) / f).metadata.num_rows for f in fs) for s, fs in sorted(splits.items())}
            for c, splits in sorted(files.items())}


@dataclass
class Finalized:
    files: dict[str, dict[str, list[str]]]
    checks: dict
    manifest: dict


def finalize(out: Path, staging: Path, *, kind: str, schema: pa.Schema, manifest: dict,
             text_column: str | None = "inputs", group_column: str | None = "source_id",
             checks: dict | None = None) -> Finalized:
    """Place the shards, check them (no row id twice, no source text or normalised ``text_column`` in two
    splits: a leak stops here with BuildError), and write ``build_manifest.json``: ``manifest`` plus tool,
    version, kind, schema, files, counts and the checks' figures.

    ``checks``: the figures a pipeline's own check stage computed over exactly these rows (the prompts build's
    ``builders.steps.verify``, in parallel); their row count must equal the shards' (from their footers).
    Without it the figures are computed here from the shards (``check_rows``)."""
    out = Path(out)
    files = place_shards(out, staging)
    data_files = [out / f for splits in files.values() for fs in splits.values() for f in fs]
    by_config_split = counts(out, files)
    if checks is None:
        checks = check_rows(data_files, text_column=text_column if text_column in schema.names else None,
                            group_column=group_column if group_column in schema.names else None)
    total = sum(n for splits in by_config_split.values() for n in splits.values())
    if checks["rows"] != total:
        raise BuildError(f"{out}: the checks saw {checks['rows']} rows but the shards hold {total} "
                         f"(a bug: please report it)")
    full = {"tool": TOOL, "version": __version__, "kind": kind, "fields": schema.names, **manifest,
            "files": files, "counts": {"total": checks["rows"], "by_config_split": by_config_split},
            "checks": checks}
    (out / MANIFEST).write_text(json.dumps(full, ensure_ascii=False, indent=1), encoding="utf-8")
    (out / PLACING).unlink(missing_ok=True)
    problems = leakage_problems(checks)
    if problems:
        raise BuildError(f"{out}: the built rows fail their checks: {'; '.join(problems)} (a bug: please report it)")
    return Finalized(files, checks, full)
