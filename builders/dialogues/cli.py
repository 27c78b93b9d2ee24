"""`arabic-prompts dialogues ...`: generate, preview, grid, evaluate, raven, human-eval. Standard library only at
module level (heavy imports inside the commands), so `arabic-prompts --help` stays fast on a core install."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def cmd_generate(args) -> int:
    from builders.dialogues.filters import FilterConfig
    from builders.dialogues.generate import GenerateConfig, generate
    from builders.dialogues.steps import BackendSpec

    sampling = {k: v for k, v in {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature,
                                  "top_p": args.top_p, "repetition_penalty": args.repetition_penalty}.items()
                if v is not None}
    if args.backend == "openai":
        options = {"base_url": args.base_url, "mode": args.openai_mode, "api_key_env": args.api_key_env,
                   "concurrency": args.concurrency}
    elif args.backend == "transformers":
        options = {k: v for k, v in {"device": args.device, "dtype": args.dtype, "revision": args.revision}.items() if v}
    else:
        options = {k: v for k, v in {"tensor_parallel_size": args.tensor_parallel_size, "revision": args.revision}.items()
                   if v}
    spec = BackendSpec(kind=args.backend, model=args.model, trust_remote_code=args.trust_remote_code,
                       prompt_format=args.prompt_format, sampling=sampling, options=options)
    filters = FilterConfig(min_arabic_ratio=args.min_arabic_ratio, min_words=args.min_words, max_words=args.max_words,
                           min_turn_words=args.min_turn_words, max_turn_words=args.max_turn_words)
    slurm = {k: v for k, v in {"partition": args.slurm_partition, "time": args.slurm_time,
                               "cpus_per_task": args.cpus_per_task}.items() if v}
    cfg = GenerateConfig(out=Path(args.out), backend=spec, num_turns=args.turns, per_cell=args.per_cell, seed=args.seed,
                         topics=_csv(args.topics), countries=_csv(args.countries), max_cells=args.max_cells,
                         max_retries=args.max_retries, batch_size=args.batch_size, cells_per_task=args.cells_per_task,
                         validation_fraction=args.validation_fraction, test_fraction=args.test_fraction,
                         filters=filters, prompt_file=args.prompt_file, license=args.license, workers=args.workers,
                         executor=args.executor, slurm=slurm)
    rep = generate(cfg).report
    print(f"\n{rep['cells']} cells: {rep['kept']} conversations kept ({', '.join(f'{s} {n}' for s, n in rep['by_split'].items())}), "
          f"{rep['rejected']} rejected")
    for reason, n in rep["rejected_by_stage_reason"].items():
        print(f"  {n:>6}  {reason}")
    print(f"wrote {cfg.out}; check it with `arabic-prompts validate {cfg.out}`, load it with "
          f"builders.hub.load_built('{cfg.out}')")
    return 0


def cmd_preview(args) -> int:
    from builders.dialogues.formats import get_format
    from builders.dialogues.grid import make_cells
    from builders.dialogues.prompt import DialoguePrompt

    prompt = DialoguePrompt.load(args.prompt_file)
    cell = make_cells(1, args.seed, [args.topic], [args.country])[0]
    text = prompt.render(cell, args.turns)
    if args.prompt_format != "none":
        text = get_format(args.prompt_format).wrap(text)
    print(f"== {prompt.prompt_version}: {cell.topic.name_en} / {cell.country.name_en} "
          f"({cell.country.dialect_en}), seed {cell.seed}\n{text}")
    return 0


def cmd_grid(args) -> int:
    from builders.dialogues.grid import load_countries, load_topics

    topics, countries = load_topics(), load_countries()
    if args.what in ("topics", "all"):
        for t in topics:
            print(f"{t.key:26} {t.name_en:36} {t.name_ar}")
    if args.what in ("countries", "all"):
        for c in countries:
            print(f"{c.key:24} {c.iso2}  {c.name_en:34} {c.name_ar:28} {c.dialect_code}  {c.dialect_en}")
    print(f"\n{len(topics)} topics x {len(countries)} countries = {len(topics) * len(countries)} cells")
    return 0


def cmd_evaluate(args) -> int:
    from builders.dialogues.evaluation import evaluate, markdown

    res = evaluate(args.model, args.heldout, args.out, train=args.train, index=args.index, generate=args.generate,
                   max_length=args.max_length, stride=args.stride, batch_size=args.batch_size,
                   max_new_tokens=args.max_new_tokens, seed=args.seed, trust_remote_code=args.trust_remote_code,
                   device=args.device, dtype=args.dtype, heldout_split=args.heldout_split, train_split=args.train_split)
    print(markdown(res))
    print(f"wrote {Path(args.out) / 'evaluation.json'}")
    return 0


def _lines(path: str) -> list[list[str]]:
    return [line.split() for line in Path(path).read_text(encoding="utf-8").splitlines()]


def cmd_raven(args) -> int:
    import tempfile

    from builders.dialogues.ngram_index import NgramIndex, build_index_from_files
    from builders.dialogues.raven import raven_report

    generations = _lines(args.generated)
    prompts = _lines(args.prompts) if args.prompts else None
    tmp = None
    if args.index and (Path(args.index) / "meta.json").exists():
        index = NgramIndex(args.index)
        if index.meta.eos != args.eos or index.meta.cross_lines != (not args.no_cross_lines) or index.max_n < args.max_n:
            raise ValueError(f"{args.index} was built with eos={index.meta.eos!r}, cross_lines={index.meta.cross_lines},"
                             f" max_n={index.max_n}: rebuild it or use matching options")
    elif args.train:
        folder = args.index or (tmp := tempfile.mkdtemp(prefix="raven-index-"))
        index = build_index_from_files([args.train], folder, max_n=args.max_n, num_shards=args.shards, eos=args.eos,
                                       cross_lines=not args.no_cross_lines, progress=not args.json)
    else:
        raise ValueError("give --train TRAIN.txt (or --index DIR of an index built before)")
    report = raven_report(generations, index, prompts, max_n=args.max_n)
    if tmp:
        import shutil

        index.close()
        shutil.rmtree(tmp)
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
        return 0
    print(f"{report['generations']} generations, {report['tokens']} tokens; novelty (proportion of novel n-grams):")
    print("n     " + " ".join(f"{n:>6}" for n in range(1, args.max_n + 1)))
    for source in ("training", "context", "training_and_context"):
        nov = report[source]["novelty"]
        print(f"{source[:5]:5} " + " ".join(f"{nov[str(n)]:6.3f}" if nov[str(n)] is not None else "   n/a"
                                            for n in range(1, args.max_n + 1))
              + f"   pointwise(t5) {report[source]['pointwise_truncated5']:.3f}")
    print(f"RAVEN = {report['raven']:.4f} ({report['raven_definition']})")
    return 0


def cmd_human_export(args) -> int:
    from builders.dialogues.human_eval import export

    models = {}
    for spec in args.model:
        label, sep, path = spec.partition("=")
        if not sep:
            raise ValueError(f"--model expects LABEL=FILE, got {spec!r}")
        models[label] = path
    files = export(models, args.out, per_model=args.per_model, seed=args.seed, raters=args.raters)
    for name, path in files.items():
        print(f"{name:8} {path}")
    return 0


def cmd_human_agreement(args) -> int:
    from builders.dialogues.human_eval import agreement, markdown, plot, read_argilla_responses, read_key, read_sheet

    if args.argilla:
        r1, r2 = read_argilla_responses(args.argilla)
    elif args.sheets and len(args.sheets) == 2:
        r1, r2 = read_sheet(args.sheets[0]), read_sheet(args.sheets[1])
    else:
        raise ValueError("give --sheets RATER1.csv RATER2.csv, or --argilla records.json")
    result = agreement(r1, r2, read_key(args.key) if args.key else None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "agreement.json").write_text(json.dumps(result.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8")
    (out / "agreement.md").write_text(markdown(result), encoding="utf-8")
    chart = plot(result, out / "agreement.png")
    print(markdown(result))
    print(f"wrote {out / 'agreement.json'}" + (f", {chart}" if chart else ""))
    return 0


def add_cli(subparsers) -> None:
    d = subparsers.add_parser("dialogues", help="synthetic Arabic multi-turn dialogues: generate, evaluate, RAVEN, "
                                                "human evaluation")
    dsub = d.add_subparsers(dest="dialogues_command", required=True)

    g = dsub.add_parser("generate", help="prompt an Arabic LLM over the topic x country grid")
    g.add_argument("--out", required=True, help="output folder")
    g.add_argument("--backend", choices=["transformers", "vllm", "openai"], default="transformers")
    g.add_argument("--model", default="inceptionai/jais-13b-chat", help="generator (Hub id or local folder)")
    g.add_argument("--trust-remote-code", action="store_true",
                   help="run the model's own code (off by default; Jais needs it with --backend transformers)")
    g.add_argument("--prompt-format", default="auto", choices=["auto", "jais", "chat_template", "plain"])
    g.add_argument("--revision", help="model revision")
    g.add_argument("--device", help="transformers device (default: cuda if available)")
    g.add_argument("--dtype", choices=["auto", "bfloat16", "float16", "float32"])
    g.add_argument("--tensor-parallel-size", type=int, help="vLLM tensor parallelism")
    g.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1")
    g.add_argument("--openai-mode", choices=["chat", "completions"], default="chat")
    g.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    g.add_argument("--concurrency", type=int, default=8, help="requests at once (openai backend)")
    g.add_argument("--turns", type=int, default=6, help="turns per conversation (user and assistant messages)")
    g.add_argument("--per-cell", type=int, default=1, help="conversations per (topic, country) cell")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--topics", help="comma-separated topic keys (default: all 93)")
    g.add_argument("--countries", help="comma-separated country keys (default: all 151)")
    g.add_argument("--max-cells", type=int, help="a seeded random sample of this many (topic, country) cells")
    g.add_argument("--max-retries", type=int, default=2, help="new tries for an invalid conversation")
    g.add_argument("--batch-size", type=int, default=8)
    g.add_argument("--cells-per-task", type=int, default=256, help="cells per datatrove task (the unit of resuming)")
    g.add_argument("--max-new-tokens", type=int)
    g.add_argument("--temperature", type=float)
    g.add_argument("--top-p", type=float)
    g.add_argument("--repetition-penalty", type=float)
    g.add_argument("--min-arabic-ratio", type=float, default=0.7, help="per turn: Arabic-script share of letters")
    g.add_argument("--min-words", type=int, default=20)
    g.add_argument("--max-words", type=int, default=3000)
    g.add_argument("--min-turn-words", type=int, default=2)
    g.add_argument("--max-turn-words", type=int, default=400)
    g.add_argument("--validation-fraction", type=float, default=0.05, help="share of cells in validation")
    g.add_argument("--test-fraction", type=float, default=0.1, help="share of cells in test")
    g.add_argument("--license", default="apache-2.0", help="license of the generated text (the card's license)")
    g.add_argument("--prompt-file", help="another dialogue prompt YAML (default: the built-in one)")
    g.add_argument("--workers", type=int, default=1)
    g.add_argument("--executor", choices=["local", "slurm", "ray"], default="local")
    g.add_argument("--slurm-partition")
    g.add_argument("--slurm-time")
    g.add_argument("--cpus-per-task", type=int)
    g.set_defaults(func=cmd_generate)

    p = dsub.add_parser("preview", help="the generation prompt of one cell")
    p.add_argument("--topic", default="cooking")
    p.add_argument("--country", default="egypt")
    p.add_argument("--turns", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prompt-format", default="none", choices=["none", "jais", "plain"])
    p.add_argument("--prompt-file")
    p.set_defaults(func=cmd_preview)

    gr = dsub.add_parser("grid", help="list the topics and countries")
    gr.add_argument("what", nargs="?", choices=["topics", "countries", "all"], default="all")
    gr.set_defaults(func=cmd_grid)

    e = dsub.add_parser("evaluate", help="perplexity, bits-per-byte and RAVEN of models on held-out conversations")
    e.add_argument("--model", action="append", required=True, help="model id or folder (repeatable)")
    e.add_argument("--heldout", required=True, help="held-out conversations (.jsonl/.parquet or a dialogue folder)")
    e.add_argument("--out", required=True)
    e.add_argument("--heldout-split", help="only this split of --heldout (e.g. test, for a dialogue folder)")
    e.add_argument("--train", help="training conversations (for RAVEN)")
    e.add_argument("--train-split", help="only this split of --train (e.g. train, for a dialogue folder)")
    e.add_argument("--index", help="n-gram index folder (built from --train if missing)")
    e.add_argument("--generate", type=int, default=0, help="held-out conversations whose last reply each model writes")
    e.add_argument("--max-length", type=int, help="perplexity window (default: the model's context, at most 4096)")
    e.add_argument("--stride", type=int, help="perplexity stride (default: half the window)")
    e.add_argument("--batch-size", type=int, default=8)
    e.add_argument("--max-new-tokens", type=int, default=256)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--device")
    e.add_argument("--dtype", choices=["auto", "bfloat16", "float16", "float32"], default="auto")
    e.add_argument("--trust-remote-code", action="store_true", help="run the model's own code (off by default)")
    e.set_defaults(func=cmd_evaluate)

    r = dsub.add_parser("raven", help="RAVEN n-gram novelty of generated text against training text (plain files)",
                        description="Files hold one text per line, tokens separated by whitespace (as RAVEN's "
                                    "reference code expects). Prints novelty for n=1..max_n and the truncated-5 "
                                    "pointwise score against the training text, the context, and both.")
    r.add_argument("--train", help="training text, one text per line")
    r.add_argument("--generated", required=True, help="generated texts, one per line")
    r.add_argument("--prompts", help="the prompt of each generated text, one per line (same order)")
    r.add_argument("--max-n", type=int, default=10)
    r.add_argument("--eos", help="token appended to every training line (the reference's --eos)")
    r.add_argument("--no-cross-lines", action="store_true", help="no n-gram spans two training lines")
    r.add_argument("--index", help="index folder: reused if built, else built here from --train")
    r.add_argument("--shards", type=int, default=16)
    r.add_argument("--json", action="store_true", help="print the report as one JSON object")
    r.set_defaults(func=cmd_raven)

    h = dsub.add_parser("human-eval", help="two-rater human evaluation: export sheets, measure agreement")
    hsub = h.add_subparsers(dest="human_eval_command", required=True)
    he = hsub.add_parser("export", help="rating sheets (CSV per rater), a key file and an Argilla dataset folder")
    he.add_argument("--model", action="append", required=True, metavar="LABEL=FILE",
                    help="conversations of one model (repeatable)")
    he.add_argument("--out", required=True)
    he.add_argument("--per-model", type=int, default=50)
    he.add_argument("--raters", type=int, default=2)
    he.add_argument("--seed", type=int, default=0)
    he.set_defaults(func=cmd_human_export)
    ha = hsub.add_parser("agreement", help="Cohen's kappa, Spearman rho, mean scores and a chart")
    ha.add_argument("--sheets", nargs=2, metavar="CSV", help="the two filled rater sheets")
    ha.add_argument("--argilla", help="an Argilla records.json export with the two raters' responses")
    ha.add_argument("--key", help="items.csv from export (to report means per model)")
    ha.add_argument("--out", required=True)
    ha.set_defaults(func=cmd_human_agreement)


def main(argv: list[str] | None = None) -> int:
    """`python -m builders.dialogues.cli generate ...` (same as `arabic-prompts dialogues generate ...`)."""
    from builders.cli import main as cli_main

    return cli_main(["dialogues", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
