"""CometKiwi ported onto our transformers: scores equal unbabel-comet's own ``predict`` (run in its pinned venv)
on tiny random checkpoints that comet itself built and saved in its checkpoint layout."""

from __future__ import annotations

import json

import pytest

from builders.translate.cache import SegmentCache
from builders.translate.models import resolve
from builders.translate.qe import CachedScorer, CometKiwi, QEError, QEOptions, sparsemax
from conftest import run_cli
from translate_fixtures import COMET_MODELS

NAMES = [m["name"] for m in COMET_MODELS]


@pytest.fixture(scope="module")
def kiwi(comet_reference):
    return {name: CometKiwi(resolve(str(path))) for name, path in comet_reference["models"].items()}


def _score(model: CometKiwi, pairs: list[dict]) -> list[float]:
    return model.score([p["src"] for p in pairs], [p["mt"] for p in pairs])


@pytest.mark.parametrize("name", NAMES)
def test_scores_equal_unbabel_comet_predict(kiwi, comet_reference, name):
    pairs, reference = comet_reference["pairs"], comet_reference["scores"][name]
    ours = _score(kiwi[name], pairs)
    assert len(ours) == len(reference) == len(pairs)
    assert max(abs(a - b) for a, b in zip(ours, reference)) < 1e-4
    assert max(reference) - min(reference) > 0.05  # the scores differ between pairs: the check means something


def test_the_layer_transformation_follows_comet(kiwi, comet_reference):
    assert kiwi["kiwi-sparsemax"].transform == "sparsemax"
    assert kiwi["kiwi-patch"].transform == "softmax"  # hparams.yaml says sparsemax_patch (comet >= 2.2.4)
    # the other transformation gives other scores, so the equality above would catch a wrong choice
    model = kiwi["kiwi-sparsemax"]
    pairs = comet_reference["pairs"][:8]
    right = _score(model, pairs)
    model.transform = "softmax"
    try:
        wrong = _score(model, pairs)
    finally:
        model.transform = "sparsemax"
    assert max(abs(a - b) for a, b in zip(right, wrong)) > 1e-3


def test_sparsemax_projects_onto_the_simplex():
    import torch

    assert torch.allclose(sparsemax(torch.tensor([0.1, 0.2])), torch.tensor([0.45, 0.55]))
    assert torch.equal(sparsemax(torch.tensor([3.0, 1.0, -2.0])), torch.tensor([1.0, 0.0, 0.0]))
    x = torch.randn(7)
    assert abs(sparsemax(x).sum().item() - 1) < 1e-6 and (sparsemax(x) >= 0).all()


def test_batch_size_and_precision_are_settable(comet_reference):
    path, pairs = str(comet_reference["models"]["kiwi-sparsemax"]), comet_reference["pairs"]
    base = _score(CometKiwi(resolve(path), options=QEOptions(batch_size=16)), pairs)
    one = _score(CometKiwi(resolve(path), options=QEOptions(batch_size=1)), pairs)
    assert max(abs(a - b) for a, b in zip(base, one)) < 1e-5
    bf16 = CometKiwi(resolve(path), options=QEOptions(precision="bfloat16"))
    low = _score(bf16, pairs)
    assert "bfloat16" in bf16.identity and max(abs(a - b) for a, b in zip(base, low)) < 0.5


def test_out_of_memory_backs_off_to_smaller_batches(comet_reference, monkeypatch):
    model = CometKiwi(resolve(str(comet_reference["models"]["kiwi-xl"])))
    pairs = comet_reference["pairs"]
    expected = _score(model, pairs)
    real = model._forward

    def forward(batch):
        if len(batch) > 3:
            raise RuntimeError("CUDA out of memory. Tried to allocate 1.50 GiB")
        return real(batch)

    monkeypatch.setattr(model, "_forward", forward)
    got = _score(model, pairs)
    assert max(abs(a - b) for a, b in zip(expected, got)) < 1e-5 and model.stats["backoffs"] > 0


def test_each_unique_pair_is_scored_once_and_cached(kiwi, comet_reference, tmp_path):
    model, pairs = kiwi["kiwi-patch"], comet_reference["pairs"][:10]
    doubled = pairs + pairs
    cache = SegmentCache(tmp_path / "qe", writer="a")
    scorer = CachedScorer(model, cache)
    before = model.stats["pairs"]
    first = scorer.score([p["src"] for p in doubled], [p["mt"] for p in doubled])
    assert model.stats["pairs"] - before == len(pairs)
    assert first[:10] == first[10:]
    cache.merge()
    again = CachedScorer(model, SegmentCache(tmp_path / "qe", writer="b"))
    before = model.stats["pairs"]
    assert again.score([p["src"] for p in pairs], [p["mt"] for p in pairs]) == first[:10]
    assert model.stats["pairs"] == before and again.cache.stats["hits"] == len(pairs)


def test_score_command_writes_scores_in_order_and_the_mean(comet_reference, kiwi, tmp_path):
    pairs = comet_reference["pairs"][:12]
    src = tmp_path / "pairs.jsonl"
    src.write_text("\n".join(json.dumps({**p, "id": i}, ensure_ascii=False) for i, p in enumerate(pairs)), encoding="utf-8")
    out = tmp_path / "scored.jsonl"
    model_dir = str(comet_reference["models"]["kiwi-sparsemax"])
    proc = run_cli("translate", "score", "--qe-model", model_dir, "--pairs", str(src), "--out", str(out))
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == list(range(12)) and [r["src"] for r in rows] == [p["src"] for p in pairs]
    expected = _score(kiwi["kiwi-sparsemax"], pairs)
    assert max(abs(r["score"] - e) for r, e in zip(rows, expected)) < 1e-5
    assert f"mean score {sum(expected) / len(expected):.4f}" in proc.stdout


def test_bad_model_folders_and_pair_files_are_refused_with_their_name(comet_reference, tmp_path):
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    with pytest.raises(QEError, match="not-a-model.*checkpoints/model.ckpt"):
        CometKiwi(resolve(str(empty)))
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"src": "a", "mt": "b"}\n{"src": "only a source"}\n', encoding="utf-8")
    proc = run_cli("translate", "score", "--qe-model", str(comet_reference["models"]["kiwi-xl"]), "--pairs", str(bad),
                   check=False)
    assert proc.returncode == 2 and "pairs.jsonl, line 2" in proc.stderr
