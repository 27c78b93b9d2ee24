"""The recipes parse with TRL's TrlParser into DataArguments / SFTConfig / ModelConfig with what they promise, the
accelerate configs load with accelerate's own loader, and `arabic-prompts train` launches what the README says.
(The GPU recipes are parsed with bf16 off and use_cpu on, as there is no GPU here; their YAML says bf16.)"""

from __future__ import annotations

import pytest
import yaml

from builders.training.config import parse_recipe
from conftest import REPO

RECIPES = REPO / "training" / "recipes"
ACCELERATE = REPO / "training" / "accelerate"


@pytest.mark.parametrize("name,rows", [("qwen2-7b-800k", "800k"), ("qwen2-7b-8m", "8m")])
def test_the_paper_recipes_train_base_qwen2_7b_with_lora(name, rows):
    raw = yaml.safe_load((RECIPES / f"{name}.yaml").read_text())
    assert raw["bf16"] is True and raw["dtype"] == "bfloat16" and raw["attn_implementation"] == "flash_attention_2"
    data, sft, model = parse_recipe(RECIPES / f"{name}.yaml", ["--bf16", "false", "--use_cpu", "true"])
    assert model.model_name_or_path == "Qwen/Qwen2-7B"  # the base model, as in the paper
    assert model.use_peft and model.lora_target_modules == "all-linear" and (model.lora_r, model.lora_alpha) == (64, 128)
    assert data.datasets == [f"out/mixture-{rows}"] and data.dataset_eval_split == "validation"
    assert sft.packing and sft.packing_strategy == "bfd" and sft.assistant_only_loss
    assert sft.activation_checkpointing and sft.eos_token == "<|im_end|>" and not sft.trust_remote_code
    assert sft.output_dir.endswith(f"lora-{rows}") and sft.eval_strategy == "steps"


def test_the_tiny_recipe_runs_on_cpu_and_keys_can_be_overridden():
    data, sft, model = parse_recipe(RECIPES / "tiny-cpu.yaml", ["--learning_rate", "1e-3", "--lora_r", "4",
                                                                "--datasets", "a", "b"])
    assert model.model_name_or_path == "Qwen/Qwen2-0.5B" and sft.use_cpu and not sft.bf16
    assert sft.learning_rate == 1e-3 and model.lora_r == 4 and data.datasets == ["a", "b"]
    with pytest.raises(ValueError, match="names no `datasets`"):
        parse_recipe(None, ["--model_name_or_path", "x", "--use_cpu", "true", "--bf16", "false"])
    with pytest.raises(ValueError, match="no_such_key"):  # TRL's parser refuses a key no dataclass has
        parse_recipe(RECIPES / "tiny-cpu.yaml", ["--no_such_key", "1"])
    data, sft, _ = parse_recipe(RECIPES / "tiny-cpu.yaml", ["--dataset_eval_split", "none"])
    assert data.dataset_eval_split is None and sft.eval_strategy == "no"


@pytest.mark.parametrize("name,kind,processes", [("single_gpu", "NO", 1), ("multi_gpu", "MULTI_GPU", 8),
                                                 ("deepspeed_zero3", "DEEPSPEED", 8), ("fsdp", "FSDP", 8)])
def test_accelerate_configs_load_with_accelerates_own_loader(name, kind, processes):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(ACCELERATE / f"{name}.yaml"))
    assert cfg.distributed_type.value == kind and cfg.num_processes == processes
    if kind == "DEEPSPEED":
        assert cfg.deepspeed_config["zero_stage"] == 3
    if kind == "FSDP":
        assert cfg.fsdp_config["fsdp_version"] == 2
    if kind != "NO":
        assert cfg.mixed_precision == "bf16"


def test_train_command_checks_the_recipe_and_prints_the_accelerate_launch(tmp_path, capsys):
    from builders.cli import main  # in-process (the real launch is tested in test_train_run.py)

    assert main(["train", "--dry-run", "--accelerate-config", str(ACCELERATE / "multi_gpu.yaml"),
                 "--num-processes", "4", str(RECIPES / "tiny-cpu.yaml"), "--max_steps", "3"]) == 0
    out = capsys.readouterr().out
    assert "recipe OK" in out
    assert (f"-m accelerate.commands.launch --config_file {ACCELERATE / 'multi_gpu.yaml'} --num_processes 4 "
            f"{REPO / 'training' / 'sft.py'} {RECIPES / 'tiny-cpu.yaml'} --max_steps 3") in out
    assert main(["train", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml not found" in capsys.readouterr().err
