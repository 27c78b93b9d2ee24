"""`dialogues generate`: scripted Arabic replies through every stage (parsing, validation, retries, filters,
exact and near duplicates, rejects with reasons), a tiny random causal LM through the transformers backend, the
OpenAI-compatible backend against a local server, and resuming a killed run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import CLI, REPO
from dialogues_fixtures import (EGYPTIAN, ENGLISH, GULF, TOO_SHORT, ScriptedBackend, cli, scripted_conversation,
                               seed_of)

from builders.dialogues.backends import BackendError, OpenAIBackend, SamplingConfig, TransformersBackend
from builders.dialogues.conversations import read_conversations
from builders.dialogues.generate import GenerateConfig, GenerateError, generate, prepare
from builders.hub import load_built, publish, validate
from builders.schema import DIALOGUE_SCHEMA
from builders.steps import BuildError
from builders.dialogues.grid import load_countries, load_topics, make_cells
from builders.dialogues.parse import parse_conversation
from builders.dialogues.steps import retry_seed, source_id

TOPICS, COUNTRIES = ["cooking", "football", "weather"], ["egypt", "kuwait", "france"]
AR = {t.key: t.name_ar for t in load_topics()} | {c.key: c.name_ar for c in load_countries()}


def _cell_of(instruction: str) -> tuple[str, str]:
    topic = next(t for t in TOPICS if f"الموضوع: {AR[t]}،" in instruction)
    country = next(c for c in COUNTRIES if f"البلد: {AR[c]}." in instruction)
    return topic, country


CALLS: dict = {}


def _script(instruction: str, seed: int) -> str:
    """One behaviour per cell; the rest get a fresh conversation of real Arabic text."""
    cell = _cell_of(instruction)
    CALLS[cell] = CALLS.get(cell, 0) + 1
    return {
        ("cooking", "egypt"): EGYPTIAN,
        ("cooking", "kuwait"): TOO_SHORT if CALLS[cell] == 1 else GULF,  # invalid, then valid on the retry
        ("cooking", "france"): "لا أعرف ماذا أكتب.",  # never a conversation: rejected after every retry
        ("football", "egypt"): ENGLISH,  # valid, but not Arabic
        ("football", "kuwait"): EGYPTIAN,  # an exact copy of cooking/egypt's
        ("football", "france"): EGYPTIAN.replace("الكشري سهل", "الكشري بسيط"),  # a near copy
    }.get(cell) or scripted_conversation(seed_of(instruction, seed))


def scripted_factory():
    return ScriptedBackend(_script)


@pytest.fixture(scope="module")
def scripted_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "out"
    CALLS.clear()
    result = generate(GenerateConfig(out=out, backend=scripted_factory, topics=TOPICS, countries=COUNTRIES,
                                     cells_per_task=4, max_retries=2, batch_size=3))
    return out, result.report


def _rows(folder: Path, sub: str) -> list[dict]:
    return [r for f in sorted((folder / sub).rglob("*.parquet")) for r in pq.read_table(f).to_pylist()]


def test_every_cell_is_kept_or_rejected_with_its_reason(scripted_run):
    out, rep = scripted_run
    assert rep["cells"] == 9 and rep["kept"] == 5 and rep["rejected"] == 4 and rep["accounted"]
    assert rep["rejected_by_stage_reason"] == {"exact_duplicate: exact duplicate": 1, "filter: low arabic ratio": 1,
                                               "near_duplicate: near duplicate": 1, "validate: no turns found": 1}
    assert rep["by_topic"] == {"cooking": 2, "weather": 3} and rep["by_country"] == {"egypt": 2, "france": 1,
                                                                                      "kuwait": 2}
    assert json.loads((out / "build_report.json").read_text()) == rep
    rejected = {(r["topic"], r["country"]): r for r in _rows(out, "_build/rejected")}
    never = rejected[("cooking", "france")]
    assert never["attempts"] == 3 and never["content"] == "لا أعرف ماذا أكتب." and never["stage"] == "validate"
    assert CALLS[("cooking", "france")] == 3  # the first try and max_retries=2 more
    english = rejected[("football", "egypt")]
    assert english["detail"].startswith("low arabic ratio: 0.00") and "Petra" in english["content"]
    # of two exact copies the earliest cell stays
    assert rejected[("football", "kuwait")]["reason"] == "exact duplicate"
    assert rejected[("football", "france")]["reason"] == "near duplicate"


def test_the_folder_is_a_valid_hub_dataset(scripted_run, monkeypatch):
    out, rep = scripted_run
    files = sorted((out / "data").rglob("*.parquet"))
    assert {f.parent.name for f in files} == {"arz", "afb", "arb"}  # one config per Arabic variety
    assert all(pq.read_schema(f).equals(DIALOGUE_SCHEMA) for f in files)
    summary = validate(out)  # the builder's own check: schema of the manifest's kind, counts, leakage
    assert summary["rows"] == 5 and summary["checks"]["source_texts_in_two_splits"] == 0
    manifest = json.loads((out / "build_manifest.json").read_text())
    assert manifest["kind"] == "dialogues" and manifest["generator"].endswith("scripted_factory")
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "![conversations per topic and country](topic_country_heatmap.png)" in card
    assert (out / "topic_country_heatmap.png").stat().st_size > 2000
    assert "| Cooking and recipes | الطبخ والوصفات | 2 |" in card and "| Kuwait | الكويت | Gulf Arabic (Kuwaiti) | 2 |" in card
    assert "| validate: no turns found | 1 |" in card
    by_split = {s: len(read_conversations(out, split=s)) for s in rep["by_split"]}
    assert by_split == rep["by_split"] and sum(by_split.values()) == 5
    ds = load_built(out, "afb")
    assert sum(len(ds[s]) for s in ds) == 2 and all(r["dialect"] == "afb" for s in ds for r in ds[s])
    # published with the builder's publish (the Hub is a stand-in here: no network)
    from fake_hub import FakeHub

    hub = FakeHub()
    res = publish(out, "org/arabic-dialogues", "1.0.0", api=hub)
    assert res.created_tag and "data/afb/" in " ".join(hub.files) and not any(p.startswith("_build") for p in hub.files)


def test_kept_rows_have_the_dataset_fields(scripted_run):
    out, _ = scripted_run
    rows = {(r["topic"], r["country"]): r for r in _rows(out, "data")}
    kuwait = rows[("cooking", "kuwait")]
    cell = make_cells(topics=["cooking"], countries=["kuwait"])[0]
    assert kuwait["seed"] == retry_seed(cell.seed, 1)  # valid on the second try: that try's seed is recorded
    assert kuwait["source_id"] == source_id("cooking", "kuwait", 0, cell.seed)
    assert kuwait["dialect"] == "afb" and rows[("weather", "france")]["dialect"] == "arb"
    assert kuwait["generator"] == ScriptedBackend.name and kuwait["split"] in ("train", "validation", "test")
    assert kuwait["prompt_version"].startswith("topic_country_dialogue-v1-")
    assert [m["role"] for m in kuwait["messages"]] == ["user", "assistant"] * 3
    assert kuwait["messages"][1]["content"].startswith("وعليكم السلام!")


def test_tiny_random_lm_through_the_transformers_backend(tmp_path, tiny_lm):
    folder, _, _ = tiny_lm
    backend = TransformersBackend(str(folder), sampling=SamplingConfig(max_new_tokens=12))
    assert backend.format.name == "plain" and backend.tokenizer.padding_side == "left"
    prompts = ["اكتب محادثة قصيرة", "اكتب محادثة طويلة جدا عن الطقس في مصر"]
    first = backend.generate(prompts, [1, 2])
    assert len(first) == 2 and all(isinstance(r, str) and r for r in first)
    assert backend.generate(prompts, [1, 2]) == first  # seeded
    # through the whole pipeline: a random model writes no conversation, every cell is kept as a reject
    from builders.dialogues.steps import _BACKENDS

    _BACKENDS.clear()
    with pytest.raises(GenerateError, match="no conversation of 2 cells was kept"):
        generate(GenerateConfig(out=tmp_path / "out", backend=lambda: backend, topics=["cooking"],
                                countries=["egypt", "japan"], max_retries=1, batch_size=2))
    rep = json.loads((tmp_path / "out" / "build_report.json").read_text())
    assert rep["kept"] == 0 and rep["rejected"] == 2 and rep["accounted"]
    assert all(r["attempts"] == 2 and r["stage"] == "validate" for r in _rows(tmp_path / "out", "_build/rejected"))


def test_model_code_is_never_run_unless_asked(tmp_path):
    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "jais", "auto_map": {
        "AutoConfig": "configuration_jais.JAISConfig", "AutoModelForCausalLM": "modeling_jais.JAISLMHeadModel"}}))
    for name in ("configuration_jais.py", "modeling_jais.py"):
        (folder / name).write_text(f"open({str(tmp_path / 'ran')!r}, 'w').write('x')\n")
    with pytest.raises(BackendError, match="ships its own model code.*--trust-remote-code"):
        TransformersBackend(str(folder))
    assert not (tmp_path / "ran").exists()


def test_openai_backend_chat_and_completions(openai_server, monkeypatch):
    server, url = openai_server
    monkeypatch.setenv("TEST_DIALOGUE_KEY", "sk-test-not-a-secret")
    chat = OpenAIBackend(base_url=url, model="some/instruct-model", api_key_env="TEST_DIALOGUE_KEY",
                         sampling=SamplingConfig(max_new_tokens=64, temperature=0.5), concurrency=2)
    replies = chat.generate(["اكتب محادثة", "اكتب محادثة أخرى"], [11, 12])
    assert replies == [scripted_conversation(seed_of("اكتب محادثة", 11)),
                       scripted_conversation(seed_of("اكتب محادثة أخرى", 12))]
    body = next(r["body"] for r in server.requests if r["body"]["seed"] == 11)
    assert body["messages"] == [{"role": "user", "content": "اكتب محادثة"}] and body["max_tokens"] == 64
    assert body["temperature"] == 0.5 and server.requests[0]["path"] == "/v1/chat/completions"
    assert server.requests[0]["auth"] == "Bearer sk-test-not-a-secret"
    # completions: our own prompt format (Jais's, from its model card) with its stop markers
    server.requests.clear()
    server.script = lambda prompt, seed: "\n" + EGYPTIAN + "\n### Input: [|Human|] شكرا"
    jais = OpenAIBackend(base_url=url, model="inceptionai/jais-13b-chat", mode="completions")
    (reply,) = jais.generate(["اكتب محادثة"], [5])
    assert reply.strip() == EGYPTIAN  # cut where the model starts the next turn of its own format
    sent = server.requests[0]["body"]
    assert sent["prompt"].startswith("### Instruction: اسمك جيس")
    assert sent["prompt"].endswith("### Input: [|Human|] اكتب محادثة\n### Response: [|AI|]")
    assert sent["stop"][0] == "### Input:" and sent["temperature"] == 0.3  # the card's setting
    # a failing server is retried, then reported
    server.requests.clear()
    server.fail_first = 2
    assert chat.generate(["اكتب"], [1]) and len(server.requests) == 3
    server.fail_first = 100
    with pytest.raises(BackendError, match=r"/chat/completions: request failed after 4 attempt"):
        OpenAIBackend(base_url=url, max_http_retries=3).generate(["اكتب"], [1])


def _cli_generate(out: Path, url: str) -> list[str]:
    return [*CLI, "dialogues", "generate", "--out", str(out), "--backend", "openai", "--base-url", url,
            "--model", "local/test-model", "--topics", "cooking,football,weather", "--countries",
            "egypt,kuwait,france,japan", "--cells-per-task", "2", "--batch-size", "2", "--concurrency", "1"]


def test_a_killed_run_resumes_without_lost_or_repeated_conversations(openai_server, tmp_path, capsys):
    server, url = openai_server
    script = server.script

    def slow(prompt, seed):
        time.sleep(0.25)
        return script(prompt, seed)

    server.script = slow
    out = tmp_path / "out"
    done = out / "_build" / "logs" / "1-generate" / "completions"
    proc = subprocess.Popen(_cli_generate(out, url), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None and len(list(done.glob("*"))) < 2:
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()[-2000:]}"
        os.killpg(proc.pid, signal.SIGKILL)  # our own process group: the CLI and nothing else
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    finished = len(list(done.glob("*")))
    assert 2 <= finished < 6 and not (out / "build_report.json").exists()
    asked_before = len(server.requests)
    cli(capsys, *_cli_generate(out, url)[len(CLI):])  # the same command again (in this process)
    rep = json.loads((out / "build_report.json").read_text())
    assert rep["cells"] == 12 and rep["kept"] == 12 and rep["accounted"]
    rows = _rows(out, "data")
    ids = [r["source_id"] for r in rows]
    expected = {source_id(c.topic.key, c.country.key, c.index, c.seed)
                for c in make_cells(topics=TOPICS, countries=["egypt", "kuwait", "france", "japan"])}
    assert len(ids) == len(set(ids)) == 12 and set(ids) == expected
    # the finished tasks were not generated again: the second run asked only for the rest (2 cells per task)
    assert len(server.requests) - asked_before <= 2 * (6 - finished)
    # and every conversation is the one its cell's prompt and seed give (what an uninterrupted run writes)
    cells = {r["source_id"]: r for r in pq.read_table(out / "_build" / "cells.parquet").to_pylist()}
    assert validate(out)["rows"] == 12
    for row in rows:
        cell = cells[row["source_id"]]
        expected = scripted_conversation(seed_of(cell["instruction"], cell["seed"]))
        assert row["messages"] == parse_conversation(expected, "المستخدم", "المساعد").messages
        assert row["seed"] == cell["seed"] and (row["topic"], row["country"]) == (cell["topic"], cell["country"])


def test_other_options_start_afresh_and_foreign_folders_are_refused(tmp_path):
    cfg = GenerateConfig(out=tmp_path / "out", backend=scripted_factory, topics=["cooking"], countries=["egypt"])
    work, _, cells, _ = prepare(cfg)
    (work / "marker").write_text("x")
    prepare(cfg)
    assert (work / "marker").exists()  # same inputs: kept for resuming
    prepare(GenerateConfig(out=tmp_path / "out", backend=scripted_factory, topics=["cooking"], countries=["egypt"],
                           num_turns=4))
    assert not (work / "marker").exists() and cells == 1  # other inputs: started afresh
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(BuildError, match="not empty and holds no earlier arabic-prompts build"):
        prepare(GenerateConfig(out=tmp_path / "foreign", backend=scripted_factory, topics=["cooking"]))
    assert (tmp_path / "foreign" / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="--turns"):
        GenerateConfig(out=tmp_path, backend=scripted_factory, num_turns=1)
    assert sys.executable  # the CLI runs under this interpreter (conftest.CLI)


def test_vllm_backend_asks_one_seed_per_conversation(monkeypatch):
    """vLLM needs CUDA and cannot be installed here: a stand-in module records what our backend asks of its
    documented offline API (LLM(...).generate(prompts, [SamplingParams(seed=...)]))."""
    import types

    from builders.dialogues.backends import VLLMBackend

    asked = {}

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    class LLM:
        def __init__(self, **kw):
            asked["llm"] = kw

        def get_tokenizer(self):
            return None

        def generate(self, prompts, params):
            asked["prompts"], asked["params"] = prompts, [p.kw for p in params]
            return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=EGYPTIAN + "\n### Input: [|Human|] x")])
                    for _ in prompts]

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams))
    backend = VLLMBackend("inceptionai/jais-13b-chat", sampling=SamplingConfig(max_new_tokens=99))
    replies = backend.generate(["اكتب محادثة", "اكتب أخرى"], [7, 8])
    assert replies == [EGYPTIAN + "\n", EGYPTIAN + "\n"]
    assert asked["llm"]["trust_remote_code"] is False and asked["llm"]["model"] == "inceptionai/jais-13b-chat"
    assert [p["seed"] for p in asked["params"]] == [7, 8] and asked["params"][0]["max_tokens"] == 99
    assert asked["params"][0]["temperature"] == 0.3 and "### Input:" in asked["params"][0]["stop"]
    assert asked["prompts"][1].endswith("### Input: [|Human|] اكتب أخرى\n### Response: [|AI|]")


def test_the_trainer_trains_on_the_assistant_turns_of_a_generated_folder(scripted_run, tiny_base, tmp_path):
    """The fine-tuning half of the blueprint: the training issue's trainer reads a `dialogues generate` folder
    as it is (config `default`, its `messages`) and puts loss on every assistant turn and on nothing else."""
    pytest.importorskip("trl")
    from builders.training.formatting import IM_END
    from train_fixtures import load_sft, parse, runs

    out, _ = scripted_run
    conversations = [r["messages"] for r in _rows(out, "data") if r["split"] == "train"]
    assert conversations
    trainer, _ = load_sft().build_trainer(*parse(tiny_base, [out], tmp_path / "run", dataset_config="default",
                                                 dataset_eval_split="none", max_steps=1, packing=False,
                                                 max_length=2048))
    tok = trainer.processing_class
    assert len(trainer.train_dataset) == len(conversations)
    for i in range(len(trainer.train_dataset)):
        batch = trainer.data_collator([trainer.train_dataset[i]])
        ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
        text = tok.decode(ids)
        turns = next(c for c in conversations if all(t["content"] in text for t in c))  # this row's conversation
        trained = [tok.decode(ids[a:b]) for a, b in runs(labels)]
        assert trained == [t["content"] + IM_END for t in turns if t["role"] == "assistant"]
        assert not any(t["content"] in "".join(trained) for t in turns if t["role"] != "assistant")
