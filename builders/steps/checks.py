"""Stage 2, checks: ``PromptFilter`` sets aside prompts with an empty side, a rendered ``None`` or leftover
jinja (each kept with its reason by the exclusion writer)."""

from __future__ import annotations

import contextlib
import re

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter

from builders.steps.render import LEFTOVER_JINJA, RENDERED_NONE

_SUSPECT = re.compile(LEFTOVER_JINJA.pattern + "|" + RENDERED_NONE.pattern)


class PromptFilter(BaseFilter):
    name = "prompt checks"

    def run(self, data, rank: int = 0, world_size: int = 1):
        """BaseFilter.run with the statistics counted once per task rather than updated for every prompt
        (on the hot path of a build); dropped prompts still go to the exclusion writer with their reason."""
        kept = dropped = 0
        with self.exclusion_writer if self.exclusion_writer else contextlib.nullcontext() as writer:
            for doc in data:
                result = self.filter(doc)
                if result is True:
                    kept += 1
                    yield doc
                    continue
                dropped += 1
                doc.metadata["filter_reason"] = result[1]
                self.stat_update(f"dropped_{result[1]}")
                if writer:
                    writer.write(doc, rank)
        self.stat_update("total", value=kept + dropped)
        self.stat_update("forwarded", value=kept)
        self.stat_update("dropped", value=dropped)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        meta = doc.metadata
        if meta.get("excluded"):  # set by the render step (a derived template's test prompt)
            return False, meta["excluded"]
        if meta.get("render_error"):
            return False, "render error"
        if not doc.text.strip():
            return False, "empty inputs"
        if not meta["targets"].strip():
            return False, "empty targets"
        if not _SUSPECT.search(doc.text) and not _SUSPECT.search(meta["targets"]):
            return True  # the common case: one scan per side
        if not meta.get("data_has_none") and (RENDERED_NONE.search(doc.text) or RENDERED_NONE.search(meta["targets"])):
            return False, "rendered None"
        if not meta.get("data_has_jinja") and (LEFTOVER_JINJA.search(doc.text) or LEFTOVER_JINJA.search(meta["targets"])):
            return False, "leftover jinja"
        return True
