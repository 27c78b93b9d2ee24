"""Reading conversations (a built dialogue folder, parquet or JSON lines with a ``messages`` column) and turning
them into text (the training and evaluation format)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

USER_LABEL, ASSISTANT_LABEL = "المستخدم", "المساعد"  # the labels of prompts/dialogue.yaml


class ConversationsError(ValueError):
    """A conversations file that cannot be read; the message names the file and row."""


def _check(row: dict, where: str) -> dict:
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ConversationsError(f"{where}: no 'messages' list")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant", "system") or \
                not isinstance(m.get("content"), str):
            raise ConversationsError(f"{where}: message {i} is not {{role: user|assistant|system, content: str}}")
    return row


def read_conversations(path: str | Path, limit: int | None = None, split: str | None = None) -> list[dict]:
    """Rows with ``messages`` (and whatever else the file has) from a .jsonl/.json/.parquet file or a folder of
    parquet files (a built dialogue dataset: its ``data/`` shards). ``split``: only the rows of that split
    (rows need a ``split`` field then)."""
    rows = _read_conversations(Path(path), None if split else limit)
    if split:
        if rows and "split" not in rows[0]:
            raise ConversationsError(f"{path}: rows have no 'split' field, so --split {split} cannot be applied")
        rows = [r for r in rows if r.get("split") == split]
        if not rows:
            raise ConversationsError(f"{path}: no rows in split '{split}'")
    return rows[:limit] if limit else rows


def _read_conversations(path: Path, limit: int | None) -> list[dict]:
    if not path.exists():
        raise ConversationsError(f"{path}: no such file or folder")
    if path.is_dir():
        files = sorted((path / "data").rglob("*.parquet")) if (path / "data").is_dir() else sorted(path.rglob("*.parquet"))
        files = [f for f in files if "_build" not in f.relative_to(path).parts] or files
        if not files:
            raise ConversationsError(f"{path}: no parquet files")
        rows = []
        for f in files:
            rows += [_check(r, f"{f} row {i}") for i, r in enumerate(pq.read_table(f).to_pylist())]
            if limit and len(rows) >= limit:
                break
        return rows[:limit] if limit else rows
    if path.suffix == ".parquet":
        rows = pq.read_table(path).to_pylist()
        return [_check(r, f"{path} row {i}") for i, r in enumerate(rows[:limit] if limit else rows)]
    if path.suffix in (".jsonl", ".json"):
        text = path.read_text(encoding="utf-8-sig")
        if path.suffix == ".json" and text.lstrip().startswith("["):
            raw = json.loads(text)
        else:
            from builders.sources import json_lines

            raw = []
            for line_no, record, error in json_lines(text.splitlines()):
                if error:
                    raise ConversationsError(f"{path} line {line_no}: not JSON ({error})")
                raw.append(record)
        return [_check(r, f"{path} row {i}") for i, r in enumerate(raw[:limit] if limit else raw)]
    raise ConversationsError(f"{path}: expected a .jsonl, .json or .parquet file or a folder")


def format_conversation(messages: list[dict], user_label: str = USER_LABEL, assistant_label: str = ASSISTANT_LABEL) -> str:
    """``label: content`` lines, the format the generation prompt asks for (``parse_conversation`` reads it back)."""
    labels = {"user": user_label, "assistant": assistant_label}
    return "\n".join(f"{labels.get(m['role'], m['role'])}: {m['content']}" for m in messages if m["role"] != "system")


def conversation_text(messages: list[dict], tokenizer=None) -> str:
    """The text a model is trained and scored on: the tokenizer's chat template when it has one, else
    ``format_conversation``."""
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False)
    return format_conversation(messages)
