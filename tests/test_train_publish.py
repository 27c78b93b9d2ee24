"""push-adapter: what goes to the Hub, the model card, and the publishing rules (endpoint, token, idempotence, tags).
The Hub cannot be reached here, so `FakeModelHub` stands in for the HTTP side of HfApi (a mock, content-addressed
like the real Hub); everything before those calls -- checks, card, staging, tag decisions -- runs for real."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from builders.training.card import CardError
from builders.training.publish import AdapterError, push_adapter
from fake_hub import FakeHub
from test_eval_compare import items, write_run

BASE = "Qwen/Qwen2-0.5B"  # the Hub model the tiny random base stands in for (the Hub is mocked anyway)
MIXTURE = "arabic-prompts/arabic-prompts-mixture-tiny"  # the Hub id its (local) training mixture would have


class FakeModelHub(FakeHub):
    """tests/fake_hub.py's FakeHub, also keeping each commit's file contents so a test can read what was sent."""

    def __post_init__(self):
        super().__post_init__()
        self.contents: dict[str, dict[str, bytes]] = {}

    @property
    def uploads(self) -> int:
        return sum(c[0] == "upload_folder" for c in self.calls)

    def upload_folder(self, repo_id, repo_type, folder_path, ignore_patterns, delete_patterns, commit_message, **kw):
        assert repo_type == "model" and not delete_patterns  # never deletes what it did not write
        info = super().upload_folder(repo_id, repo_type, folder_path, ignore_patterns, delete_patterns,
                                     commit_message, **kw)
        root = Path(folder_path)
        self.contents.setdefault(info.oid, {str(p.relative_to(root)): p.read_bytes()
                                            for p in root.rglob("*") if p.is_file()})
        return info


@pytest.fixture
def run_dir(tiny_run, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(tiny_run, out)
    return out


def test_push_adapter_uploads_the_adapter_with_a_valid_card_and_is_idempotent(run_dir):
    fake = FakeModelHub()
    res = push_adapter(run_dir, "org/tiny-lora", base_model=BASE, datasets=[MIXTURE], api=fake)
    assert res.created_commit and res.tag is None
    files = fake.contents[res.commit]
    assert set(files) == {"README.md", "adapter_config.json", "adapter_model.safetensors", "tokenizer.json",
                          "tokenizer_config.json", "chat_template.jinja", "generation_config.json",
                          "training_run.json"}  # no checkpoints, optimizer states or pickles (training_args.bin)
    assert files["adapter_model.safetensors"] == (run_dir / "adapter_model.safetensors").read_bytes()
    assert json.loads(files["adapter_config.json"])["base_model_name_or_path"] == BASE  # not the local folder

    card = ModelCard(files["README.md"].decode())
    meta = card.data.to_dict()
    assert meta["base_model"] == BASE and meta["library_name"] == "peft" and meta["datasets"] == [MIXTURE]
    assert meta["language"] == ["ar"] and meta["license"] == "apache-2.0" and meta["pipeline_tag"] == "text-generation"
    run = json.loads((run_dir / "training_run.json").read_text())
    by_task = run["datasets"][0]["mixture_recipe"]["by_task"]  # the mixture's own counts, one row per task
    assert len(by_task) == 3 and sum(by_task.values()) == 400
    for text in ("PeftModel.from_pretrained(base, \"org/tiny-lora\")", "merge_and_unload()", "arabic-prompts merge",
                 "### The mixture", *(f"| {task} | {n} |" for task, n in by_task.items()),
                 "Sampled by `arabic-prompts mix` (seed 0)",
                 "r=8, alpha=16", f"| learning_rate | {run['hyperparameters']['learning_rate']} |",
                 f"| steps | {run['global_step']}", "position ids restart at every example"):
        assert text in card.text, text
    assert (run_dir / "README.md").read_text() == files["README.md"].decode()  # the local folder has the same card

    again = push_adapter(run_dir, "org/tiny-lora", base_model=BASE, datasets=[MIXTURE], api=fake)
    assert not again.created_commit and again.commit == res.commit and len(fake.commits) == 1


def test_a_tag_is_made_once_and_a_moved_tag_is_refused_before_any_upload(run_dir):
    fake = FakeModelHub()
    first = push_adapter(run_dir, "org/tiny-lora", version="1.0.0", base_model=BASE, datasets=[MIXTURE], api=fake)
    assert first.created_tag and fake.tags == {"v1.0.0": first.commit}
    same = push_adapter(run_dir, "org/tiny-lora", version="1.0.0", base_model=BASE, datasets=[MIXTURE], api=fake)
    assert not same.created_tag and not same.created_commit and fake.uploads == 1  # confirmed without uploading
    uploads, commits = fake.uploads, list(fake.commits)
    with pytest.raises(ValueError, match="tag v1.0.0 already points at other content.*bump --version"):
        push_adapter(run_dir, "org/tiny-lora", version="1.0.0", base_model=BASE, datasets=[MIXTURE, "org/other"],
                     api=fake)
    assert fake.uploads == uploads and fake.commits == commits  # refused: the repo is as it was
    bumped = push_adapter(run_dir, "org/tiny-lora", version="1.0.1", base_model=BASE,
                          datasets=[MIXTURE, "org/other"], api=fake)
    assert bumped.created_tag and bumped.created_commit and fake.tags["v1.0.0"] == first.commit
    with pytest.raises(ValueError, match="1.2.3"):
        push_adapter(run_dir, "org/tiny-lora", version="v2", base_model=BASE, datasets=[MIXTURE], api=fake)


def test_runs_that_must_not_be_published_are_refused_with_nothing_sent(run_dir, tmp_path):
    fake = FakeModelHub()
    with pytest.raises(CardError, match="is not a Hub id; name the Hub model it stands for with --base-model"):
        push_adapter(run_dir, "org/x", datasets=[MIXTURE], api=fake)  # trained from a local folder
    with pytest.raises(CardError, match="local data only.*--dataset ORG/NAME"):
        push_adapter(run_dir, "org/x", base_model=BASE, api=fake)
    (run_dir / "adapter_model.bin").write_bytes(b"pickle")
    with pytest.raises(AdapterError, match="pickled adapter_model.bin"):
        push_adapter(run_dir, "org/x", base_model=BASE, datasets=[MIXTURE], api=fake)
    (run_dir / "adapter_model.bin").unlink()
    (run_dir / "adapter_model.safetensors").unlink()
    with pytest.raises(AdapterError, match="missing adapter_model.safetensors"):
        push_adapter(run_dir, "org/x", base_model=BASE, datasets=[MIXTURE], api=fake)
    assert fake.calls == []  # nothing was sent


def test_the_card_carries_the_results_that_evaluate_compare_wrote(run_dir, tmp_path):
    from builders import evaluate as ev

    base = write_run(tmp_path / "eval", "tiny-base", "2026-01-01T00-00-00.000001",
                     {"sentiment_analysis": ("classification", items("sa", [0.0, 0.1, 0.0, 0.2]))})
    lora = write_run(tmp_path / "eval", str(run_dir), "2026-01-02T00-00-00.000001",
                     {"sentiment_analysis": ("classification", items("sa", [1.0, 0.5, 1.0, 0.9]))})
    assert ev.main(["compare", f"base={base}", f"lora={lora}", "--out", str(tmp_path / "cmp"), "--n-boot", "200",
                    "--n-perm", "200", "--into-model-card", str(run_dir), "--card-model", "lora"]) == 0
    fake = FakeModelHub()
    res = push_adapter(run_dir, "org/tiny-lora", base_model=BASE, datasets=[MIXTURE], api=fake)
    card = ModelCard(fake.contents[res.commit]["README.md"].decode())
    got = {r.dataset_config: r.metric_value for r in card.data.eval_results}
    assert got == {"sentiment_analysis": 0.85, "default": 0.85}  # per task and the macro average
    assert "| sentiment_analysis | 0.8500 |" in card.text


def test_push_adapter_command_honours_the_endpoint_and_never_prints_the_token(run_dir, monkeypatch, capsys):
    import huggingface_hub

    from builders.cli import main

    seen = {}

    class RecordingApi(FakeModelHub):
        def __init__(self, endpoint=None, token=None):
            super().__init__()
            seen.update(endpoint=endpoint, token=token)

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    push_adapter(run_dir, "org/x", base_model=BASE, datasets=[MIXTURE], token="hf_very_secret_token")
    assert seen == {"endpoint": "http://127.0.0.1:9", "token": "hf_very_secret_token"}
    assert main(["push-adapter", str(run_dir), "--repo", "org/x", "--base-model", BASE, "--dataset", MIXTURE,
                 "--endpoint", "http://localhost:1234", "--version", "0.1.0"]) == 0
    assert seen["endpoint"] == "http://localhost:1234" and seen["token"] is None  # None: HF_TOKEN or login cache
    out = capsys.readouterr()
    assert "hf_very_secret_token" not in out.out + out.err and "tag v0.1.0 created" in out.out
    assert main(["push-adapter", str(run_dir), "--repo", "org/x", "--base-model", BASE, "--dataset", MIXTURE,
                 "--dry-run"]) == 0
    assert "(valid); would publish adapter_config.json, adapter_model.safetensors" in capsys.readouterr().out


def test_the_card_check_refuses_cards_the_hub_would_not_list_under_the_base_model(run_dir):
    """validate_card is what every published card passes (above); here cards that must fail it do."""
    from builders.training.card import render_card, validate_card

    good = render_card(run_dir, "org/tiny-lora", base_model=BASE, datasets=[MIXTURE])
    assert validate_card(good).data.base_model == BASE
    with pytest.raises(CardError, match="no `base_model`"):
        validate_card(good.replace(f"base_model: {BASE}\n", ""))
    with pytest.raises(CardError, match="library_name is 'transformers', not 'peft'"):
        validate_card(good.replace("library_name: peft", "library_name: transformers"))
    with pytest.raises(CardError, match="does not parse"):
        validate_card(good.replace("library_name: peft", "library_name: [peft"))
    with pytest.raises(CardError, match="does not parse"):  # a model-index the Hub cannot read
        validate_card(good.replace("---\n\n", "model-index:\n- name: x\n  results:\n  - task: {}\n---\n\n", 1))
