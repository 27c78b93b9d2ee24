"""PromptSource-format templates: load them, compile them once, render rows in a sandbox.

A template file is PromptSource's ``templates.yaml`` (``!Template`` / ``!TemplateMetadata`` tags are optional);
``jinja`` holds ``input ||| target``. Rendering uses jinja2's SandboxedEnvironment with StrictUndefined, so a
template cannot reach Python internals (``__class__`` ...) and a misspelt variable fails loudly. Every error
names the dataset, the template and, when rendering, the row.
"""

from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import yaml
from jinja2.sandbox import SandboxedEnvironment

SEPARATOR = "|||"
_PROTECTED = "\ue000\ue001\ue000"  # stands in for a '|||' that comes from the data while rendering
_TOP_LEVEL_UNDEFINED = re.compile(r"^'(\w+)' is undefined$")

# Arabic diacritics (tashkeel: fathatan .. sukun, superscript alef) and tatweel.
_DIACRITICS = re.compile("[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed\u0640]")


class TemplateError(ValueError):
    """A template that cannot be loaded or rendered. The message names dataset, template and row.

    ``row_level`` is True when the template is sound but this row's data does not fit it (an empty answer
    list indexed with ``[0]``, say): the builder rejects that row with the reason instead of stopping.
    """

    def __init__(self, message: str, row_level: bool = False):
        super().__init__(message)
        self.row_level = row_level


def strip_diacritics(text: str) -> str:
    """Remove Arabic diacritics (tashkeel) and tatweel."""
    return _DIACRITICS.sub("", str(text))


def bio_spans(tokens: list[str], tags: list[str]) -> list[list[str]]:
    """Group BIO (or IOB1) tagged tokens into ``[text, type]`` spans, in order of appearance."""
    spans: list[list[str]] = []
    current: list[str] | None = None
    for token, tag in zip(tokens, tags):
        tag = str(tag)
        if tag == "O" or not tag:
            current = None
            continue
        prefix, _, label = tag.partition("-")
        if not label:  # a bare type without B-/I- prefix
            prefix, label = "I", prefix
        if prefix == "B" or current is None or current[1] != label:
            current = [str(token), label]
            spans.append(current)
        else:
            current[0] += " " + str(token)
    return spans


def _zip(left: list, right: list) -> list[tuple]:
    return list(zip(left, right))


def make_environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)
    env.filters.update(strip_diacritics=strip_diacritics, bio_spans=bio_spans, zip=_zip)
    return env


ENV = make_environment()


class _TagLoader(yaml.SafeLoader):
    """Reads PromptSource's files: ``!Template`` and ``!TemplateMetadata`` become plain mappings."""


def _mapping(loader: yaml.SafeLoader, node: yaml.Node) -> dict:
    return loader.construct_mapping(node, deep=True)


_TagLoader.add_constructor("!Template", _mapping)
_TagLoader.add_constructor("!TemplateMetadata", _mapping)


@dataclass
class Template:
    """One prompt template. ``render(row)`` returns ``(inputs, targets, answer_choices)``."""

    id: str
    name: str
    jinja: str
    dataset: str
    answer_choices: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    reference: str = ""

    def __getstate__(self) -> dict:
        # compiled jinja objects are rebuilt lazily in each worker process
        return {k: v for k, v in self.__dict__.items() if k not in ("compiled", "compiled_choices", "variables", "fixed_choices")}

    def _where(self, row: str | None = None) -> str:
        where = f"dataset '{self.dataset}', template '{self.name}' ({self.id})"
        return f"{where}, row {row}" if row is not None else where

    @cached_property
    def compiled(self) -> jinja2.Template:
        try:
            return ENV.from_string(self.jinja)
        except jinja2.TemplateSyntaxError as e:
            raise TemplateError(f"{self._where()}: jinja syntax error line {e.lineno}: {e.message}") from e

    @cached_property
    def compiled_choices(self) -> jinja2.Template | None:
        if not self.answer_choices:
            return None
        try:
            return ENV.from_string(self.answer_choices)
        except jinja2.TemplateSyntaxError as e:
            raise TemplateError(f"{self._where()}: answer_choices syntax error: {e.message}") from e

    @cached_property
    def variables(self) -> set[str]:
        """Names the template reads from the row (besides ``answer_choices``)."""
        names = jinja2.meta.find_undeclared_variables(ENV.parse(self.jinja))
        if self.answer_choices:
            names |= jinja2.meta.find_undeclared_variables(ENV.parse(self.answer_choices))
        return names - {"answer_choices"}

    @cached_property
    def fixed_choices(self) -> list[str] | None:
        """The answer choices when they do not depend on the row (the usual classification case)."""
        if self.answer_choices and not jinja2.meta.find_undeclared_variables(ENV.parse(self.answer_choices)):
            return split_choices(self.compiled_choices.render())
        return None

    @property
    def sha(self) -> str:
        payload = "\x1f".join([self.id, self.name, self.jinja, self.answer_choices or ""])
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def render(self, row: dict[str, Any], row_ref: str | None = None) -> tuple[str, str, list[str]]:
        protected = any(isinstance(v, str) and SEPARATOR in v for v in row.values())
        if protected:  # a '|||' in the data must not split input from target
            row = {k: v.replace(SEPARATOR, _PROTECTED) if isinstance(v, str) else v for k, v in row.items()}
        try:
            choices = self.fixed_choices
            if choices is None:  # choices that depend on the row are rendered for each row
                choices = split_choices(self.compiled_choices.render(**row)) if self.compiled_choices else []
            else:
                choices = list(choices)
            text = self.compiled.render(answer_choices=choices, **row)
        except TemplateError:
            raise
        except jinja2.exceptions.SecurityError as e:
            raise TemplateError(f"{self._where(row_ref)}: unsafe template operation blocked: {e}") from e
        except jinja2.exceptions.UndefinedError as e:
            missing = _TOP_LEVEL_UNDEFINED.match(str(e))
            row_level = not (missing and missing.group(1) not in row)
            raise TemplateError(f"{self._where(row_ref)}: {e} (variables: {sorted(row)})", row_level) from e
        except Exception as e:  # IndexError on a bad label, TypeError on a wrong column type ...
            raise TemplateError(f"{self._where(row_ref)}: {type(e).__name__}: {e}", row_level=True) from e
        inputs, sep, targets = text.partition(SEPARATOR)
        if not sep:
            raise TemplateError(f"{self._where(row_ref)}: rendered text has no '{SEPARATOR}' between input and target")
        if protected:
            inputs, targets = inputs.replace(_PROTECTED, SEPARATOR), targets.replace(_PROTECTED, SEPARATOR)
        return inputs.strip(), targets.strip(), choices


def apply_like_promptsource(tpl: Template, row: dict[str, Any]) -> tuple[str, str, list[str]]:
    """What PromptSource's ``Template.apply`` does for every example: copy the example, compile and render the
    answer choices, compile and render the template. Only the benchmark's baseline uses it."""
    example = copy.deepcopy(row)
    choices = split_choices(ENV.from_string(tpl.answer_choices).render(**example)) if tpl.answer_choices else []
    inputs, _, targets = ENV.from_string(tpl.jinja).render(answer_choices=choices, **example).partition(SEPARATOR)
    return inputs.strip(), targets.strip(), choices


def split_choices(rendered: str) -> list[str]:
    return [c.strip() for c in rendered.split(SEPARATOR)]


def load_templates(path: str | Path, dataset: str | None = None) -> list[Template]:
    """Load a PromptSource ``templates.yaml`` (ours or PromptSource's own English ones)."""
    path = Path(path)
    try:
        doc = yaml.load(path.read_text(encoding="utf-8-sig"), Loader=_TagLoader)
    except (OSError, yaml.YAMLError) as e:
        raise TemplateError(f"templates file {path}: cannot read: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("templates"), dict):
        raise TemplateError(f"templates file {path}: expected a mapping with 'dataset' and 'templates'")
    name = dataset or doc.get("dataset") or path.parent.name
    if doc.get("subset"):
        name = dataset or f"{doc['dataset']}/{doc['subset']}"
    templates, seen_names = [], set()
    for key, raw in doc["templates"].items():
        if not isinstance(raw, dict) or "jinja" not in raw:
            raise TemplateError(f"templates file {path}: template {key!r} of dataset '{name}' has no 'jinja'")
        tpl = Template(
            id=str(raw.get("id", key)),
            name=str(raw.get("name", key)),
            jinja=str(raw["jinja"]),
            dataset=name,
            answer_choices=raw.get("answer_choices"),
            metadata=raw.get("metadata") or {},
            reference=raw.get("reference") or "",
        )
        if tpl.name in seen_names:
            raise TemplateError(f"templates file {path}: dataset '{name}' has two templates named '{tpl.name}'")
        seen_names.add(tpl.name)
        tpl.compiled  # syntax errors surface at load time, naming the template
        tpl.compiled_choices
        templates.append(tpl)
    return templates
