"""The Space's example prompts (space/examples.json) are real test prompts of our dataset: each is a test-split
row of a fresh build of the shared data, rendered by our templates. After a template or catalog change, rewrite
the file with `python tests/space_fixtures.py examples`."""

from __future__ import annotations

import json
from pathlib import Path

from space_fixtures import EXAMPLE_FAMILIES, make_examples, split_prompts

EXAMPLES = Path(__file__).resolve().parents[1] / "space" / "examples.json"
REGENERATE = "rewrite space/examples.json with `python tests/space_fixtures.py examples`"


def test_space_examples_are_test_prompts_of_a_shared_data_build(example_build):
    data = json.loads(EXAMPLES.read_text(encoding="utf-8"))
    assert {e["family"] for e in data["examples"]} == {f for f, _, _ in EXAMPLE_FAMILIES}
    for example in data["examples"]:
        rows = {r["id"]: r for r in split_prompts(example_build, example["task"])}
        row = rows.get(example["id"])
        assert row is not None, f"{example['label']}: {example['id']} is no test prompt of the build; {REGENERATE}"
        assert row["inputs"] == example["text"], f"{example['label']}: the text differs from the build; {REGENERATE}"
        assert (row["split"], row["dataset_name"], row["template_name"], row["source_id"]) == \
            ("test", example["dataset_name"], example["template_name"], example["source_id"])
        train = {r["inputs"] for r in split_prompts(example_build, example["task"], "train")}
        assert example["text"] not in train  # a held-out prompt, not one the model was trained on
    assert make_examples(example_build) == data, REGENERATE  # the file is exactly what the script writes


def test_space_examples_fit_the_input_cap():
    import sys

    sys.path.insert(0, str(EXAMPLES.parent))
    from chat_engine import Settings, read_examples

    examples = read_examples()
    assert len(examples) == len(EXAMPLE_FAMILIES)
    assert all(0 < len(e["text"]) <= Settings().max_input_chars for e in examples)
    assert all(any("\u0600" <= ch <= "\u06ff" for ch in e["text"]) for e in examples)  # Arabic prompts
