"""Row schemas and field names of every dataset the project writes.

The bottom of the import graph: this module imports nothing from ``builders`` (only pyarrow), so the card,
``validate``, ``publish``, ``load_built`` and every pipeline (prompts, translated prompts, dialogues) share one
definition of what a row is. A dataset folder's ``build_manifest.json`` names its ``kind``; ``SCHEMAS[kind]``
is the schema its shards must have.
"""

from __future__ import annotations

import pyarrow as pa

SPLITS = ("train", "validation", "test")
# A source text seen in several splits goes to the highest: test, then validation, then train.
SPLIT_PRIORITY = {"train": 1, "validation": 2, "test": 3}

PROMPTS = "prompts"

# A prompt row (the Aya collection's field names, plus source_id). ``source_id`` is a stable hash of the
# normalised source text that decided the row's split: every prompt made from one source text (any template,
# any task, any dataset) carries the same source_id, and all of them sit in one split.
PROMPT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source_id", pa.string()),
        ("inputs", pa.string()),
        ("targets", pa.string()),
        ("dataset_name", pa.string()),
        ("task", pa.string()),
        ("task_family", pa.string()),
        ("template_id", pa.string()),
        ("template_name", pa.string()),
        ("answer_choices", pa.list_(pa.string())),
        ("split", pa.string()),
        ("language", pa.string()),
        ("license", pa.string()),
    ]
)
PROMPT_FIELDS = PROMPT_SCHEMA.names

DIALOGUES = "dialogues"

# A synthetic multi-turn conversation (``arabic-prompts dialogues generate``): the messages, the grid cell it was
# generated for (topic and country keys, the ISO 639-3 code of its Arabic variety), the generator, the seed of the
# try that succeeded and the prompt version. ``source_id`` identifies the cell (topic, country, index, seed): one
# conversation per source, so one split per source.
DIALOGUE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source_id", pa.string()),
        ("split", pa.string()),
        ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("topic", pa.string()),
        ("country", pa.string()),
        ("dialect", pa.string()),
        ("generator", pa.string()),
        ("seed", pa.int64()),
        ("prompt_version", pa.string()),
    ]
)
DIALOGUE_FIELDS = DIALOGUE_SCHEMA.names

# kind -> the schema of its shards. Pipelines that write other datasets add their kind here.
SCHEMAS: dict[str, pa.Schema] = {PROMPTS: PROMPT_SCHEMA, DIALOGUES: DIALOGUE_SCHEMA}


def extend(base: pa.Schema, fields: list[tuple[str, pa.DataType]] | list[pa.Field]) -> pa.Schema:
    """``base`` with more columns appended (a translated-prompts or mixture schema is the prompt schema plus
    its own columns). Names must be new."""
    new = [f if isinstance(f, pa.Field) else pa.field(*f) for f in fields]
    clash = sorted(set(base.names) & {f.name for f in new})
    if clash:
        raise ValueError(f"columns {clash} are already in the schema")
    return pa.schema(list(base) + new)


# A training mixture (``arabic-prompts mix``): prompt rows sampled from built datasets, plus where each came from:
# ``origin`` (native: built from Arabic datasets; translated: from the translated-prompts pipeline) and ``input``
# (the dataset folder or Hub id it was sampled from).
MIXTURE = "mixture"
MIXTURE_SCHEMA = extend(PROMPT_SCHEMA, [("origin", pa.string()), ("input", pa.string())])
SCHEMAS[MIXTURE] = MIXTURE_SCHEMA


def schema_for(kind: str) -> pa.Schema:
    try:
        return SCHEMAS[kind]
    except KeyError:
        raise ValueError(f"unknown dataset kind {kind!r} (known: {', '.join(sorted(SCHEMAS))})") from None


# ------------------------------------------------------------------------------- build work files

# A source row after ingest (``_build/sources/<dataset>.parquet``): its template variables as JSON, its
# normalised-text key (``source_id``), the hashes of each normalised key text (``parts``) and its winnowing
# fingerprints (``shingles``): rows that share a text or a run of 10 words, in any dataset, are linked; the split its source gave it (``own_split``) and the split the whole
# build assigned to it (``split``). ``row_hash`` identifies the row's content (its key and the other
# variables), ``label_hash`` its label variables: two rows with one source_id and different label_hash are
# conflicting-label duplicates.
SOURCE_SCHEMA = pa.schema(
    [
        ("source_split", pa.string()),
        ("source_row", pa.int64()),
        ("own_split", pa.string()),
        ("split", pa.string()),
        ("source_id", pa.string()),
        ("parts", pa.list_(pa.uint64())),
        ("shingles", pa.list_(pa.uint64())),
        ("row_hash", pa.uint64()),
        ("label_hash", pa.uint64()),
        ("record", pa.string()),
    ]
)

# A rejected row or prompt, with the stage that set it aside and why.
REJECT_SCHEMA = pa.schema(
    [
        ("dataset_name", pa.string()),
        ("template_name", pa.string()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("source_split", pa.string()),
        ("source_row", pa.int64()),
        ("content", pa.string()),
    ]
)


# ------------------------------------------------------------------------------------- translated prompts

TRANSLATED = "translated-prompts"
# A machine-translated prompt: the prompt schema (Arabic inputs/targets/answer_choices, language "ar") plus the
# English it came from, every translated segment with its CometKiwi score, the lowest score, the models, and, for
# the rows of the ``rejected`` config, why the row was set aside (the failing segment and its score).
TRANSLATED_SCHEMA = extend(
    PROMPT_SCHEMA,
    [
        ("inputs_en", pa.string()),
        ("targets_en", pa.string()),
        ("answer_choices_en", pa.list_(pa.string())),
        ("source_collection", pa.string()),
        ("segments_en", pa.list_(pa.string())),
        ("segments_ar", pa.list_(pa.string())),
        ("segment_scores", pa.list_(pa.float64())),
        ("qe_min", pa.float64()),
        ("mt_model", pa.string()),
        ("qe_model", pa.string()),
        ("machine_translated", pa.bool_()),
        ("human_corrected", pa.bool_()),
        ("reject_reason", pa.string()),
        ("failing_segment", pa.string()),
        ("failing_score", pa.float64()),
    ],
)
SCHEMAS[TRANSLATED] = TRANSLATED_SCHEMA
