"""eval_tasks/arabic_prompts.py with lighteval, offline: task discovery from a built folder,
cache-safe loading of a rebuilt folder, and the real lighteval CLI end to end on a tiny random
Qwen2 (+ a LoRA adapter) over a folder built by `arabic-prompts build` from real shared data.
Nothing is mocked: the model is tiny and random, made here; the network is never used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import load_eval_tasks, run_cli

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TASKS_FILE = REPO / "eval_tasks" / "arabic_prompts.py"


def load_tasks_module(monkeypatch, dataset: Path | str | None = None, tasks: str | None = None, cache: Path | None = None):
    """Import the tasks file afresh (as lighteval does) with the given environment."""
    for var, value in (("ARABIC_PROMPTS_DATASET", dataset), ("ARABIC_PROMPTS_TASKS", tasks),
                       ("ARABIC_PROMPTS_CACHE", cache)):
        if value is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, str(value))
    return load_eval_tasks(f"arabic_prompts_{uuid.uuid4().hex[:8]}")


def write_folder(folder: Path, rows_by_task: dict[str, list[dict]]) -> None:
    """A minimal Hub-layout folder (README configs + data/<task>/<split>-*.parquet)."""
    configs = []
    for task, rows in rows_by_task.items():
        d = folder / "data" / task
        d.mkdir(parents=True, exist_ok=True)
        for split in ("train", "test"):
            part = [r | {"split": split} for r in rows]
            pq.write_table(pa.Table.from_pylist(part), d / f"{split}-00000-of-00001.parquet")
        configs.append(f"- config_name: {task}\n  data_files:\n"
                       f"  - split: train\n    path: data/{task}/train-*\n"
                       f"  - split: test\n    path: data/{task}/test-*\n")
    (folder / "README.md").write_text("---\nconfigs:\n" + "".join(configs) + "---\n# tiny\n", encoding="utf-8")


def row(i: int, inputs: str, targets: str, family: str = "classification") -> dict:
    return {"id": f"r{i}", "inputs": inputs, "targets": targets, "task_family": family, "template_name": "t"}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The real builder on real shared data: AJGT sentiment + ARCD extractive QA."""
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    out = tmp_path_factory.mktemp("built") / "arabic-prompts"
    run_cli("build", "--datasets", "ajgt_sentiment,arcd_extractive_qa",
            "--local", f"ajgt_sentiment={SHARED / 'ajgt'}", "--local", f"arcd_extractive_qa={SHARED / 'arcd'}",
            "--out", str(out), "--limit", "40")
    return out


def test_tasks_come_from_the_folder_readme(built, monkeypatch, tmp_path):
    ap = load_tasks_module(monkeypatch, built, cache=tmp_path / "snap")
    table = {t.name: t for t in ap.TASKS_TABLE}
    # ARCD's derived question-writing template makes a third config (its derived_task)
    assert set(table) == {"arabic_prompts:sentiment_analysis", "arabic_prompts:extractive_qa",
                          "arabic_prompts:question_generation"}
    sa, qa = table["arabic_prompts:sentiment_analysis"], table["arabic_prompts:extractive_qa"]
    assert (sa.generation_size, tuple(sa.stop_sequence)) == ap.FAMILY_GENERATION["classification"]
    assert (qa.generation_size, tuple(qa.stop_sequence)) == ap.FAMILY_GENERATION["question_answering"]
    assert sa.evaluation_splits == ("test",) and sa.hf_subset == "sentiment_analysis"
    assert {m.metric_name for m in sa.metrics} == {"rougeL_ar", "rougeL_ar_raw"}
    # hf_repo is a content-addressed snapshot of the folder, not the folder itself
    snap = Path(sa.hf_repo)
    assert snap.parent == tmp_path / "snap" and snap.name.startswith("arabic-prompts-")
    assert (snap / "README.md").read_bytes() == (built / "README.md").read_bytes()
    # ARABIC_PROMPTS_TASKS selects; an unknown task is an error naming the folder
    ap = load_tasks_module(monkeypatch, built, tasks="extractive_qa", cache=tmp_path / "snap")
    assert [t.name for t in ap.TASKS_TABLE] == ["arabic_prompts:extractive_qa"]
    with pytest.raises(ap.DatasetSpecError, match=r"unknown task\(s\) nope"):
        ap.build_tasks_table(str(built), tasks="nope")


def test_prompt_function_on_built_rows(built, monkeypatch, tmp_path):
    from lighteval.tasks.lighteval_task import LightevalTask

    ap = load_tasks_module(monkeypatch, built, cache=tmp_path / "snap")
    config = next(t for t in ap.TASKS_TABLE if t.name.endswith("sentiment_analysis"))
    docs = LightevalTask(config).eval_docs()
    rows = pq.read_table(next((built / "data" / "sentiment_analysis").glob("test-*.parquet"))).to_pylist()
    assert len(docs) == len(rows) > 0
    by_id = {r["id"]: r for r in rows}
    for doc in docs:
        r = by_id[doc.specific["id"]]
        assert doc.query == r["inputs"].rstrip() and doc.get_golds() == [r["targets"].strip()]
        assert doc.specific["task_family"] == "classification"
    with pytest.raises(ValueError, match="task arabic_prompts:x: row 'r1' needs string `inputs` and `targets`"):
        ap.prompt_fn({"id": "r1", "inputs": "نص", "targets": None}, "arabic_prompts:x")


def test_rebuilt_folder_rows_are_what_the_task_sees(tmp_path, monkeypatch):
    """datasets 5.2 serves stale cached rows for a rebuilt local folder of the same name and
    configs; the task must see the new rows (same HF_DATASETS_CACHE for both loads)."""
    from lighteval.tasks.lighteval_task import LightevalTask

    folder = tmp_path / "ds"
    write_folder(folder, {"sentiment_analysis": [row(i, f"قديم {i}", "سلبي") for i in range(4)]})
    ap = load_tasks_module(monkeypatch, folder, cache=tmp_path / "snap")
    old = [d.query for d in LightevalTask(ap.TASKS_TABLE[0]).eval_docs()]
    assert sorted(old) == [f"قديم {i}" for i in range(4)]

    import shutil

    shutil.rmtree(folder)
    write_folder(folder, {"sentiment_analysis": [row(i, f"جديد {i}", "إيجابي") for i in range(5)]})
    ap = load_tasks_module(monkeypatch, folder, cache=tmp_path / "snap")
    docs = LightevalTask(ap.TASKS_TABLE[0]).eval_docs()
    assert sorted(d.query for d in docs) == [f"جديد {i}" for i in range(5)]
    assert {d.get_golds()[0] for d in docs} == {"إيجابي"}


def test_bad_dataset_specs(tmp_path, monkeypatch):
    ap = load_tasks_module(monkeypatch, None)
    with pytest.raises(ap.DatasetSpecError, match=f"dataset folder {tmp_path / 'missing'} does not exist"):
        ap.build_tasks_table(str(tmp_path / "missing"))
    (tmp_path / "noyaml").mkdir()
    (tmp_path / "noyaml" / "README.md").write_text("# no front matter\n", encoding="utf-8")
    with pytest.raises(ap.DatasetSpecError, match="noyaml/README.md: no YAML front matter"):
        ap.build_tasks_table(str(tmp_path / "noyaml"))
    broken = tmp_path / "broken"
    write_folder(broken, {"t": [row(0, "a", "b")]})
    pq.write_table(pa.table({"text": ["x"]}), broken / "data" / "t" / "test-00000-of-00001.parquet")
    with pytest.raises(ap.DatasetSpecError, match=r"task 't'.*has no column\(s\) inputs, targets"):
        ap.build_tasks_table(str(broken))
    # the Hub default, offline: the static task list (every task of the catalog)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    names = {t.hf_subset for t in ap.build_tasks_table()}
    assert names == set(ap.STATIC_TASKS) and {t.hf_repo for t in ap.build_tasks_table()} == {ap.DEFAULT_HF_REPO}


def test_static_task_list_matches_the_catalog():
    from builders.catalog import load_catalog

    ap = load_eval_tasks("ap_static")
    catalog = {e.task: e.task_family for e in load_catalog().values()}
    assert ap.STATIC_TASKS == catalog, "update STATIC_TASKS in eval_tasks/arabic_prompts.py from the catalog"


# --------------------------------------------------------------------------------------------
# The real lighteval CLI, end to end
# --------------------------------------------------------------------------------------------

TRAIN_SCRIPT = r"""
import sys, torch, pyarrow.parquet as pq, glob
from tokenizers import Tokenizer, models, trainers, pre_tokenizers, decoders
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM
from peft import LoraConfig, get_peft_model
ds, base_dir, adapter_dir = sys.argv[1:4]
texts = []
for f in sorted(glob.glob(f"{ds}/data/*/*.parquet")):
    t = pq.read_table(f, columns=["inputs", "targets"]).to_pydict(); texts += t["inputs"] + t["targets"]
bpe = Tokenizer(models.BPE(unk_token="<unk>"))
bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
bpe.decoder = decoders.ByteLevel()
bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=600, special_tokens=["<unk>", "<pad>", "<eos>"],
                                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
tok = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>",
                              bos_token="<eos>", model_max_length=512)
tok.save_pretrained(base_dir)
torch.manual_seed(0)
cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.eos_token_id)
Qwen2ForCausalLM(cfg).save_pretrained(base_dir)  # safetensors
# a LoRA adapter overfit on the sentiment TEST prompts, so that its answers overlap the references:
# this checks the scoring pipeline end to end (not generalisation)
model = get_peft_model(Qwen2ForCausalLM.from_pretrained(base_dir), LoraConfig(
    r=8, lora_alpha=16, lora_dropout=0.0, task_type="CAUSAL_LM",
    target_modules=["q_proj", "v_proj", "o_proj", "up_proj", "down_proj", "lm_head"]))
rows = pq.read_table(glob.glob(f"{ds}/data/sentiment_analysis/test-*.parquet")[0]).to_pylist()
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-2)
seqs = []
for r in rows:
    p = tok(r["inputs"].rstrip())["input_ids"]; t = tok(r["targets"])["input_ids"] + [tok.eos_token_id]
    seqs.append((p + t, [-100] * len(p) + t))
width = max(len(ids) for ids, _ in seqs)
ids = torch.tensor([[tok.pad_token_id] * (width - len(i)) + i for i, _ in seqs])
labels = torch.tensor([[-100] * (width - len(l)) + l for _, l in seqs])
mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i, _ in seqs])
model.train()
for step in range(int(sys.argv[4]) if len(sys.argv) > 4 else 100):  # full batch
    model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward(); opt.step(); opt.zero_grad()
model.save_pretrained(adapter_dir)
"""


def lighteval(model_args: str, out: Path, env: dict) -> Path:
    """`python eval_tasks/arabic_prompts.py accelerate ...`: lighteval's own CLI (typer app) behind
    the offline guard. Returns the results file."""
    cmd = [sys.executable, str(TASKS_FILE), "accelerate", model_args, "arabic_prompts|0",
           "--custom-tasks", str(TASKS_FILE), "--output-dir", str(out), "--save-details", "--max-samples", "16"]
    proc = subprocess.run(cmd, cwd=out.parent, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    files = sorted(out.glob("results/**/results_*.json"))
    assert len(files) == 1, files
    return files[0]


def test_lighteval_cli_end_to_end(built, tmp_path):
    t0 = time.time()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "ARABIC_PROMPTS_DATASET": str(built), "ARABIC_PROMPTS_CACHE": str(tmp_path / "snap"),
           "HF_DATASETS_CACHE": str(tmp_path / "ds_cache"), "TOKENIZERS_PARALLELISM": "false"}
    env.pop("ARABIC_PROMPTS_TASKS", None)
    base, adapter = tmp_path / "tiny-qwen2", tmp_path / "tiny-lora"
    subprocess.run([sys.executable, "-c", TRAIN_SCRIPT, str(built), str(base), str(adapter)], env=env,
                   check=True, capture_output=True, timeout=300)
    assert (adapter / "README.md").is_file() and not list(base.glob("*.bin"))
    merged = tmp_path / "tiny-qwen2-lora"
    proc = subprocess.run([sys.executable, "-m", "builders.evaluate", "merge-adapter", "--base", str(base),
                           "--adapter", str(adapter), "--out", str(merged)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    runs = {}
    for label, model in (("base", base), ("lora", merged)):
        runs[label] = lighteval(f"model_name={model},dtype=float32,batch_size=8", tmp_path / f"out_{label}", env)

    ap = load_tasks_module(pytest.MonkeyPatch(), None)  # for its scorer only
    for label, results_file in runs.items():
        data = json.loads(results_file.read_text(encoding="utf-8"))
        for task in ("sentiment_analysis", "extractive_qa"):
            scores = data["results"][f"arabic_prompts:{task}|0"]
            assert 0.0 <= scores["rougeL_ar"] <= 1.0 and 0.0 <= scores["rougeL_ar_raw"] <= 1.0
            # the per-item scores in the details are our scorer applied to the model's outputs
            details = next((tmp_path / f"out_{label}").glob(f"details/**/details_arabic_prompts:{task}|0_*.parquet"))
            table = pq.read_table(details).to_pylist()
            assert len(table) == min(16, len(pq.read_table(next((built / "data" / task).glob("test-*"))))) > 0
            for r in table:
                pred = r["model_response"]["text"][0]
                gold = r["doc"]["choices"][0]
                assert r["metric"]["rougeL_ar"] == pytest.approx(ap.rouge_l(pred, gold))
            assert scores["rougeL_ar"] == pytest.approx(sum(r["metric"]["rougeL_ar"] for r in table) / len(table))
    lora_sa = json.loads(runs["lora"].read_text(encoding="utf-8"))["results"]["arabic_prompts:sentiment_analysis|0"]
    # the adapter answers with the Arabic labels it was fit on: a non-zero Arabic ROUGE-L
    # (rouge_score's default tokenizer, like lighteval's rougeL, would give 0 for any Arabic)
    assert lora_sa["rougeL_ar"] > 0

    cmp_dir = tmp_path / "cmp"
    proc = subprocess.run([sys.executable, "-m", "builders.evaluate", "compare", f"base={runs['base']}",
                           f"lora={runs['lora']}", "--out", str(cmp_dir), "--n-boot", "1000", "--n-perm", "1000",
                           "--into-model-card", str(adapter), "--card-model", "lora"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((cmp_dir / "comparison.json").read_text(encoding="utf-8"))
    assert data["scores"]["lora"]["sentiment_analysis"] == pytest.approx(lora_sa["rougeL_ar"])
    assert data["families"] == {"sentiment_analysis": "classification", "extractive_qa": "question_answering",
                                "question_generation": "generation"}
    from huggingface_hub import ModelCard

    card = ModelCard.load(adapter / "README.md")
    assert card.data.library_name == "peft"
    got = {r.dataset_config: r.metric_value for r in card.data.eval_results}
    assert got["sentiment_analysis"] == pytest.approx(round(lora_sa["rougeL_ar"], 4))
    print(f"lighteval e2e: {time.time() - t0:.1f}s")  # a figure for the log, not a timed assertion
