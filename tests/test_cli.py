"""The `arabic-prompts` command line, run as a user runs it."""

from __future__ import annotations

import json

from conftest import run_cli


def test_catalog_list():
    proc = run_cli("catalog", "list")
    assert "ajgt_sentiment" in proc.stdout and "komari6/ajgt_twitter_ar" in proc.stdout
    import re

    last = proc.stdout.strip().splitlines()[-1]
    n_entries, n_sources, n_tasks = map(int, re.fullmatch(
        r"(\d+) catalog entries over (\d+) distinct source datasets and (\d+) tasks", last).groups())
    assert n_entries >= n_sources >= 80 and n_tasks >= 70
    only = run_cli("catalog", "list", "--task", "extractive_qa").stdout
    assert "arcd_extractive_qa" in only and "ajgt_sentiment" not in only


def test_templates_preview_renders_real_rows(shared_data):
    proc = run_cli("templates", "preview", "metrec_poetry_meter", "--local",
                   f"metrec_poetry_meter={shared_data / 'metrec_poetry_meter'}", "--rows", "2")
    blocks = [b for b in proc.stdout.split("== ") if b.strip()]
    assert len(blocks) >= 2 * 2
    assert any(meter in proc.stdout for meter in ("الطويل", "الكامل", "البسيط", "الوافر", "الرجز", "الخفيف", "السريع"))


def test_unknown_dataset_and_bad_local_are_clear_errors(tmp_path):
    proc = run_cli("build", "--datasets", "no_such_dataset", "--out", str(tmp_path / "o"), check=False)
    assert proc.returncode == 2 and "no_such_dataset" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("build", "--datasets", "ajgt_sentiment", "--local", "ajgt_sentiment", "--out", str(tmp_path), check=False)
    assert proc.returncode != 0 and "NAME=PATH" in proc.stderr
    proc = run_cli("build", "--local", f"ajgt_sentiment={tmp_path / 'missing'}", "--out", str(tmp_path / "o"), check=False)
    assert proc.returncode == 2 and "ajgt_sentiment" in proc.stderr and "does not exist" in proc.stderr


def test_demo_builds_and_loads_back_at_least_ten_tasks(tmp_path):
    out = tmp_path / "demo"
    proc = run_cli("demo", "--out", str(out), "--workers", "2")
    report = json.loads((out / "build_report.json").read_text())
    assert len(report["by_task_split"]) >= 10
    for task, splits in report["by_task_split"].items():
        line = next(l for l in proc.stdout.splitlines() if l.startswith(task + " "))
        loaded = list(map(int, line.split()[1:4]))
        assert loaded == [splits.get(s, 0) for s in ("train", "validation", "test")], (task, line)
    assert f"{report['total']} prompts in {len(report['by_task_split'])} tasks" in proc.stdout
    validated = run_cli("validate", str(out))
    assert "valid" in validated.stdout
