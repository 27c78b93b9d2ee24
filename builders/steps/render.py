"""Stage 2, render: ``SourceRowsReader -> RenderPrompts``. One task per chunk of source rows (the plan unit of
its rank), every row x every template of its dataset, templates compiled once and rendered in the sandbox."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq
from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep
from tqdm.auto import tqdm

from builders.catalog import CatalogEntry
from builders.steps.assign import assigned_path
from builders.templates import TemplateError, apply_like_promptsource

LEFTOVER_JINJA = re.compile(r"\{\{|\}\}|\{%|%\}")
RENDERED_NONE = re.compile(r"(?<![\w])None(?![\w])")
# a derived template (original_task: false) that names no derived_task is not the entry's evaluated task
DERIVED_TEST = "derived template without derived_task, kept out of the test config"


def row_id(dataset: str, source_split: str, source_row: int, template_id: str) -> str:
    """Deterministic prompt id: dataset, source split, source row and template."""
    import hashlib

    key = f"{dataset}\x1f{source_split}\x1f{source_row}\x1f{template_id}"
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def plan_unit(work: str | Path, rank: int) -> dict:
    return json.loads((Path(work) / "plan.json").read_text())["units"][rank]


class SourceRowsReader(PipelineStep):
    """The rows ``[start, end)`` of one dataset's assigned sources, as given by this rank's plan unit."""

    name = "source rows"
    type = "📖 - READER"

    def __init__(self, work: str):
        super().__init__()
        self.work = work

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        unit = plan_unit(self.work, rank)
        pf = pq.ParquetFile(assigned_path(Path(self.work), unit["dataset"]))
        start, end, offset = unit["start"], unit["end"], 0
        bar = tqdm(total=end - start, desc=f"render {unit['dataset']} [{rank}]", unit=" rows", mininterval=2)
        columns = ["source_split", "source_row", "split", "source_id", "record"]
        for group in range(pf.metadata.num_row_groups):  # read only the row groups that overlap [start, end)
            n = pf.metadata.row_group(group).num_rows
            if offset + n > start and offset < end:
                lo, hi = max(start - offset, 0), min(end - offset, n)
                recs = pf.read_row_group(group, columns=columns).slice(lo, hi - lo).to_pylist()
                self.stat_update("source_rows", value=len(recs))
                bar.update(len(recs))
                for rec in recs:
                    yield Document(text="", id=f"{unit['dataset']}/{rec['source_split']}/{rec['source_row']}",
                                   metadata={"dataset_name": unit["dataset"], **rec})
            offset += n
            if offset >= end:
                break
        bar.close()


class RenderPrompts(PipelineStep):
    """One source row -> one prompt document per template. A row the template cannot use (an empty answer
    list indexed with [0], say) becomes a document carrying ``render_error``, which the checks set aside."""

    name = "render prompts"
    type = "✍️ - RENDER"

    def __init__(self, entries: list[CatalogEntry], compile_per_row: bool = False):
        super().__init__()
        self.entries = {e.name: e for e in entries}
        self.compile_per_row = compile_per_row  # the benchmark's baseline: PromptSource's Template.apply

    def run(self, data, rank: int = 0, world_size: int = 1):
        for doc in data:
            meta = doc.metadata
            entry = self.entries[meta["dataset_name"]]
            row = json.loads(meta["record"])
            where = f"{meta['source_split']}:{meta['source_row']}"
            # braces or a "None" that the text itself contains are not rendering leftovers
            flags = {k: True for k, rx in (("data_has_jinja", LEFTOVER_JINJA), ("data_has_none", RENDERED_NONE))
                     if rx.search(meta["record"])}
            self.stat_update("prompts", value=len(entry.templates))
            for tpl in entry.templates:
                route = entry.template_task(tpl)  # derived templates go to their own task (catalog.template_task)
                task, family = route or (entry.task, entry.task_family)
                try:
                    if self.compile_per_row:
                        inputs, targets, choices = apply_like_promptsource(tpl, row)
                    else:
                        inputs, targets, choices = tpl.render(row, where)
                    reason = None
                except TemplateError as e:
                    if not e.row_level:
                        raise
                    inputs, targets, choices, reason = "", "", [], f"render error: {e}"
                yield Document(
                    text=inputs,
                    id=row_id(entry.name, meta["source_split"], meta["source_row"], tpl.id),
                    metadata={
                        "source_id": meta["source_id"],
                        "targets": targets,
                        "dataset_name": entry.name,
                        "task": task,
                        "task_family": family,
                        "template_id": tpl.id,
                        "template_name": tpl.name,
                        "answer_choices": choices,
                        "split": meta["split"],
                        "language": entry.language,
                        "license": entry.license,
                        "source_split": meta["source_split"],
                        "source_row": meta["source_row"],
                        **({"render_error": reason} if reason else {}),
                        **({"excluded": DERIVED_TEST} if route is None and meta["split"] == "test" else {}),
                        **flags,
                    },
                )
