"""Fixtures of the translation tests: small English rows for the shared PromptSource templates, tiny random
MarianMT models with sentencepiece tokenizers trained here, and (in ``comet_env``) a pinned unbabel-comet venv
with a tiny random CometKiwi-shaped checkpoint that both comet and our port score."""

from __future__ import annotations

import json
import random
from functools import lru_cache
from pathlib import Path

import pytest

from tiny_models import SHARED_DATA, arabic_texts

PROMPTSOURCE = SHARED_DATA / "promptsource_templates" / "promptsource" / "templates"
NATURAL_INSTRUCTIONS = SHARED_DATA / "natural_instructions"

REVIEW = ("I watched this movie twice. The acting was superb, e.g. Mr. Brown's role in the 2nd act was moving. "
          "However, the ending felt rushed and the music was too loud.")
ARTICLE = ("The city council approved a $3.5 million budget on Monday. The plan funds 12 new parks and repairs "
           "roads in the U.S. district. Critics said the vote was rushed. See https://example.org/budget for details.")
PASSAGE = ("The Amazon is the largest rainforest on Earth. It covers 5.5 million square kilometres and spans nine "
           "countries. Scientists estimate it holds 390 billion trees.")

# Small English rows written for the shared PromptSource template files (their variables, real-looking values).
ROWS: dict[str, list[dict]] = {
    "imdb": [{"text": REVIEW, "label": 1}, {"text": "Dull and far too long. I fell asleep.", "label": 0}],
    "ag_news": [{"text": ARTICLE, "label": 0}, {"text": "The team won the final 3-1 after extra time.", "label": 1}],
    "emotion": [{"text": "i feel so happy that my sister is visiting", "label": 1},
                {"text": "i am scared of the dark", "label": 4}],
    "super_glue/boolq": [{"passage": PASSAGE, "question": "is the amazon the largest rainforest", "label": 1,
                          "idx": 0}],
    "super_glue/rte": [{"premise": "The council approved the budget on Monday.",
                        "hypothesis": "The budget was approved.", "label": 0, "idx": 0}],
    "glue/mrpc": [{"sentence1": "The vote was rushed, critics said.", "sentence2": "Critics said the vote was rushed.",
                   "label": 1, "idx": 0}],
    "anli": [{"premise": "The Amazon spans nine countries.", "hypothesis": "The Amazon is in one country.",
              "label": 2, "uid": "a1", "reason": ""}],
    "xnli/en": [{"premise": "He paid $3.50 for the ticket.", "hypothesis": "The ticket was free.", "label": 2}],
    "paws-x/en": [{"sentence1": "The park opened in 2020.", "sentence2": "In 2020 the park opened.", "label": 1,
                   "id": 1}],
    "amazon_reviews_multi/en": [{"review_body": "Works as described. Battery lasts 2 days.", "review_title": "Good value",
                                 "stars": 4, "product_category": "electronics", "language": "en",
                                 "review_id": "en_1", "product_id": "p1", "reviewer_id": "r1"}],
    "wiki_qa": [{"question": "how big is the amazon rainforest", "answer": PASSAGE.split(". ")[1] + ".",
                 "document_title": "Amazon rainforest", "label": 1, "question_id": "Q1"}],
    "xsum": [{"document": ARTICLE, "summary": "A city budget funds new parks.", "id": "1"}],
    "cnn_dailymail/3.0.0": [{"article": ARTICLE, "highlights": "Council approves $3.5m budget.\nCritics object.",
                             "id": "1"}],
    "squad": [{"context": PASSAGE, "question": "How many countries does the Amazon span?", "title": "Amazon",
               "id": "s1", "answers": {"text": ["nine"], "answer_start": [96]}}],
    "tweet_eval/emotion": [{"text": "What a great day at the beach!", "label": 1}],
    "tweet_eval/hate": [{"text": "I love my neighbours.", "label": 0}],
    "tweet_eval/irony": [{"text": "Great, another Monday. Just what I needed.", "label": 1}],
    "tweet_eval/sentiment": [{"text": "The service was slow but the food was fine.", "label": 1}],
    "tydiqa/primary_task": [{"question_text": "How big is the Amazon?", "document_title": "Amazon",
                             "language": "english", "document_plaintext": PASSAGE,
                             "annotations": {"passage_answer_candidate_index": [0], "minimal_answers_start_byte": [-1],
                                             "minimal_answers_end_byte": [-1], "yes_no_answer": ["NONE"]},
                             "passage_answer_candidates": {"plaintext_start_byte": [0], "plaintext_end_byte": [45]},
                             "document_url": "https://en.wikipedia.org/wiki/Amazon_rainforest"}],
    "tydiqa/secondary_task": [{"id": "t1", "title": "Amazon", "context": PASSAGE,
                               "question": "How many countries does the Amazon span?",
                               "answers": {"text": ["nine"], "answer_start": [96]}}],
}


def template_files() -> dict[str, Path]:
    """dataset name (``super_glue/boolq``) -> its shared ``templates.yaml``."""
    return {str(p.parent.relative_to(PROMPTSOURCE)): p for p in sorted(PROMPTSOURCE.rglob("templates.yaml"))}


@lru_cache(maxsize=1)
def _rendered() -> tuple:
    from builders.templates import TemplateError, load_templates

    out = []
    for name, path in template_files().items():
        for tpl in load_templates(path):
            for i, row in enumerate(ROWS.get(name, [])):
                try:
                    inputs, targets, choices = tpl.render(row)
                except TemplateError:
                    continue
                if inputs.strip():
                    out.append({"dataset": name, "template": tpl.name, "row": i, "inputs": inputs, "targets": targets,
                                "answer_choices": choices, "fixed_choices": tpl.fixed_choices is not None})
    return tuple(out)


def rendered_prompts() -> list[dict]:
    """Every shared PromptSource template over the rows above: dataset, template, inputs, targets, choices."""
    return [dict(p) for p in _rendered()]


def natural_instruction_texts() -> list[str]:
    """Definitions, examples and instance inputs/outputs of the shared Super-NaturalInstructions tasks."""
    texts = []
    for path in sorted(NATURAL_INSTRUCTIONS.glob("task*.json")):
        task = json.loads(path.read_text(encoding="utf-8"))
        definition = task["Definition"]
        texts += definition if isinstance(definition, list) else [definition]
        for ex in task.get("Positive Examples", []) + task.get("Negative Examples", []):
            texts += [ex["input"], str(ex["output"]), ex.get("explanation", "")]
        for inst in task["Instances"]:
            texts += [inst["input"], *map(str, inst["output"])]
    return [t for t in texts if t]


def english_texts() -> list[str]:
    return natural_instruction_texts() + [p["inputs"] for p in rendered_prompts()]


# ------------------------------------------------------------------------------------------ models


def _train_spm(texts: list[str], vocab_size: int) -> bytes:
    import io

    import sentencepiece as spm

    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_writer=proto, vocab_size=vocab_size,
                                   model_type="unigram", character_coverage=1.0, hard_vocab_limit=False,
                                   minloglevel=2, num_threads=1)
    return proto.getvalue()


def tiny_marian(out: Path, seed: int = 0, d_model: int = 32, layers: int = 1, vocab_size: int | None = None,
                ffn: int | None = None, heads: int = 2, spm_vocab: int = 300, init_std: float = 0.2):
    """A random MarianMTModel with a MarianTokenizer (source.spm on English text, target.spm on real Arabic,
    a shared vocab.json with ``>>ara<<``), saved to ``out`` as safetensors. ``vocab_size`` pads the vocabulary
    with unused pieces (the benchmark uses Opus-MT en-ar's 62,802)."""
    import sentencepiece as spm
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    src = _train_spm(english_texts(), spm_vocab)
    tgt = _train_spm(arabic_texts(2000), spm_vocab)
    (out / "source.spm").write_bytes(src)
    (out / "target.spm").write_bytes(tgt)
    vocab = {"</s>": 0, "<unk>": 1, ">>ara<<": 2}
    for proto in (src, tgt):
        sp = spm.SentencePieceProcessor(model_proto=proto)
        for i in range(sp.get_piece_size()):
            piece = sp.id_to_piece(i)
            if piece not in ("<unk>", "<s>", "</s>") and piece not in vocab:
                vocab[piece] = len(vocab)
    while vocab_size and len(vocab) < vocab_size - 1:
        vocab[f"▁unused{len(vocab)}"] = len(vocab)
    vocab["<pad>"] = len(vocab)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out / "tokenizer_config.json").write_text(json.dumps({"source_lang": "eng", "target_lang": "ara",
                                                           "tokenizer_class": "MarianTokenizer"}))
    tokenizer = MarianTokenizer.from_pretrained(str(out))
    pad = vocab["<pad>"]
    cfg = MarianConfig(vocab_size=len(vocab), decoder_vocab_size=len(vocab), d_model=d_model, encoder_layers=layers,
                       decoder_layers=layers, encoder_attention_heads=heads, decoder_attention_heads=heads,
                       encoder_ffn_dim=ffn or 2 * d_model, decoder_ffn_dim=ffn or 2 * d_model,
                       max_position_embeddings=512, pad_token_id=pad, eos_token_id=0, decoder_start_token_id=pad,
                       forced_eos_token_id=0, bad_words_ids=[[pad]], num_beams=4, max_length=512,
                       share_encoder_decoder_embeddings=True, scale_embedding=True, activation_function="swish")
    torch.manual_seed(seed)
    model = MarianMTModel(cfg)
    with torch.no_grad():  # a wider init than training's 0.02, or every input decodes to the same tokens
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, init_std)
        model.get_input_embeddings().weight[pad].zero_()  # Marian decodes from the zero <pad> embedding
    model.generation_config.bad_words_ids = [[pad]]
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def marian_dir(tmp_path_factory) -> Path:
    return tiny_marian(tmp_path_factory.mktemp("marian") / "tiny-opus-mt-en-ar")


@pytest.fixture(scope="session")
def ct2_dir(marian_dir, tmp_path_factory) -> Path:
    from builders.translate.mt import convert

    return convert(str(marian_dir), tmp_path_factory.mktemp("ct2") / "tiny-ct2", quantization="int8")


def shuffled(items: list, seed: int = 0) -> list:
    items = list(items)
    random.Random(seed).shuffle(items)
    return items


# ------------------------------------------------------------------------------ unbabel-comet venv

REPO = Path(__file__).resolve().parents[1]
COMET_SCRIPT = Path(__file__).resolve().parent / "comet_reference.py"
# unbabel-comet in a venv of its own (it pins numpy<2, transformers<5, huggingface-hub<1). Installed in three
# steps, as checked here: torch from the local CPU wheel first (so comet does not pull a CUDA build), then comet
# with the versions its resolver picked when this was written, then setuptools<70 on its own (torchmetrics
# 0.10.3 and comet's loader import pkg_resources, which newer setuptools dropped).
COMET_STEPS = (
    ("torch==2.13.0",),
    ("unbabel-comet==2.2.7", "transformers==4.57.6", "huggingface-hub==0.36.2", "numpy==1.26.4",
     "pytorch-lightning==2.6.6", "tokenizers==0.22.2", "protobuf==4.25.9", "entmax==1.3"),
    ("setuptools<70",),
)
# the reference checkpoints: comet's defaults for CometKiwi (sparsemax + layer norm), the 2.2.4+ `sparsemax_patch`
# hparams.yaml (softmax) with word-level training, and the XLM-R XL encoder of wmt23-cometkiwi-da-xl
COMET_MODELS = (
    {"name": "kiwi-sparsemax", "encoder_model": "XLM-RoBERTa", "layer_transformation": "sparsemax", "layer_norm": True},
    {"name": "kiwi-patch", "encoder_model": "XLM-RoBERTa", "layer_transformation": "sparsemax", "layer_norm": False,
     "yaml_layer_transformation": "sparsemax_patch", "word_level": True, "seed": 1},
    {"name": "kiwi-xl", "encoder_model": "XLM-RoBERTa-XL", "layer_transformation": "softmax", "layer_norm": True,
     "seed": 2},
)


def _digest(*parts) -> str:
    import hashlib
    import sys

    payload = json.dumps([sys.version_info[:2], *parts], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _locked_build(target: Path, make) -> Path:
    """Make ``target`` once with ``make(target)`` (in place: venvs and checkpoints hold absolute paths); later
    runs reuse it while its inputs' hash, which names it, matches. An unfinished one (no ``ok``) is made again."""
    import fcntl
    import shutil

    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "ok").exists():
            shutil.rmtree(target, ignore_errors=True)
            make(target)
            (target / "ok").write_text("")
    return target


def comet_venv() -> Path:
    """The pinned unbabel-comet venv under .cache/ (made once; reused while COMET_STEPS are unchanged)."""
    import subprocess
    import sys

    def make(tmp: Path) -> None:
        subprocess.run([sys.executable, "-m", "venv", str(tmp)], check=True)
        for step in COMET_STEPS:
            proc = subprocess.run([str(tmp / "bin" / "pip"), "install", "-q", *step], capture_output=True, text=True)
            if proc.returncode:
                raise RuntimeError(f"pip install {' '.join(step)} failed in the comet venv:\n{proc.stderr[-3000:]}")

    return _locked_build(REPO / ".cache" / f"comet-venv-{_digest(COMET_STEPS)}", make)


def comet_pairs() -> list[dict]:
    """(src, mt) pairs: real English text with real Arabic, one pair past 512 tokens, one of single words."""
    en, ar = english_texts(), arabic_texts(400)
    rng = random.Random(0)
    pairs = [{"src": rng.choice(en), "mt": rng.choice(ar)} for _ in range(40)]
    pairs.append({"src": " ".join(en[:40]), "mt": " ".join(ar[:60])})
    pairs.append({"src": "yes", "mt": "نعم"})
    return pairs


def run_comet(venv: Path, *args: str, timeout: int = 900) -> None:
    import os
    import subprocess

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONNOUSERSITE": "1"}
    proc = subprocess.run([str(venv / "bin" / "python"), str(COMET_SCRIPT), *args], capture_output=True, text=True,
                          env=env, timeout=timeout)
    if proc.returncode:
        raise RuntimeError(f"comet_reference.py {args[0]} failed:\n{proc.stderr[-4000:]}")


@pytest.fixture(scope="session")
def comet_reference() -> dict:
    return build_comet_reference()


def build_comet_reference() -> dict:
    """Tiny random CometKiwi-shaped checkpoints built by unbabel-comet itself and comet's own ``predict`` scores
    on ``comet_pairs()``: {"models": {name: folder}, "pairs": [...], "scores": {name: [...]}, "venv": path}.
    Cached under .cache/ by the hash of the venv, the script, the models and the texts."""
    venv = comet_venv()
    texts = english_texts() + arabic_texts(1500)
    pairs = comet_pairs()
    key = _digest(str(venv), COMET_SCRIPT.read_text(), COMET_MODELS, texts, pairs)

    def make(tmp: Path) -> None:
        tmp.mkdir(parents=True)
        spec = {"texts": texts, "out": str(tmp / "models"), "models": list(COMET_MODELS)}
        (tmp / "spec.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
        run_comet(venv, "build", str(tmp / "spec.json"))
        (tmp / "pairs.jsonl").write_text("\n".join(json.dumps(p, ensure_ascii=False) for p in pairs), encoding="utf-8")

    ref = _locked_build(REPO / ".cache" / f"comet-ref-{key}", make)
    models = {m["name"]: ref / "models" / m["name"] for m in COMET_MODELS}
    scores_path = ref / "scores.json"
    if not scores_path.exists():  # comet's own predict, once per cached reference
        run_comet(venv, "predict", str(ref / "pairs.jsonl"), str(ref / "scores.tmp"), *map(str, models.values()))
        (ref / "scores.tmp").rename(scores_path)
    raw = json.loads(scores_path.read_text())
    return {"models": models, "pairs": pairs, "venv": venv,
            "scores": {name: raw[str(path)]["scores"] for name, path in models.items()}}
