"""Two-rater human evaluation: the exported sheets and Argilla folder, and agreement statistics equal to
scikit-learn / scipy and to hand-computed values on known tables."""

from __future__ import annotations

import csv
import json
import random

import pytest
from dialogues_fixtures import cli, scripted_conversation
from scipy.stats import spearmanr
from sklearn.metrics import cohen_kappa_score

from builders.dialogues.human_eval import (CRITERIA, RatingError, agreement, export, read_argilla_responses, read_key,
                                           read_sheet)
from builders.dialogues.parse import parse_conversation


def _conversations(path, n, seed):
    rows = [{"source_id": f"s{seed}-{i}", "topic": "cooking", "country": "egypt",
             "messages": parse_conversation(scripted_conversation(seed * 1000 + i), "المستخدم", "المساعد").messages}
            for i in range(n)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _fill(sheet, ratings_of):
    """Write ratings into an exported sheet, as a rater would."""
    with open(sheet, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row.update({c: str(v) for c, v in ratings_of(row["item_id"]).items()})
    with open(sheet, "w", newline="", encoding="utf-8-sig") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_kappa_on_a_known_table():
    # 2x2 table (ratings 1 and 2 only): both 1: 20, r1=1 r2=2: 5, r1=2 r2=1: 10, both 2: 15  -> kappa 0.4
    a = [1] * 20 + [1] * 5 + [2] * 10 + [2] * 15
    b = [1] * 20 + [2] * 5 + [1] * 10 + [2] * 15
    r1 = {str(i): {c: a[i] for c in CRITERIA} for i in range(50)}
    r2 = {str(i): {c: b[i] for c in CRITERIA} for i in range(50)}
    res = agreement(r1, r2)
    # po = 35/50 = 0.7; pe = 0.5*0.6 + 0.5*0.4 = 0.5; kappa = (0.7-0.5)/(1-0.5) = 0.4
    assert res.criteria["fluency"]["kappa"] == pytest.approx(0.4)
    # two categories one step apart: quadratic weights equal the plain ones
    assert res.criteria["fluency"]["kappa_quadratic"] == pytest.approx(0.4)
    # Spearman on two binary variables is the phi coefficient: (20*15 - 5*10) / sqrt(25*25*30*20)
    assert res.criteria["overall"]["spearman_rho"] == pytest.approx(250 / (25 * (600 ** 0.5)))


def test_quadratic_kappa_hand_computed():
    # 4 items: (1,2) (2,2) (3,5) (5,5); weights (i-j)^2/16 over ratings 1..5
    a, b = [1, 2, 3, 5], [2, 2, 5, 5]
    r1 = {str(i): {c: a[i] for c in CRITERIA} for i in range(4)}
    r2 = {str(i): {c: b[i] for c in CRITERIA} for i in range(4)}
    # observed weighted disagreement: (1 + 0 + 4 + 0)/16/4; expected: mean over all pairs of marginals
    obs = (1 + 0 + 4 + 0) / 16 / 4
    exp = sum((x - y) ** 2 / 16 for x in a for y in b) / 16
    assert agreement(r1, r2).criteria["coherence"]["kappa_quadratic"] == pytest.approx(1 - obs / exp)


def test_agreement_equals_sklearn_and_scipy_on_random_ratings():
    rng = random.Random(3)
    ids = [f"i{k}" for k in range(60)]
    r1 = {i: {c: rng.randint(1, 5) for c in CRITERIA} for i in ids}
    r2 = {i: {c: max(1, min(5, r1[i][c] + rng.choice([-1, 0, 0, 1, 2]))) for c in CRITERIA} for i in ids}
    models = {i: ("A" if k % 2 else "B") for k, i in enumerate(ids)}
    res = agreement(r1, r2, models)
    for c in CRITERIA:
        a, b = [r1[i][c] for i in sorted(ids)], [r2[i][c] for i in sorted(ids)]
        assert res.criteria[c]["kappa"] == pytest.approx(cohen_kappa_score(a, b))
        assert res.criteria[c]["kappa_quadratic"] == pytest.approx(cohen_kappa_score(a, b, weights="quadratic"))
        rho, p = spearmanr(a, b)
        assert res.criteria[c]["spearman_rho"] == pytest.approx(rho) and res.criteria[c]["spearman_p"] == pytest.approx(p)
        mean_a = (sum(r1[i][c] for i in ids if models[i] == "A") + sum(r2[i][c] for i in ids if models[i] == "A")) / 60
        assert res.means["A"][c]["mean"] == pytest.approx(mean_a) and res.means["A"][c]["n"] == 30


def test_export_fill_and_agreement_end_to_end(tmp_path, capsys):
    a = _conversations(tmp_path / "model_a.jsonl", 8, 1)
    b = _conversations(tmp_path / "model_b.jsonl", 8, 2)
    cli(capsys, "dialogues", "human-eval", "export", "--model", f"A={a}", "--model", f"B={b}", "--out",
            str(tmp_path / "eval"), "--per-model", "5", "--seed", "1")
    ev = tmp_path / "eval"
    key = read_key(ev / "items.csv")
    assert sorted(key.values()) == ["A"] * 5 + ["B"] * 5
    sheet_text = (ev / "sheet_rater_1.csv").read_text(encoding="utf-8-sig")
    assert "model" not in sheet_text.splitlines()[0] and "A" not in {r.split(",")[0] for r in sheet_text.splitlines()}
    assert (ev / "sheet_rater_1.csv").read_bytes().startswith(b"\xef\xbb\xbf")  # BOM: spreadsheets show Arabic
    # rater 1 likes model A, rater 2 agrees but is one point stricter on fluency
    _fill(ev / "sheet_rater_1.csv", lambda i: {c: 5 if key[i] == "A" else 2 for c in CRITERIA})
    _fill(ev / "sheet_rater_2.csv", lambda i: {c: (5 if key[i] == "A" else 2) - (c == "fluency") for c in CRITERIA})
    cli(capsys, "dialogues", "human-eval", "agreement", "--sheets", str(ev / "sheet_rater_1.csv"),
            str(ev / "sheet_rater_2.csv"), "--key", str(ev / "items.csv"), "--out", str(tmp_path / "agree"))
    rep = json.loads((tmp_path / "agree" / "agreement.json").read_text())
    assert rep["items"] == 10 and rep["criteria"]["overall"]["kappa"] == pytest.approx(1.0)
    assert rep["criteria"]["fluency"]["kappa"] == pytest.approx(0.0)  # never the same number ...
    assert rep["criteria"]["fluency"]["spearman_rho"] == pytest.approx(1.0)  # ... but the same order
    assert rep["means"]["A"]["overall"]["mean"] == 5 and rep["means"]["B"]["fluency"]["mean"] == pytest.approx(1.5)
    assert (tmp_path / "agree" / "agreement.png").stat().st_size > 1000
    assert "| overall | 1.000 |" in (tmp_path / "agree" / "agreement.md").read_text()


def test_argilla_folder_loads_with_the_argilla_sdk_models(tmp_path):
    """The folder has rg.Dataset.from_disk's layout; its JSON validates against Argilla 2.x's own models (the
    server that from_disk talks to cannot run here)."""
    import argilla as rg
    from argilla._models import DatasetModel, FieldModel, MetadataFieldModel, QuestionModel

    files = export({"A": _conversations(tmp_path / "a.jsonl", 4, 3)}, tmp_path / "eval", per_model=4)
    folder = files["argilla"]
    settings = json.loads((folder / ".argilla" / "settings.json").read_text(encoding="utf-8"))
    questions = [QuestionModel(**q) for q in settings["questions"]]
    assert [q.name for q in questions] == list(CRITERIA)
    assert all([o["value"] for o in q.settings.options] == [1, 2, 3, 4, 5] for q in questions)
    (field,) = [FieldModel(**f) for f in settings["fields"]]
    assert field.name == "conversation" and field.settings.type == "chat"
    assert [MetadataFieldModel(**m).name for m in settings["metadata"]] == ["item_id"]
    assert rg.TaskDistribution.from_dict(settings["distribution"]).min_submitted == 2
    assert DatasetModel(**json.loads((folder / ".argilla" / "dataset.json").read_text(encoding="utf-8"))).name
    records = [rg.Record.from_dict(r) for r in json.loads((folder / "records.json").read_text(encoding="utf-8"))]
    assert len(records) == 4
    assert records[0].fields["conversation"][0]["role"] == "user" and records[0].metadata["item_id"] == records[0].id


def test_argilla_responses_and_bad_sheets(tmp_path):
    recs = [{"id": f"r{k}", "metadata": {"item_id": f"i{k}"},
             "responses": {c: [{"value": 3 + (k % 2), "user_id": "u1", "status": "submitted"},
                               {"value": 3 + (k % 2), "user_id": "u2", "status": "submitted"}] for c in CRITERIA}}
            for k in range(4)]
    (tmp_path / "records.json").write_text(json.dumps(recs))
    r1, r2 = read_argilla_responses(tmp_path / "records.json")
    assert agreement(r1, r2).criteria["overall"]["kappa"] == pytest.approx(1.0)
    bad = tmp_path / "bad.csv"
    bad.write_text("item_id,conversation," + ",".join(CRITERIA) + "\nx1,نص,5,4,6,3,2\n", encoding="utf-8")
    with pytest.raises(RatingError, match=r"bad.csv row 2, column relevance: 6 is outside 1-5"):
        read_sheet(bad)
    bad.write_text("item_id,fluency\nx1,5\n", encoding="utf-8")
    with pytest.raises(RatingError, match="missing columns"):
        read_sheet(bad)
