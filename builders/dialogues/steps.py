"""The datatrove steps of dialogue generation (each one job; ``generate.py`` chains them into stages).

- ``CellReader``: this task's slice of the planned cells (``_build/cells.parquet``) as documents whose text is
  the rendered dialogue prompt.
- ``GenerateDialogues``: batches of prompts -> the backend -> parse and validate -> retry the invalid ones with a
  new seed, at most ``max_retries`` times -> valid conversations go on, the rest go to the exclusion writer with
  the last reason and output. The backend is built once per process (``backend_for``): datatrove copies steps for
  every task, and a 13B model must not be loaded again for each.
- ``DialogueChecks``: Arabic-script ratio per turn and length bounds (``filters.FilterConfig``).
Duplicates use datatrove's own steps (exact: ``ExactDedup*``; near: ``Minhash*`` with its Arabic word tokenizer),
and rows are written with the builder's ``RowWriter``, all configured in ``generate.py``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter
from tqdm.auto import tqdm

from builders.dialogues.backends import Backend, SamplingConfig, make_backend
from builders.dialogues.filters import FilterConfig, normalized, reason_kind
from builders.dialogues.parse import parse_and_validate
from builders.schema import DIALOGUE_SCHEMA, extend
from builders.splits import carve
from builders.splits import source_id as hash_id

CELL_SCHEMA = pa.schema([("source_id", pa.string()), ("topic", pa.string()), ("country", pa.string()),
                         ("dialect", pa.string()), ("index", pa.int64()), ("seed", pa.int64()),
                         ("instruction", pa.string())])
# work files between stages: the dataset row plus the normalised text duplicates are found on
STAGED_SCHEMA = extend(DIALOGUE_SCHEMA, [("text", pa.string())])
# a conversation set aside, with the stage and the reason (its own columns: a cell, not a source row)
REJECT_SCHEMA = pa.schema(
    [
        ("source_id", pa.string()),
        ("topic", pa.string()),
        ("country", pa.string()),
        ("seed", pa.int64()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("attempts", pa.int64()),
        ("content", pa.string()),
    ]
)
_SEED_STEP = 1_000_003  # the seed of retry k is seed + k * _SEED_STEP (mod 2**32)


def source_id(topic: str, country: str, index: int, seed: int) -> str:
    """The cell's id (16 hex digits, ``builders.splits.source_id``): topic, country, index and seed."""
    return hash_id(f"dialogue\x1f{topic}\x1f{country}\x1f{index}\x1f{seed}")


def row_id(source: str, generator: str, prompt_version: str) -> str:
    return hash_id(f"{source}\x1f{generator}\x1f{prompt_version}")


def split_of(source: str, validation: float, test: float) -> str:
    """The conversation's split, carved by its source_id (16 hex digits, a hash) read as an integer
    (``builders.splits.carve``)."""
    return carve(int(source, 16), {"validation": validation, "test": test}, {"validation", "test"})


def retry_seed(seed: int, attempt: int) -> int:
    return (seed + attempt * _SEED_STEP) % 2**32


# ------------------------------------------------------------------------------------------- backends


@dataclass
class BackendSpec:
    """What to build in each worker process (a loaded model is never pickled or copied)."""

    kind: str  # transformers | vllm | openai
    model: str
    trust_remote_code: bool = False
    prompt_format: str = "auto"
    sampling: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)  # base_url, device, dtype, revision, concurrency, ...

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)

    def build(self) -> Backend:
        return make_backend(self.kind, self.model, trust_remote_code=self.trust_remote_code,
                            prompt_format=self.prompt_format, sampling=SamplingConfig(**self.sampling), **self.options)


_BACKENDS: dict[str, Backend] = {}


def backend_for(spec: "BackendSpec | Callable[[], Backend]") -> Backend:
    """The process-wide backend for ``spec`` (a spec, or a factory function for tests and custom generators)."""
    key = spec.key() if isinstance(spec, BackendSpec) else f"{getattr(spec, '__module__', '')}.{getattr(spec, '__qualname__', id(spec))}"
    if key not in _BACKENDS:
        _BACKENDS[key] = spec.build() if isinstance(spec, BackendSpec) else spec()
    return _BACKENDS[key]


# ---------------------------------------------------------------------------------------------- steps


class CellReader(PipelineStep):
    """Stage 1 reader: the cells ``[start, end)`` of this task (from ``plan.json``)."""

    name = "dialogue cells"
    type = "📖 - READER"

    def __init__(self, work: str):
        super().__init__()
        self.work = work

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        work = Path(self.work)
        plan = json.loads((work / "plan.json").read_text())
        unit, total = plan["units"][rank], plan["units"][-1]["end"]
        table = pq.read_table(work / "cells.parquet").slice(unit["start"], unit["end"] - unit["start"])
        for i, row in enumerate(table.to_pylist(), start=unit["start"]):
            self.stat_update("cells")
            row["dedup_priority"] = dedup_priority_of(i, total)
            yield Document(text=row.pop("instruction"), id=row["source_id"], metadata=row)


class GenerateDialogues(PipelineStep):
    """Stage 1: prompts -> validated conversations, with bounded retries; invalid ones kept with the reason."""

    name = "generate dialogues"
    type = "🤖 - GENERATE"

    def __init__(self, backend: "BackendSpec | Callable[[], Backend]", num_turns: int, user_label: str,
                 assistant_label: str, prompt_version: str, max_retries: int = 2, batch_size: int = 8,
                 validation_fraction: float = 0.05, test_fraction: float = 0.1, exclusion_writer=None):
        super().__init__()
        self.backend, self.num_turns, self.max_retries, self.batch_size = backend, num_turns, max_retries, batch_size
        self.user_label, self.assistant_label, self.prompt_version = user_label, assistant_label, prompt_version
        self.validation_fraction, self.test_fraction = validation_fraction, test_fraction
        self.exclusion_writer = exclusion_writer

    def _attempts(self, docs: list[Document], backend: Backend, writer, rank: int, bar):
        pending = [(doc, 0) for doc in docs]
        while pending:
            seeds = [retry_seed(doc.metadata["seed"], attempt) for doc, attempt in pending]
            replies = backend.generate([doc.text for doc, _ in pending], seeds)
            if len(replies) != len(pending):
                raise RuntimeError(f"backend {backend.name} returned {len(replies)} replies for {len(pending)} prompts")
            again = []
            for (doc, attempt), reply in zip(pending, replies):
                parsed = parse_and_validate(reply, self.user_label, self.assistant_label, self.num_turns)
                if parsed.ok:
                    self.stat_update("valid")
                    if attempt:
                        self.stat_update("valid_after_retry")
                    yield self._conversation(doc, parsed.messages, backend.name, attempt)
                    bar.update(1)
                elif attempt < self.max_retries:
                    self.stat_update("retries")
                    again.append((doc, attempt + 1))
                else:
                    self.stat_update(f"invalid_{reason_kind(parsed.reason)}")
                    if writer:
                        doc.metadata.update(reject_stage="validate", reject_reason=reason_kind(parsed.reason),
                                            reject_detail=parsed.reason, attempts=attempt + 1, raw_output=reply)
                        writer.write(doc, rank)
                    bar.update(1)
            pending = again

    def _conversation(self, doc: Document, messages: list[dict], generator: str, attempt: int) -> Document:
        meta = doc.metadata
        row = {"source_id": meta["source_id"],
               "split": split_of(meta["source_id"], self.validation_fraction, self.test_fraction),
               "messages": messages, "topic": meta["topic"], "country": meta["country"], "dialect": meta["dialect"],
               "generator": generator, "seed": retry_seed(meta["seed"], attempt), "prompt_version": self.prompt_version}
        return Document(text=normalized(messages), id=row_id(meta["source_id"], generator, self.prompt_version),
                        metadata={**row, "attempts": attempt + 1, "dedup_priority": meta["dedup_priority"]})

    def run(self, data, rank: int = 0, world_size: int = 1):
        import contextlib

        backend = backend_for(self.backend)
        docs = list(data)
        bar = tqdm(total=len(docs), desc=f"generate [{rank}]", unit=" conv", mininterval=2)
        with self.exclusion_writer if self.exclusion_writer else contextlib.nullcontext() as writer:
            for start in range(0, len(docs), self.batch_size):
                with self.track_time("batch"):
                    yield from self._attempts(docs[start:start + self.batch_size], backend, writer, rank, bar)
        bar.close()


class DialogueChecks(BaseFilter):
    """Stage 1: Arabic-script ratio per turn and length bounds; failures kept with the reason."""

    name = "dialogue checks"

    def __init__(self, config: FilterConfig | None = None, exclusion_writer=None):
        super().__init__(exclusion_writer)
        self.config = config or FilterConfig()

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        reason = self.config.check(doc.metadata["messages"])
        if reason is None:
            return True
        doc.metadata.update(reject_stage="filter", reject_reason=reason_kind(reason), reject_detail=reason)
        return False, reason_kind(reason)


# ------------------------------------------------------------------------------------------- adapters


def reject_adapter(stage: str, reason: str | None = None):
    """Rejected documents of one stage -> REJECT_SCHEMA rows (``reason`` for stages with a single reason)."""

    def adapter(self, doc: Document) -> dict:
        meta = doc.metadata
        content = meta.get("raw_output")
        if content is None:
            content = json.dumps(meta.get("messages"), ensure_ascii=False)
        why = meta.get("reject_reason") or reason or meta.get("filter_reason") or stage
        return {"source_id": meta.get("source_id"), "topic": meta.get("topic"),
                "country": meta.get("country"), "seed": meta.get("seed"), "stage": meta.get("reject_stage") or stage,
                "reason": why, "detail": meta.get("reject_detail") or why, "attempts": meta.get("attempts"),
                "content": (content or "")[:20000]}

    return adapter


def dedup_content(doc: Document) -> bytes:
    return doc.text.encode("utf-8")


def dedup_priority_of(position: int, total: int) -> int:
    """Of exact duplicates the earliest cell in the plan stays: datatrove keeps the highest priority (1..65535)."""
    return 65535 - (position * 65534) // max(total, 1)


def dedup_priority(doc: Document) -> int:
    return doc.metadata["dedup_priority"]
