"""Stage 2, checks: ``PromptFilter`` sets aside prompts with an empty side, a rendered ``None`` or leftover
jinja (each kept with its reason by the exclusion writer).

It takes prompt batches (``RenderPrompts``) or Documents. On a batch the common case is decided for the whole
column at once (a render error, an empty side, nothing suspect); only the few prompts with braces or a "None"
in them are looked at one by one, with the same rules as for a Document."""

from __future__ import annotations

import contextlib
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter

from builders.steps.render import CHECK_COLUMNS, LEFTOVER_JINJA, LEFTOVER_JINJA_RE2, NONE_SUBSTRING, RENDERED_NONE

_SUSPECT = re.compile(LEFTOVER_JINJA.pattern + "|" + RENDERED_NONE.pattern)
_SUSPECT_RE2 = LEFTOVER_JINJA_RE2 + "|" + NONE_SUBSTRING  # a superset of _SUSPECT (RE2 has no look-around)
# the characters str.strip() removes (str.isspace), so "empty" means the same for a column as for one string
PY_WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_BLANK_RE2 = f"^[{PY_WHITESPACE}]*$"
_LOOK_RE2 = f"{_SUSPECT_RE2}|{_BLANK_RE2}"  # what a batch's prompts are looked at one by one for: one pass per side


def prompt_problem(text: str, targets: str, render_error: str | None = None, data_has_none: bool = False,
                   data_has_jinja: bool = False, excluded: str | None = None) -> str | None:
    """Why a prompt is set aside (None: it is kept). ``data_has_*``: the source row itself holds a "None" or
    braces, which are then not rendering leftovers. ``excluded``: a reason the render step gave (a derived
    template's test prompt)."""
    if excluded:
        return excluded
    if render_error:
        return "render error"
    if not text.strip():
        return "empty inputs"
    if not targets.strip():
        return "empty targets"
    if not _SUSPECT.search(text) and not _SUSPECT.search(targets):
        return None  # the common case: one scan per side
    if not data_has_none and (RENDERED_NONE.search(text) or RENDERED_NONE.search(targets)):
        return "rendered None"
    if not data_has_jinja and (LEFTOVER_JINJA.search(text) or LEFTOVER_JINJA.search(targets)):
        return "leftover jinja"
    return None


class PromptFilter(BaseFilter):
    name = "prompt checks"

    def run(self, data, rank: int = 0, world_size: int = 1):
        """BaseFilter.run with the statistics counted once per task rather than updated for every prompt
        (on the hot path of a build); dropped prompts still go to the exclusion writer with their reason."""
        counts = {"kept": 0, "dropped": 0}
        with self.exclusion_writer if self.exclusion_writer else contextlib.nullcontext() as writer:
            for item in data:
                if isinstance(item, (pa.RecordBatch, pa.Table)):
                    kept = self._filter_batch(item, writer, rank, counts)
                    if kept.num_rows:
                        yield kept
                    continue
                result = self.filter(item)
                if result is True:
                    counts["kept"] += 1
                    yield item
                    continue
                self._drop(item, result[1], writer, rank, counts)
        self.stat_update("total", value=counts["kept"] + counts["dropped"])
        self.stat_update("forwarded", value=counts["kept"])
        self.stat_update("dropped", value=counts["dropped"])

    def _drop(self, doc: Document, reason: str, writer, rank: int, counts: dict) -> None:
        counts["dropped"] += 1
        doc.metadata["filter_reason"] = reason
        self.stat_update(f"dropped_{reason}")
        if writer:
            writer.write(doc, rank)

    def _filter_batch(self, batch: pa.RecordBatch, writer, rank: int, counts: dict) -> pa.RecordBatch:
        inputs, targets = batch.column("inputs"), batch.column("targets")
        names = batch.schema.names
        look = pc.or_(pc.match_substring_regex(inputs, _LOOK_RE2), pc.match_substring_regex(targets, _LOOK_RE2))
        for name in ("render_error", "excluded"):
            if name in names:
                look = pc.or_(look, pc.is_valid(batch.column(name)))
        candidates = np.flatnonzero(pc.fill_null(look, True).to_numpy(zero_copy_only=False))
        if not len(candidates):
            counts["kept"] += batch.num_rows
            return batch.drop_columns([c for c in CHECK_COLUMNS if c in names])
        rows = batch.take(pa.array(candidates)).to_pylist()
        drop = np.zeros(batch.num_rows, dtype=bool)
        for i, row in zip(candidates, rows):
            reason = prompt_problem(row["inputs"], row["targets"], row.get("render_error"),
                                    bool(row.get("data_has_none")), bool(row.get("data_has_jinja")),
                                    row.get("excluded"))
            if reason:
                drop[i] = True
                meta = {k: v for k, v in row.items() if k not in ("inputs", "id") and v is not None}
                self._drop(Document(text=row["inputs"], id=row["id"], metadata=meta), reason, writer, rank, counts)
        counts["kept"] += int((~drop).sum())
        kept = batch.filter(pa.array(~drop)) if drop.any() else batch
        return kept.drop_columns([c for c in CHECK_COLUMNS if c in names])

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        meta = doc.metadata
        reason = prompt_problem(doc.text, meta["targets"], meta.get("render_error"), bool(meta.get("data_has_none")),
                                bool(meta.get("data_has_jinja")), meta.get("excluded"))
        return True if reason is None else (False, reason)
