"""Generators behind one interface: ``Backend.generate(instructions, seeds) -> replies``.

Each backend wraps the rendered dialogue prompt in the generator's own format (``formats.py``), samples one reply
per instruction with that instruction's seed where the engine allows it, and cuts the reply at the format's
stop markers.

- ``TransformersBackend``: ``AutoModelForCausalLM.generate`` in left-padded batches. transformers samples a
  batch with one generator, so the batch is seeded with its first conversation's seed: a conversation's text
  depends on its batch (same batch size and order -> same text). Default model ``inceptionai/jais-13b-chat``,
  which ships its own model code: ``trust_remote_code`` is off unless asked for (``--trust-remote-code``).
- ``VLLMBackend``: vLLM's offline ``LLM.generate`` with a per-request ``SamplingParams(seed=...)`` (vLLM has a
  built-in Jais implementation). Only when vLLM is installed (a CUDA machine).
- ``OpenAIBackend``: any OpenAI-compatible server (vLLM's, TGI's, llama.cpp's, OpenAI's): ``/chat/completions``
  (the server applies the model's chat template) or ``/completions`` (we apply the prompt format), with ``seed``
  per request, a few requests at a time, bounded retries on HTTP errors. The key comes from ``--api-key-env``
  (default ``OPENAI_API_KEY``) and is never printed.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from builders.dialogues.formats import PromptFormat, format_for
from builders.steps import BuildError

DEFAULT_MODEL = "inceptionai/jais-13b-chat"


class BackendError(BuildError):
    """A generator that cannot be loaded or called; the message says which and why."""


@dataclass
class SamplingConfig:
    max_new_tokens: int = 1024
    temperature: float | None = None  # None: the prompt format's default (Jais: 0.3)
    top_p: float | None = None
    repetition_penalty: float | None = None

    def resolved(self, fmt: PromptFormat) -> dict:
        g = dict(fmt.generation)
        for k in ("temperature", "top_p", "repetition_penalty"):
            if getattr(self, k) is not None:
                g[k] = getattr(self, k)
        return g


class Backend(Protocol):
    name: str  # the generator recorded in every row

    def generate(self, instructions: list[str], seeds: list[int]) -> list[str]: ...


# ------------------------------------------------------------------------------------------ transformers


class TransformersBackend:
    def __init__(self, model: str = DEFAULT_MODEL, *, trust_remote_code: bool = False, prompt_format: str = "auto",
                 sampling: SamplingConfig | None = None, device: str | None = None, dtype: str = "auto",
                 revision: str | None = None):
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        self.name = model
        self.sampling = sampling or SamplingConfig()
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch_dtype = {"auto": torch.bfloat16 if self.device.startswith("cuda") else torch.float32,
                       "bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]
        try:  # the config first: a model with its own code is refused before anything else is read
            config = AutoConfig.from_pretrained(model, revision=revision, trust_remote_code=trust_remote_code)
            self.tokenizer = AutoTokenizer.from_pretrained(model, revision=revision, trust_remote_code=trust_remote_code)
            self.model = AutoModelForCausalLM.from_pretrained(model, config=config, revision=revision, dtype=torch_dtype,
                                                              trust_remote_code=trust_remote_code)
        except ValueError as e:
            if "trust_remote_code" in str(e) and not trust_remote_code:
                raise BackendError(f"{model} ships its own model code, which is not run by default; pass "
                                   "--trust-remote-code if you trust it (or use --backend vllm)") from e
            raise BackendError(f"cannot load {model}: {e}") from e
        except OSError as e:
            raise BackendError(f"cannot load {model}: {e}") from e
        self.model.to(self.device).eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.format = format_for(model, self.tokenizer, prompt_format)

    def generate(self, instructions: list[str], seeds: list[int]) -> list[str]:
        import torch

        if not instructions:
            return []
        texts = [self.format.wrap(i, self.tokenizer) for i in instructions]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=self.format.name != "chat_template")
        enc = {k: v.to(self.device) for k, v in enc.items()}
        prompt_len = enc["input_ids"].shape[1]
        max_new = self.sampling.max_new_tokens
        limit = self.format.max_context or getattr(self.model.config, "max_position_embeddings", None)
        if limit:
            max_new = min(max_new, limit - prompt_len)
            if max_new <= 0:
                raise BackendError(f"the prompt ({prompt_len} tokens) fills the {limit}-token context of {self.name}")
        g = self.sampling.resolved(self.format)
        torch.manual_seed(int(seeds[0]))
        with torch.no_grad():
            out = self.model.generate(**enc, do_sample=True, max_new_tokens=max_new,
                                      pad_token_id=self.tokenizer.pad_token_id, **g)
        replies = self.tokenizer.batch_decode(out[:, prompt_len:], skip_special_tokens=True)
        return [self.format.cut(r) for r in replies]


# ------------------------------------------------------------------------------------------------ vLLM


class VLLMBackend:
    def __init__(self, model: str = DEFAULT_MODEL, *, trust_remote_code: bool = False, prompt_format: str = "auto",
                 sampling: SamplingConfig | None = None, tensor_parallel_size: int = 1, revision: str | None = None):
        try:
            from vllm import LLM
        except ImportError as e:
            raise BackendError("--backend vllm needs vLLM (`pip install vllm` on a CUDA machine)") from e
        self.name = model
        self.sampling = sampling or SamplingConfig()
        self.llm = LLM(model=model, revision=revision, trust_remote_code=trust_remote_code,
                       tensor_parallel_size=tensor_parallel_size)
        self.tokenizer = self.llm.get_tokenizer()
        self.format = format_for(model, self.tokenizer, prompt_format)

    def generate(self, instructions: list[str], seeds: list[int]) -> list[str]:
        from vllm import SamplingParams

        g = self.sampling.resolved(self.format)
        params = [SamplingParams(seed=int(s), max_tokens=self.sampling.max_new_tokens, stop=list(self.format.stop), **g)
                  for s in seeds]
        outputs = self.llm.generate([self.format.wrap(i, self.tokenizer) for i in instructions], params)
        return [self.format.cut(o.outputs[0].text) for o in outputs]


# ------------------------------------------------------------------------------------ OpenAI-compatible


@dataclass
class OpenAIBackend:
    base_url: str
    model: str = DEFAULT_MODEL
    mode: str = "chat"  # chat: /chat/completions; completions: /completions with our prompt format
    prompt_format: str = "auto"
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    timeout: float = 600.0
    max_http_retries: int = 3
    extra_body: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.mode not in ("chat", "completions"):
            raise ValueError(f"--openai-mode must be chat or completions, not {self.mode!r}")
        self.name = self.model
        self.base_url = self.base_url.rstrip("/")
        self.format = format_for(self.model, None, self.prompt_format if self.mode == "completions" else "plain")

    def _post(self, path: str, body: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        last: Exception | None = None
        for attempt in range(self.max_http_retries + 1):
            request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                    return json.loads(resp.read().decode("utf-8"))
            except urllib.error.HTTPError as e:
                last = e
                if e.code < 500 and e.code != 429:  # a client error does not get better by retrying
                    break
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                last = e
            time.sleep(min(2 ** attempt, 30) * 0.1)
        raise BackendError(f"{self.base_url}{path}: request failed after {attempt + 1} attempt(s): {last}")

    def _one(self, instruction: str, seed: int) -> str:
        g = self.sampling.resolved(self.format)
        body = {"model": self.model, "max_tokens": self.sampling.max_new_tokens, "seed": int(seed),
                **{k: v for k, v in g.items() if k in ("temperature", "top_p")}, **self.extra_body}
        if self.mode == "chat":
            body["messages"] = [{"role": "user", "content": instruction}]
            reply = self._post("/chat/completions", body)["choices"][0]["message"]["content"]
        else:
            body["prompt"] = self.format.wrap(instruction)
            if self.format.stop:
                body["stop"] = list(self.format.stop)[:4]  # the OpenAI API takes at most 4 stop sequences
            reply = self._post("/completions", body)["choices"][0]["text"]
        return self.format.cut(reply or "")

    def generate(self, instructions: list[str], seeds: list[int]) -> list[str]:
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            return list(pool.map(self._one, instructions, seeds))


def make_backend(kind: str, model: str = DEFAULT_MODEL, *, trust_remote_code: bool = False, prompt_format: str = "auto",
                 sampling: SamplingConfig | None = None, base_url: str | None = None, **options) -> Backend:
    """``kind`` is transformers, vllm or openai."""
    sampling = sampling or SamplingConfig()
    if kind == "transformers":
        return TransformersBackend(model, trust_remote_code=trust_remote_code, prompt_format=prompt_format,
                                   sampling=sampling, **options)
    if kind == "vllm":
        return VLLMBackend(model, trust_remote_code=trust_remote_code, prompt_format=prompt_format, sampling=sampling,
                           **options)
    if kind == "openai":
        if not base_url:
            raise ValueError("--backend openai needs --base-url (e.g. http://localhost:8000/v1)")
        return OpenAIBackend(base_url=base_url, model=model, prompt_format=prompt_format, sampling=sampling, **options)
    raise ValueError(f"--backend must be transformers, vllm or openai, not {kind!r}")
