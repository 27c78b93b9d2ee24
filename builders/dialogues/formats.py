"""A generator's own prompt format around the dialogue prompt (``prompts/formats.yaml``): Jais's documented
format, the tokenizer's chat template, or the plain instruction."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

FORMATS_FILE = Path(__file__).resolve().parent / "prompts" / "formats.yaml"


@dataclass(frozen=True)
class PromptFormat:
    name: str
    template: str | None  # None: the tokenizer's chat template
    stop: tuple[str, ...] = ()
    generation: dict = field(default_factory=dict, hash=False)
    max_context: int | None = None

    def wrap(self, instruction: str, tokenizer=None) -> str:
        if self.template is None:
            if tokenizer is None or not getattr(tokenizer, "chat_template", None):
                raise ValueError(f"prompt format '{self.name}' needs a tokenizer with a chat template")
            return tokenizer.apply_chat_template([{"role": "user", "content": instruction}], tokenize=False,
                                                 add_generation_prompt=True)
        return self.template.replace("{instruction}", instruction)

    def cut(self, reply: str) -> str:
        """The reply up to the first stop marker (where the model would start its own next turn)."""
        end = min((i for i in (reply.find(s) for s in self.stop) if i >= 0), default=len(reply))
        return reply[:end]


@lru_cache(maxsize=1)
def _doc() -> dict:
    return yaml.safe_load(FORMATS_FILE.read_text(encoding="utf-8"))


def get_format(name: str) -> PromptFormat:
    formats = _doc()["formats"]
    if name not in formats:
        raise ValueError(f"unknown prompt format '{name}' (known: {sorted(formats)})")
    f = formats[name]
    return PromptFormat(name=name, template=f.get("template"), stop=tuple(f.get("stop") or ()),
                        generation=dict(f.get("generation") or {}), max_context=f.get("max_context"))


def format_for(model: str, tokenizer=None, requested: str | None = None) -> PromptFormat:
    """The requested format, else the known one for ``model``, else the chat template if any, else plain."""
    if requested and requested != "auto":
        return get_format(requested)
    known = _doc()["models"].get(str(model))
    if known:
        return get_format(known)
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return get_format("chat_template")
    return get_format("plain")
