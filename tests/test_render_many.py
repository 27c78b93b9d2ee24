"""``Template.render_many`` renders many rows in one looped call of each template; it must give exactly what
``Template.render`` gives row by row (texts, answer choices, and the message of every row-level error), for
every template of the catalog on real or sample rows, and in each case where the loop cannot be used as it is
(a '|||' or a NUL in the data, a missing variable, a row value that hides a global, an error in the batch,
output past the bound), where it falls back to one row at a time."""

from __future__ import annotations

import json

import pytest

from builders import templates as templates_mod
from builders.templates import Template, TemplateError
from test_templates_review import CATALOG, rows


def row_by_row(tpl: Template, rows: list[dict], refs: list[str]):
    inputs, targets, choices, errors = [], [], [], {}
    for i, row in enumerate(rows):
        try:
            a, b, c = tpl.render(row, refs[i])
        except TemplateError as e:
            if not e.row_level:
                raise
            a, b, c = "", "", []
            errors[i] = f"render error: {e}"
        inputs.append(a)
        targets.append(b)
        choices.append(c)
    return inputs, targets, choices, errors


def sizes(rows: list[dict]) -> list[int]:
    return [len(json.dumps(r, ensure_ascii=False)) for r in rows]


class Counting:
    """Counts the rows ``render_many`` hands to ``render`` one at a time (the fallback)."""

    def __init__(self, monkeypatch):
        self.calls = 0
        original = Template.render

        def render(tpl, *args, **kwargs):
            self.calls += 1
            return original(tpl, *args, **kwargs)

        monkeypatch.setattr(Template, "render", render)


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_render_many_gives_what_render_gives_for_every_catalog_template(name, monkeypatch):
    data = rows(name, 120)
    refs = [f"train:{i}" for i in range(len(data))]
    for tpl in CATALOG[name].templates:
        expected = row_by_row(tpl, data, refs)
        counting = Counting(monkeypatch)
        assert tuple(tpl.render_many(data, refs, sizes(data))) == expected, (name, tpl.name)
        monkeypatch.undo()
        assert tpl.looped is not None, (name, tpl.name)
        assert counting.calls <= len(expected[3]) * 120, (name, tpl.name)  # the loop did the work


def make(jinja: str, choices: str | None = None) -> Template:
    return Template(id="t-1", name="t", jinja=jinja, dataset="demo_ds", answer_choices=choices)


CASES = {
    "fixed choices": (make("{{ text }} ||| {{ answer_choices[label] }}", "سلبي ||| إيجابي"),
                      [{"text": "جميل", "label": 1}, {"text": "سيئ", "label": 0}]),
    "choices from the row": (make("{{ q }} ||| {{ answer_choices[gold] }}", "{{ options | join(' ||| ') }}"),
                             [{"q": "س1", "options": ["أ", "ب"], "gold": 1}, {"q": "س2", "options": ["ج"], "gold": 0}]),
    "set and loop inside": (make("{% set text = text | upper %}{% for w in words %}{{ loop.index }}{{ w }} {% endfor %}"
                                 "{{ text }} ||| {{ label }}"),
                            [{"text": "ab", "words": ["x", "y"], "label": "1"}, {"text": "cd", "words": [], "label": "2"}]),
    "trailing newline": (make("{{ text }} ||| {{ label }}\n"), [{"text": "a", "label": "b"}, {"text": "c", "label": "d"}]),
    "whitespace control at the ends": (make("{%- if text %}  {{ text }}{% endif -%}   ||| {{ label -}}   "),
                                       [{"text": "a", "label": "b"}, {"text": "", "label": "d"}]),
    "separator in the data": (make("{{ text }} ||| {{ label }}"),
                              [{"text": "أ ||| ب", "label": "x"}, {"text": "ج", "label": "y ||| z"}, {"text": "د", "label": "w"}]),
    "NUL in the data": (make("{{ text }} ||| {{ label }}"),
                        [{"text": "a\x00b", "label": "x"}, {"text": "c", "label": "y"}]),
    "missing variable, row-level error": (make("{{ text }} ||| {{ answers[0] }}"),
                                          [{"text": "a", "answers": ["x"]}, {"text": "b", "answers": []},
                                           {"text": "c", "answers": ["z"]}]),
    "optional variable": (make("{{ text }}{% if title is defined %} ({{ title }}){% endif %} ||| {{ label }}"),
                          [{"text": "a", "label": "x", "title": "t"}, {"text": "b", "label": "y"}]),
    "a row value hides a global": (make("{% for i in range(n) %}{{ i }}{% endfor %} ||| {{ n }}"),
                                   [{"n": 2}, {"n": 3, "range": ["q"]}, {"n": 1}]),
    "a top-level loop name": (make("{{ text }}{{ loop }} ||| x"), [{"text": "a", "loop": "L"}, {"text": "b"}]),
    "a macro": (make("{% macro q(x) %}«{{ x }}»{% endmacro %}{{ q(text) }} ||| {{ q(label) }}"),
                [{"text": "a", "label": "b"}, {"text": "c", "label": "d"}]),
    "an include (not looped)": (make("{% include 'missing.txt' %}{{ text }} ||| x"), [{"text": "a"}]),
    "no variable": (make("سؤال ثابت ||| جواب"), [{"text": "a"}, {}]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_render_many_gives_what_render_gives_where_the_loop_needs_care(case):
    tpl, data = CASES[case]
    refs = [f"train:{i}" for i in range(len(data))]
    assert outcome(many, tpl, data, refs) == outcome(row_by_row, tpl, data, refs)


def many(tpl: Template, rows: list[dict], refs: list[str]):
    return tuple(tpl.render_many(rows, refs, sizes(rows)))


def outcome(fn, *args):
    """What ``fn`` returns, or the message of the TemplateError it raises."""
    try:
        return fn(*args)
    except TemplateError as e:
        return f"raised: {e}"


def test_render_many_renders_rows_the_loop_cannot_take_one_at_a_time(monkeypatch):
    tpl = make("{{ text }} ||| {{ label }}")
    data = [{"text": "أ ||| ب", "label": "x"}] + [{"text": f"ن{i}", "label": "y"} for i in range(9)]
    counting = Counting(monkeypatch)
    out = tpl.render_many(data, [f"train:{i}" for i in range(10)], sizes(data))
    assert counting.calls == 1  # only the row with '|||' in its data
    assert out[0][:2] == ["أ ||| ب", "ن0"]
    assert tpl.looped is not None and make("{{ loop }} ||| x").looped is None


def test_a_batch_past_the_output_bound_is_rendered_row_by_row(monkeypatch):
    monkeypatch.setattr(templates_mod, "MAX_RENDERED_CHARS", 40)
    tpl = make("{{ text }} ||| {{ label }}")
    data = [{"text": "x" * 15, "label": "y"} for _ in range(4)] + [{"text": "z" * 50, "label": "y"}]
    refs = [f"train:{i}" for i in range(len(data))]
    inputs, _, _, errors = tpl.render_many(data, refs, [1] * len(data))  # one batch: 5 x 20+ chars > 40
    assert inputs[:4] == ["x" * 15] * 4 and inputs[4] == ""
    assert list(errors) == [4] and "longer than 40 characters" in errors[4]


def test_a_template_error_is_raised_as_render_raises_it():
    tpl = make("{{ text }} without a separator")
    data = [{"text": "a"}, {"text": "b"}]
    with pytest.raises(TemplateError) as many:
        tpl.render_many(data, ["train:0", "train:1"], sizes(data))
    with pytest.raises(TemplateError) as one:
        tpl.render(data[0], "train:0")
    assert str(many.value) == str(one.value) and "row train:0" in str(many.value)


def test_many_batches_give_the_rows_in_order(monkeypatch):
    monkeypatch.setattr(templates_mod, "BATCH_CHARS", 10)
    tpl = make("{{ text }} ||| {{ label }}")
    data = [{"text": f"نص {i}", "label": str(i % 3)} for i in range(50)]
    refs = [f"train:{i}" for i in range(50)]
    assert many(tpl, data, refs) == row_by_row(tpl, data, refs)
