"""Arabic-aware ROUGE-L (eval_tasks/arabic_prompts.py): hand-computed LCS values, agreement with
rouge_score given the same tokenizer, and the lighteval metric wrapper. Nothing is mocked."""

from __future__ import annotations

import copy
import pickle
import random
from pathlib import Path

import pytest

from conftest import load_eval_tasks, real_arabic_pairs

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


@pytest.fixture(scope="module")
def ap():
    return load_eval_tasks()


def f1(p, r):
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


# (target, prediction, LCS, target tokens, prediction tokens), counted by hand on the
# normalised tokens.
HAND = [
    ("identical", "ذهب الولد إلى المدرسة", "ذهب الولد إلى المدرسة", 4, 4, 4),
    ("disjoint", "السلام عليكم", "وداعا يا صديقي", 0, 2, 3),
    # ذهب الولد [مساء] إلى [البيت] vs ذهب الولد إلى المدرسة صباحا -> LCS ذهب الولد إلى
    ("partial", "ذهب الولد إلى المدرسة صباحا", "ذهب الولد مساء إلى البيت", 3, 5, 5),
    ("subset", "الكتاب على الطاولة الكبيرة", "الكتاب الكبيرة", 2, 4, 2),
    ("order", "واحد اثنان ثلاثة", "ثلاثة اثنان واحد", 1, 3, 3),
    ("diacritics only", "كَتَبَ الوَلَدُ الدَّرْسَ", "كتب الولد الدرس", 3, 3, 3),
    ("alef variants", "أحمد إلى آخر ٱلطريق", "احمد الى اخر الطريق", 4, 4, 4),
    ("taa marbuta, alef maqsura", "مدرسة على مستشفى", "مدرسه علي مستشفي", 3, 3, 3),
    ("tatweel", "جمـــيل جدا", "جميل جدا", 2, 2, 2),
    ("Arabic-Indic digits", "عام ٢٠٢٤ و ۳", "عام 2024 و 3", 4, 4, 4),
    ("punctuation", "نعم، صحيح؟ «تماما»", "نعم صحيح تماما!", 3, 3, 3),
    ("empty prediction", "نص المرجع", "", 0, 2, 0),
    ("punctuation-only prediction", "نص المرجع", "... ؟ ،", 0, 2, 0),
    ("empty target", "", "نص", 0, 0, 1),
]


@pytest.mark.parametrize("name,target,pred,lcs,n_t,n_p", HAND, ids=[h[0] for h in HAND])
def test_hand_computed_lcs(ap, name, target, pred, lcs, n_t, n_p):
    tok = ap.ArabicRougeTokenizer()
    t, p = tok.tokenize(target), tok.tokenize(pred)
    assert (len(t), len(p)) == (n_t, n_p)
    assert ap.lcs_length(t, p) == lcs
    score = ap.ArabicRougeLScorer().score(target, pred)["rougeL"]
    precision = lcs / n_p if n_p and n_t else 0.0
    recall = lcs / n_t if n_t and n_p else 0.0
    assert score.precision == pytest.approx(precision)
    assert score.recall == pytest.approx(recall)
    assert score.fmeasure == pytest.approx(f1(precision, recall))
    assert ap.rouge_l(pred, target) == pytest.approx(f1(precision, recall))
    assert 0.0 <= score.fmeasure <= 1.0


def test_partial_overlap_value(ap):
    # 3 of 5 tokens in order on both sides: P = R = F = 0.6
    assert ap.rouge_l("ذهب الولد مساء إلى البيت", "ذهب الولد إلى المدرسة صباحا") == pytest.approx(0.6)
    # 2 of 4 target tokens, all of the prediction: P = 1, R = 0.5, F = 2/3
    assert ap.rouge_l("الكتاب الكبيرة", "الكتاب على الطاولة الكبيرة") == pytest.approx(2 / 3)


def test_unnormalised_variant_keeps_surface_forms(ap):
    # diacritics-only and alef-only differences count in full without normalisation
    assert ap.rouge_l("كتب الولد الدرس", "كَتَبَ الوَلَدُ الدَّرْسَ", normalize=False) == 0.0
    assert ap.rouge_l("احمد الى البيت", "أحمد إلى البيت", normalize=False) == pytest.approx(1 / 3)
    assert ap.rouge_l("كَتَبَ الوَلَدُ", "كَتَبَ الوَلَدُ", normalize=False) == 1.0
    raw = ap.ArabicRougeTokenizer(normalize=False)
    assert raw.tokenize("كَتَبَ، ١٢ Hello") == ["كَتَبَ", "١٢", "Hello"]  # punctuation dropped, rest as written


def test_tokenizer_keeps_arabic_letters_and_digits(ap):
    tok = ap.ArabicRougeTokenizer()
    assert tok.tokenize("قرأتُ ٣ كتبٍ في عام 2023، وHello!") == ["قرات", "3", "كتب", "في", "عام", "2023", "وhello"]
    assert ap.normalize_arabic("إِلَى الْمَدْرَسَةِ ـ ٤٥٫٦٪") == "الي المدرسه  45.6%"


def test_default_rouge_deletes_arabic(ap):
    """Why this scorer exists: rouge_score's default tokenizer (and lighteval's rougeL) score an
    identical Arabic pair 0."""
    from rouge_score import rouge_scorer

    text = "ذهب الولد إلى المدرسة"
    assert rouge_scorer.RougeScorer(["rougeL"]).score(text, text)["rougeL"].fmeasure == 0.0
    assert ap.rouge_l(text, text) == 1.0


def _dp_lcs(a, b):
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def test_bit_parallel_lcs_matches_dynamic_programming(ap):
    rng = random.Random(0)
    for _ in range(500):
        a = [rng.randrange(6) for _ in range(rng.randrange(0, 90))]
        b = [rng.randrange(6) for _ in range(rng.randrange(0, 90))]
        assert ap.lcs_length(a, b) == _dp_lcs(a, b)
        assert ap.lcs_length(b, a) == _dp_lcs(a, b)


def _real_pairs(n: int = 300) -> list[tuple[str, str]]:
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    return real_arabic_pairs(n, seed=1, articles=5, context_chars=600)


@pytest.mark.parametrize("normalize", [True, False])
def test_agrees_with_rouge_score_given_the_same_tokenizer(ap, normalize):
    from rouge_score import rouge_scorer

    tok = ap.ArabicRougeTokenizer(normalize=normalize)
    reference = rouge_scorer.RougeScorer(["rougeL"], tokenizer=tok)
    ours = ap.ArabicRougeLScorer(tokenizer=tok)
    pairs = _real_pairs()
    nonzero = 0
    for target, pred in pairs:
        want = reference.score(target, pred)["rougeL"]
        got = ours.score(target, pred)["rougeL"]
        assert got.precision == pytest.approx(want.precision, abs=1e-12)
        assert got.recall == pytest.approx(want.recall, abs=1e-12)
        assert got.fmeasure == pytest.approx(want.fmeasure, abs=1e-12)
        nonzero += got.fmeasure > 0
    assert nonzero > len(pairs) // 2  # the pairs do overlap: the comparison is not all zeros


def test_lighteval_metric(ap):
    from lighteval.models.model_output import ModelResponse
    from lighteval.tasks.requests import Doc

    doc = Doc(query="س", choices=["ذهب الولد إلى المدرسة صباحا"], gold_index=0)
    response = ModelResponse(text=["ذهب الوَلد مساء الى البيت"])
    assert ap.rougeL_ar.compute_sample(doc=doc, model_response=response) == {"rougeL_ar": pytest.approx(0.6)}
    # raw: الوَلد and الى differ from the reference -> LCS ذهب = 1 of 5
    assert ap.rougeL_ar_raw.compute_sample(doc=doc, model_response=response) == {"rougeL_ar_raw": pytest.approx(0.2)}
    assert ap.rougeL_ar.higher_is_better and ap.rougeL_ar.sample_level_fn.tokenizer.normalize
    # lighteval deep-copies task configs (and their metrics); the copy scores the same
    clone = copy.deepcopy(ap.rougeL_ar)
    assert clone.compute_sample(doc=doc, model_response=response) == {"rougeL_ar": pytest.approx(0.6)}
    again = pickle.loads(pickle.dumps(ap.ArabicRougeTokenizer(normalize=False)))
    assert again.normalize is False and again.tokenize("كَتَبَ") == ["كَتَبَ"]
