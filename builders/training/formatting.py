"""Rows -> conversations for SFT, and the chat template that renders them.

Two row kinds are first-class:

- prompt rows of a build or mixture (``inputs``, ``targets``) become one user turn and one assistant turn;
- multi-turn rows (``messages``: a list of ``{"role", "content"}``, several assistant turns) are kept as they are.

Both go through the same template (``chat_template.jinja``, ChatML with ``{% generation %}`` markers), so TRL's
``assistant_only_loss`` puts the loss on the assistant's words only: the completion of a prompt row, every assistant
turn of a dialogue.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE_FILE = Path(__file__).with_name("chat_template.jinja")
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
CHATML_TOKENS = (IM_START, IM_END)
ROLES = ("system", "user", "assistant")


class FormatError(ValueError):
    """A row that cannot become a conversation; the message names the row."""


def chat_template() -> str:
    return CHAT_TEMPLATE_FILE.read_text(encoding="utf-8")


def prompt_messages(inputs: str, targets: str) -> list[dict[str, str]]:
    """One prompt row as a conversation, stripped the way the evaluation tasks strip it (query ``inputs.rstrip()``,
    gold ``targets.strip()``), so that training and evaluation see the same text."""
    return [{"role": "user", "content": inputs.rstrip()}, {"role": "assistant", "content": targets.strip()}]


def check_messages(messages, where: str) -> list[dict[str, str]]:
    """``messages`` reduced to role/content, or a FormatError naming ``where`` (a row id or position)."""
    if not isinstance(messages, list) or not messages:
        raise FormatError(f"{where}: `messages` must be a non-empty list of {{role, content}}")
    out = []
    for i, turn in enumerate(messages):
        role = turn.get("role") if isinstance(turn, dict) else None
        content = turn.get("content") if isinstance(turn, dict) else None
        if role not in ROLES:
            raise FormatError(f"{where}: turn {i} has role {role!r}; expected one of {', '.join(ROLES)}")
        if not isinstance(content, str) or not content.strip():
            raise FormatError(f"{where}: turn {i} ({role}) has no text")
        if IM_START in content or IM_END in content:
            raise FormatError(f"{where}: turn {i} ({role}) contains a chat-template token")
        out.append({"role": role, "content": content})
    if not any(t["role"] == "assistant" for t in out):
        raise FormatError(f"{where}: no assistant turn (nothing to train on)")
    return out


def to_messages(row: dict, where: str) -> list[dict[str, str]]:
    """A prompt row or a multi-turn row as a checked conversation."""
    if row.get("messages") is not None:
        return check_messages(row["messages"], where)
    inputs, targets = row.get("inputs"), row.get("targets")
    if not isinstance(inputs, str) or not isinstance(targets, str) or not inputs.strip() or not targets.strip():
        raise FormatError(f"{where}: needs non-empty string `inputs` and `targets`, or `messages`")
    return check_messages(prompt_messages(inputs, targets), where)


def prepare_tokenizer(tokenizer) -> list[str]:
    """Give ``tokenizer`` our chat template; add the ChatML tokens it lacks (returned: the model's embeddings must
    then be resized, and the new rows trained and saved with the adapter). Qwen2's base tokenizer lacks none."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in CHATML_TOKENS if t not in vocab]
    if missing:
        tokenizer.add_special_tokens({"extra_special_tokens": missing}, replace_extra_special_tokens=False)
    tokenizer.chat_template = chat_template()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else IM_END
    return missing
