"""``arabic-prompts translate ...``: the translation subcommands. Standard library only at module level."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def cmd_convert(args) -> int:
    from builders.translate.mt import convert

    quant = None if args.quantization == "none" else args.quantization
    out = convert(args.mt_model, args.out, quantization=quant, revision=args.revision, force=args.force)
    print(f"wrote the CTranslate2 model ({args.quantization}) to {out}; use it with --mt-backend ctranslate2 "
          f"--mt-model {out}")
    return 0


def _read_pairs(path: Path) -> list[dict]:
    from builders.sources import json_lines

    pairs = []
    with open(path, encoding="utf-8") as f:
        for n, row, error in json_lines(f):
            if error:
                raise ValueError(f"{path}, line {n}: invalid JSON ({error})")
            if not isinstance(row, dict) or not isinstance(row.get("src"), str) or not isinstance(row.get("mt"), str):
                raise ValueError(f"{path}, line {n}: expected an object with string fields 'src' and 'mt'")
            pairs.append(row)
    return pairs


def cmd_score(args) -> int:
    from builders.translate.qe import QEOptions, load_qe

    pairs = _read_pairs(Path(args.pairs))
    if not pairs:
        raise ValueError(f"{args.pairs}: no pairs")
    qe = load_qe(args.qe_model, device=args.device, encoder=args.encoder,
                 options=QEOptions(batch_size=args.batch_size, precision=args.precision))
    scores = qe.score([p["src"] for p in pairs], [p["mt"] for p in pairs])
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout
    try:
        for row, score in zip(pairs, scores):
            out.write(json.dumps({**row, "score": score}, ensure_ascii=False) + "\n")
    finally:
        if args.out:
            out.close()
    mean = sum(scores) / len(scores)
    print(f"{len(scores)} pairs, mean score {mean:.4f} ({qe.model_id})", file=sys.stderr if not args.out else sys.stdout)
    return 0


def _pairs(values: list[str] | None) -> dict[str, str]:
    out = {}
    for value in values or []:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--local expects NAME=PATH, got {value!r}")
        out[name.strip()] = path.strip()
    return out


def cmd_run(args) -> int:
    if not args.out:
        raise SystemExit("arabic-prompts translate: give --out DIR (or a subcommand: convert, score, review-export, "
                         "review-import)")
    from builders.translate.english import EnglishSources
    from builders.translate.pipeline import TranslateConfig, translate

    names = [s.strip() for s in (args.sources or "").split(",") if s.strip()]
    sources = EnglishSources(promptsource=names, promptsource_dir=args.promptsource, local=_pairs(args.local),
                             xp3=args.xp3, natural_instructions=args.natural_instructions, limit=args.limit)
    slurm = {k: v for k, v in {"partition": args.slurm_partition, "time": args.slurm_time,
                               "cpus_per_task": args.cpus_per_task}.items() if v}
    cfg = TranslateConfig(out=Path(args.out), sources=sources, mt_model=args.mt_model, mt_backend=args.mt_backend,
                          qe_model=args.qe_model, qe_encoder=args.qe_encoder, threshold=args.threshold,
                          device=args.device, workers=args.workers, executor=args.executor, slurm=slurm,
                          cache_dir=args.cache_dir or _default_cache(), prompts_per_task=args.prompts_per_task,
                          beam_size=args.beam_size, max_length=args.max_length, mt_precision=args.mt_precision,
                          qe_batch_size=args.qe_batch_size, qe_precision=args.qe_precision)
    res = translate(cfg)
    r = res.report
    print(f"{r['prompts']} prompts: {r['kept']} kept, {r['rejected']} rejected (threshold {r['threshold']}); "
          f"{r['segments']} segments, {r['unique_segments']} unique; MT cache {r['mt_cache']['hits']} hits / "
          f"{r['mt_cache']['misses']} misses, QE cache {r['qe_cache']['hits']} hits / {r['qe_cache']['misses']} misses")
    print(f"wrote {res.out} (report: translate_report.json, histogram: qe_min_histogram.png); check it with "
          f"`arabic-prompts validate {res.out}`")
    return 0


def _default_cache() -> str:
    from builders.translate.pipeline import default_cache_dir

    return default_cache_dir()


def cmd_review_export(args) -> int:
    from builders.translate.review import export_sample

    counts = export_sample(args.out, args.dest, args.per_source, seed=args.seed)
    print(f"wrote {sum(counts.values())} rows from {len(counts)} sources to {args.dest}/review.csv and "
          f"{args.dest}/review_dataset/; fill in corrected_inputs / corrected_targets, then run "
          f"`arabic-prompts translate review-import --out {args.out} --file {args.dest}/review.csv`")
    return 0


def cmd_review_import(args) -> int:
    from builders.translate.review import import_corrections

    n = import_corrections(args.out, args.file, reviewer=args.reviewer or "")
    print(f"recorded {n} corrections in {args.out}/corrections.jsonl; the next `arabic-prompts translate "
          f"--out {args.out} ...` applies them")
    return 0


def add_cli(subparsers) -> None:
    t = subparsers.add_parser("translate", help="translate English prompt collections into Arabic, with QE")
    t.add_argument("--out", help="output folder (a Hub dataset repo layout)")
    t.add_argument("--sources", help="English catalog entries rendered with PromptSource templates, comma-separated "
                                     "(builders/translate/catalog_en: en_imdb, en_super_glue_rte, en_ag_news)")
    t.add_argument("--promptsource", help="PromptSource's promptsource/templates folder (for --sources)")
    t.add_argument("--local", action="append", metavar="NAME=PATH", help="read an English entry from local files")
    t.add_argument("--xp3", help="xP3 English: 'hub' (bigscience/xP3 en/*.jsonl) or a local .jsonl file/folder")
    t.add_argument("--natural-instructions", help="Super-NaturalInstructions: 'hub' (Muennighoff/natural-instructions),"
                                                  " a folder of task*.json files, or a .jsonl export")
    t.add_argument("--limit", type=int, help="at most N rows per source (quick runs)")
    t.add_argument("--mt-model", default="Helsinki-NLP/opus-mt-en-ar", help="Hub id or local folder (MarianMT, or a "
                                                                          "CTranslate2 folder for --mt-backend ctranslate2)")
    t.add_argument("--mt-backend", default="transformers", choices=["transformers", "ctranslate2"])
    t.add_argument("--mt-precision", help="transformers: float32|float16|bfloat16; ctranslate2: int8|float16|...")
    t.add_argument("--beam-size", type=int, default=4)
    t.add_argument("--max-length", type=int, default=256, help="generated tokens per segment at most")
    t.add_argument("--qe-model", default="Unbabel/wmt22-cometkiwi-da",
                   help="Hub id (or Unbabel/wmt23-cometkiwi-da-xl) or a folder in comet's checkpoint layout")
    t.add_argument("--qe-encoder", help="a local copy of the QE checkpoint's pretrained_model (tokenizer + config)")
    t.add_argument("--qe-batch-size", type=int, default=16)
    t.add_argument("--qe-precision", default="float32", choices=["float32", "float16", "bfloat16"])
    t.add_argument("--threshold", type=float, default=0.7, help="keep a prompt only if every segment scores >= this")
    t.add_argument("--workers", type=int, default=1)
    t.add_argument("--device", default="cpu", help="cpu | cuda")
    t.add_argument("--executor", choices=["local", "slurm", "ray"], default="local")
    t.add_argument("--slurm-partition")
    t.add_argument("--slurm-time")
    t.add_argument("--cpus-per-task", type=int)
    t.add_argument("--cache-dir", help="translation and QE caches (default: $ARABIC_PROMPTS_CACHE/translate or "
                                       "~/.cache/arabic-prompts/translate)")
    t.add_argument("--prompts-per-task", type=int, default=20_000, help="prompts per datatrove task")
    t.set_defaults(func=cmd_run)
    tsub = t.add_subparsers(dest="translate_command")

    c = tsub.add_parser("convert", help="convert a MarianMT model into a CTranslate2 model")
    c.add_argument("--mt-model", required=True, help="Hub id or local folder of a MarianMT model")
    c.add_argument("--out", required=True, help="output folder")
    c.add_argument("--quantization", default="int8", choices=["int8", "int8_float16", "float16", "bfloat16", "none"],
                   help="weights type (int8 for CPU; float16 for GPU; none keeps float32)")
    c.add_argument("--revision", help="Hub revision of --mt-model")
    c.add_argument("--force", action="store_true", help="overwrite --out")
    c.set_defaults(func=cmd_convert)

    s = tsub.add_parser("score", help="CometKiwi scores for your own (src, mt) pairs")
    s.add_argument("--qe-model", default="Unbabel/wmt22-cometkiwi-da",
                   help="Hub id or a folder in comet's layout (checkpoints/model.ckpt + hparams.yaml)")
    s.add_argument("--pairs", required=True, help="JSON lines with 'src' and 'mt'")
    s.add_argument("--out", help="write each line back with its 'score' (default: stdout)")
    s.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    s.add_argument("--batch-size", type=int, default=16)
    s.add_argument("--precision", default="float32", choices=["float32", "float16", "bfloat16"])
    s.add_argument("--encoder", help="a local copy of the checkpoint's pretrained_model (tokenizer + config)")
    s.set_defaults(func=cmd_score)

    e = tsub.add_parser("review-export", help="a stratified sample of a translated folder for people to check")
    e.add_argument("--out", required=True, help="the translated folder")
    e.add_argument("--per-source", type=int, default=50, help="rows per source (collection/dataset)")
    e.add_argument("--dest", required=True, help="where review.csv and review_dataset/ go")
    e.add_argument("--seed", type=int, default=0)
    e.set_defaults(func=cmd_review_export)

    i = tsub.add_parser("review-import", help="record the corrections of a filled-in review.csv")
    i.add_argument("--out", required=True, help="the translated folder the sample came from")
    i.add_argument("--file", required=True, help="the filled-in review.csv")
    i.add_argument("--reviewer", help="who corrected (recorded with each correction)")
    i.set_defaults(func=cmd_review_import)

