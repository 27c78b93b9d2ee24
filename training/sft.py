"""LoRA supervised fine-tuning on arabic-prompts data: TRL's SFTTrainer + PEFT, driven by a YAML recipe.

    accelerate launch --config_file training/accelerate/single_gpu.yaml \
        training/sft.py training/recipes/qwen2-7b-800k.yaml [--key value ...]

    arabic-prompts train training/recipes/qwen2-7b-800k.yaml --accelerate-config training/accelerate/multi_gpu.yaml

The recipe is read by TRL's TrlParser into DataArguments (builders/training/config.py), SFTConfig and ModelConfig;
`--key value` after it overrides the recipe. Prompt rows (`inputs`/`targets`) and multi-turn rows (`messages`) are
rendered with our ChatML template (builders/training/chat_template.jinja); the loss is on assistant turns only
(assistant_only_loss), sequences are packed padding-free with position ids reset per example (packing, bfd).
`--resume_from_checkpoint true` continues from the last checkpoint in output_dir, exactly where it stopped.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a checkout without `pip install -e .`


def build_trainer(data_args, training_args, model_args):
    """The SFTTrainer for a recipe, and the data it was given (rows read, rows left out)."""
    from trl import SFTTrainer

    from builders.training import config, data, model

    base, tokenizer, new_token_ids = model.load_model_and_tokenizer(model_args, training_args)
    loaded = data.load_conversations(data_args, num_proc=training_args.dataset_num_proc)
    loaded = data.drop_too_long(loaded, tokenizer, training_args.max_length, training_args.dataset_num_proc)
    loaded = data.limit_rows(loaded, data_args, training_args.seed)
    loaded.added_tokens = tokenizer.convert_ids_to_tokens(new_token_ids)
    if loaded.eval is None and training_args.eval_strategy != "no":
        print(f"no {data_args.dataset_eval_split} rows to evaluate on (none, or all over max_length): "
              "training without evaluation")
        config.no_evaluation(training_args)
    trainer = SFTTrainer(
        model=base,
        args=training_args,
        train_dataset=loaded.train,
        eval_dataset=loaded.eval if training_args.eval_strategy != "no" else None,
        processing_class=tokenizer,
        peft_config=config.lora_config(model_args, base, added_tokens=bool(new_token_ids)),
    )
    return trainer, loaded


def main(data_args, training_args, model_args):
    from builders.training import run_record

    trainer, loaded = build_trainer(data_args, training_args, model_args)
    resume = training_args.resume_from_checkpoint
    resume = {"true": True, "false": None}.get(str(resume).lower(), resume) if resume is not None else None
    result = trainer.train(resume_from_checkpoint=resume)
    metrics = trainer.evaluate() if trainer.eval_dataset is not None else {}

    trainer.save_model(training_args.output_dir)  # adapter (safetensors) + tokenizer with our chat template
    if trainer.accelerator.is_main_process:
        trainer.model.generation_config.save_pretrained(training_args.output_dir)  # stops at <|im_end|>
        run = run_record.record(data_args, training_args, model_args, loaded, result, metrics, trainer.state.log_history)
        path = run_record.write(training_args.output_dir, run)
        trainer.accelerator.print(f"saved {training_args.output_dir} ({path.name}); publish it with "
                                  f"`arabic-prompts push-adapter {training_args.output_dir} --repo ORG/NAME`")
    return trainer


def cli(argv=None):
    from builders.training.config import parse_recipe

    argv = list(sys.argv[1:] if argv is None else argv)
    recipe = argv.pop(0) if argv and argv[0].endswith((".yaml", ".yml")) else None
    main(*parse_recipe(recipe, argv)).end()  # finish the trackers, destroy the process group


if __name__ == "__main__":
    cli()
