"""Rejected rows and prompts are kept, with the stage and the reason: nothing is dropped silently."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.data import Document

from builders.records import to_json
from builders.schema import REJECT_SCHEMA


class RejectLog:
    """Rejected source rows, appended to one parquet file (``REJECT_SCHEMA``) in batches."""

    def __init__(self, path: Path):
        self.path, self.rows, self.writer = path, [], None

    def add(self, **row: Any) -> None:
        self.rows.append(row)
        if len(self.rows) >= 2000:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.path, REJECT_SCHEMA)
        self.writer.write_table(pa.Table.from_pylist(self.rows, schema=REJECT_SCHEMA))
        self.rows = []

    def close(self) -> None:
        self.flush()
        if self.writer is not None:
            self.writer.close()


def reject_adapter(stage: str):
    """A datatrove writer adapter that turns a set-aside prompt document into a ``REJECT_SCHEMA`` row."""

    def adapter(self, doc: Document) -> dict:
        meta = doc.metadata
        return {
            "dataset_name": meta.get("dataset_name"),
            "template_name": meta.get("template_name"),
            "stage": stage,
            "reason": meta.get("render_error") or meta.get("filter_reason") or stage,
            "source_split": meta.get("source_split"),
            "source_row": meta.get("source_row"),
            "content": to_json({"inputs": doc.text, "targets": meta.get("targets")})[:2000],
        }

    return adapter
