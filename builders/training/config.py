"""A training recipe: one YAML file read by TRL's ``TrlParser`` into three dataclasses.

- ``DataArguments`` (below): what to train on, and what the adapter's model card says about it;
- TRL's ``SFTConfig``: how (batch, schedule, packing, bf16, checkpoints, evaluation, ...);
- TRL's ``ModelConfig``: which base model, and the LoRA (``use_peft``, ``lora_r``, ``lora_alpha``, ``lora_dropout``,
  ``lora_target_modules``; ``all-linear`` when the recipe names none).

Any key can be overridden after the recipe on the command line (``--learning_rate 1e-4``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from builders.training.formatting import IM_END


@dataclass
class DataArguments:
    """What to train on. Each of ``datasets`` is a mixture made by ``arabic-prompts mix``, a build, a dialogues
    dataset (``messages`` rows) or any dataset with ``inputs``/``targets`` or ``messages`` columns: a local folder in
    the Hub layout, a ``.jsonl``/``.parquet`` file (all of it is the train split), or a Hub dataset id."""

    datasets: list[str] = field(default_factory=list, metadata={"help": "Mixture folders, files or Hub dataset ids."})
    dataset_config: str = field(default="default", metadata={"help": "Config of every dataset (default: default)."})
    dataset_revision: str | None = field(default=None, metadata={"help": "Hub revision (tag such as v1.0.0)."})
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on."})
    dataset_eval_split: str | None = field(
        default="validation", metadata={"help": "Split for the evaluation loss ('none': no evaluation)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use the first N evaluation rows."})
    card_datasets: list[str] = field(
        default_factory=list,
        metadata={"help": "Hub dataset ids for the model card's `datasets` (default: the Hub ids among `datasets`)."})
    card_license: str = field(default="apache-2.0", metadata={"help": "The adapter's license on its model card."})

    def __post_init__(self):
        if isinstance(self.datasets, str):
            self.datasets = [self.datasets]
        if isinstance(self.card_datasets, str):
            self.card_datasets = [self.card_datasets]
        if isinstance(self.dataset_eval_split, str) and self.dataset_eval_split.lower() in ("", "none", "null"):
            self.dataset_eval_split = None


def parser():
    from trl import ModelConfig, SFTConfig, TrlParser

    return TrlParser((DataArguments, SFTConfig, ModelConfig))


def parse_recipe(recipe: str | Path | None, overrides: list[str] | None = None):
    """(DataArguments, SFTConfig, ModelConfig) from a recipe YAML and ``--key value`` overrides."""
    args = list(overrides or [])
    if recipe is not None:
        if not Path(recipe).is_file():
            raise ValueError(f"recipe {recipe} not found")
        args = ["--config", str(recipe), *args]
    data_args, training_args, model_args = parser().parse_args_and_config(args)
    return finalize(data_args, training_args, model_args)


def finalize(data_args, training_args, model_args):
    """Defaults that follow from our chat template, and checks that name the recipe key."""
    if not data_args.datasets:
        raise ValueError("the recipe names no `datasets` to train on")
    if not model_args.model_name_or_path:
        raise ValueError("the recipe names no `model_name_or_path`")
    if training_args.eos_token is None:
        training_args.eos_token = IM_END  # turns end with <|im_end|>: generation must stop there
    if model_args.use_peft and not model_args.lora_target_modules:
        model_args.lora_target_modules = "all-linear"
    if data_args.dataset_eval_split is None:
        no_evaluation(training_args)
    return data_args, training_args, model_args


def no_evaluation(training_args) -> None:
    from transformers.trainer_utils import IntervalStrategy

    training_args.eval_strategy = IntervalStrategy.NO
    training_args.load_best_model_at_end = False


def embedding_module_names(model) -> list[str]:
    """Names of the input and output embedding modules (embed_tokens and lm_head for Qwen2, wte for GPT-2)."""
    wanted = {id(model.get_input_embeddings()), id(model.get_output_embeddings())}
    names = [name.split(".")[-1] for name, module in model.named_modules() if id(module) in wanted]
    return sorted(set(names))


def lora_config(model_args, model=None, added_tokens: bool = False):
    """PEFT LoraConfig from the recipe (None for full fine-tuning). When tokens were added to the vocabulary (the
    ChatML ones, for a tokenizer that lacks them), the resized embeddings and LM head are trained in full and saved
    with the adapter (modules_to_save; kept tied when the model ties them). TRL's fused loss reads the LM head's
    weight directly, which rules out PEFT's lighter trainable_token_indices there."""
    from trl import get_peft_config

    config = get_peft_config(model_args)
    if config is not None and added_tokens:
        config.modules_to_save = sorted(set(config.modules_to_save or []) | set(embedding_module_names(model)))
        config.ensure_weight_tying = bool(getattr(model.config.get_text_config(), "tie_word_embeddings", False))
    return config
