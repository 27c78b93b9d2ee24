"""`arabic-prompts catalog check`: catalog facts compared with the Hub's own metadata.

The Hub is not reachable here, so the checks read Hub-layout snapshot folders made in the test (what
`snapshot_download(local_dir=DIR/<owner>/<name>)` leaves: README front matter with configs and license, parquet
files written by `datasets` with their ClassLabel features), through the same `datasets` calls as online. The
`--endpoint` path is exercised against a stand-in HTTP server for the Hub API (mock: no Hub exists here) that answers
`dataset_info` and nothing else, so the repository, revision and license facts are read over HTTP by the real
`HfApi` and every other fact is honestly `unknown`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import datasets
import pytest

from builders.catalog import load_catalog
from builders.catalog_check import OK, UNKNOWN, WRONG, HubReader, catalog_counts, check_entry
from conftest import CLI, REPO

CATALOG = load_catalog()
XNLI_LABELS = ["entailment", "neutral", "contradiction"]


def write_snapshot(root: Path, hub_id: str, config: str | None, splits: dict[str, dict[str, list]], features: datasets.Features,
                   license: str | None = None) -> Path:
    """A dataset folder laid out as on the Hub: parquet per split (features in the file), README configs and card."""
    folder = root / hub_id
    sub = config or "data"
    (folder / sub).mkdir(parents=True, exist_ok=True)
    for split, columns in splits.items():
        datasets.Dataset.from_dict(columns, features=features).to_parquet(str(folder / sub / f"{split}-00000-of-00001.parquet"))
    head = [f"license: {license}"] if license else []
    head += ["configs:", f"- config_name: {config or 'default'}", "  data_files:"]
    head += [f"  - split: {s}\n    path: {sub}/{s}-*" for s in splits]
    (folder / "README.md").write_text("---\n" + "\n".join(head) + "\n---\n# test snapshot\n", encoding="utf-8")
    return folder


def xnli_snapshot(root: Path, names=XNLI_LABELS, splits=("train", "validation", "test"), config="ar", columns=None) -> None:
    features = datasets.Features(columns or {"premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
                                             "label": datasets.ClassLabel(names=list(names))})
    row = {"premise": ["خرج الأطفال إلى الحديقة."], "hypothesis": ["الأطفال في الخارج."], "label": [0]}
    row = {k: v for k, v in row.items() if k in features}
    write_snapshot(root, "facebook/xnli", config, {s: row for s in splits}, features)


def facts_of(entry_name: str, root: Path) -> dict[str, tuple[str, str]]:
    reader = HubReader(snapshots=root)
    try:
        return {f.fact: (f.status, f.detail) for f in check_entry(CATALOG[entry_name], reader)}
    finally:
        reader.close()


def test_correct_snapshot_passes(tmp_path):
    xnli_snapshot(tmp_path)
    facts = facts_of("xnli_ar_nli", tmp_path)
    assert {k: v[0] for k, v in facts.items()} == {
        "hub_id": OK, "license": OK, "config": OK, "split train": OK, "split validation": OK, "split test": OK,
        "column premise": OK, "column hypothesis": OK, "column label": OK, "labels label": OK}


def test_wrong_label_order_is_named(tmp_path):
    xnli_snapshot(tmp_path, names=["contradiction", "neutral", "entailment"])
    status, detail = facts_of("xnli_ar_nli", tmp_path)["labels label"]
    assert status == WRONG
    assert "['contradiction', 'neutral', 'entailment']" in detail and "['entailment', 'neutral', 'contradiction']" in detail


def test_missing_split_is_named(tmp_path):
    xnli_snapshot(tmp_path, splits=("train", "test"))
    facts = facts_of("xnli_ar_nli", tmp_path)
    assert facts["split validation"][0] == WRONG and "['train', 'test']" in facts["split validation"][1]
    assert facts["split train"][0] == facts["split test"][0] == OK


def test_missing_config_column_and_plain_labels(tmp_path):
    xnli_snapshot(tmp_path / "config", config="en")
    facts = facts_of("xnli_ar_nli", tmp_path / "config")
    assert facts["config"][0] == WRONG and "'ar'" in facts["config"][1] and "en" in facts["config"][1]
    xnli_snapshot(tmp_path / "column", columns={"premise": datasets.Value("string"), "label": datasets.ClassLabel(names=XNLI_LABELS)})
    facts = facts_of("xnli_ar_nli", tmp_path / "column")
    assert facts["column hypothesis"][0] == WRONG and facts["column premise"][0] == OK
    # a label stored as plain strings: its names cannot be checked, so the fact is unknown, not ok
    xnli_snapshot(tmp_path / "strings", columns={"premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
                                                 "label": datasets.Value("int64")})
    assert facts_of("xnli_ar_nli", tmp_path / "strings")["labels label"][0] == UNKNOWN


def test_license_and_classlabel_without_ids(tmp_path):
    # ArSAS's entry says ids: true over a ClassLabel; a card license that contradicts the entry is wrong
    features = datasets.Features({"tweet": datasets.Value("string"), "labels": datasets.ClassLabel(names=["negative", "positive"])})
    write_snapshot(tmp_path, "Osaleh/ArSAS", None, {"train": {"tweet": ["جميل"], "labels": [1]}, "test": {"tweet": ["سيئ"], "labels": [0]}},
                   features, license="mit")
    facts = facts_of("arsas_sentiment", tmp_path)
    assert facts["labels label"][0] == OK and facts["config"][0] == OK
    assert facts["license"] == (WRONG, "the card says mit, the entry unknown")
    # an entry that reads ClassLabel ids as if they were names is wrong (ajgt stores Negative/Positive ids)
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["Negative", "Positive"])})
    write_snapshot(tmp_path, "komari6/ajgt_twitter_ar", "plain_text", {"train": {"text": ["رائع"], "label": [1]}}, features)
    assert facts_of("ajgt_sentiment", tmp_path)["labels label"][0] == OK
    entry = CATALOG["ajgt_sentiment"]
    broken = type(entry)(**{**entry.__dict__, "labels": {"label": type(entry.labels["label"])(names=["Negative", "Positive"], ids=False)}})
    reader = HubReader(snapshots=tmp_path)
    fact = next(f for f in check_entry(broken, reader) if f.fact == "labels label")
    reader.close()
    assert fact.status == WRONG and "ids: true" in fact.detail


def test_cli_exit_code_table_and_json(tmp_path):
    xnli_snapshot(tmp_path / "good")
    ok = subprocess.run([*CLI, "catalog", "check", "--snapshots", str(tmp_path / "good"), "--datasets", "xnli_ar_nli",
                         "--json", str(tmp_path / "facts.json")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "1 entries: 10 facts ok, 0 wrong, 0 unknown" in ok.stdout
    assert all(f["status"] == OK for f in json.loads((tmp_path / "facts.json").read_text(encoding="utf-8")))
    xnli_snapshot(tmp_path / "bad", names=["neutral", "entailment", "contradiction"], splits=("train", "test"))
    bad = subprocess.run([*CLI, "catalog", "check", "--snapshots", str(tmp_path / "bad"), "--datasets", "xnli_ar_nli,ajgt_sentiment",
                          "--problems-only"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1
    lines = bad.stdout.splitlines()
    assert any("labels label" in line and "wrong" in line for line in lines)
    assert any("split validation" in line and "wrong" in line for line in lines)
    # a dataset with no snapshot downloaded is unknown, not wrong; ok facts are hidden by --problems-only
    assert any(line.startswith("ajgt_sentiment") and "unknown" in line for line in lines)
    assert not any(" ok " in line for line in lines[1:] if line.strip() and not line.startswith("2 entries"))


class _FakeHubAPI(BaseHTTPRequestHandler):
    """Answers HfApi.dataset_info for one repository (mock of the remote Hub API); 404 RepoNotFound otherwise."""

    requests: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        type(self).requests.append(self.path)
        if self.path.startswith("/api/datasets/facebook/xnli/revision/"):
            body = json.dumps({"id": "facebook/xnli", "sha": "0d6243ef0205c32e04624cb2887957b02cba9bec", "private": False,
                               "cardData": {"license": "cc-by-nc-4.0"}, "siblings": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        else:
            body = json.dumps({"error": "Repository not found"}).encode()
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self):  # noqa: N802
        self.do_GET()

    def do_POST(self):  # noqa: N802
        self.do_GET()

    def log_message(self, *args):
        pass


def test_endpoint_reads_the_hub_api_over_http(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeHubAPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_ENDPOINT", "HF_TOKEN")}
    env["HF_HOME"] = str(tmp_path / "hf_home")
    try:
        proc = subprocess.run([*CLI, "catalog", "check", "--endpoint", endpoint, "--datasets", "xnli_ar_nli,ajgt_sentiment"],
                              cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    finally:
        server.shutdown()
    rows = {tuple(line.split()[:2]): line for line in proc.stdout.splitlines() if line.strip()}
    assert "ok" in rows[("xnli_ar_nli", "hub_id")] and "0d6243ef0205" in rows[("xnli_ar_nli", "revision")]
    # the card says cc-by-nc-4.0 while the entry says unknown: that fact is wrong, so the exit code is 1
    assert "wrong" in rows[("xnli_ar_nli", "license")] and proc.returncode == 1
    assert "wrong" in rows[("ajgt_sentiment", "hub_id")] and "does not exist" in rows[("ajgt_sentiment", "hub_id")]
    # configs, splits and columns need the repository files, which this stand-in does not serve: unknown, never ok
    assert "unknown" in rows[("xnli_ar_nli", "config")]
    assert any(p.startswith("/api/datasets/facebook/xnli/revision/refs%2Fconvert%2Fparquet") for p in _FakeHubAPI.requests)
    assert any(p.startswith("/api/datasets/komari6/ajgt_twitter_ar") for p in _FakeHubAPI.requests)


def test_counts_count_a_dataset_once(tmp_path):
    counts = catalog_counts(CATALOG.values())
    assert counts.sources >= 80 and counts.tasks >= 70, counts
    assert counts.sentence() == f"{len(CATALOG)} catalog entries over {counts.sources} distinct source datasets and {counts.tasks} tasks"
    # the three APCD entries read one dataset: one source, three tasks
    apcd = [e for e in CATALOG.values() if e.hub_id == "Abdelrahman-Rezk/Arabic_Poem_Comprehensive_Dataset_APCD"]
    assert len(apcd) == 3 and catalog_counts(apcd) .sources == 1 and catalog_counts(apcd).tasks == 3
    # local-only entries name their source: the three Tashkeela-benchmark entries are one source
    tash = [e for e in CATALOG.values() if e.name.startswith("tashkeela_")]
    assert catalog_counts(tash).sources == 1
    out = subprocess.run([*CLI, "catalog", "list"], cwd=REPO, capture_output=True, text=True, timeout=300, check=True).stdout
    assert out.rstrip().splitlines()[-1] == counts.sentence()
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme.count(counts.sentence()) >= 2 and "100 datasets" not in readme  # the README says it the same way


def test_every_hub_entry_gives_each_fact_a_status(tmp_path):
    """Offline (HF_HUB_OFFLINE=1, as the suite runs) every Hub entry is checked and nothing is claimed ok."""
    reader = HubReader()
    try:
        facts = [f for e in list(CATALOG.values())[:5] for f in check_entry(e, reader)]
    finally:
        reader.close()
    assert facts and {f.status for f in facts} <= {UNKNOWN}
    assert sys.modules.get("builders.catalog_check") is not None
