"""``arabic-prompts train``, ``push-adapter`` and ``merge`` (standard library only at import time)."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SFT_SCRIPT = REPO_ROOT / "training" / "sft.py"
DEFAULT_ACCELERATE_CONFIG = REPO_ROOT / "training" / "accelerate" / "single_gpu.yaml"


def launch_command(recipe: str, overrides: list[str], accelerate_config: str | None = None,
                   num_processes: int | None = None) -> list[str]:
    """``accelerate launch --config_file CFG training/sft.py RECIPE [overrides]``, as a list."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch",
           "--config_file", str(accelerate_config or DEFAULT_ACCELERATE_CONFIG)]
    if num_processes:
        cmd += ["--num_processes", str(num_processes)]
    return [*cmd, str(SFT_SCRIPT), str(recipe), *overrides]


def cmd_train(args) -> int:
    if not SFT_SCRIPT.is_file():
        raise ValueError(f"{SFT_SCRIPT} not found: `arabic-prompts train` runs from a checkout of the repository")
    if not Path(args.recipe).is_file():
        raise ValueError(f"recipe {args.recipe} not found")
    overrides = [a for a in args.overrides if a != "--"]
    cmd = launch_command(args.recipe, overrides, args.accelerate_config, args.num_processes)
    if args.dry_run:  # check the recipe here (TRL's parser, the launched script's checks) and stop
        from builders.training.config import parse_recipe

        parse_recipe(args.recipe, overrides)
        print("recipe OK; would run:\n" + shlex.join(cmd))
        return 0
    print("+ " + shlex.join(cmd), flush=True)
    return subprocess.run(cmd).returncode


def cmd_push_adapter(args) -> int:
    from builders.training.card import write_card
    from builders.training.publish import check_run, push_adapter

    if args.dry_run:
        files = check_run(Path(args.run_dir))
        readme = write_card(args.run_dir, args.repo, args.base_model, args.dataset)
        print(f"wrote {readme} (valid); would publish {', '.join(files)}, README.md to {args.repo}")
        return 0
    res = push_adapter(args.run_dir, args.repo, version=args.version, base_model=args.base_model,
                       datasets=args.dataset, endpoint=args.endpoint, private=args.private)
    what = "new commit" if res.created_commit else "no change, no new commit"
    tag = f"; tag {res.tag} {'created' if res.created_tag else 'already there'}" if res.tag else ""
    print(f"published {args.run_dir} to {res.repo_id} ({what}, {res.commit[:8] if res.commit else '?'}){tag}: "
          f"{', '.join(res.files)}")
    print(f'load it with: PeftModel.from_pretrained(base, "{res.repo_id}"'
          f'{", revision=" + repr(res.tag) if res.tag else ""})')
    return 0


def cmd_merge(args) -> int:
    from builders.training.merge import merge_adapter

    adapter = args.adapter
    if not Path(adapter).expanduser().exists() and adapter.count("/") == 1:  # a Hub adapter repo
        from huggingface_hub import snapshot_download

        adapter = snapshot_download(adapter, revision=args.revision, allow_patterns=["*.json", "*.safetensors",
                                                                                   "*.jinja", "*.txt", "*.model"])
    out = merge_adapter(args.base, adapter, args.out, dtype=args.dtype, trust_remote_code=args.trust_remote_code)
    print(f"merged {args.adapter} into its base model: {out}")
    return 0


def cmd_mix(args) -> int:
    from builders.training.mixture import MixConfig, mix

    res = mix(MixConfig(inputs=args.inputs, size=args.size, out=Path(args.out), seed=args.seed,
                        validation_size=args.validation_size, cap_per_task=args.cap_per_task,
                        translated_fraction=args.translated_fraction, benchmarks=args.benchmark or [],
                        max_contamination=args.max_contamination, drop_contaminated=args.drop_contaminated,
                        workers=args.workers, executor=args.executor))
    r = res.recipe
    print(f"\n{'task':34} {'train':>8} {'valid':>7}")
    for task, n in r["by_task"].items():
        print(f"{task:34} {n:>8} {r['by_split_task'].get('validation', {}).get(task, 0):>7}")
    print(f"\nwrote {res.out}: {r['size']} training + {r['validation_size']} validation rows (seed {r['seed']}); "
          f"left out: {', '.join(f'{k} {v}' for k, v in r['excluded'].items())}")
    print(f"train on it: arabic-prompts train training/recipes/tiny-cpu.yaml --datasets {res.out}")
    return 0


def add_cli(subparsers) -> None:
    x = subparsers.add_parser(
        "mix", help="sample a leak-free training mixture from built prompt datasets",
        description="Stratified by task (water-filling under --cap-per-task), native/translated balance, no row "
                    "whose source text or prompt is in any test split or benchmark, no eval_only entry; a 13-gram "
                    "contamination report, and a refusal above --max-contamination.")
    x.add_argument("--from", dest="inputs", action="append", required=True, metavar="DIR",
                   help="a built (or translated) prompt dataset folder, or a Hub id ORG/NAME[@REV]; repeatable")
    x.add_argument("--size", type=int, required=True, help="training rows (e.g. 800000)")
    x.add_argument("--seed", type=int, default=0)
    x.add_argument("--out", required=True, help="output folder (a Hub dataset layout)")
    x.add_argument("--validation-size", type=int, help="validation rows (default: max(50, size/100))")
    x.add_argument("--cap-per-task", type=int, help="at most N training rows per task")
    x.add_argument("--translated-fraction", type=float,
                   help="fraction of rows from translated inputs (default: pooled with the native ones)")
    x.add_argument("--benchmark", action="append", metavar="DIR",
                   help="a dataset folder of evaluation benchmarks to keep out and check against; repeatable")
    x.add_argument("--max-contamination", type=float, default=0.01,
                   help="refuse when more than this fraction of any held-out group's texts share a 13-gram with "
                        "the mixture (default: 0.01)")
    x.add_argument("--drop-contaminated", action="store_true",
                   help="leave out the mixture rows that share a 13-gram with held-out text (decontaminate), then "
                        "check again")
    x.add_argument("--workers", type=int, default=1)
    x.add_argument("--executor", choices=["local", "slurm", "ray"], default="local")
    x.set_defaults(func=cmd_mix)

    t = subparsers.add_parser(
        "train", help="LoRA fine-tuning from a recipe (accelerate launch training/sft.py RECIPE)",
        description="Runs `accelerate launch --config_file CFG training/sft.py RECIPE [--key value ...]`; any "
                    "recipe key can be overridden after RECIPE (e.g. --learning_rate 1e-4 --max_steps 100).")
    t.add_argument("--accelerate-config", metavar="FILE",
                   help="training/accelerate/{single_gpu,multi_gpu,deepspeed_zero3,fsdp}.yaml (default: single_gpu)")
    t.add_argument("--num-processes", type=int, help="processes (GPUs) to launch, overriding the accelerate config")
    t.add_argument("--dry-run", action="store_true", help="check the recipe and print the command, run nothing")
    t.add_argument("recipe", help="training/recipes/*.yaml")
    t.add_argument("overrides", nargs=argparse.REMAINDER, help="--key value pairs that override the recipe")
    t.set_defaults(func=cmd_train)

    p = subparsers.add_parser("push-adapter", help="publish a run's LoRA adapter with its model card")
    p.add_argument("run_dir", help="the run's output_dir (adapter_config.json, adapter_model.safetensors, ...)")
    p.add_argument("--repo", required=True, help="org/name of the Hub model repo")
    p.add_argument("--version", help="X.Y.Z: also tag vX.Y.Z (refused if that tag holds other content)")
    p.add_argument("--base-model", help="Hub id of the base model (default: the run's; needed when it was a folder)")
    p.add_argument("--dataset", action="append", help="Hub id of a training dataset for the card (repeatable)")
    p.add_argument("--endpoint", help="Hub endpoint (default: HF_ENDPOINT or huggingface.co)")
    p.add_argument("--private", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="write and validate the card, list the files; no upload")
    p.set_defaults(func=cmd_push_adapter)

    m = subparsers.add_parser("merge", help="merge a LoRA adapter into its base model (one safetensors folder)")
    m.add_argument("adapter", help="adapter folder (a run's output_dir) or Hub adapter repo")
    m.add_argument("--out", required=True, help="new output folder")
    m.add_argument("--base", help="base model id or folder (default: the adapter's base_model_name_or_path)")
    m.add_argument("--revision", help="revision of a Hub adapter repo")
    m.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    m.add_argument("--trust-remote-code", action="store_true",
                   help="allow the base model's own code (off by default; only for models you trust)")
    m.set_defaults(func=cmd_merge)
