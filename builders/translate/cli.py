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
    pairs = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}, line {n}: invalid JSON ({e.msg})") from e
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


def add_cli(subparsers) -> None:
    t = subparsers.add_parser("translate", help="translate English prompt collections into Arabic, with QE")
    tsub = t.add_subparsers(dest="translate_command", required=True)

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

