"""Templates: PromptSource format, sandboxed rendering, errors that name dataset, template and row."""

from __future__ import annotations

from pathlib import Path

import pytest

from builders.templates import TemplateError, bio_spans, load_templates, strip_diacritics


def write_templates(tmp_path: Path, jinja: str, choices: str | None = None, name: str = "t1") -> Path:
    path = tmp_path / "templates.yaml"
    choices_line = f"    answer_choices: {choices}\n" if choices else ""
    path.write_text(
        "dataset: demo_ds\ntemplates:\n  abc-1: !Template\n" + choices_line
        + f"    id: abc-1\n    jinja: {jinja!r}\n    metadata: !TemplateMetadata\n      languages: [ar]\n"
        + f"    name: {name}\n    reference: ''\n",
        encoding="utf-8",
    )
    return path


def test_render_classification_uses_arabic_label_words(tmp_path):
    [tpl] = load_templates(write_templates(tmp_path, "ما شعور النص؟ {{text}} ||| {{answer_choices[label]}}", "سلبي ||| إيجابي"))
    inputs, targets, choices = tpl.render({"text": "يوم جميل", "label": 1}, "train:0")
    assert inputs == "ما شعور النص؟ يوم جميل"
    assert targets == "إيجابي"
    assert choices == ["سلبي", "إيجابي"]
    assert tpl.fixed_choices == ["سلبي", "إيجابي"]
    assert tpl.variables == {"text", "label"}


@pytest.mark.parametrize(
    "payload",
    [
        "{{ text.__class__.__mro__ }} ||| x",
        "{{ ''.__class__.__base__.__subclasses__() }} ||| x",
        "{{ text.format.__globals__ }} ||| x",
    ],
)
def test_sandbox_blocks_escape_and_names_dataset_template_row(tmp_path, payload):
    [tpl] = load_templates(write_templates(tmp_path, payload, name="evil"))
    with pytest.raises(TemplateError) as err:
        tpl.render({"text": "نص"}, "train:7")
    msg = str(err.value)
    assert "demo_ds" in msg and "evil" in msg and "train:7" in msg
    assert not err.value.row_level  # a template bug stops the build


def test_missing_variable_fails_with_names(tmp_path):
    [tpl] = load_templates(write_templates(tmp_path, "{{ txt }} ||| {{ label }}", name="typo"))
    with pytest.raises(TemplateError) as err:
        tpl.render({"text": "نص", "label": 0}, "test:3")
    msg = str(err.value)
    assert "'txt' is undefined" in msg and "typo" in msg and "demo_ds" in msg and "test:3" in msg
    assert not err.value.row_level


def test_row_data_problem_is_row_level(tmp_path):
    [tpl] = load_templates(write_templates(tmp_path, "{{ question }} ||| {{ answers.text[0] }}"))
    with pytest.raises(TemplateError) as err:
        tpl.render({"question": "من؟", "answers": {"text": []}}, "train:1")
    assert err.value.row_level


def test_syntax_error_at_load_names_template(tmp_path):
    with pytest.raises(TemplateError, match="demo_ds.*broken.*syntax"):
        load_templates(write_templates(tmp_path, "{{ text ||| x", name="broken"))


def test_no_separator_is_an_error(tmp_path):
    [tpl] = load_templates(write_templates(tmp_path, "{{ text }}"))
    with pytest.raises(TemplateError, match=r"\|\|\|"):
        tpl.render({"text": "نص"}, "train:0")


def test_filters():
    assert strip_diacritics("كَتَبَ الوَلَدُ ـــ") == "كتب الولد "
    assert bio_spans(["محمد", "علي", "في", "القاهرة"], ["B-PERS", "I-PERS", "O", "B-LOC"]) == [
        ["محمد علي", "PERS"], ["القاهرة", "LOC"]]
    assert bio_spans(["a", "b"], ["I-ORG", "I-ORG"]) == [["a b", "ORG"]]  # IOB1


def test_reads_promptsource_english_files(shared_data):
    files = sorted((shared_data / "promptsource_templates").rglob("templates.yaml"))
    assert len(files) == 20
    total = 0
    for f in files:
        templates = load_templates(f)
        assert templates, f
        total += len(templates)
    assert total == 173
    ag = load_templates(shared_data / "promptsource_templates/promptsource/templates/ag_news/templates.yaml")
    inputs, target, choices = ag[0].render({"text": "Stocks rose today.", "label": 2})
    assert "Stocks rose today." in inputs and target == choices[2] == "Business"


def test_templates_pickle_without_compiled_state(tmp_path):
    import pickle

    [tpl] = load_templates(write_templates(tmp_path, "{{text}} ||| {{text}}"))
    tpl.render({"text": "أ"})
    clone = pickle.loads(pickle.dumps(tpl))
    assert clone.render({"text": "ب"})[:2] == ("ب", "ب")


def test_separator_inside_the_data_does_not_split_the_prompt(tmp_path):
    [tpl] = load_templates(write_templates(tmp_path, "صنّف: {{ text }} ||| {{ answer_choices[label] }}", "لا ||| نعم"))
    inputs, targets, _ = tpl.render({"text": "أ ||| ب {{x}}", "label": 1})
    assert inputs == "صنّف: أ ||| ب {{x}}" and targets == "نعم"


def test_promptsource_style_baseline_renders_the_same(tmp_path):
    from builders.templates import apply_like_promptsource

    [tpl] = load_templates(write_templates(tmp_path, "ما شعور النص؟ {{text}} ||| {{answer_choices[label]}}", "سلبي ||| إيجابي"))
    row = {"text": "يوم جميل", "label": 1}
    assert apply_like_promptsource(tpl, row) == tpl.render(row)
