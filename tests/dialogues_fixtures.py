"""Fixtures of the dialogue tests: scripted generators returning fixed, real-looking Arabic conversations, and a
tiny OpenAI-compatible HTTP server on 127.0.0.1 (started by the test, stopped after it).

The remote LLMs (Jais-13b-chat and the like) cannot run here, so these stand in for their replies; everything
downstream of the reply -- parsing, validation, retries, filters, duplicates, writing, resuming -- runs for real.
Conversation turns are cut from real Arabic text (ARCD questions and Wikipedia paragraphs in ../shared/data), so
two seeds give two genuinely different conversations.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

# hand-written replies in the shape models give them (labels from prompts/dialogue.yaml)
EGYPTIAN = """المستخدم: صباح الخير، عايز أعرف أحسن طريقة أعمل بيها كشري في البيت.
المساعد: صباح النور! الكشري سهل، محتاج رز وعدس بني ومكرونة وصلصة طماطم وبصل مقرمش.
المستخدم: طب أبدأ بإيه الأول؟
المساعد: ابدأ بالبصل، قطّعه شرايح رفيعة واقليه لحد ما يحمر، وسيب الزيت عشان تطبخ بيه الرز والعدس.
المستخدم: والصلصة بتتعمل إزاي؟
المساعد: شوية طماطم مطحونة مع توم وخل وكمون وشطة، وتسيبها على النار ربع ساعة، وبالهنا والشفا."""
GULF = """**المستخدم:** السلام عليكم، أبي أسافر من الكويت إلى عُمان في العطلة، وش تنصحني أزور؟
**المساعد:** وعليكم السلام! أنصحك بمسقط أول شي، فيها جامع السلطان قابوس وسوق مطرح، وبعدها روح نزوى وقلعتها.
**المستخدم:** زين، والجو كيف في ديسمبر؟
**المساعد:** الجو في ديسمبر حلو وبارد شوي بالليل، يناسب الطلعات والتخييم في الرمال.
**المستخدم:** وشلون أتنقل بين المدن؟
**المساعد:** الأفضل تستأجر سيارة، الطرق ممتازة والمسافات مو طويلة، بس انتبه للسرعة."""
WITH_PREAMBLE = "بالتأكيد! إليك المحادثة المطلوبة:\n\n" + EGYPTIAN
TOO_SHORT = """المستخدم: مرحبا، كيف حالك اليوم؟
المساعد: بخير والحمد لله، كيف أساعدك؟"""
ENGLISH = """المستخدم: Hello, can you help me plan a trip to Jordan next month?
المساعد: Of course! Petra and Wadi Rum are the places most visitors start with.
المستخدم: What about the weather in spring?
المساعد: Spring is mild and pleasant, the best time to walk around Petra.
المستخدم: Great, any food I should try?
المساعد: Try mansaf, the national dish, and knafeh for dessert."""


@lru_cache(maxsize=1)
def _pools() -> tuple[list[str], list[str]]:
    from tiny_models import arabic_texts

    texts = arabic_texts()
    questions = [t for t in texts if t.endswith("؟") and 4 <= len(t.split()) <= 30]
    sentences = []
    for t in texts:
        for s in re.split(r"(?<=[.!؟])\s+", t):
            if 8 <= len(s.split()) <= 40 and s.endswith(".") and "\n" not in s:
                sentences.append(s.strip())
    return questions, sentences


def scripted_conversation(seed: int, num_turns: int = 6, user: str = "المستخدم", assistant: str = "المساعد") -> str:
    """A conversation in the asked-for format, its turns picked from real Arabic text by ``seed``."""
    questions, sentences = _pools()
    rng = random.Random(seed)
    lines = []
    for i in range(num_turns):
        if i % 2 == 0:
            lines.append(f"{user}: {rng.choice(questions)}")
        else:
            lines.append(f"{assistant}: {' '.join(rng.sample(sentences, 2))}")
    return "\n".join(lines)


def seed_of(instruction: str, seed: int) -> int:
    return int(hashlib.sha256(f"{instruction}\x1f{seed}".encode()).hexdigest()[:8], 16)


class ScriptedBackend:
    """A generator with scripted replies: ``script(instruction, seed) -> reply`` (default: a fresh conversation)."""

    name = "scripted/arabic-dialogues"

    def __init__(self, script=None, num_turns: int = 6):
        self.script = script or (lambda instruction, seed: scripted_conversation(seed_of(instruction, seed), num_turns))
        self.calls: list[tuple[str, int]] = []

    def generate(self, instructions: list[str], seeds: list[int]) -> list[str]:
        self.calls += list(zip(instructions, seeds))
        return [self.script(i, s) for i, s in zip(instructions, seeds)]


def cli(capsys, *args: str) -> str:
    """``arabic-prompts ARGS`` run in this process (the real parser and command; no interpreter start-up, which
    costs seconds per call on a loaded CI machine): its stdout, after checking it exited 0. One test per command
    group still runs the installed console script in a subprocess."""
    from builders.cli import main

    capsys.readouterr()
    rc = main(list(args))
    out = capsys.readouterr()
    assert rc == 0, f"arabic-prompts {' '.join(args)} exited {rc}:\n{out.err[-4000:]}"
    return out.out


# ---------------------------------------------------------------------------------- local HTTP server


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])).decode("utf-8"))
        server = self.server
        server.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        if server.fail_first and len(server.requests) <= server.fail_first:
            self.send_response(503)
            self.end_headers()
            return
        prompt = body["messages"][-1]["content"] if "messages" in body else body["prompt"]
        reply = server.script(prompt, int(body.get("seed", 0)))
        if self.path.endswith("/chat/completions"):
            payload = {"choices": [{"index": 0, "message": {"role": "assistant", "content": reply}}]}
        else:
            payload = {"choices": [{"index": 0, "text": reply}]}
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory):
    """A tiny random Qwen2 and its tokenizer (byte-level BPE on real Arabic text), saved once per test session:
    ``(folder, tokenizer, model)``."""
    from tiny_models import arabic_texts, tiny_qwen2, tiny_tokenizer

    folder = tmp_path_factory.mktemp("tiny_lm")
    tok = tiny_tokenizer(arabic_texts(300), vocab_size=400)
    model = tiny_qwen2(tok, out=folder, hidden_size=32, layers=2).eval()
    return folder, tok, model


@pytest.fixture
def openai_server():
    """An OpenAI-compatible server on 127.0.0.1:<free port>; ``.script``, ``.fail_first`` and ``.requests`` are
    the test's to set and read. Yields ``(server, base_url)``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.requests, server.fail_first = [], 0
    server.script = lambda prompt, seed: scripted_conversation(seed_of(prompt, seed))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ------------------------------------------------------------------- RAVEN: the reference algorithm, naively


def naive_training_ngrams(lines, max_n: int = 10, eos: str | None = None, cross_lines: bool = True) -> set:
    """Every n-gram (n <= max_n) of the training text as a set of tuples: the memory-hungry baseline. One token
    stream across lines unless ``cross_lines`` is False (as RAVEN's reference code reads its training file)."""
    out: set = set()
    carry: list[str] = []
    for line in lines:
        toks = line.split() + ([eos] if eos is not None else [])
        seq = carry + toks if cross_lines else toks
        for i in range(len(seq)):
            for n in range(1, min(max_n, len(seq) - i) + 1):
                out.add(tuple(seq[i:i + n]))
        carry = seq[-(max_n - 1):] if cross_lines and max_n > 1 else []
    return out


def _walk_back(seq: list[str], k: int, training: set, max_n: int) -> int:
    """pointwise_annotation_training.py for token ``k`` of ``seq``: grow the n-gram ending at ``k`` while it is in
    the training set (first pass: only n-grams up to max_n are known)."""
    start, end, done = k, k + 1, False
    while not done:
        ngram = tuple(seq[start:end])
        known = len(ngram) <= max_n
        if not known or ngram not in training or start == 0:
            done = True
        if known and ngram in training:
            start -= 1
    return end - start


def naive_training_scores(generations, training: set, max_n: int = 10) -> list[list[int]]:
    """Training pointwise scores of generations without prompts (prompts do not change them: see raven.py)."""
    return [[min(_walk_back(list(gen), j, training, max_n), j + 2) for j in range(len(gen))] for gen in generations]


def naive_pointwise(generations, prompts, training: set, max_n: int = 10) -> dict[str, list[list[int]]]:
    """Pointwise scores as RAVEN's reference scripts compute them (first pass up to ``max_n``, then
    pointwise_annotation_context.py --max_ngram, then the max of both, then truncate_scores), written out
    literally: the walk back from each token, the substring test against the context, the caps."""
    out = {"training": [], "context": [], "training_and_context": []}
    for g, gen in enumerate(generations):
        prompt = list(prompts[g]) if prompts is not None else []
        seq = prompt + list(gen)
        train_scores, ctx_scores = [], []
        for k in range(len(seq)):
            train_scores.append(_walk_back(seq, k, training, max_n))
            if k < len(prompt):  # pointwise_annotation_context.py
                score = k + 2
            else:
                context = " " + " ".join(seq[:k]) + " "
                score = k + 2
                for length in range(k):
                    if " " + " ".join(seq[k - length:k + 1]) + " " not in context:
                        score = length + 1
                        break
            ctx_scores.append(min(score, max_n + 1))
        P = len(prompt)
        cap = lambda scores: [min(s, j + 2) for j, s in enumerate(scores[P:])]  # noqa: E731  (truncate_scores)
        out["training"].append(cap(train_scores))
        out["context"].append(cap(ctx_scores))
        out["training_and_context"].append(cap([max(a, b) for a, b in zip(train_scores, ctx_scores)]))
    return out


def naive_summary(scores: list[list[int]], max_n: int = 10) -> dict:
    """ngram_overlap_from_pointwise + avg_pointwise_novelty of the reference, as novelty (1 - overlap)."""
    flat = [s for seq in scores for s in seq]
    novelty = {}
    for n in range(1, max_n + 1):
        total = sum(max(len(seq) - n + 1, 0) for seq in scores)
        overlap = sum(1 for s in flat if s - 1 >= n)
        novelty[str(n)] = None if total == 0 else 1 - overlap / total
    return {"novelty": novelty, "pointwise_mean": sum(flat) / len(flat),
            "pointwise_truncated5": sum(min(s, 5) for s in flat) / len(flat)}
