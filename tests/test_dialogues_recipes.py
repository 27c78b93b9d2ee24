"""Fine-tuning recipes of the dialogue blueprint (training/recipes/dialogues-*.yaml): the two small Arabic models,
multi-turn loss on assistant turns only, model code run only where the checkpoint needs it. The recipes are read by
the training issue's trainer (builders.training, with TRL); where it is installed they are parsed by it as well."""

from __future__ import annotations

import importlib.util

import pytest
import yaml
from conftest import REPO

RECIPES = {
    # ids checked on their Hub pages (the Hub is offline here: see the recipes' comments)
    "dialogues-arabiangpt-08b-v2.yaml": ("riotu-lab/ArabianGPT-08B-V2", False),
    "dialogues-aragpt2-mega.yaml": ("aubmindlab/aragpt2-mega", True),  # AutoModelForCausalLM -> its own code
}


def _recipe(name: str) -> dict:
    return yaml.safe_load((REPO / "training" / "recipes" / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_trains_the_named_model_on_assistant_turns(name):
    recipe = _recipe(name)
    model, needs_code = RECIPES[name]
    assert recipe["model_name_or_path"] == model
    assert recipe["assistant_only_loss"] is True  # multi-turn: no loss on the user's turns
    assert recipe["trust_remote_code"] is needs_code  # never on unless the checkpoint has no other way to load
    assert recipe["dataset_config"] == "default" and recipe["datasets"]  # every Arabic variety of a dialogues folder
    assert recipe["max_length"] <= 1024  # both are GPT-2-style models with learned positions
    assert recipe["output_dir"].startswith("runs/")


def test_one_recipe_is_full_fine_tuning_and_one_lora():
    assert {_recipe(n)["use_peft"] for n in RECIPES} == {False, True}


@pytest.mark.skipif(importlib.util.find_spec("trl") is None or importlib.util.find_spec("builders.training") is None,
                    reason="the training issue's trainer (builders.training, trl) is not in this checkout")
@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_parses_with_the_trainer(name, tmp_path):
    from builders.training.config import parse_recipe

    assert _recipe(name)["bf16"] is True  # for GPUs; parsed here with bf16 off and use_cpu on (no GPU here)
    data, training, model = parse_recipe(REPO / "training" / "recipes" / name,
                                         ["--datasets", str(tmp_path), "--bf16", "false", "--use_cpu", "true"])
    assert model.model_name_or_path == RECIPES[name][0] and training.assistant_only_loss
    assert data.datasets == [str(tmp_path)]
