"""LoRA fine-tuning on arabic-prompts data (TRL SFTTrainer + PEFT, launched with Accelerate).

One job per module: ``config`` (the recipe's dataclasses), ``formatting`` (rows -> conversations, chat template),
``data`` (datasets -> conversations), ``model`` (base model + tokenizer), ``run_record`` (training_run.json),
``card`` (the adapter's model card), ``publish`` (push-adapter), ``merge`` (merged export), ``cli`` (commands).
The entry point is ``training/sft.py``. Importing this package imports nothing heavy.
"""
