"""What the trainer is fed: conversations from prompt rows and multi-turn rows, our ChatML template on a base
vocabulary, and the labels TRL's SFTTrainer builds from it (checked on the real trainer's own collated batches):
-100 on every prompt token, every user/system turn and all padding; the answer and its <|im_end|> trained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builders.training.formatting import IM_END, IM_START, FormatError, check_messages, to_messages
from train_fixtures import load_sft, parse, runs

# The session's launched run of the tiny recipe (train_fixtures.launched_run, read by test_train_run.py and
# test_train_publish.py) starts with the first test here and trains in the background on the other core.
pytestmark = pytest.mark.usefixtures("launched_run")

PROMPTS = [
    {"id": "p1", "inputs": "ما هو شعور كاتب هذه التغريدة؟ الخدمة ممتازة والموظفون لطفاء جدا  ", "targets": " إيجابي"},
    {"id": "p2", "inputs": "صنف المشاعر: سيئة", "targets": "سلبي"},
    {"id": "p3", "inputs": "أجب عن السؤال من النص. النص: عاصمة الأردن عمان وهي مدينة كبيرة. السؤال: ما عاصمة الأردن؟",
     "targets": "عمان"},
]
DIALOGUE = [
    {"role": "system", "content": "أنت مساعد يتحدث باللهجة المصرية."},
    {"role": "user", "content": "إزيك النهارده؟"},
    {"role": "assistant", "content": "الحمد لله تمام، وانت عامل إيه؟"},
    {"role": "user", "content": "كويس. إيه أحسن أكلة مصرية؟"},
    {"role": "assistant", "content": "الكشري طبعا!"},
    {"role": "user", "content": "وفين آكله؟"},
    {"role": "assistant", "content": "في أي محل في وسط البلد."},
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def trainer_for(tiny_base, rows, tmp_path, **overrides):
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    trainer, _ = load_sft().build_trainer(*parse(tiny_base, [data], tmp_path / "run", dataset_eval_split="none",
                                                 max_steps=1, **overrides))
    return trainer


def test_chat_template_renders_chatml_on_a_base_vocabulary(tiny_base):
    from transformers import AutoTokenizer

    from builders.training.formatting import prepare_tokenizer

    tok = AutoTokenizer.from_pretrained(tiny_base)
    assert prepare_tokenizer(tok) == []  # Qwen2's base vocabulary already has both ChatML tokens
    text = tok.apply_chat_template(to_messages(PROMPTS[0], "p1"), tokenize=False)
    assert text == (f"{IM_START}user\n{PROMPTS[0]['inputs'].rstrip()}{IM_END}\n"
                    f"{IM_START}assistant\n{PROMPTS[0]['targets'].strip()}{IM_END}\n")
    prompt = tok.apply_chat_template(to_messages(PROMPTS[0], "p1")[:1], tokenize=False, add_generation_prompt=True)
    assert text.startswith(prompt) and prompt.endswith(f"{IM_START}assistant\n")
    ids = tok.apply_chat_template(DIALOGUE, tokenize=True, return_dict=False)
    assert ids.count(tok.convert_tokens_to_ids(IM_START)) == len(DIALOGUE)  # each marker is one token
    assert ids.count(tok.convert_tokens_to_ids(IM_END)) == len(DIALOGUE)


@pytest.mark.parametrize("packing", [False, True], ids=["padded", "packed"])
def test_labels_are_minus_100_on_every_prompt_token_and_on_padding(tiny_base, tmp_path, packing):
    trainer = trainer_for(tiny_base, PROMPTS, tmp_path, packing=packing, per_device_train_batch_size=3)
    tok = trainer.processing_class
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    if packing:  # one flat row; examples start where the position ids restart
        assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1
        pos = batch["position_ids"][0].tolist()
        starts = [i for i, p in enumerate(pos) if p == 0] + [len(pos)]
        examples = [(batch["input_ids"][0, a:b], batch["labels"][0, a:b]) for a, b in zip(starts, starts[1:])]
    else:
        assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()  # padding never trained
        assert (batch["attention_mask"] == 0).any()  # there was padding to check
        examples = [(batch["input_ids"][i][batch["attention_mask"][i] == 1], batch["labels"][i])
                    for i in range(batch["input_ids"].shape[0])]
    assert len(examples) == len(PROMPTS)
    seen = set()
    for ids, labels in examples:
        ids, labels = ids.tolist(), labels.tolist()
        row = next(r for r in PROMPTS if tok.decode(ids).startswith(f"{IM_START}user\n{r['inputs'].rstrip()}"))
        seen.add(row["id"])
        prompt = tok.apply_chat_template(to_messages(row, "t")[:1], tokenize=True, add_generation_prompt=True,
                                         return_dict=False)
        assert ids[:len(prompt)] == prompt
        assert all(v == -100 for v in labels[:len(prompt)])  # every prompt token, the assistant header included
        (a, b), = runs(labels[:len(ids)])  # one trained span: the answer, right after the prompt
        assert a == len(prompt) and labels[a:b] == ids[a:b]
        assert tok.decode(ids[a:b]) == row["targets"].strip() + IM_END  # ... and the model learns to stop
    assert seen == {r["id"] for r in PROMPTS}


def test_multi_turn_rows_train_on_every_assistant_turn_only(tiny_base, tmp_path):
    rows = [{"messages": DIALOGUE}, {"messages": DIALOGUE[1:3]}]
    trainer = trainer_for(tiny_base, rows, tmp_path, packing=False)
    tok = trainer.processing_class
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    for i, turns in enumerate([DIALOGUE, DIALOGUE[1:3]]):
        ids, labels = batch["input_ids"][i].tolist(), batch["labels"][i].tolist()
        trained = [tok.decode(ids[a:b]) for a, b in runs(labels)]
        assert trained == [t["content"] + IM_END for t in turns if t["role"] == "assistant"]
        for turn in turns:  # no token of a user or system turn is trained
            if turn["role"] != "assistant":
                assert turn["content"] not in "".join(trained)


def test_rows_that_cannot_be_conversations_are_named():
    with pytest.raises(FormatError, match="row-7: needs non-empty string `inputs` and `targets`"):
        to_messages({"inputs": "نص", "targets": "  "}, "row-7")
    with pytest.raises(FormatError, match="d1: no assistant turn"):
        check_messages([{"role": "user", "content": "مرحبا"}], "d1")
    with pytest.raises(FormatError, match="d2: turn 1 has role 'bot'"):
        check_messages([{"role": "user", "content": "مرحبا"}, {"role": "bot", "content": "أهلا"}], "d2")
    with pytest.raises(FormatError, match=r"d3: turn 0 \(user\) contains a chat-template token"):
        check_messages([{"role": "user", "content": f"x{IM_END}"}, {"role": "assistant", "content": "y"}], "d3")


def test_a_bad_row_in_the_data_stops_training_and_names_its_file_and_id(tiny_base, tmp_path):
    with pytest.raises(FormatError, match=r"rows\.jsonl \[train\] row p2: needs non-empty"):
        trainer_for(tiny_base, [PROMPTS[0], {"id": "p2", "inputs": "x", "targets": ""}], tmp_path)
