"""PromptSource-format templates: load them, compile them once, render rows in a sandbox.

A template file is PromptSource's ``templates.yaml`` (``!Template`` / ``!TemplateMetadata`` tags are optional);
``jinja`` holds ``input ||| target``. Rendering uses jinja2's ImmutableSandboxedEnvironment with StrictUndefined:
a template cannot reach Python internals (``__class__`` ...), cannot change the row it renders (``pop``,
``append``, ``update`` are refused, so one template never changes what the next one sees), cannot repeat a
string or list past a bound, and its output is capped at ``MAX_RENDERED_CHARS``; a misspelt variable fails
loudly. Every error names the dataset, the template and, when rendering, the row. ``Template.render_many``
renders many rows in one looped call with the same results as ``render`` row by row (the build's hot path).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import operator
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import jinja2
import jinja2.meta
import jinja2.nodes
import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment

SEPARATOR = "|||"
_PROTECTED = "\ue000\ue001\ue000"  # stands in for a '|||' that comes from the data while rendering
MAX_RENDERED_CHARS = 1_000_000  # one prompt (inputs ||| targets); a template that writes more is refused
BATCH_CHARS = MAX_RENDERED_CHARS // 4  # source-record characters ``render_many`` renders in one loop at most
LOOP_CHUNKS = 256  # chunks of a looped render's output between checks of its size
_ROW_END = "\x00"  # ends each row's output in a looped render (a row whose data holds one is rendered alone)
_LOOP_NAMES = frozenset({"loop", "_rows_", "_row_"})  # what the loop binds besides the template's variables
# nodes a loop around the template could change the meaning of
_UNLOOPABLE = (jinja2.nodes.Extends, jinja2.nodes.Block, jinja2.nodes.Include, jinja2.nodes.Import,
               jinja2.nodes.FromImport)
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
        return {k: v for k, v in self.__dict__.items()
                if k not in ("compiled", "compiled_choices", "variables", "fixed_choices", "looped", "looped_choices",
                             "loop_requirements")}

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
    def choices_per_row(self) -> bool:
        """Whether the answer choices are rendered for each row (they depend on it)."""
        return bool(self.answer_choices) and self.fixed_choices is None

    @cached_property
    def looped(self) -> tuple[jinja2.Template, tuple[str, ...]] | None:
        """The template inside a loop over rows (``looped_template``), or None when it cannot be looped."""
        names = sorted(self.variables) + (["answer_choices"] if self.choices_per_row else [])
        return looped_template(self.jinja, names, self.variables, self._where())

    @cached_property
    def looped_choices(self) -> tuple[jinja2.Template, tuple[str, ...]] | None:
        """The answer choices inside a loop over rows, when they are rendered for each row and can be looped."""
        if not self.choices_per_row:
            return None
        names = jinja2.meta.find_undeclared_variables(ENV.parse(self.answer_choices))
        return looped_template(self.answer_choices, sorted(names), names, self._where())

    @property
    def sha(self) -> str:
        payload = "\x1f".join([self.id, self.name, self.jinja, self.answer_choices or ""])
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def render(self, row: dict[str, Any], row_ref: str | None = None) -> tuple[str, str, list[str]]:
        protected = has_separator(row)
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

    def render_many(self, rows: list[dict[str, Any]], row_refs: list[str], sizes: list[int] | None = None,
                    plain: list[bool] | None = None) -> Rendered:
        """``render`` for many rows: (inputs, targets, answer_choices) per row, with the message of each row-level
        error by row index instead of raised (its row gets empty texts); other errors are raised as ``render``
        raises them. The same results as ``render`` row by row, in fewer calls: rows are rendered
        ``BATCH_CHARS`` source characters (``sizes``: each row's) at a time in one call of ``looped``, which
        saves ``render``'s per-call set-up (a new context per row). A row the loop cannot take as it is (a
        '|||' in its data, a variable it lacks or one that shadows a global) and every batch whose output is
        not exactly one sound prompt per row (an error, a NUL in the data, output past ``MAX_RENDERED_CHARS``)
        are rendered with ``render``, one row at a time. ``plain``: per row, that its data holds no '|||' (a
        caller rendering many templates computes it once)."""
        n = len(rows)
        out = Rendered([""] * n, [""] * n, [[] for _ in range(n)], {})
        plain = plain if plain is not None else [not has_separator(r) for r in rows]
        loopable = self._loopable_rows(rows, plain)
        alone = [i for i in range(n) if not loopable[i]]
        batch: list[int] = []
        budget = 0
        for i in (i for i in range(n) if loopable[i]):
            batch.append(i)
            budget += sizes[i] if sizes else 0
            if budget >= BATCH_CHARS:
                alone += self._render_loop(rows, batch, out)
                batch, budget = [], 0
        if batch:
            alone += self._render_loop(rows, batch, out)
        for i in sorted(alone):
            try:
                out.inputs[i], out.targets[i], out.choices[i] = self.render(rows[i], row_refs[i])
            except TemplateError as e:
                if not e.row_level:
                    raise
                out.inputs[i], out.targets[i], out.choices[i] = "", "", []
                out.errors[i] = f"render error: {e}"
        return out

    @cached_property
    def loop_requirements(self) -> tuple[frozenset[str], frozenset[str]] | None:
        """What a row needs for the loop to render it: (the variables it must have, the globals the template
        reads, which it must not hide with a value of that name); None when the template cannot be looped."""
        if self.looped is None or (self.choices_per_row and self.looped_choices is None):
            return None
        needed, shadowing = set(self.looped[1]) - {"answer_choices"}, _global_reads(self.jinja)
        if self.looped_choices:
            needed |= set(self.looped_choices[1])
            shadowing |= _global_reads(self.answer_choices)
        return frozenset(needed), frozenset(shadowing)

    def _loopable_rows(self, rows: list[dict[str, Any]], plain: list[bool]) -> list[bool]:
        if self.loop_requirements is None:
            return [False] * len(rows)
        needed, shadowing = self.loop_requirements
        return [p and needed <= r.keys() and not (shadowing and shadowing & r.keys()) for p, r in zip(plain, rows)]

    def _render_loop(self, rows, batch: list[int], out: Rendered) -> list[int]:
        """Render the rows ``batch`` in one loop into ``out``; return the rows to render one at a time instead
        (all of them, when the loop's output is not exactly one sound prompt per row)."""
        if self.fixed_choices is not None:
            row_choices = [self.fixed_choices] * len(batch)
        elif self.choices_per_row:
            template, names = self.looped_choices
            texts = _run_loop(template, names, [rows[i] for i in batch], {})
            if texts is None:
                return batch
            row_choices = [split_choices(c) for c in texts]
        else:
            row_choices = [[]] * len(batch)
        template, names = self.looped
        if "answer_choices" in names:
            values, extra = [dict(rows[i], answer_choices=c) for i, c in zip(batch, row_choices)], {}
        else:  # the same choices for every row (the sandbox keeps a template from changing them)
            values, extra = [rows[i] for i in batch], {"answer_choices": row_choices[0] if batch else []}
        texts = _run_loop(template, names, values, extra)
        if texts is None:
            return batch
        cuts = [text.find(SEPARATOR) for text in texts]
        if min(cuts, default=0) < 0:
            return batch
        for i, text, cut, c in zip(batch, texts, cuts, row_choices):
            out.inputs[i], out.targets[i] = text[:cut].strip(), text[cut + len(SEPARATOR):].strip()
            out.choices[i] = list(c)
        return []


class Rendered(NamedTuple):
    """What ``Template.render_many`` gives: per row its inputs, targets and answer choices, and the row-level
    errors by row index."""

    inputs: list[str]
    targets: list[str]
    choices: list[list[str]]
    errors: dict[int, str]


def looped_template(source: str, names: list[str], reads: set[str], where: str
                    ) -> tuple[jinja2.Template, tuple[str, ...]] | None:
    """``source`` compiled inside ``{% for <names> in _rows_ %}...{% endfor %}``, each row's output ended by
    ``_ROW_END``: one render call renders many rows, each seeing only its own values (``names``) and what
    ``source`` sets itself (a ``{% set %}`` inside a loop lasts one iteration). None when the loop could change
    what the template means: it reads a name the loop binds (``loop``), or uses extends, blocks, includes or
    imports. (A trailing newline, which jinja drops from a whole template but keeps here, ends up in the
    stripped targets.)"""
    if reads & _LOOP_NAMES or any(True for _ in ENV.parse(source).find_all(_UNLOOPABLE)):
        return None
    target = ", ".join(names) or "_row_"
    try:
        return compile_jinja(f"{{% for {target} in _rows_ %}}{source}{_ROW_END}{{% endfor %}}", where), tuple(names)
    except TemplateError:  # what compiles alone but not in a loop is rendered alone
        return None


def _global_reads(source: str) -> set[str]:
    """The environment's globals (``range``, ``dict`` ...) that ``source`` reads."""
    return {n.name for n in ENV.parse(source).find_all(jinja2.nodes.Name) if n.ctx == "load"} & ENV.globals.keys()


def _run_loop(template: jinja2.Template, names: tuple[str, ...], rows: list[dict], extra: dict) -> list[str] | None:
    """One looped render of ``rows``: each row's output, or None if rendering failed, wrote past
    ``MAX_RENDERED_CHARS`` in all (checked every ``LOOP_CHUNKS`` chunks of output), or gave other than one
    output per row (a NUL in the data)."""
    if len(names) > 1:
        values = list(map(operator.itemgetter(*names), rows))
    else:  # one name binds the value itself, none binds nothing
        values = [r[names[0]] for r in rows] if names else [None] * len(rows)
    parts, size = [], 0
    try:
        chunks = template.generate(_rows_=values, **extra)
        while block := list(itertools.islice(chunks, LOOP_CHUNKS)):
            size += sum(map(len, block))
            if size > MAX_RENDERED_CHARS:
                return None
            parts += block
    except Exception:  # any error: the rows are rendered one at a time, which reports it as render does
        return None
    out = "".join(parts).split(_ROW_END)
    if len(out) != len(rows) + 1 or out[-1]:
        return None
    return out[:-1]


def has_separator(value: Any) -> bool:
    if isinstance(value, str):
        return SEPARATOR in value
    if isinstance(value, dict):
        return any(has_separator(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(has_separator(v) for v in value)
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
