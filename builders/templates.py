"""PromptSource-format templates: load them, compile them once, render rows in a sandbox.

A template file is PromptSource's ``templates.yaml`` (``!Template`` / ``!TemplateMetadata`` tags are optional);
``jinja`` holds ``input ||| target``. Rendering uses jinja2's ImmutableSandboxedEnvironment with StrictUndefined:
a template cannot reach Python internals (``__class__`` ...), cannot change the row it renders (``pop``,
``append``, ``update`` are refused, so one template never changes what the next one sees), cannot repeat a
string or list past a bound, and its output is capped at ``MAX_RENDERED_CHARS``; a misspelt variable fails
loudly. Every error names the dataset, the template and, when rendering, the row.
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
from jinja2.sandbox import ImmutableSandboxedEnvironment

SEPARATOR = "|||"
_PROTECTED = "\ue000\ue001\ue000"  # stands in for a '|||' that comes from the data while rendering
MAX_RENDERED_CHARS = 1_000_000  # one prompt (inputs ||| targets); a template that writes more is refused
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


class PromptEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox: immutable (no method may change a list, dict or set of the row), with ``*`` and ``**`` on
    strings and lists bounded so ``'x' * 10**9`` fails instead of filling memory."""

    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context, operator, left, right):
        if operator == "*" and isinstance(right, int) and isinstance(left, (str, list, tuple)) or (
                operator == "*" and isinstance(left, int) and isinstance(right, (str, list, tuple))):
            seq, times = (left, right) if isinstance(right, int) else (right, left)
            if len(seq) * max(times, 0) > MAX_RENDERED_CHARS:
                raise jinja2.exceptions.SecurityError(f"repetition of {len(seq)} x {times} exceeds the output bound")
        if operator == "**" and isinstance(right, int) and abs(right) > 1000:
            raise jinja2.exceptions.SecurityError(f"power {right} is too large")
        return super().call_binop(context, operator, left, right)


def make_environment() -> PromptEnvironment:
    env = PromptEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)
    env.filters.update(strip_diacritics=strip_diacritics, bio_spans=bio_spans, zip=_zip)
    return env


ENV = make_environment()


def compile_jinja(source: str, where: str, what: str = "jinja") -> jinja2.Template:
    """``source`` compiled in the sandbox; a syntax error names ``where`` and the line."""
    try:
        return ENV.from_string(source)
    except jinja2.TemplateSyntaxError as e:
        raise TemplateError(f"{where}: {what} syntax error line {e.lineno}: {e.message}") from e


class _TagLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser where PyYAML has it
    """Reads catalog entries and PromptSource's files: ``!Template`` and ``!TemplateMetadata`` become plain
    mappings. A key given twice in one mapping (two templates under one id, a catalog key written twice) is an
    error, not a silent overwrite."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _mapping(loader: yaml.SafeLoader, node: yaml.Node) -> dict:
    return loader.construct_mapping(node, deep=True)


_TagLoader.add_constructor("!Template", _mapping)
_TagLoader.add_constructor("!TemplateMetadata", _mapping)


def load_yaml(text: str):
    """One YAML document through the loader above (safe, duplicate keys refused)."""
    return yaml.load(text, Loader=_TagLoader)


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
        return compile_jinja(self.jinja, self._where())

    @cached_property
    def compiled_choices(self) -> jinja2.Template | None:
        if not self.answer_choices:
            return None
        return compile_jinja(self.answer_choices, self._where(), "answer_choices")

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
        protected = _has_separator(row)
        if protected:  # a '|||' in the data (at any depth) must not split input from target
            row = _protect(row)
        try:
            choices = self.fixed_choices
            if choices is None:  # choices that depend on the row are rendered for each row
                choices = split_choices(self.compiled_choices.render(**row)) if self.compiled_choices else []
            else:
                choices = list(choices)
            text = _render_bounded(self.compiled, answer_choices=choices, **row)
        except TemplateError:
            raise
        except jinja2.exceptions.SecurityError as e:
            raise TemplateError(f"{self._where(row_ref)}: unsafe template operation blocked: {e}") from e
        except jinja2.exceptions.UndefinedError as e:
            missing = _TOP_LEVEL_UNDEFINED.match(str(e))
            row_level = not (missing and missing.group(1) not in row)
            raise TemplateError(f"{self._where(row_ref)}: {e} (variables: {sorted(row)})", row_level) from e
        except OutputTooLong as e:
            raise TemplateError(f"{self._where(row_ref)}: {e}", row_level=True) from e
        except Exception as e:  # IndexError on a bad label, TypeError on a wrong column type ...
            raise TemplateError(f"{self._where(row_ref)}: {type(e).__name__}: {e}", row_level=True) from e
        inputs, sep, targets = text.partition(SEPARATOR)
        if not sep:
            raise TemplateError(f"{self._where(row_ref)}: rendered text has no '{SEPARATOR}' between input and target")
        if protected:  # the stand-in goes back to '|||' everywhere it can appear, answer choices included
            inputs, targets = inputs.replace(_PROTECTED, SEPARATOR), targets.replace(_PROTECTED, SEPARATOR)
            choices = [c.replace(_PROTECTED, SEPARATOR) for c in choices]
        return inputs.strip(), targets.strip(), choices


def _has_separator(value: Any) -> bool:
    if isinstance(value, str):
        return SEPARATOR in value
    if isinstance(value, dict):
        return any(_has_separator(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_separator(v) for v in value)
    return False


def _protect(value: Any) -> Any:
    """A copy of ``value`` with every '|||' inside its strings replaced by the stand-in."""
    if isinstance(value, str):
        return value.replace(SEPARATOR, _PROTECTED)
    if isinstance(value, dict):
        return {k: _protect(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_protect(v) for v in value]
    return value


class OutputTooLong(ValueError):
    """A template whose output passed ``MAX_RENDERED_CHARS``."""


def _render_bounded(template: jinja2.Template, **variables) -> str:
    """``template.render`` that stops as soon as the output passes ``MAX_RENDERED_CHARS``."""
    parts, size = [], 0
    for chunk in template.generate(**variables):
        size += len(chunk)
        if size > MAX_RENDERED_CHARS:
            raise OutputTooLong(f"rendered output is longer than {MAX_RENDERED_CHARS:,} characters")
        parts.append(chunk)
    return "".join(parts)


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
        doc = load_yaml(path.read_text(encoding="utf-8-sig"))
    except (OSError, yaml.YAMLError) as e:
        raise TemplateError(f"templates file {path}: cannot read: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("templates"), dict):
        raise TemplateError(f"templates file {path}: expected a mapping with 'dataset' and 'templates'")
    name = dataset or doc.get("dataset") or path.parent.name
    if doc.get("subset"):
        name = dataset or f"{doc['dataset']}/{doc['subset']}"
    templates, seen_names, seen_ids = [], set(), set()
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
        if tpl.id in seen_ids:  # the id is part of every prompt's row id: two templates must not share one
            raise TemplateError(f"templates file {path}: dataset '{name}' has two templates with id '{tpl.id}'")
        seen_names.add(tpl.name)
        seen_ids.add(tpl.id)
        tpl.compiled  # syntax errors surface at load time, naming the template
        tpl.compiled_choices
        templates.append(tpl)
    return templates
