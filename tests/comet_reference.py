"""Runs INSIDE the pinned unbabel-comet venv (see ``translate_fixtures.comet_env``), never in the project venv.

    python comet_reference.py build   SPEC.json    # tiny random CometKiwi-shaped checkpoints, made with comet itself
    python comet_reference.py predict PAIRS.jsonl OUT.json MODEL... [--batch-size N]   # comet's own predict

``build`` makes, for each entry of SPEC (``{"texts": [...], "models": [{"name", "encoder_model",
"layer_transformation", "layer_norm", "yaml_layer_transformation"?}], "out": DIR}``): a tiny encoder folder (config,
and a Unigram tokenizer trained on ``texts`` with XLM-R's special tokens), a ``UnifiedMetric`` built by comet with
random weights (a wider init for the head and random layer weights, or every score comes out nearly the same),
saved in comet's checkpoint layout: ``hparams.yaml`` + ``checkpoints/model.ckpt`` (state_dict + hyper_parameters,
``pretrained_model`` pointing at the local encoder folder in both). ``predict`` loads each folder with comet's
``load_from_checkpoint`` and writes, per folder, the scores of ``model.predict`` and the seconds it took.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def _tokenizer(texts: list[str], out: Path, vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import XLMRobertaTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                           unk_token="<unk>"))
    tok.add_special_tokens(["<mask>"])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
    fast = XLMRobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                   cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")
    fast.save_pretrained(str(out))
    return fast


def build(spec_path: str) -> None:
    import torch
    import yaml
    from transformers import XLMRobertaConfig, XLMRobertaXLConfig

    from comet.models import UnifiedMetric

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    root = Path(spec["out"])
    for m in spec["models"]:
        folder = root / m["name"]
        enc = folder / "encoder"
        enc.mkdir(parents=True, exist_ok=True)
        tok = _tokenizer(spec["texts"], enc)
        cfg_cls = XLMRobertaXLConfig if m["encoder_model"] == "XLM-RoBERTa-XL" else XLMRobertaConfig
        cfg_cls(vocab_size=len(tok), hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
                max_position_embeddings=514, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, type_vocab_size=1).save_pretrained(str(enc))
        torch.manual_seed(m.get("seed", 0))
        model = UnifiedMetric(
            encoder_model=m["encoder_model"], pretrained_model=str(enc), load_pretrained_weights=False,
            layer_transformation=m["layer_transformation"], layer_norm=m["layer_norm"], hidden_sizes=[48, 24],
            activations="Tanh", input_segments=["mt", "src"], word_level_training=m.get("word_level", False),
            sent_layer="mix", word_layer=3, dropout=0.1, local_files_only=True)
        with torch.no_grad():  # wider than training's init, so that scores differ from pair to pair
            for name, p in model.encoder.model.named_parameters():
                if p.dim() > 1:
                    p.normal_(0.0, 0.2)
            model.encoder.model.embeddings.word_embeddings.weight[tok.pad_token_id].zero_()
            for p in model.estimator.parameters():
                p.normal_(0.0, 0.5)
            for p in model.layerwise_attention.scalar_parameters:  # distinct layer weights (sparsemax matters)
                p.normal_(0.0, 1.0)
            model.layerwise_attention.gamma.fill_(1.3)
        hparams = dict(model.hparams)
        (folder / "checkpoints").mkdir(exist_ok=True)
        torch.save({"state_dict": model.state_dict(), "hyper_parameters": hparams,
                    "pytorch-lightning_version": __import__("pytorch_lightning").__version__},
                   folder / "checkpoints" / "model.ckpt")
        on_disk = dict(hparams, class_identifier="unified_metric")
        if m.get("yaml_layer_transformation"):
            on_disk["layer_transformation"] = m["yaml_layer_transformation"]
        (folder / "hparams.yaml").write_text(yaml.safe_dump(on_disk))


def predict(pairs_path: str, out_path: str, model_dirs: list[str], batch_size: int = 16) -> None:
    from comet import load_from_checkpoint

    pairs = [json.loads(line) for line in Path(pairs_path).read_text(encoding="utf-8").splitlines() if line.strip()]
    data = [{"src": p["src"], "mt": p["mt"]} for p in pairs]
    results = {}
    for model_dir in model_dirs:
        model = load_from_checkpoint(str(Path(model_dir) / "checkpoints" / "model.ckpt"), local_files_only=True)
        start = time.perf_counter()
        out = model.predict(data, batch_size=batch_size, gpus=0, progress_bar=False, num_workers=0)
        results[model_dir] = {"scores": list(out.scores), "seconds": time.perf_counter() - start}
    Path(out_path).write_text(json.dumps(results), encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1] == "build":
        build(sys.argv[2])
    elif sys.argv[1] == "predict":
        args = sys.argv[2:]
        bs = 16
        if "--batch-size" in args:
            i = args.index("--batch-size")
            bs = int(args[i + 1])
            del args[i:i + 2]
        predict(args[0], args[1], args[2:], bs)
    else:
        raise SystemExit(__doc__)
