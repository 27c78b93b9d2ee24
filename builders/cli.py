"""The ``arabic-prompts`` command line."""

from __future__ import annotations

import argparse
import importlib
import sys
from itertools import islice
from pathlib import Path

from builders import __version__

DEMO_DIR = Path(__file__).resolve().parent / "demo"
# Subcommand groups that live beside their code: each of these modules has ``add_cli(subparsers)`` and imports
# only the standard library at module level, so `arabic-prompts --help` works on a core install.
SUBCOMMAND_MODULES = (
    "builders.evaluate",
    "builders.training.cli",
    "builders.space_deploy",
    "builders.translate.cli",
    "builders.catalog_check",
    "builders.dialogues.cli",
)


def _pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    out = {}
    for value in values or []:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"{flag} expects NAME=PATH, got {value!r}")
        out[name.strip()] = path.strip()
    return out


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def cmd_build(args) -> int:
    from builders.pipeline import BuildConfig, build
    from builders.report import task_table

    local = _pairs(args.local, "--local")
    datasets = _csv(args.datasets) or (sorted(local) if local else None)
    slurm = {k: v for k, v in {"partition": args.slurm_partition, "time": args.slurm_time,
                               "cpus_per_task": args.cpus_per_task, "sbatch_args": None}.items() if v}
    ray = {"cpus_per_task": args.cpus_per_task} if args.cpus_per_task else {}
    cfg = BuildConfig(out=Path(args.out), datasets=datasets, local=local, catalog_dirs=args.catalog_dir or [],
                      override=args.override, workers=args.workers, executor=args.executor, limit=args.limit,
                      prompts_per_task=args.prompts_per_task, shard_size_mb=args.shard_size_mb, slurm=slurm, ray=ray)
    result = build(cfg)
    print(task_table(result.report))
    print(f"\nwrote {result.out} ({result.report['total']} prompts); load it with "
          f"builders.hub.load_built('{result.out}', '<task>')")
    return 0


def cmd_validate(args) -> int:
    from builders.hub import validate

    summary = validate(args.folder)
    c = summary["checks"]
    print(f"{args.folder}: valid ({summary['configs']} configs, {summary['rows']} rows)")
    print(f"  row ids: {c['rows']} unique")
    if c["source_texts"] is not None:
        print(f"  source texts (source_id): {c['source_texts']} checked, {c['source_texts_in_two_splits']} in two splits")
    if c["inputs_checked"] is not None:
        print(f"  normalised inputs: {c['inputs_checked']} checked, {c['inputs_in_two_splits']} in two splits")
    return 0


def cmd_publish(args) -> int:
    from builders.hub import publish

    res = publish(args.folder, args.repo, args.version, endpoint=args.endpoint, private=args.private)
    what = "new commit" if res.created_commit else "no change, no new commit"
    print(f"published {args.folder} to {res.repo_id} ({what}, {res.commit[:8] if res.commit else '?'}); "
          f"tag {res.tag} {'created' if res.created_tag else 'already there'}")
    print(f'load it with: load_dataset("{res.repo_id}", "<task>", revision="{res.tag}")')
    return 0


def cmd_catalog_list(args) -> int:
    from builders.catalog import load_catalog

    entries = load_catalog(args.catalog_dir or [], override=args.override)
    rows = [e for e in entries.values() if not args.task or e.task == args.task]
    print(f"{'name':38} {'task':32} {'family':18} {'tpl':>3}  hub_id")
    for e in rows:
        print(f"{e.name:38} {e.task:32} {e.task_family:18} {len(e.templates):>3}  {e.hub_id or '(local only)'}")
    from builders.catalog_check import catalog_counts

    print(f"\n{catalog_counts(rows).sentence()}")
    return 0


def cmd_templates_preview(args) -> int:
    from builders.catalog import load_catalog, select
    from builders.pipeline import map_record
    from builders.sources import read_source, uses_local_layout

    entry = select(load_catalog(args.catalog_dir or [], override=args.override), [args.name])[0]
    templates = entry.check_templates()
    local = _pairs(args.local, "--local").get(entry.name)
    shown = 0
    for split, i, record in islice(read_source(entry, local, None), 10_000):
        row, reason = map_record(entry, record, uses_local_layout(entry, local))
        if row is None:
            print(f"-- skipped row {split}:{i}: {reason}")
            continue
        for tpl in templates:
            inputs, targets, _ = tpl.render(row, f"{split}:{i}")
            print(f"== {entry.name} / {tpl.name}  (row {split}:{i})\n{inputs}\n-> {targets}\n")
        shown += 1
        if shown >= args.rows:
            break
    return 0


def cmd_demo(args) -> int:
    """Build the built-in sample, load every task back (current rows, not a stale cache), print the table."""
    from builders.hub import load_built
    from builders.pipeline import BuildConfig, build

    local = {p.stem: str(p) for p in sorted(DEMO_DIR.glob("*.jsonl"))}
    result = build(BuildConfig(out=Path(args.out), datasets=sorted(local), local=local, workers=args.workers))
    print(f"\nbuilt {result.out}; loading it back with datasets:\n")
    print(f"{'task':34} {'train':>6} {'valid':>6} {'test':>6}  example")
    for task in result.report["by_task_split"]:
        ds = load_built(result.out, task)
        n = {s: len(ds[s]) if s in ds else 0 for s in ("train", "validation", "test")}
        ex = ds["train"][0] if n["train"] else next(iter(ds.values()))[0]
        snippet = ex["inputs"].replace("\n", " ")[:60] + " -> " + ex["targets"].replace("\n", " ")[:30]
        print(f"{task:34} {n['train']:>6} {n['validation']:>6} {n['test']:>6}  {snippet}")
    print(f"\n{result.report['total']} prompts in {len(result.report['by_task_split'])} tasks")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="arabic-prompts", description="Build, publish and evaluate Arabic prompt datasets.")
    p.add_argument("--version", action="version", version=f"arabic-prompts {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="render catalog datasets into a Hub dataset folder")
    b.add_argument("--datasets", help="comma-separated catalog names (default: all, or those given with --local)")
    b.add_argument("--local", action="append", metavar="NAME=PATH", help="read NAME from a local file or folder")
    b.add_argument("--out", required=True, help="output folder (a Hub dataset repo layout)")
    b.add_argument("--workers", type=int, default=1, help="parallel workers (datatrove tasks run at once)")
    b.add_argument("--executor", choices=["local", "slurm", "ray"], default="local")
    b.add_argument("--limit", type=int, help="at most N source rows per source split (quick builds)")
    b.add_argument("--catalog-dir", action="append", help="extra DIR with catalog/ and templates/ (repeatable)")
    b.add_argument("--override", action="store_true",
                   help="let a --catalog-dir entry replace a package entry of the same name (else an error)")
    b.add_argument("--prompts-per-task", type=int, default=200_000, help="prompts per datatrove task (bounds memory)")
    b.add_argument("--shard-size-mb", type=int, default=256, help="max parquet shard size")
    b.add_argument("--slurm-partition", help="Slurm partition (--executor slurm)")
    b.add_argument("--slurm-time", help="Slurm time limit, e.g. 12:00:00 (--executor slurm)")
    b.add_argument("--cpus-per-task", type=int, help="CPUs per task (--executor slurm|ray)")
    b.set_defaults(func=cmd_build)

    v = sub.add_parser("validate", help="check a built folder (schema, configs, counts vs manifest)")
    v.add_argument("folder")
    v.set_defaults(func=cmd_validate)

    pub = sub.add_parser("publish", help="validate, upload to the Hub and tag vX.Y.Z")
    pub.add_argument("folder")
    pub.add_argument("--repo", required=True, help="org/name of the Hub dataset repo")
    pub.add_argument("--version", required=True, help="X.Y.Z; the Hub tag is vX.Y.Z")
    pub.add_argument("--endpoint", help="Hub endpoint (default: HF_ENDPOINT or huggingface.co)")
    pub.add_argument("--private", action="store_true")
    pub.set_defaults(func=cmd_publish)

    c = sub.add_parser("catalog", help="the source catalog")
    csub = c.add_subparsers(dest="catalog_command", required=True)
    c.subcommands = csub  # modules add catalog sub-commands here (builders.catalog_check: `catalog check`)
    cl = csub.add_parser("list", help="list catalog entries")
    cl.add_argument("--catalog-dir", action="append")
    cl.add_argument("--override", action="store_true", help="a --catalog-dir entry may replace a package entry")
    cl.add_argument("--task", help="only this task")
    cl.set_defaults(func=cmd_catalog_list)

    t = sub.add_parser("templates", help="prompt templates")
    tsub = t.add_subparsers(dest="templates_command", required=True)
    tp = tsub.add_parser("preview", help="render a few rows with every template of a dataset")
    tp.add_argument("name")
    tp.add_argument("--local", action="append", metavar="NAME=PATH")
    tp.add_argument("--rows", type=int, default=2)
    tp.add_argument("--catalog-dir", action="append")
    tp.add_argument("--override", action="store_true", help="a --catalog-dir entry may replace a package entry")
    tp.set_defaults(func=cmd_templates_preview)

    d = sub.add_parser("demo", help="build the built-in sample and load it back")
    d.add_argument("--out", default="out/demo")
    d.add_argument("--workers", type=int, default=2)
    d.set_defaults(func=cmd_demo)

    for module in SUBCOMMAND_MODULES:  # each module registers its own subcommands (heavy imports stay inside them)
        importlib.import_module(module).add_cli(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from builders.catalog import CatalogError
    from builders.hub import ValidationError
    from builders.pipeline import BuildError
    from builders.sources import SourceError
    from builders.templates import TemplateError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CatalogError, TemplateError, SourceError, BuildError, ValidationError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
