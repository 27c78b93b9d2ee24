"""The build's datatrove steps, one stage per module:

- ``ingest``  ``IngestSource``: read a source, map it to template variables, key each row by its text
- ``assign``  ``AssignSplits``: one split per source text across the whole build
- ``render``  ``SourceRowsReader`` -> ``RenderPrompts``: every row x every template, sandboxed
- ``checks``  ``PromptFilter``: set aside empty, ``None`` or leftover-jinja prompts
- ``dedup``   ``PromptSignatures`` -> ``FindDuplicates`` -> ``DropDuplicates``: exact duplicates, and a
              normalised input that a higher split already has
- ``write``   ``RowWriter`` (any row schema), ``RankParquetReader``
- ``rejects`` what is set aside is kept, with its reason

Executors (local, Slurm, Ray) are datatrove's, chosen in ``builders.executors``; the stages are put together
in ``builders.pipeline``.
"""


class BuildError(RuntimeError):
    """A build that cannot go on (no rows, a broken template, a failed task, an unsafe output folder)."""
