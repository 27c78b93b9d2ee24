"""`arabic-prompts dialogues evaluate`: models fine-tuned on the dialogues, scored on held-out conversations.

Per model: sliding-window perplexity and bits-per-byte of the held-out conversations (``perplexity.py``), and, with
``--generate N``, RAVEN novelty (``raven.py``) of the model's own replies: for N held-out conversations the model
writes the last assistant turn after the turns before it, and the reply is scored against the training
conversations (an n-gram index, built once and reused) with the earlier turns as the prompt. RAVEN works on
whitespace tokens of the conversations in the ``label: content`` format.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from builders.dialogues.conversations import ASSISTANT_LABEL, USER_LABEL, conversation_text, format_conversation, read_conversations


def _load(model_id: str, trust_remote_code: bool, device: str | None, dtype: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch_dtype = {"auto": torch.bfloat16 if device.startswith("cuda") else torch.float32, "float32": torch.float32,
                   "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    tok = AutoTokenizer.from_pretrained(model_id, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch_dtype, trust_remote_code=trust_remote_code)
    return tok, model.to(device).eval(), device


def split_for_reply(messages: list[dict]) -> tuple[list[dict], str] | None:
    """(turns before the last assistant turn, that turn's text), or None without an assistant turn after a user."""
    for i in range(len(messages) - 1, 0, -1):
        if messages[i]["role"] == "assistant":
            return messages[:i], messages[i]["content"]
    return None


def generate_replies(model, tok, contexts: list[list[dict]], max_new_tokens: int, seed: int, device: str,
                     batch_size: int = 8) -> list[str]:
    import torch

    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    prompts = []
    for ctx in contexts:
        if getattr(tok, "chat_template", None):
            prompts.append(tok.apply_chat_template(ctx, tokenize=False, add_generation_prompt=True))
        else:
            prompts.append(format_conversation(ctx) + f"\n{ASSISTANT_LABEL}:")
    replies = []
    torch.manual_seed(seed)
    for start in range(0, len(prompts), batch_size):
        enc = tok(prompts[start:start + batch_size], return_tensors="pt", padding=True).to(device)
        with torch.no_grad():
            out = model.generate(**enc, do_sample=True, top_p=0.9, temperature=0.7, max_new_tokens=max_new_tokens,
                                 pad_token_id=tok.pad_token_id)
        for text in tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True):
            replies.append(text.split(f"\n{USER_LABEL}:")[0].strip())
    return replies


def _tokens(text: str) -> list[str]:
    return text.split()


def evaluate(models: list[str], heldout: str | Path, out: str | Path, train: str | Path | None = None,
             index: str | Path | None = None, generate: int = 0, max_length: int | None = None,
             stride: int | None = None, batch_size: int = 8, max_new_tokens: int = 256, seed: int = 0,
             trust_remote_code: bool = False, device: str | None = None, dtype: str = "auto",
             max_n: int = 10, heldout_split: str | None = None, train_split: str | None = None) -> dict:
    from builders.dialogues.ngram_index import NgramIndex, build_index
    from builders.dialogues.perplexity import perplexity
    from builders.dialogues.raven import raven_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = read_conversations(heldout, split=heldout_split)
    ngram_index = None
    if generate:
        if index and (Path(index) / "meta.json").exists():
            ngram_index = NgramIndex(index)
        elif train:
            lines = (" ".join(_tokens(format_conversation(r["messages"]))) + "\n"
                     for r in read_conversations(train, split=train_split))
            ngram_index = build_index(lines, Path(index) if index else out / "ngram_index", max_n=max_n)
        else:
            raise ValueError("--generate needs --train (training conversations) or --index (a built n-gram index)")
    rng = random.Random(seed)
    pairs = [p for p in (split_for_reply(r["messages"]) for r in rows) if p]
    sample = rng.sample(pairs, min(generate, len(pairs))) if generate else []
    results = {"heldout": str(heldout) + (f" ({heldout_split})" if heldout_split else ""), "conversations": len(rows),
               "models": {}}
    for model_id in models:
        tok, model, dev = _load(model_id, trust_remote_code, device, dtype)
        texts = [conversation_text(r["messages"], tok) for r in rows]
        res = {"perplexity": perplexity(model, tok, texts, max_length=max_length, stride=stride,
                                        batch_size=batch_size, device=dev).to_dict()}
        if sample:
            replies = generate_replies(model, tok, [c for c, _ in sample], max_new_tokens, seed, dev, batch_size)
            prompts = [_tokens(format_conversation(c)) for c, _ in sample]
            res["raven"] = raven_report([_tokens(r) for r in replies], ngram_index, prompts, max_n=max_n)
            res["raven_reference"] = raven_report([_tokens(t) for _, t in sample], ngram_index, prompts, max_n=max_n)
            with open(out / f"replies-{_safe(model_id)}.jsonl", "w", encoding="utf-8") as f:
                for (ctx, ref), reply in zip(sample, replies):
                    f.write(json.dumps({"context": ctx, "reference": ref, "reply": reply}, ensure_ascii=False) + "\n")
        results["models"][model_id] = res
        del model
    (out / "evaluation.json").write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    (out / "evaluation.md").write_text(markdown(results), encoding="utf-8")
    return results


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def markdown(results: dict) -> str:
    lines = [f"Held-out conversations: {results['conversations']} ({results['heldout']}).", "",
             "| model | perplexity | bits/byte | RAVEN | RAVEN (human replies) | pointwise t5 |",
             "|---|---:|---:|---:|---:|---:|"]
    for model, r in results["models"].items():
        p = r["perplexity"]
        rv, ref = r.get("raven"), r.get("raven_reference")
        t5 = rv["training_and_context"]["pointwise_truncated5"] if rv else None
        f = (lambda x: "" if x is None else f"{x:.3f}")
        lines.append(f"| {model} | {p['perplexity']:.2f} | {p['bits_per_byte']:.3f} | {f(rv and rv['raven'])} | "
                     f"{f(ref and ref['raven'])} | {f(t5)} |")
    return "\n".join(lines) + "\n"
