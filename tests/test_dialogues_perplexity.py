"""Sliding-window perplexity and bits-per-byte, against direct loss computations on a tiny random Qwen2."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_models import arabic_texts

from builders.dialogues.perplexity import perplexity, windows


@pytest.fixture(scope="module")
def tiny(tiny_lm):
    _, tok, model = tiny_lm
    return tok, model


def _ids(tok, text):
    return [tok.eos_token_id] + tok(text, add_special_tokens=False)["input_ids"]  # no BOS: EOS in front


def test_windows_score_every_token_once():
    for n in range(1, 40):
        for max_length in (2, 3, 5, 8):
            for stride in range(1, max_length + 1):
                scored = [t for b, e, f in windows(n, max_length, stride) for t in range(f, e)]
                assert scored == list(range(1, n)), (n, max_length, stride)
                # at most max_length tokens, every scored token with context, at least max_length - stride of it
                for b, e, f in windows(n, max_length, stride):
                    assert e - b <= max_length and b < f and (f == 1 or f - b >= max_length - stride)
    with pytest.raises(ValueError, match="at least 2"):
        windows(10, 1, 1)


def test_short_text_equals_the_model_loss(tiny):
    tok, model = tiny
    text = arabic_texts(40)[35]
    ids = torch.tensor([_ids(tok, text)])
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss.item()  # mean NLL of tokens 1..n-1
    res = perplexity(model, tok, [text], max_length=1024, stride=512)
    assert res.tokens == ids.shape[1] - 1
    assert res.perplexity == pytest.approx(math.exp(loss), rel=1e-5)
    assert res.bits_per_byte == pytest.approx(loss * res.tokens / math.log(2) / len(text.encode("utf-8")), rel=1e-5)


def test_strided_windows_equal_token_by_token_loss(tiny):
    """Each token's log-probability computed on its own, with exactly the context its window gives it."""
    tok, model = tiny
    text = next(t for t in arabic_texts(2000)[1800:] if len(t) > 150)
    ids = _ids(tok, text)[:60]
    text = tok.decode(ids[1:])
    ids = _ids(tok, text)
    max_length, stride = 16, 6
    nll = 0.0
    for begin, end, first in windows(len(ids), max_length, stride):
        for t in range(first, end):
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([ids[begin:t]])).logits[0, -1]
            nll -= torch.log_softmax(logits.float(), -1)[ids[t]].item()
    res = perplexity(model, tok, [text], max_length=max_length, stride=stride, batch_size=3)
    assert res.tokens == len(ids) - 1
    assert res.nll == pytest.approx(nll, rel=1e-5)


def test_many_texts_equal_the_models_own_loss_per_window(tiny):
    """Totals over several texts and batches equal transformers' own loss on each window (labels masked to the
    window's new tokens)."""
    tok, model = tiny
    texts = [t for t in arabic_texts(2000)[1800:] if 300 < len(t) < 700][:2] + ["قصير"]
    max_length, stride = 48, 20
    nll, count = 0.0, 0
    for text in texts:
        ids = _ids(tok, text)
        for begin, end, first in windows(len(ids), max_length, stride):
            window = torch.tensor([ids[begin:end]])
            labels = window.clone()
            labels[0, : first - begin] = -100
            with torch.no_grad():
                loss = model(input_ids=window, labels=labels).loss.item()
            nll += loss * (end - first)
            count += end - first
    res = perplexity(model, tok, texts, max_length=max_length, stride=stride, batch_size=3)
    assert res.tokens == count and res.texts == 3
    assert res.nll == pytest.approx(nll, rel=1e-5)
    assert res.perplexity == pytest.approx(math.exp(nll / count), rel=1e-5)
    assert res.bytes == sum(len(t.encode("utf-8")) for t in texts)
    # windows that share one token give tokens less context: another loss over the same tokens
    disjoint = perplexity(model, tok, texts, max_length=max_length, stride=max_length)
    assert disjoint.tokens == count and disjoint.nll != pytest.approx(res.nll, rel=1e-9)
    with pytest.raises(ValueError, match="stride"):
        perplexity(model, tok, texts, max_length=8, stride=9)


def test_evaluate_scores_heldout_conversations_and_replies(tiny_lm, tmp_path):
    """`dialogues evaluate` on a tiny model: perplexity of held-out conversations and RAVEN of its replies."""
    import json

    from dialogues_fixtures import scripted_conversation

    from builders.dialogues.conversations import conversation_text
    from builders.dialogues.evaluation import evaluate
    from builders.dialogues.parse import parse_conversation

    folder, tok, model = tiny_lm

    def write(path, seeds):
        rows = [{"messages": parse_conversation(scripted_conversation(s), "المستخدم", "المساعد").messages} for s in seeds]
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        return rows

    heldout = write(tmp_path / "heldout.jsonl", range(100, 104))
    write(tmp_path / "train.jsonl", range(20))
    res = evaluate([str(folder)], tmp_path / "heldout.jsonl", tmp_path / "eval", train=tmp_path / "train.jsonl",
                   generate=3, max_length=64, stride=32, max_new_tokens=10)
    scores = res["models"][str(folder)]
    direct = perplexity(model, tok, [conversation_text(r["messages"], tok) for r in heldout], max_length=64, stride=32)
    assert scores["perplexity"]["perplexity"] == pytest.approx(direct.perplexity, rel=1e-6)
    assert scores["perplexity"]["texts"] == 4
    assert scores["raven"]["generations"] == 3 and 0 <= scores["raven"]["raven"] <= 1
    assert scores["raven_reference"]["generations"] == 3
    assert (tmp_path / "eval" / "evaluation.md").read_text().count("|") > 10
    assert len((tmp_path / "eval").glob("replies-*.jsonl").__next__().read_text().splitlines()) == 3
