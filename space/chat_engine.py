"""The Space's model side: settings from the environment, loading (base + LoRA adapter, or a merged model),
prompts that fit the context window, and streamed generation that a Stop really stops.

No Gradio and no `builders` here: `app.py` builds the page on top of this module, and the tests drive it
directly. Heavy imports (torch, transformers, peft) happen inside the functions that need them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

log = logging.getLogger("arabic_prompts_space")

# The paper's base model (its Hub page: Qwen/Qwen2-7B, Apache-2.0). Our LoRA adapter goes in ADAPTER.
DEFAULT_BASE_MODEL = "Qwen/Qwen2-7B"
NOTICE = "⚠️"  # replies that start with this are the app's own notices; they are never fed back to the model
DEFAULT_SYSTEM_PROMPT = "أنت مساعد مفيد يجيب باللغة العربية الفصحى بدقة وإيجاز."

# ChatML, Qwen2's own chat format, for a tokenizer that ships no chat template (its specials are in Qwen2's
# base vocabulary, so a base model needs no new tokens).
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    try:
        return int(value) if value else default
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {value!r}") from None


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    try:
        return float(value) if value else default
    except ValueError:
        raise ValueError(f"{name} must be a number, not {value!r}") from None


@dataclass
class Settings:
    """Everything the Space reads from its environment (Space variables / secrets)."""

    # BASE_MODEL: Hub id or folder (a merged model goes here too); unset = the adapter's base, else Qwen2-7B
    base_model: str | None = None
    adapter: str | None = None  # ADAPTER: PEFT LoRA adapter, Hub id or folder; unset = the base model alone
    max_input_chars: int = 4000  # MAX_INPUT_CHARS: longer messages are refused with a notice
    context_tokens: int | None = None  # CONTEXT_TOKENS: prompt + reply budget (default: the model's window)
    default_max_new_tokens: int = 512  # MAX_NEW_TOKENS
    max_new_tokens_limit: int = 2048  # MAX_NEW_TOKENS_LIMIT: the slider's top
    concurrency: int = 2  # CONCURRENCY: generations at once (the queue holds the rest)
    queue_size: int = 32  # QUEUE_SIZE: waiting requests beyond which new ones are turned away
    throttle_s: float = 0.05  # STREAM_THROTTLE_S: at most one UI update per this many seconds
    system_prompt: str = DEFAULT_SYSTEM_PROMPT  # SYSTEM_PROMPT: the system box's initial text
    # Test only: seconds to sleep per generated token, so a test can press Stop mid-reply. Never set on a Space.
    test_token_delay: float = 0.0  # SPACE_TEST_TOKEN_DELAY
    # Test only: a file the app appends one JSON line to per generation (start / end, tokens, thread state).
    debug_status: str | None = None  # SPACE_DEBUG_STATUS

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            base_model=os.environ.get("BASE_MODEL", "").strip() or None,
            adapter=os.environ.get("ADAPTER", "").strip() or None,
            max_input_chars=_env_int("MAX_INPUT_CHARS", cls.max_input_chars),
            context_tokens=_env_int("CONTEXT_TOKENS", 0) or None,
            default_max_new_tokens=_env_int("MAX_NEW_TOKENS", cls.default_max_new_tokens),
            max_new_tokens_limit=_env_int("MAX_NEW_TOKENS_LIMIT", cls.max_new_tokens_limit),
            concurrency=max(1, _env_int("CONCURRENCY", cls.concurrency)),
            queue_size=max(1, _env_int("QUEUE_SIZE", cls.queue_size)),
            throttle_s=max(0.0, _env_float("STREAM_THROTTLE_S", cls.throttle_s)),
            system_prompt=os.environ.get("SYSTEM_PROMPT", cls.system_prompt),
            test_token_delay=max(0.0, _env_float("SPACE_TEST_TOKEN_DELAY", 0.0)),
            debug_status=os.environ.get("SPACE_DEBUG_STATUS") or None,
        )


# ---------------------------------------------------------------------------------------------------- secrets
_TOKEN_PATTERN = re.compile(r"hf_[A-Za-z0-9]{8,}")


def redact(text: str) -> str:
    """``text`` with Hugging Face tokens (the HF_TOKEN value and anything shaped like one) masked."""
    secret = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if secret:
        text = text.replace(secret, "***")
    return _TOKEN_PATTERN.sub("hf_***", text)


class RedactingFilter(logging.Filter):
    """Masks tokens in every record a handler emits (messages, arguments and tracebacks)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def setup_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


# ------------------------------------------------------------------------------------------------ messages
def text_of(content) -> str:
    """The text of a Gradio message content: a str, a list of parts ({"type": "text", "text": ...}), or a file."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return content.get("text") or "" if content.get("type", "text") == "text" else ""
    if isinstance(content, (list, tuple)):
        return "\n".join(t for t in (text_of(c) for c in content) if t)
    return ""  # a component or a file: nothing the model can read


def conversation_turns(history: list[dict]) -> list[list[dict]]:
    """Gradio's messages history as turns (a user message and the replies after it), oldest first. The app's own
    notices and the user messages they answered are left out, as are empty messages."""
    turns: list[list[dict]] = []
    for msg in history or []:
        role, text = msg.get("role"), text_of(msg.get("content")).strip()
        if role not in ("user", "assistant") or not text:
            continue
        if role == "user":
            turns.append([{"role": "user", "content": text}])
        elif turns:
            if text.startswith(NOTICE):
                turns.pop()  # a refused message: neither it nor the notice goes to the model
            else:
                turns[-1].append({"role": "assistant", "content": text})
    return turns


def too_long_notice(n_chars: int, limit: int) -> str:
    return (f"{NOTICE} الرسالة طويلة جدًا: {n_chars} حرفًا، والحد الأقصى {limit} حرف. يُرجى اختصارها.\n"
            f"Message too long: {n_chars} characters; the limit is {limit}. Please shorten it.")


def empty_notice() -> str:
    return f"{NOTICE} الرسالة فارغة؛ اكتب سؤالك أولًا.\nThe message is empty; please type a question first."


def no_room_notice(limit: int) -> str:
    return (f"{NOTICE} لا تتسع نافذة السياق ({limit} رمزًا) لهذه الرسالة مع موجّه النظام؛ اختصر أحدهما.\n"
            f"This message and the system prompt do not fit the context window ({limit} tokens); shorten one.")


def error_notice() -> str:
    return (f"{NOTICE} حدث خطأ أثناء توليد الرد؛ حاول مرة أخرى.\n"
            "Something went wrong while generating the reply; please try again.")


# ------------------------------------------------------------------------------------------------ the engine
@dataclass
class Prompt:
    input_ids: list[int]
    dropped_turns: int  # oldest turns left out to fit the window
    max_new_tokens: int


@dataclass
class GenerationRecord:
    """What one generation did: written to SPACE_DEBUG_STATUS when set, kept as ``Engine.last`` always."""

    id: int
    tokens: int = 0
    stopped: bool = False  # ended by a Stop (the event), not by eos / max_new_tokens
    thread_alive: bool = True
    error: str | None = None
    seconds: float = 0.0


class NoRoom(ValueError):
    """The current message (with the system prompt) does not fit the context window."""


class _StopWatch:
    """A StoppingCriteria: ends generation as soon as ``stop`` is set, and counts generated tokens."""

    def __init__(self, stop: threading.Event, prompt_len: int, delay: float):
        self.stop, self.prompt_len, self.delay = stop, prompt_len, delay
        self.tokens, self.stopped = 0, False

    def __call__(self, input_ids, scores=None, **kwargs):
        import torch

        self.tokens = int(input_ids.shape[-1]) - self.prompt_len
        if self.delay:
            self.stop.wait(self.delay)  # test-only pacing; returns at once when Stop is pressed
        self.stopped = self.stop.is_set()
        return torch.full((input_ids.shape[0],), self.stopped, dtype=torch.bool, device=input_ids.device)


@dataclass
class Engine:
    model: object
    tokenizer: object
    settings: Settings
    device: str = "cpu"
    context_tokens: int = 2048
    eos_token_ids: list[int] = field(default_factory=list)
    description: str = ""
    last: GenerationRecord | None = None
    _count: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ---- prompts
    def encode(self, messages: list[dict]) -> list[int]:
        ids = self.tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                                 return_dict=False)
        return list(ids)

    def build_prompt(self, system: str, history: list[dict], message: str, max_new_tokens: int) -> Prompt:
        """The chat-template ids of system + history + message, dropping the oldest turns until the prompt and
        ``max_new_tokens`` fit the context window. The system prompt and the new message are always kept."""
        max_new_tokens = max(1, min(int(max_new_tokens), self.settings.max_new_tokens_limit))
        head = [{"role": "system", "content": system.strip()}] if system and system.strip() else []
        turns = conversation_turns(history)
        current = [{"role": "user", "content": message}]
        budget = self.context_tokens - max_new_tokens
        # the shortest prompt first: if even that leaves too little room for a reply, shrink the reply budget
        ids = self.encode(head + current)
        if len(ids) >= self.context_tokens - 16:
            raise NoRoom(f"{len(ids)} prompt tokens for a {self.context_tokens}-token window")
        if len(ids) > budget:
            return Prompt(ids, len(turns), self.context_tokens - len(ids))
        # the most turns that fit: binary search over how many of the newest turns to keep
        lo, hi, best = 0, len(turns), ids
        while lo < hi:
            mid = (lo + hi + 1) // 2
            cand = self.encode(head + [m for t in turns[len(turns) - mid:] for m in t] + current)
            if len(cand) <= budget:
                lo, best = mid, cand
            else:
                hi = mid - 1
        return Prompt(best, len(turns) - lo, max_new_tokens)

    # ---- generation
    def stream(self, prompt: Prompt, *, temperature: float, top_p: float,
               stop: threading.Event | None = None) -> Iterator[str]:
        """Yield the reply's text piece by piece while ``model.generate`` runs in a thread.

        Setting ``stop`` (the Stop button) or closing this generator (Gradio cancelling the event) ends
        generation at the next token: the StoppingCriteria sees the event, ``generate`` returns and its thread
        is joined before this generator finishes. An error in ``generate`` is raised here.
        """
        import torch
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        stop = stop or threading.Event()
        with self._lock:
            self._count += 1
            record = GenerationRecord(id=self._count)
        self.last = record
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
        watch = _StopWatch(stop, len(prompt.input_ids), self.settings.test_token_delay)
        sampling = temperature > 0
        kwargs = dict(
            input_ids=torch.tensor([prompt.input_ids], device=self.device),
            attention_mask=torch.ones(1, len(prompt.input_ids), dtype=torch.long, device=self.device),
            max_new_tokens=prompt.max_new_tokens, do_sample=sampling, streamer=streamer,
            stopping_criteria=StoppingCriteriaList([watch]), eos_token_id=self.eos_token_ids or None,
            pad_token_id=self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None
            else (self.eos_token_ids or [None])[0],
        )
        if sampling:
            kwargs.update(temperature=float(temperature), top_p=float(top_p))
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    self.model.generate(**kwargs)
            except BaseException as e:  # noqa: BLE001 -- handed to the reader below
                failure.append(e)
                streamer.end()  # unblock the reader

        start = time.monotonic()
        self._status({"event": "start", "id": record.id, "prompt_tokens": len(prompt.input_ids),
                      "max_new_tokens": prompt.max_new_tokens})
        thread = threading.Thread(target=run, name=f"generate-{record.id}", daemon=True)
        thread.start()
        try:
            for piece in streamer:
                if stop.is_set():
                    break
                if piece:
                    yield piece
            if failure:
                raise failure[0]
        finally:
            stop.set()
            thread.join(timeout=60)
            record.tokens, record.stopped = watch.tokens, watch.stopped
            record.thread_alive, record.seconds = thread.is_alive(), round(time.monotonic() - start, 3)
            record.error = redact(f"{type(failure[0]).__name__}: {failure[0]}") if failure else None
            self._status({"event": "end", **record.__dict__})
            log.info("generation %d: %d tokens in %.1fs%s%s", record.id, record.tokens, record.seconds,
                     " (stopped)" if record.stopped else "", f", error {record.error}" if record.error else "")

    def _status(self, entry: dict) -> None:
        if not self.settings.debug_status:
            return
        entry = {**entry, "time": time.time()}
        with self._lock, open(self.settings.debug_status, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")


# ------------------------------------------------------------------------------------------------ chat turns
class StopRegistry:
    """One Stop event per visitor session: the Stop button sets the event of the generation it belongs to."""

    def __init__(self):
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def arm(self, session: str | None) -> threading.Event:
        event = threading.Event()
        if session:
            with self._lock:
                self._events[session] = event
        return event

    def stop(self, session: str | None) -> None:
        with self._lock:
            event = self._events.get(session or "")
        if event is not None:
            event.set()

    def release(self, session: str | None, event: threading.Event) -> None:
        with self._lock:
            if session and self._events.get(session) is event:
                del self._events[session]


def reply_stream(engine: Engine, message, history: list[dict], system: str | None, temperature: float | None,
                 top_p: float | None, max_new_tokens: int | None, stop: threading.Event | None = None
                 ) -> Iterator[str]:
    """One chat turn: the growing reply, at most one update per ``throttle_s`` (and always the final text).

    Empty and over-long messages, a message that cannot fit the window and generation errors come back as a
    bilingual notice (the app keeps running); notices are never fed back to the model in later turns.
    """
    settings = engine.settings
    text = text_of(message).strip()
    if not text:
        yield empty_notice()
        return
    if len(text) > settings.max_input_chars:
        yield too_long_notice(len(text), settings.max_input_chars)
        return
    temperature = _or_default(temperature, 0.7)
    top_p = _or_default(top_p, 0.9)
    max_new_tokens = int(_or_default(max_new_tokens, settings.default_max_new_tokens))
    try:
        prompt = engine.build_prompt(system if system is not None else settings.system_prompt, history, text,
                                     max_new_tokens)
    except NoRoom:
        yield no_room_notice(engine.context_tokens)
        return
    if prompt.dropped_turns:
        log.info("history truncated: %d oldest turn(s) dropped to fit %d tokens", prompt.dropped_turns,
                 engine.context_tokens)
    reply, last = "", 0.0
    pieces = engine.stream(prompt, temperature=temperature, top_p=top_p, stop=stop)
    try:
        for piece in pieces:
            reply += piece
            now = time.monotonic()
            if now - last >= settings.throttle_s:
                last = now
                yield reply
    except Exception:  # noqa: BLE001 -- shown to the visitor; the app goes on
        log.exception("generation failed")
        yield error_notice()
        return
    finally:
        pieces.close()  # a cancelled turn (Stop, closed tab) ends the generate thread here
    yield reply if reply.strip() else f"{NOTICE} لم يولّد النموذج ردًا.\nThe model produced no reply."


def _or_default(value, default):
    return default if value is None else value


# ------------------------------------------------------------------------------------------------ loading
ADAPTER_FILES = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "*.md"]  # never *.bin / *.pt


def adapter_folder(adapter: str) -> Path:
    """The adapter as a local folder with ``adapter_model.safetensors``: a folder as it is, a Hub id downloaded
    without pickles. PEFT itself would fall back to a pickled ``adapter_model.bin``; here that is refused."""
    path = Path(adapter).expanduser()
    if not path.is_dir():
        if adapter.startswith(("/", ".", "~")) or adapter.count("/") != 1:
            raise ValueError(f"ADAPTER {adapter}: no such folder, and not a Hub id (ORG/NAME)")
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(adapter, allow_patterns=ADAPTER_FILES))
    if not (path / "adapter_model.safetensors").is_file():
        raise ValueError(f"ADAPTER {adapter}: no adapter_model.safetensors (pickled weights are never loaded)")
    return path


def resolve_base_model(base_model: str | None, adapter: Path | None) -> str:
    """BASE_MODEL when set, else the base the adapter was trained on (adapter_config.json's
    base_model_name_or_path), else the paper's base model."""
    if base_model:
        return base_model
    if adapter is not None:
        config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
        if config.get("base_model_name_or_path"):
            return config["base_model_name_or_path"]
    return DEFAULT_BASE_MODEL


def _load_tokenizer(settings: Settings, adapter: Path | None):
    from transformers import AutoTokenizer

    tokenizer = None
    if adapter is not None:  # the adapter's tokenizer carries the chat template it was trained with
        with suppress(OSError, ValueError):
            tokenizer = AutoTokenizer.from_pretrained(adapter, trust_remote_code=False)
    source = settings.adapter if tokenizer is not None else settings.base_model
    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(settings.base_model, trust_remote_code=False)
    if not getattr(tokenizer, "chat_template", None):
        log.warning("%s ships no chat template; using ChatML (Qwen2's chat format)", source)
        tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer, source


def load_engine(settings: Settings | None = None) -> Engine:
    """Load the tokenizer and model named by ``settings`` (safetensors only, no remote code) on the GPU when
    there is one (bfloat16), else on the CPU (float32)."""
    import torch
    from transformers import AutoModelForCausalLM

    settings = settings or Settings.from_env()
    adapter = adapter_folder(settings.adapter) if settings.adapter else None
    settings = replace(settings, base_model=resolve_base_model(settings.base_model, adapter))
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else (torch.float16 if cuda else torch.float32)
    tokenizer, template_source = _load_tokenizer(settings, adapter)
    log.info("loading %s on %s (%s)", settings.base_model, device, str(dtype).removeprefix("torch."))
    model = AutoModelForCausalLM.from_pretrained(settings.base_model, dtype=dtype, use_safetensors=True,
                                                 trust_remote_code=False)
    if adapter is not None:
        from peft import PeftModel

        log.info("applying the LoRA adapter %s", settings.adapter)
        model = PeftModel.from_pretrained(model, adapter)  # adapter_folder() made sure it is safetensors
        description = f"{settings.base_model} + LoRA {settings.adapter}"
    else:
        log.warning("ADAPTER is not set: serving the base model %s alone, not the fine-tuned model",
                    settings.base_model)
        description = f"{settings.base_model} (no adapter: base model only)"
    model.to(device).eval()
    window = min(v for v in (getattr(model.config, "max_position_embeddings", None),
                             tokenizer.model_max_length if tokenizer.model_max_length < 10**7 else None,
                             settings.context_tokens) if v)
    # a turn ends at eos or at ChatML's <|im_end|> (when the vocabulary has it), and at the model's own eos ids
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    candidates = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>"),
                  *(gen_eos if isinstance(gen_eos, list) else [gen_eos])]
    eos = {t for t in candidates if isinstance(t, int) and t != tokenizer.unk_token_id}
    log.info("ready: %s; chat template from %s; context %d tokens", description, template_source, window)
    return Engine(model=model, tokenizer=tokenizer, settings=settings, device=device, context_tokens=window,
                  eos_token_ids=sorted(eos), description=description)


def read_examples(path: str | Path | None = None) -> list[dict]:
    """The example prompts (space/examples.json): real test prompts of our dataset, one per task family."""
    path = Path(path) if path else Path(__file__).with_name("examples.json")
    if not path.exists():
        return []
    return json.loads(path.read_text(encoding="utf-8"))["examples"]
