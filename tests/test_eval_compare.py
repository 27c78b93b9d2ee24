"""`arabic-prompts evaluate compare` on synthetic lighteval result files with known answers, and
`--into-model-card` on a real PEFT adapter card made here. Only the remote Hub is mocked
(metadata_update for --push-to-hub)."""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from builders import evaluate as ev

REPO = Path(__file__).resolve().parents[1]
METRICS = ("rougeL_ar", "rougeL_ar_raw")


def write_run(out: Path, model: str, date: str, tasks: dict[str, tuple[str, dict[str, float]]],
              shuffle: bool = False, details: bool = True, clusters: dict[str, str] | None = None) -> Path:
    """A lighteval output folder: results/<model>/results_<date>.json and
    details/<model>/<date>/details_<task>|0_<date>.parquet, with the columns lighteval writes."""
    results, config_tasks = {}, {}
    for task, (family, items) in tasks.items():
        key = f"arabic_prompts:{task}|0"
        values = list(items.values())
        results[key] = {m: float(np.mean(values)) for m in METRICS}
        results[key].update({f"{m}_stderr": 0.0 for m in METRICS})
        config_tasks[key] = {"name": f"arabic_prompts:{task}", "hf_repo": "/tmp/snapshot/ds-0123", "hf_revision": None}
        if details:
            rows = [{"doc": {"query": f"q {k}", "choices": ["t"], "gold_index": 0, "id": str(i),
                             "specific": {"id": k, "task_family": family,
                                          **({"source_id": clusters[k]} if clusters else {})}},
                     "metric": {m: v for m in METRICS},
                     "model_response": {"text": ["p"]}}
                    for i, (k, v) in enumerate(items.items())]
            if shuffle:
                rows = rows[::-1]
            d = out / "details" / model.strip("/") / date
            d.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pylist(rows), d / f"details_{key}_{date}.parquet")
    results["all"] = {m: 0.0 for m in METRICS}
    results["arabic_prompts:_average|0"] = {m: 0.0 for m in METRICS}
    r = out / "results" / model.strip("/")
    r.mkdir(parents=True, exist_ok=True)
    path = r / f"results_{date}.json"
    path.write_text(json.dumps({"config_general": {"model_name": model}, "results": results,
                                "config_tasks": config_tasks}), encoding="utf-8")
    return path


def items(prefix: str, values) -> dict[str, float]:
    return {f"{prefix}-{i}": float(v) for i, v in enumerate(values)}


@pytest.fixture
def two_runs(tmp_path):
    """Model `good` beats `weak` on every item of both tasks."""
    rng = np.random.default_rng(0)
    good_sa, weak_sa = rng.uniform(0.6, 1.0, 30), rng.uniform(0.0, 0.4, 30)
    good_qa, weak_qa = rng.uniform(0.5, 0.9, 25), rng.uniform(0.0, 0.3, 25)
    a = write_run(tmp_path / "out", "org/good", "2026-01-01T00-00-00.000001",
                  {"sentiment_analysis": ("classification", items("sa", good_sa)),
                   "extractive_qa": ("question_answering", items("qa", good_qa))})
    b = write_run(tmp_path / "out", "org/weak", "2026-01-02T00-00-00.000001",
                  {"sentiment_analysis": ("classification", items("sa", weak_sa)),
                   "extractive_qa": ("question_answering", items("qa", weak_qa))}, shuffle=True)
    expected = {"good": {"sentiment_analysis": good_sa.mean(), "extractive_qa": good_qa.mean()},
                "weak": {"sentiment_analysis": weak_sa.mean(), "extractive_qa": weak_qa.mean()}}
    return a, b, expected


def test_better_on_every_item_is_significant(two_runs, tmp_path):
    a, b, expected = two_runs
    runs = [ev.load_run(a, "good"), ev.load_run(b, "weak")]
    cmp = ev.compare_runs(runs, n_boot=2000, n_perm=2000, seed=1)
    assert cmp.tasks == ["extractive_qa", "sentiment_analysis"]
    assert cmp.families == {"extractive_qa": "question_answering", "sentiment_analysis": "classification"}
    for label in ("good", "weak"):
        for task, value in expected[label].items():
            assert cmp.scores[label][task] == pytest.approx(value)
            lo, hi = cmp.score_ci[label][task]
            assert lo <= value <= hi
        assert cmp.macro[label] == pytest.approx(np.mean(list(expected[label].values())))
    by_task = {pw.task: pw for pw in cmp.pairwise}
    assert set(by_task) == {"extractive_qa", "sentiment_analysis", "macro_average"}
    for task, pw in by_task.items():
        assert (pw.model_a, pw.model_b) == ("good", "weak")
        assert pw.significant and pw.p_value < 0.01
        assert 0 < pw.ci_low <= pw.diff <= pw.ci_high
    assert by_task["sentiment_analysis"].n == 30 and by_task["macro_average"].n == 55
    # the smallest p a sign-flip test can give with 2000 permutations
    assert by_task["macro_average"].p_value == pytest.approx(1 / 2001)
    assert by_task["sentiment_analysis"].diff == pytest.approx(
        expected["good"]["sentiment_analysis"] - expected["weak"]["sentiment_analysis"])


def test_same_scores_are_not_significant(tmp_path):
    vals = items("sa", np.linspace(0, 1, 20))
    a = write_run(tmp_path / "o", "m1", "2026-01-01T00-00-00.1", {"t": ("classification", vals)})
    b = write_run(tmp_path / "o", "m2", "2026-01-01T00-00-00.2", {"t": ("classification", vals)}, shuffle=True)
    cmp = ev.compare_runs([ev.load_run(a), ev.load_run(b)], n_boot=500, n_perm=500)
    for pw in cmp.pairwise:
        assert pw.diff == 0 and (pw.ci_low, pw.ci_high) == (0, 0)
        assert pw.p_value == 1.0 and not pw.significant


def test_noise_alone_is_rarely_significant(tmp_path):
    """Two models scoring exchangeable noise on the same items: the test keeps its level."""
    hits = 0
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        base = rng.uniform(0, 1, 40)
        a = write_run(tmp_path / f"o{seed}", "m1", "d1", {"t": ("generation", items("x", base + rng.normal(0, .1, 40)))})
        b = write_run(tmp_path / f"o{seed}", "m2", "d2", {"t": ("generation", items("x", base + rng.normal(0, .1, 40)))})
        cmp = ev.compare_runs([ev.load_run(a), ev.load_run(b)], n_boot=200, n_perm=400, seed=seed)
        hits += cmp.pairwise[0].significant
    assert hits <= 6  # ~5% expected


def test_outputs_and_cli(two_runs, tmp_path):
    a, b, expected = two_runs
    out = tmp_path / "cmp"
    proc = subprocess.run([sys.executable, "-m", "builders.evaluate", "compare", f"good={a}", f"weak={b}",
                           "--out", str(out), "--n-boot", "500", "--n-perm", "500"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "| **macro average** |" in proc.stdout
    md = (out / "comparison.md").read_text(encoding="utf-8")
    assert "| sentiment_analysis | classification |" in md and "| good | weak | **macro_average** |" in md
    with open(out / "scores.csv", encoding="utf-8") as f:
        rows = {r["task"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"extractive_qa", "sentiment_analysis", "macro_average"}
    assert float(rows["sentiment_analysis"]["good"]) == pytest.approx(expected["good"]["sentiment_analysis"], abs=1e-4)
    macro = np.mean(list(expected["weak"].values()))
    assert float(rows["macro_average"]["weak"]) == pytest.approx(macro, abs=1e-4)
    with open(out / "pairwise.csv", encoding="utf-8") as f:
        pair = list(csv.DictReader(f))
    assert {r["task"] for r in pair} == {"extractive_qa", "sentiment_analysis", "macro_average"}
    assert all(r["significant"] == "true" for r in pair)
    png = (out / "families.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    data = json.loads((out / "comparison.json").read_text(encoding="utf-8"))
    assert data["family_scores"]["good"]["classification"] == pytest.approx(expected["good"]["sentiment_analysis"])


def test_add_cli_contract(two_runs, tmp_path, capsys):
    a, b, _ = two_runs
    parser = argparse.ArgumentParser(prog="arabic-prompts")
    sub = parser.add_subparsers(dest="command", required=True)
    ev.add_cli(sub)
    args = parser.parse_args(["evaluate", "compare", str(a), str(b), "--out", str(tmp_path / "c"),
                              "--n-boot", "200", "--n-perm", "200"])
    assert args.func(args) == 0
    assert "org/good" in capsys.readouterr().out  # labels default to the model names
    assert (tmp_path / "c" / "comparison.md").is_file()


def test_bad_inputs_name_the_file(tmp_path):
    bad = tmp_path / "results_x.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ev.EvaluateError, match="results_x.json.*invalid JSON"):
        ev.load_run(bad)
    nodetails = write_run(tmp_path / "o", "m", "2026-01-01", {"t": ("generation", items("x", [1, 0]))}, details=False)
    with pytest.raises(ev.EvaluateError, match=r"results_2026-01-01\.json: no details.*--save-details"):
        ev.load_run(nodetails)
    ok = write_run(tmp_path / "p", "m", "2026-01-02", {"t": ("generation", items("x", [1, 0]))})
    with pytest.raises(ev.EvaluateError, match="no task with metric 'bleu'"):
        ev.load_run(ok, metric="bleu")
    with pytest.raises(ev.EvaluateError, match="not found"):
        ev.load_run(tmp_path / "missing.json")
    proc = subprocess.run([sys.executable, "-m", "builders.evaluate", "compare", str(bad)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "results_x.json" in proc.stderr


def test_macro_uses_tasks_every_model_has(tmp_path):
    a = write_run(tmp_path / "o", "m1", "d1", {"t1": ("classification", items("a", [1.0, 1.0])),
                                               "t2": ("generation", items("b", [0.0, 0.5]))})
    b = write_run(tmp_path / "o", "m2", "d2", {"t1": ("classification", items("a", [0.5, 0.5]))})
    cmp = ev.compare_runs([ev.load_run(a), ev.load_run(b)], n_boot=100, n_perm=100)
    assert cmp.tasks == ["t1", "t2"] and cmp.common_tasks == ["t1"]
    assert cmp.macro == {"m1": 1.0, "m2": 0.5}
    assert "| t2 | generation | 0.2500 (" in ev.markdown(cmp) and "| — |" in ev.markdown(cmp)


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory):
    """A real PEFT LoRA adapter saved by peft (its README.md is the card) on a tiny random Qwen2."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    base = Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64))
    base_dir = tmp_path_factory.mktemp("base")
    base.save_pretrained(base_dir)
    model = get_peft_model(Qwen2ForCausalLM.from_pretrained(base_dir),
                           LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    out = tmp_path_factory.mktemp("adapter") / "arabic-lora"
    model.save_pretrained(out)
    assert (out / "README.md").is_file() and (out / "adapter_model.safetensors").is_file()
    return out


def test_into_model_card_on_a_peft_adapter(two_runs, adapter_dir, tmp_path):
    from huggingface_hub import ModelCard

    a, b, expected = two_runs
    before = ModelCard.load(adapter_dir / "README.md")
    assert before.data.library_name == "peft"
    proc = subprocess.run([sys.executable, "-m", "builders.evaluate", "compare", f"good={a}", f"weak={b}",
                           "--out", str(tmp_path / "c"), "--n-boot", "200", "--n-perm", "200",
                           "--into-model-card", str(adapter_dir), "--card-model", "good"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    card = ModelCard.load(adapter_dir / "README.md")
    assert card.data.library_name == "peft" and card.data.base_model == before.data.base_model
    assert card.text == before.text  # the card's body is kept
    assert card.data.model_name == "arabic-lora"
    got = {(r.dataset_config, r.metric_config): r for r in card.data.eval_results}
    assert set(got) == {("sentiment_analysis", "rougeL_ar"), ("extractive_qa", "rougeL_ar"), ("default", "rougeL_ar")}
    r = got[("sentiment_analysis", "rougeL_ar")]
    assert r.metric_value == pytest.approx(round(expected["good"]["sentiment_analysis"], 4))
    assert (r.task_type, r.metric_type, r.dataset_split) == ("text-generation", "rouge", "test")
    # the dataset id: the evaluated folder was local, so the project's Hub id
    assert r.dataset_type == ev.eval_tasks_constant("DEFAULT_HF_REPO") == "arabic-prompts/arabic-prompts"
    macro = got[("default", "rougeL_ar")].metric_value
    assert macro == pytest.approx(round(np.mean(list(expected["good"].values())), 4))
    # the YAML is huggingface_hub's model-index
    assert "model-index:" in (adapter_dir / "README.md").read_text(encoding="utf-8")

    # a second run replaces the same entries (no duplicates) and keeps other ones
    run = ev.load_run(b, "weak")
    ev.update_model_card(adapter_dir, run, "someone/other-dataset")
    ev.update_model_card(adapter_dir, run, "someone/other-dataset")
    card = ModelCard.load(adapter_dir / "README.md")
    assert len(card.data.eval_results) == 6
    other = [r for r in card.data.eval_results if r.dataset_type == "someone/other-dataset"]
    assert {r.dataset_config for r in other} == {"sentiment_analysis", "extractive_qa", "default"}


def test_card_model_choice(two_runs, adapter_dir):
    a, b, _ = two_runs
    runs = [ev.load_run(a, "good"), ev.load_run(b, "weak")]
    with pytest.raises(ev.EvaluateError, match="--card-model"):
        ev.pick_card_run(runs, adapter_dir, None)
    with pytest.raises(ev.EvaluateError, match="none of the runs"):
        ev.pick_card_run(runs, adapter_dir, "nope")
    assert ev.pick_card_run(runs, adapter_dir, "weak").label == "weak"
    assert ev.pick_card_run(runs[:1], adapter_dir, None).label == "good"


def test_push_to_hub_uses_metadata_update(two_runs, monkeypatch):
    """The remote Hub cannot be reached here: metadata_update is mocked; the metadata it gets is checked."""
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub, "metadata_update",
                        lambda repo_id, metadata, **kw: calls.append((repo_id, metadata, kw)) or "https://hub/x")
    run = ev.load_run(two_runs[0], "good")
    assert ev.push_model_card_results("me/arabic-lora", run, "arabic-prompts/arabic-prompts") == "https://hub/x"
    (repo_id, metadata, kw), = calls
    assert repo_id == "me/arabic-lora" and kw["overwrite"] is True
    index = metadata["model-index"]
    assert index[0]["name"] == "arabic-lora"
    configs = {r["dataset"]["config"] for r in index[0]["results"]}
    assert configs == {"sentiment_analysis", "extractive_qa", "default"}


# ------------------------------------------------------------------------------- clustered statistics


def templated(prefix: str, example_scores: np.ndarray, rng, templates: int = 5, spread: float = 0.02):
    """Every example scored under ``templates`` templates (near-equal scores): items and their source_id."""
    scores, clusters = {}, {}
    for i, s in enumerate(example_scores):
        for t in range(templates):
            key = f"{prefix}-{i}-t{t}"
            scores[key] = float(np.clip(s + rng.normal(0, spread), 0, 1))
            clusters[key] = f"src{i:04d}"
    return scores, clusters


def test_clustered_ci_is_wider_when_examples_repeat_under_templates(tmp_path):
    rng = np.random.default_rng(3)
    scores, clusters = templated("x", rng.uniform(0, 1, 40), rng)
    path = write_run(tmp_path / "o", "m", "d1", {"t": ("generation", scores)}, clusters=clusters)
    run = ev.load_run(path)
    assert len(set(run.clusters["t"].values())) == 40 and len(run.items["t"]) == 200
    clustered = ev.compare_runs([run], n_boot=4000, seed=0, clustered=True).score_ci["m"]["t"]
    plain = ev.compare_runs([run], n_boot=4000, seed=0, clustered=False).score_ci["m"]["t"]
    width_c, width_p = clustered[1] - clustered[0], plain[1] - plain[0]
    # 200 items but only 40 independent texts: the honest interval is about sqrt(5) times wider
    assert width_c > 1.8 * width_p, (width_c, width_p)


def test_better_on_every_example_is_still_significant_when_clustered(tmp_path):
    rng = np.random.default_rng(4)
    base = rng.uniform(0.1, 0.6, 30)
    good, clusters = templated("x", base + 0.3, rng)
    weak, _ = templated("x", base, rng)
    a = write_run(tmp_path / "o", "good", "d1", {"t": ("generation", good)}, clusters=clusters)
    b = write_run(tmp_path / "o", "weak", "d2", {"t": ("generation", weak)}, clusters=clusters)
    cmp = ev.compare_runs([ev.load_run(a), ev.load_run(b)], n_boot=2000, n_perm=2000, seed=0)
    for pw in cmp.pairwise:
        assert pw.clusters == 30 and pw.n == 150
        assert pw.significant and pw.p_value == pytest.approx(1 / 2001) and pw.ci_low > 0
    # with 30 clusters the sign-flip null has 2**30 points; a lone cluster could never reach p < 0.05
    one = write_run(tmp_path / "p", "good", "d1", {"t": ("generation", {k: v for k, v in good.items() if "-0-" in k})},
                    clusters=clusters)
    two = write_run(tmp_path / "p", "weak", "d2", {"t": ("generation", {k: v for k, v in weak.items() if "-0-" in k})},
                    clusters=clusters)
    single = ev.compare_runs([ev.load_run(one), ev.load_run(two)], n_perm=2000, seed=0).pairwise[0]
    assert single.clusters == 1 and not single.significant  # five items of one text are not five examples


def test_p_values_are_adjusted_across_tasks():
    # hand-computed: Holm multiplies the k-th smallest by (m - k + 1) and keeps it monotone
    assert ev.adjust_p([0.01, 0.04, 0.03], "holm") == pytest.approx([0.03, 0.06, 0.06])
    # Benjamini-Hochberg: p * m / rank, then the running minimum from the largest down
    assert ev.adjust_p([0.01, 0.04, 0.03], "bh") == pytest.approx([0.03, 0.04, 0.04])
    assert ev.adjust_p([0.01, 0.04], "none") == [0.01, 0.04]


def test_many_tasks_correction_removes_a_lone_borderline_win(tmp_path):
    """Ten tasks of pure noise and one with a small edge: raw p < 0.05 can happen by chance; after the
    correction across tasks the report must not call a task significant unless its adjusted p is."""
    rng = np.random.default_rng(7)
    tasks_a, tasks_b = {}, {}
    for t in range(10):
        base = rng.uniform(0, 1, 25)
        tasks_a[f"t{t}"] = ("generation", items(f"t{t}", np.clip(base + rng.normal(0, .15, 25), 0, 1)))
        tasks_b[f"t{t}"] = ("generation", items(f"t{t}", np.clip(base + rng.normal(0, .15, 25), 0, 1)))
    a = write_run(tmp_path / "o", "a", "d1", tasks_a)
    b = write_run(tmp_path / "o", "b", "d2", tasks_b)
    cmp = ev.compare_runs([ev.load_run(a), ev.load_run(b)], n_boot=500, n_perm=2000, seed=0, correction="holm")
    rows = [pw for pw in cmp.pairwise if pw.task != "macro_average"]
    assert len(rows) == 10
    for pw in rows:
        assert pw.p_adjusted >= pw.p_value
        assert pw.significant == (pw.p_adjusted < 0.05)
    raw = sorted(pw.p_value for pw in rows)
    assert max(pw.p_adjusted for pw in rows) == pytest.approx(min(1.0, max(
        (10 - k) * p for k, p in enumerate(raw))))  # the Holm step-down on these ten p-values
    md = ev.markdown(cmp)
    assert "Holm" in md and "adjusted p" in md and "source texts" in md
