"""Training: leak-free mixtures and LoRA fine-tuning (TRL SFTTrainer + PEFT, launched with Accelerate).

One job per module: ``mixture`` (``arabic-prompts mix``), ``sampling`` (allocation and seeded selection),
``contamination`` (13-gram overlap report), ``config`` (the recipe's dataclasses), ``formatting`` (rows ->
conversations, chat template), ``data`` (datasets -> conversations), ``model`` (base model + tokenizer),
``run_record`` (training_run.json), ``card`` (the adapter's model card), ``publish`` (push-adapter), ``merge``
(merged export), ``cli`` (commands). The training entry point is ``training/sft.py``. Importing this package
imports nothing heavy.
"""
