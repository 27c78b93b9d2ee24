"""English prompt sources, as data, turned into English prompt rows (the prompt schema, ``language: en``).

Three collections:

- ``promptsource``: English catalog entries (``builders/translate/catalog_en/*.yaml``: ``language: en`` and
  ``promptsource: <dataset path>``) rendered with PromptSource's own ``templates.yaml`` files (a PromptSource
  checkout's ``promptsource/templates`` folder, ``--promptsource DIR``) by the builder itself: the same
  catalog, readers (Hub or ``--local``), ingest, split assignment, rendering, dedup and finalize as the Arabic
  prompts. Its output folder is ``_build/english/promptsource``.
- ``xp3``: an already-prompted collection with ``inputs`` / ``targets`` columns, xP3's English part
  (``bigscience/xP3``, files ``en/*.jsonl``; the Hub repo has a loading script, so its files are read directly),
  or local JSON-lines files with those columns.
- ``natural_instructions``: Super-NaturalInstructions task files (``tasks/taskNNN_*.json``: ``Definition``,
  ``Positive Examples``, ``Instances``), prompted Tk-Instruct style (definition, two positive examples, then the
  instance); or the Hub copy ``Muennighoff/natural-instructions`` (JSON lines with ``task_name``, ``id``,
  ``definition``, ``inputs``, ``targets``: the definition is put in front of the already-prompted input).

Rows of xP3 and Super-NaturalInstructions are training collections: they go to ``train``; their ``source_id``
is the builder's key of the normalised instance input, so one input is one source text.
"""

from __future__ import annotations

import glob
import hashlib
import json
import re
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from builders.schema import PROMPT_SCHEMA
from builders.sources import json_lines
from builders.splits import keys_of, source_id
from builders.steps import BuildError
from builders.steps.rejects import RejectLog

CATALOG_EN = Path(__file__).resolve().parent / "catalog_en"
COLLECTIONS = ("promptsource", "xp3", "natural_instructions")
XP3_HUB = ("bigscience/xP3", "en/*.jsonl")
NI_HUB = "Muennighoff/natural-instructions"
_SNAKE = re.compile(r"[^a-z0-9]+")


@dataclass
class EnglishSources:
    """What to read. ``promptsource`` are English catalog names (``--sources promptsource:en_imdb``)."""

    promptsource: list[str]
    promptsource_dir: str | None = None  # PromptSource's templates folder
    local: dict[str, str] | None = None  # catalog name -> local folder/file, as for `build --local`
    xp3: str | None = None  # "hub" or a local .jsonl file / folder
    natural_instructions: str | None = None  # "hub", or a folder of task JSON files / a .jsonl export
    limit: int | None = None  # rows per source (quick runs)


def english_entries() -> dict[str, dict]:
    """The English catalog entries shipped with the package (name -> raw YAML)."""
    return {p.stem: yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted(CATALOG_EN.glob("*.yaml"))}


def promptsource_catalog(names: list[str], promptsource_dir: str | Path, work: Path) -> Path:
    """A catalog dir for the builder (``catalog/`` + ``templates/``) with the English entries ``names``, each
    pointing at PromptSource's own templates file for its dataset."""
    entries = english_entries()
    unknown = sorted(set(names) - set(entries))
    if unknown:
        raise BuildError(f"unknown English catalog entries {unknown}; known: {sorted(entries)}")
    root = work / "english_catalog"
    shutil.rmtree(root, ignore_errors=True)
    (root / "catalog").mkdir(parents=True)
    for name in names:
        raw = entries[name]
        src = Path(promptsource_dir) / raw["promptsource"] / "templates.yaml"
        if not src.is_file():
            raise BuildError(f"English entry '{name}': PromptSource templates {src} not found "
                             f"(--promptsource must be PromptSource's promptsource/templates folder)")
        shutil.copyfile(CATALOG_EN / f"{name}.yaml", root / "catalog" / f"{name}.yaml")
        (root / "templates" / name).mkdir(parents=True)
        shutil.copyfile(src, root / "templates" / name / "templates.yaml")
    return root


def build_promptsource(sources: EnglishSources, work: Path, workers: int = 1) -> list[Path]:
    """Render the English catalog entries with the builder; returns its data files."""
    from builders.pipeline import BuildConfig, build

    if not sources.promptsource_dir:
        raise BuildError("promptsource sources need --promptsource DIR (PromptSource's promptsource/templates)")
    catalog = promptsource_catalog(sources.promptsource, sources.promptsource_dir, work)
    out = work / "english" / "promptsource"
    local = {k: v for k, v in (sources.local or {}).items() if k in sources.promptsource}
    build(BuildConfig(out=out, datasets=sorted(sources.promptsource), local=local, catalog_dirs=[str(catalog)],
                      workers=workers, limit=sources.limit))
    return sorted((out / "data").rglob("*.parquet"))


# ------------------------------------------------------------------------------ prompted collections


def tk_instruct_prompt(definition: str, examples: list[dict], instance_input: str, n_examples: int = 2) -> str:
    """Super-NaturalInstructions' Tk-Instruct encoding: definition, positive examples, then the instance."""
    parts = [f"Definition: {definition.strip()}"]
    for i, ex in enumerate(examples[:n_examples], start=1):
        parts.append(f"Positive Example {i} -\nInput: {ex['input'].strip()}\nOutput: {str(ex['output']).strip()}.")
    parts.append(f"Now complete the following example -\nInput: {instance_input.strip()}\nOutput:")
    return "\n\n".join(parts)


def _task_name(categories: list[str], fallback: str) -> str:
    name = _SNAKE.sub("_", (categories[0] if categories else fallback).lower()).strip("_")
    return name or "task"


def _set_aside(rejects: RejectLog | None, collection: str, dataset: str, row: int, reason: str, content) -> None:
    """A row of a prompted collection that gives no prompt, kept in ``rejects`` with the reason."""
    if rejects is not None:
        rejects.add(dataset_name=dataset, template_name=collection, stage="english", reason=reason,
                    source_split="train", source_row=row, content=json.dumps(content, ensure_ascii=False)[:2000])


def natural_instruction_rows(path: str | Path, limit: int | None = None,
                             rejects: RejectLog | None = None) -> Iterator[dict]:
    """English prompt rows from Super-NaturalInstructions task JSON files (a folder or one file). An instance
    without an output is kept in ``rejects`` (row: its index in the task file)."""
    path = Path(path)
    files = sorted(path.glob("task*.json")) if path.is_dir() else [path]
    if not files:
        raise BuildError(f"natural instructions: no task*.json files in {path}")
    for f in files:
        try:
            task = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise BuildError(f"natural instructions file {f}: cannot read it: {e}") from e
        definition = task.get("Definition")
        definition = " ".join(definition) if isinstance(definition, list) else (definition or "")
        if not definition.strip() or not isinstance(task.get("Instances"), list):
            raise BuildError(f"natural instructions file {f}: expected 'Definition' and 'Instances'")
        license_ = (task.get("Instance License") or ["unknown"])[0]
        for i, inst in enumerate(task["Instances"][:limit]):
            outputs = inst.get("output") or []
            if not outputs or not str(outputs[0]).strip():
                _set_aside(rejects, "natural_instructions", f.stem, i, "empty output", inst)
                continue
            yield {"dataset_name": f.stem, "task": _task_name(task.get("Categories") or [], f.stem),
                   "template_name": "tk_instruct_def_pos2", "row": str(inst.get("id") or i),
                   "inputs": tk_instruct_prompt(definition, task.get("Positive Examples") or [], inst["input"]),
                   "targets": str(outputs[0]).strip(), "key_text": inst["input"], "license": str(license_)}


def jsonl_rows(path: str | Path, collection: str, limit: int | None = None,
               rejects: RejectLog | None = None) -> Iterator[dict]:
    """Prompted rows from JSON lines with ``inputs`` and ``targets`` (xP3; the Hub copy of natural instructions
    adds ``definition`` and ``task_name``). A line with empty inputs or targets is kept in ``rejects`` (row: its
    line number)."""
    path = Path(path)
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    n = 0
    for f in files:
        with open(f, encoding="utf-8") as fh:
            for line_no, rec, error in json_lines(fh):
                try:
                    inputs, targets = rec["inputs"], rec["targets"]
                except (KeyError, TypeError) as e:
                    raise BuildError(f"{collection} file {f}, line {line_no}: expected JSON with 'inputs' and "
                                     f"'targets' ({error or e})") from e
                if isinstance(targets, list):
                    targets = targets[0] if targets else ""
                if not str(inputs).strip() or not str(targets).strip():
                    reason = "empty inputs" if not str(inputs).strip() else "empty targets"
                    _set_aside(rejects, collection, rec.get("task_name") or f.stem, line_no, reason, rec)
                    continue
                if rec.get("definition"):
                    inputs = f"Definition: {rec['definition'].strip()}\n\n{inputs}"
                task = _task_name([rec["task_name"]], collection) if rec.get("task_name") else collection
                yield {"dataset_name": rec.get("task_name") or f.stem, "task": task, "template_name": collection,
                       "row": str(rec.get("id") or f"{f.stem}:{line_no}"), "inputs": str(inputs),
                       "targets": str(targets), "key_text": str(rec.get("inputs")), "license": "apache-2.0"}
                n += 1
                if limit is not None and n >= limit:
                    return


def _hub_files(repo: str, pattern: str) -> str:
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo, repo_type="dataset", allow_patterns=[pattern])
    except Exception as e:
        raise BuildError(f"cannot download {repo} ({pattern}): {type(e).__name__}: {e}. Offline? Download it "
                         f"once or pass a local path") from e


def write_prompted(rows: Iterator[dict], collection: str, out: Path) -> Path:
    """English prompt rows (the prompt schema) of a prompted collection, all in train."""
    batch = list(rows)
    if not batch:
        raise BuildError(f"{collection}: no rows read")
    keys = keys_of([[r["key_text"]] for r in batch])
    table = []
    for r, (key, *_) in zip(batch, keys):
        rid = hashlib.sha256(f"{collection}\x1f{r['dataset_name']}\x1f{r['row']}".encode()).hexdigest()[:24]
        table.append({"id": rid, "source_id": source_id(key), "inputs": r["inputs"], "targets": r["targets"],
                      "dataset_name": r["dataset_name"], "task": r["task"], "task_family": "generation",
                      "template_id": collection, "template_name": r["template_name"], "answer_choices": [],
                      "split": "train", "language": "en", "license": r["license"]})
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(table, schema=PROMPT_SCHEMA), out)
    return out


def rejects_path(work: Path, collection: str) -> Path:
    """Where the rows of a prompted collection that give no prompt are kept (``REJECT_SCHEMA``)."""
    return work / "english" / f"{collection}-rejected.parquet"


def set_aside_counts(work: Path) -> dict[str, dict[str, int]]:
    """collection -> reason -> rows of the prompted collections that gave no prompt (``rejects_path``)."""
    out = {}
    for collection in COLLECTIONS:
        path = rejects_path(work, collection)
        if path.exists():
            reasons = Counter(pq.read_table(path, columns=["reason"]).column("reason").to_pylist())
            out[collection] = dict(sorted(reasons.items()))
    return out


def english_files(sources: EnglishSources, work: Path, workers: int = 1) -> dict[str, list[Path]]:
    """collection -> English prompt parquet files (the prompt schema). The rows of xP3 and natural
    instructions that give no prompt are kept in ``rejects_path`` (the PromptSource build keeps its own)."""
    files: dict[str, list[Path]] = {}
    if sources.promptsource:
        files["promptsource"] = build_promptsource(sources, work, workers)
    prompted = {}  # collection -> its reader, which takes the rejects log
    if sources.xp3:
        path = sources.xp3 if sources.xp3 != "hub" else _hub_files(*XP3_HUB) + "/en"
        prompted["xp3"] = partial(jsonl_rows, path, "xp3", sources.limit)
    if sources.natural_instructions:
        ni = sources.natural_instructions
        if ni == "hub":
            ni = _hub_files(NI_HUB, "train/*.jsonl") + "/train"
        if Path(ni).is_dir() and glob.glob(str(Path(ni) / "task*.json")):
            prompted["natural_instructions"] = partial(natural_instruction_rows, ni, sources.limit)
        else:
            prompted["natural_instructions"] = partial(jsonl_rows, ni, "natural_instructions", sources.limit)
    for collection in COLLECTIONS:  # an earlier run's (a file is written only when a row is set aside)
        rejects_path(work, collection).unlink(missing_ok=True)
    for collection, rows in prompted.items():
        rejects = RejectLog(rejects_path(work, collection))
        try:
            files[collection] = [write_prompted(rows(rejects=rejects), collection,
                                                work / "english" / f"{collection}.parquet")]
        finally:  # what was set aside is kept even when the collection gave no rows at all
            rejects.close()
    if not files:
        raise BuildError("no English sources: give --sources and/or --xp3 / --natural-instructions")
    return files
