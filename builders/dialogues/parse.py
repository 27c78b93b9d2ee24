"""Model output -> conversation, and its validation.

The prompt asks for one turn per line as ``<label>: <text>`` (``prompts/dialogue.yaml``). The parser accepts the
small variations models add around a label (a list marker, markdown bold, a space before the colon, a full-width
colon), keeps lines without a label as continuations of the current turn, and drops text before the first label
(a model's "Sure, here is the conversation:"), reporting that it did.

Validation: at least one turn, the first from the user, roles alternating, exactly the requested number of
turns, and no empty turn. A failure gives one reason, ``"<kind>: <detail>"`` (the report counts kinds); the
generator retries, then keeps the reject with its reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

ROLES = ("user", "assistant")


@dataclass
class Parsed:
    messages: list[dict] = field(default_factory=list)  # [{"role": "user"|"assistant", "content": str}]
    dropped_preamble: str = ""
    reason: str | None = None  # None when valid

    @property
    def ok(self) -> bool:
        return self.reason is None


def _header(labels: dict[str, str]) -> re.Pattern:
    alternatives = "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))
    # optional list marker / bold, the label, optional bold, a colon (ascii or full-width), optional bold
    return re.compile(rf"^\s*(?:[-*•]\s*|\d+\s*[.)-]\s*)?(?:\*\*|__)?\s*({alternatives})\s*(?:\*\*|__)?\s*[:：]"
                      rf"\s*(?:\*\*|__)?\s*(.*)$")


def parse_conversation(text: str, user_label: str, assistant_label: str) -> Parsed:
    """Split ``text`` into messages by their role labels (no validation)."""
    labels = {user_label: "user", assistant_label: "assistant"}
    header = _header(labels)
    out = Parsed()
    current: dict | None = None
    preamble: list[str] = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        m = header.match(line)
        if m:
            current = {"role": labels[m.group(1)], "content": m.group(2).strip()}
            out.messages.append(current)
        elif current is None:
            preamble.append(line)
        else:
            current["content"] = (current["content"] + "\n" + line.strip()).strip()
    out.dropped_preamble = "\n".join(preamble).strip()
    for msg in out.messages:
        msg["content"] = msg["content"].strip().strip("*_").strip()
    return out


def validate(messages: list[dict], num_turns: int) -> str | None:
    """None when the conversation is valid, else the reason."""
    if not messages:
        return "no turns found"
    for i, msg in enumerate(messages):
        expected = ROLES[i % 2]
        if msg["role"] != expected:
            return "first turn not by the user" if i == 0 else f"roles do not alternate: turn {i + 1}"
        if not msg["content"].strip():
            return f"empty turn: turn {i + 1}"
    if len(messages) != num_turns:
        return f"wrong turn count: {len(messages)} turns, expected {num_turns}"
    return None


def parse_and_validate(text: str, user_label: str, assistant_label: str, num_turns: int) -> Parsed:
    parsed = parse_conversation(text, user_label, assistant_label)
    parsed.reason = validate(parsed.messages, num_turns)
    return parsed
