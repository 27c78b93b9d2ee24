"""The source catalog: one YAML file per (source dataset x task), plus its templates.

Catalog entries and templates are data (see ``builders/catalog/SCHEMA.md``). Users add their own with
``--catalog-dir DIR``, a folder that mirrors the package layout: ``DIR/catalog/<name>.yaml`` and
``DIR/templates/<name>/templates.yaml``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from builders.templates import Template, TemplateError, load_templates, load_yaml

PACKAGE_DIR = Path(__file__).resolve().parent
TASK_FAMILIES = (
    "classification",
    "sequence_labeling",
    "question_answering",
    "summarization",
    "generation",
    "translation",
    "text_correction",
    "extraction",
)
OUTPUT_SPLITS = ("train", "validation", "test")
LOCAL_FORMATS = ("csv", "tsv", "json", "jsonl", "parquet", "conll", "conllu", "text", "aligned")
_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


class CatalogError(ValueError):
    """A catalog entry that is missing a key or contradicts itself. The message names the file."""


@dataclass
class LabelSpec:
    names: list[Any]
    ids: bool = False

    @cached_property
    def _index(self) -> dict[str, int]:
        return {str(n).strip(): i for i, n in enumerate(self.names)}

    def to_index(self, value: Any) -> int | None:
        """Class index of a raw label value, or None when the value is not a known label."""
        if value is None:
            return None
        if self.ids:
            if isinstance(value, str):  # a local copy that stores the names themselves ("-1", "Positive")
                named = self._index.get(value.strip())
                if named is not None:
                    return named
            try:
                idx = int(value)
            except (TypeError, ValueError):
                return None
            return idx if 0 <= idx < len(self.names) else None
        if isinstance(value, float) and value.is_integer():  # "1.0" read by a typed reader
            value = int(value)
        return self._index.get(str(value).strip())


@dataclass
class CatalogEntry:
    name: str
    task: str
    task_family: str
    license: str
    columns: dict[str, str]
    hub_id: str | None = None
    hub_config: str | None = None
    revision: str | None = None
    pretty_name: str | None = None
    description: str = ""
    homepage: str = ""
    citation: str = ""
    hub_note: str = ""
    source_dataset: str = ""  # the dataset this entry reads, counted once however many entries read it
    labels: dict[str, LabelSpec] = field(default_factory=dict)
    splits: dict[str, str] = field(default_factory=lambda: {"train": "train"})
    split_fractions: dict[str, float] = field(default_factory=lambda: {"validation": 0.05, "test": 0.1})
    local: dict[str, Any] | None = None
    optional: list[str] = field(default_factory=list)  # variables that may be empty (templates test them)
    local_labels: dict[str, LabelSpec] = field(default_factory=dict)  # local.labels: a local copy's own encoding
    split_key: list[str] | None = None  # variables whose normalised text decides the split (None: the default)
    eval_only: bool = False  # an evaluation benchmark: never sampled into training mixtures
    language: str = "ar"
    source_file: Path | None = None
    templates_file: Path | None = None

    @cached_property
    def templates(self) -> list[Template]:
        if self.templates_file is None or not self.templates_file.exists():
            raise CatalogError(f"dataset '{self.name}': no templates file (expected templates/{self.name}/templates.yaml)")
        return load_templates(self.templates_file, dataset=self.name)

    def split_key_vars(self, row: dict) -> list[str]:
        """The variables of ``row`` whose text decides its split: ``split_key``, or every mapped variable that is
        not a label and holds text (a string, or a list or dict made only of text)."""
        if self.split_key is not None:
            return self.split_key
        return [v for v in self.columns if v not in self.labels and _is_text(row.get(v))]

    @property
    def catalog_sha(self) -> str:
        text = self.source_file.read_bytes() if self.source_file else repr(self).encode()
        return hashlib.sha256(text).hexdigest()[:16]

    def check_templates(self) -> list[Template]:
        """Load the templates and check them against the columns and labels, before any row is read."""
        templates = self.templates
        if not templates:
            raise CatalogError(f"dataset '{self.name}': {self.templates_file} has no templates")
        available = set(self.columns)
        for tpl in templates:
            missing = tpl.variables - available
            if missing:
                raise TemplateError(
                    f"dataset '{self.name}', template '{tpl.name}' ({tpl.id}): uses undefined variable(s) "
                    f"{sorted(missing)}; the catalog defines {sorted(available)}"
                )
            choices = tpl.fixed_choices
            if choices is not None and len(self.labels) == 1:
                spec = next(iter(self.labels.values()))
                if len(choices) != len(spec.names):
                    raise TemplateError(
                        f"dataset '{self.name}', template '{tpl.name}' ({tpl.id}): {len(choices)} answer_choices "
                        f"for {len(spec.names)} label names"
                    )
            derived = tpl.metadata.get("derived_task")
            if derived is not None and (tpl.metadata.get("original_task", True) is not False or not _SNAKE.match(str(derived))
                                        or tpl.metadata.get("derived_family") not in TASK_FAMILIES):
                raise TemplateError(
                    f"dataset '{self.name}', template '{tpl.name}' ({tpl.id}): derived_task needs original_task: false, "
                    f"a snake_case task name and a derived_family among {', '.join(TASK_FAMILIES)}"
                )
        return templates

    def template_task(self, tpl: Template) -> tuple[str, str] | None:
        """The task config (and family) a template's prompts go to; the rule is data (SCHEMA.md): the entry's
        own task for a template of the original task; ``derived_task`` / ``derived_family`` for a derived template
        (metadata ``original_task: false``) that names its task; None for a derived template that names none: its
        prompts stay in the entry's task for train and validation and are kept out of the evaluated test config."""
        if tpl.metadata.get("original_task", True) is not False:
            return self.task, self.task_family
        if tpl.metadata.get("derived_task"):
            return str(tpl.metadata["derived_task"]), str(tpl.metadata["derived_family"])
        return None


def _is_text(value: Any) -> bool:
    """A string, or a non-empty list or dict (a translation pair, say) made only of text."""
    if isinstance(value, str):
        return True
    if isinstance(value, dict):
        return bool(value) and all(_is_text(v) for v in value.values())
    return isinstance(value, list) and bool(value) and all(_is_text(v) for v in value)


def _require(raw: dict, key: str, path: Path) -> Any:
    if raw.get(key) in (None, "", {}):
        raise CatalogError(f"catalog file {path}: missing required key '{key}'")
    return raw[key]


def _label_specs(raw: Any, columns: dict, path: Path, key: str) -> dict[str, LabelSpec]:
    specs = {}
    for var, spec in (raw or {}).items():
        if var not in columns:
            raise CatalogError(f"catalog file {path}: {key} variable '{var}' is not in 'columns'")
        if not isinstance(spec, dict) or not spec.get("names"):
            raise CatalogError(f"catalog file {path}: {key}.{var} needs a non-empty 'names' list")
        specs[var] = LabelSpec(names=list(spec["names"]), ids=bool(spec.get("ids", False)))
    return specs


def parse_entry(raw: dict, path: Path, templates_root: Path | None) -> CatalogEntry:
    if not isinstance(raw, dict):
        raise CatalogError(f"catalog file {path}: expected a mapping")
    name = _require(raw, "name", path)
    if name != path.stem:
        raise CatalogError(f"catalog file {path}: name '{name}' must equal the file name '{path.stem}'")
    if not _SNAKE.match(name):
        raise CatalogError(f"catalog file {path}: name '{name}' must be snake_case")
    task = _require(raw, "task", path)
    if not _SNAKE.match(task):
        raise CatalogError(f"catalog file {path}: task '{task}' must be snake_case (it becomes a config name)")
    family = _require(raw, "task_family", path)
    if family not in TASK_FAMILIES:
        raise CatalogError(f"catalog file {path}: task_family '{family}' is not one of {', '.join(TASK_FAMILIES)}")
    if "hub_id" not in raw:
        raise CatalogError(f"catalog file {path}: missing required key 'hub_id' (null only with a hub_note)")
    if raw["hub_id"] is None and not raw.get("hub_note"):
        raise CatalogError(f"catalog file {path}: hub_id is null; add hub_note saying why")
    columns = _require(raw, "columns", path)
    if not isinstance(columns, dict):
        raise CatalogError(f"catalog file {path}: 'columns' must map template variables to source columns")
    splits = raw.get("splits") or {"train": "train"}
    bad = {k: v for k, v in splits.items() if v not in OUTPUT_SPLITS}
    if bad:
        raise CatalogError(f"catalog file {path}: splits {bad} must map to one of {OUTPUT_SPLITS}")
    labels = _label_specs(raw.get("labels"), columns, path, "labels")
    unknown_optional = set(raw.get("optional") or []) - set(columns)
    if unknown_optional:
        raise CatalogError(f"catalog file {path}: optional variables {sorted(unknown_optional)} are not in 'columns'")
    local = raw.get("local")
    local_labels = {}
    if local is not None:
        if not isinstance(local, dict) or local.get("format") not in LOCAL_FORMATS:
            raise CatalogError(f"catalog file {path}: local.format must be one of {', '.join(LOCAL_FORMATS)}")
        local_labels = _label_specs(local.get("labels"), columns, path, "local.labels")
        for var, spec in local_labels.items():
            if var in labels and len(spec.names) != len(labels[var].names):
                raise CatalogError(f"catalog file {path}: local.labels.{var} must have as many names as labels.{var}")
    split_key = raw.get("split_key")
    if split_key is not None:
        if not isinstance(split_key, list) or not split_key or not all(isinstance(v, str) for v in split_key):
            raise CatalogError(f"catalog file {path}: split_key must be a non-empty list of template variables")
        unknown_key = sorted(set(split_key) - set(columns))
        if unknown_key:
            raise CatalogError(f"catalog file {path}: split_key variables {unknown_key} are not in 'columns'")
    license_ = _require(raw, "license", path)
    templates_file = templates_root / name / "templates.yaml" if templates_root else None
    return CatalogEntry(
        name=name,
        task=task,
        task_family=family,
        license=str(license_),
        columns={str(k): str(v) for k, v in columns.items()},
        hub_id=raw.get("hub_id"),
        hub_config=raw.get("hub_config"),
        revision=raw.get("revision"),
        pretty_name=raw.get("pretty_name") or name,
        description=raw.get("description") or "",
        homepage=raw.get("homepage") or "",
        citation=raw.get("citation") or "",
        hub_note=raw.get("hub_note") or "",
        source_dataset=str(raw.get("source_dataset") or raw.get("hub_id") or name),
        labels=labels,
        splits={str(k): v for k, v in splits.items()},
        split_fractions=raw.get("split_fractions") or {"validation": 0.05, "test": 0.1},
        local=local,
        local_labels=local_labels,
        optional=list(raw.get("optional") or []),
        split_key=list(split_key) if split_key else None,
        eval_only=bool(raw.get("eval_only", False)),
        language=str(raw.get("language") or "ar"),
        source_file=path,
        templates_file=templates_file,
    )


def load_catalog(extra_dirs: list[str | Path] | tuple = (), override: bool = False) -> dict[str, CatalogEntry]:
    """The package catalog, then each ``--catalog-dir``. An entry whose name is already taken (by the package or
    an earlier dir) is an error naming both files, unless ``override`` (``--override``) lets the later one win."""
    roots = [PACKAGE_DIR] + [Path(d) for d in extra_dirs]
    entries: dict[str, CatalogEntry] = {}
    for root in roots:
        catalog_dir = root / "catalog"
        if root is not PACKAGE_DIR and not catalog_dir.is_dir():
            raise CatalogError(f"catalog dir {root}: expected a 'catalog/' folder inside it")
        for path in sorted(catalog_dir.glob("*.yaml")):
            try:
                raw = load_yaml(path.read_text(encoding="utf-8-sig"))
            except yaml.YAMLError as e:
                raise CatalogError(f"catalog file {path}: invalid YAML: {e}") from e
            entry = parse_entry(raw, path, root / "templates")
            earlier = entries.get(entry.name)
            if earlier is not None and not override:
                raise CatalogError(
                    f"catalog file {path}: dataset '{entry.name}' is already defined by {earlier.source_file}; "
                    f"rename it, or pass --override to replace the earlier entry"
                )
            entries[entry.name] = entry
    return entries


def select(catalog: dict[str, CatalogEntry], names: list[str] | None) -> list[CatalogEntry]:
    if not names:
        return list(catalog.values())
    unknown = [n for n in names if n not in catalog]
    if unknown:
        raise CatalogError(f"unknown dataset(s) {unknown}; see `arabic-prompts catalog list`")
    return [catalog[n] for n in names]
