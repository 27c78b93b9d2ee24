"""Two-rater human evaluation of generated conversations.

``export``: a blind sample of conversations per model -> one CSV sheet per rater (1-5 per criterion: fluency,
coherence, relevance, cultural fit, overall; UTF-8 with BOM so spreadsheet programs show Arabic), a key file
(``items.csv``: which model wrote each item, never shown to raters), and an Argilla dataset folder in the layout
``rg.Dataset.from_disk`` imports (``.argilla/settings.json``, ``.argilla/dataset.json``, ``records.json``): the
conversation as a chat field, five rating questions, two submissions per record.

``agreement``: the filled sheets (or an Argilla ``records.json`` export with responses) -> per criterion Cohen's
kappa (plain and quadratic-weighted, scikit-learn) and Spearman's rho with its p-value (scipy), mean scores per
criterion and model, and a bar chart.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

from builders.dialogues.conversations import format_conversation, read_conversations

CRITERIA = {
    "fluency": ("Fluency", "الطلاقة", "Is the Arabic natural, grammatical and easy to read?",
                "هل العربية طبيعية وسليمة وسهلة القراءة؟"),
    "coherence": ("Coherence", "الترابط", "Do the turns follow from each other and stay consistent?",
                  "هل تتسلسل الأدوار بشكل منطقي ومتسق؟"),
    "relevance": ("Relevance", "الصلة بالموضوع", "Does the conversation stay on its topic and answer the user?",
                  "هل تلتزم المحادثة بموضوعها وتجيب عن المستخدم؟"),
    "cultural_fit": ("Cultural fit", "الملاءمة الثقافية",
                     "Does it fit the country's culture, customs and dialect?",
                     "هل تناسب ثقافة البلد وعاداته ولهجته؟"),
    "overall": ("Overall", "التقييم العام", "Overall quality of the conversation.", "الجودة العامة للمحادثة."),
}
SCALE = (1, 2, 3, 4, 5)
GUIDELINES = ("Rate each conversation from 1 (very poor) to 5 (excellent) on every criterion. Do not guess which "
              "model wrote it. / قيّم كل محادثة من 1 (ضعيفة جدًا) إلى 5 (ممتازة) في كل معيار.")


class RatingError(ValueError):
    """A rating sheet that cannot be used; the message names the file, row and column."""


def item_id(model: str, source_id: str) -> str:
    return hashlib.sha256(f"{model}\x1f{source_id}".encode()).hexdigest()[:12]


def _argilla_settings(min_submitted: int) -> dict:
    """Argilla 2.x ``Settings.serialize()`` layout (checked against the SDK's models in the tests)."""
    return {
        "guidelines": GUIDELINES,
        "questions": [{"name": k, "title": f"{en} / {ar}", "description": f"{den} {dar}", "required": True,
                       "settings": {"type": "rating", "options": [{"value": v} for v in SCALE]}}
                      for k, (en, ar, den, dar) in CRITERIA.items()],
        "fields": [{"name": "conversation", "title": "Conversation / المحادثة", "required": True, "description": None,
                    "settings": {"type": "chat", "use_markdown": False}}],
        "vectors": [],
        "metadata": [{"name": "item_id", "title": "item_id", "visible_for_annotators": False,
                      "settings": {"type": "terms", "values": None}}],
        "allow_extra_metadata": False,
        "distribution": {"strategy": "overlap", "min_submitted": min_submitted},
        "mapping": None,
    }


def export(models: dict[str, str | Path], out: str | Path, per_model: int = 50, seed: int = 0,
           raters: int = 2) -> dict[str, Path]:
    """Sample ``per_model`` conversations of each model (label -> conversations file), shuffle them together and
    write the rater sheets, the key and the Argilla folder into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    items = []
    for label, path in models.items():
        rows = read_conversations(path)
        picked = rng.sample(range(len(rows)), min(per_model, len(rows)))
        for i in sorted(picked):
            row = rows[i]
            sid = str(row.get("source_id") or f"{Path(path).name}:{i}")
            items.append({"item_id": item_id(label, sid), "model": label, "source_id": sid,
                          "topic": row.get("topic", ""), "country": row.get("country", ""),
                          "messages": [{"role": m["role"], "content": m["content"]} for m in row["messages"]]})
    if len({it["item_id"] for it in items}) != len(items):
        raise RatingError("two sampled conversations share a source_id within one model; deduplicate the input")
    rng.shuffle(items)
    files = {"key": out / "items.csv"}
    with open(files["key"], "w", newline="", encoding="utf-8-sig") as f:
        w = csv.DictWriter(f, fieldnames=["item_id", "model", "source_id", "topic", "country"])
        w.writeheader()
        w.writerows({k: it[k] for k in w.fieldnames} for it in items)
    for r in range(1, raters + 1):
        path = files[f"rater_{r}"] = out / f"sheet_rater_{r}.csv"
        with open(path, "w", newline="", encoding="utf-8-sig") as f:
            w = csv.writer(f)
            w.writerow(["item_id", "conversation", *CRITERIA, "comment"])
            for it in items:
                w.writerow([it["item_id"], format_conversation(it["messages"]), *([""] * len(CRITERIA)), ""])
    argilla = out / "argilla"
    (argilla / ".argilla").mkdir(parents=True, exist_ok=True)
    (argilla / ".argilla" / "settings.json").write_text(
        json.dumps(_argilla_settings(raters), ensure_ascii=False, indent=1), encoding="utf-8")
    (argilla / ".argilla" / "dataset.json").write_text(json.dumps(
        {"name": "arabic-dialogues-human-eval", "status": "draft", "guidelines": GUIDELINES,
         "allow_extra_metadata": False, "distribution": {"strategy": "overlap", "min_submitted": raters}},
        ensure_ascii=False, indent=1), encoding="utf-8")
    records = [{"id": it["item_id"], "fields": {"conversation": it["messages"]}, "metadata": {"item_id": it["item_id"]},
                "suggestions": {}, "responses": {}, "vectors": {}, "status": "pending", "_server_id": None}
               for it in items]
    (argilla / "records.json").write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    files["argilla"] = argilla
    return files


# ------------------------------------------------------------------------------------------ agreement


def _rating(value: str, where: str) -> int:
    try:
        v = int(str(value).strip())
    except ValueError:
        raise RatingError(f"{where}: {value!r} is not a rating 1-5") from None
    if v not in SCALE:
        raise RatingError(f"{where}: {v} is outside 1-5")
    return v


def read_sheet(path: str | Path) -> dict[str, dict[str, int]]:
    """item_id -> {criterion: rating} from one filled CSV sheet."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("item_id", *CRITERIA) if c not in (reader.fieldnames or [])]
        if missing:
            raise RatingError(f"{path}: missing columns {missing}")
        out = {}
        for n, row in enumerate(reader, start=2):
            out[row["item_id"]] = {c: _rating(row[c], f"{path} row {n}, column {c}") for c in CRITERIA}
    return out


def read_argilla_responses(path: str | Path) -> list[dict[str, dict[str, int]]]:
    """Per rater (Argilla user id, sorted) item_id -> ratings, from an exported ``records.json`` with responses."""
    path = Path(path)
    by_user: dict[str, dict[str, dict[str, int]]] = {}
    for rec in json.loads(path.read_text(encoding="utf-8")):
        item = (rec.get("metadata") or {}).get("item_id") or rec["id"]
        for criterion in CRITERIA:
            for resp in (rec.get("responses") or {}).get(criterion, []):
                if resp.get("status", "submitted") != "submitted":
                    continue
                user = str(resp.get("user_id"))
                by_user.setdefault(user, {}).setdefault(item, {})[criterion] = _rating(
                    resp["value"], f"{path} record {rec['id']}, question {criterion}, user {user}")
    complete = {u: {i: r for i, r in items.items() if len(r) == len(CRITERIA)} for u, items in by_user.items()}
    if len(complete) < 2:
        raise RatingError(f"{path}: responses from {len(complete)} user(s); agreement needs two")
    return [complete[u] for u in sorted(complete)[:2]]


@dataclass
class Agreement:
    items: int
    criteria: dict  # criterion -> {kappa, kappa_quadratic, spearman_rho, spearman_p, n}
    means: dict  # model -> criterion -> {mean, rater_1, rater_2, n}

    def to_dict(self) -> dict:
        return {"items": self.items, "criteria": self.criteria, "means": self.means}


def agreement(rater_1: dict[str, dict[str, int]], rater_2: dict[str, dict[str, int]],
              models: dict[str, str] | None = None) -> Agreement:
    """Agreement on the items both raters scored. ``models``: item_id -> model label (from items.csv)."""
    import numpy as np
    from scipy.stats import spearmanr
    from sklearn.metrics import cohen_kappa_score

    common = sorted(set(rater_1) & set(rater_2))
    if len(common) < 2:
        raise RatingError(f"the two sheets share {len(common)} item(s); agreement needs at least two")
    criteria = {}
    for c in CRITERIA:
        a = np.array([rater_1[i][c] for i in common])
        b = np.array([rater_2[i][c] for i in common])
        rho, p = spearmanr(a, b)
        criteria[c] = {
            "kappa": float(cohen_kappa_score(a, b, labels=list(SCALE))),
            "kappa_quadratic": float(cohen_kappa_score(a, b, labels=list(SCALE), weights="quadratic")),
            "spearman_rho": None if np.isnan(rho) else float(rho),
            "spearman_p": None if np.isnan(p) else float(p),
            "n": len(common),
        }
    models = models or {}
    means: dict[str, dict] = {}
    for label in sorted({models.get(i, "all") for i in common}):
        ids = [i for i in common if models.get(i, "all") == label]
        means[label] = {}
        for c in CRITERIA:
            r1 = np.array([rater_1[i][c] for i in ids], dtype=float)
            r2 = np.array([rater_2[i][c] for i in ids], dtype=float)
            means[label][c] = {"mean": float((r1.mean() + r2.mean()) / 2), "rater_1": float(r1.mean()),
                               "rater_2": float(r2.mean()), "n": len(ids)}
    return Agreement(items=len(common), criteria=criteria, means=means)


def read_key(path: str | Path) -> dict[str, str]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return {row["item_id"]: row["model"] for row in csv.DictReader(f)}


def markdown(result: Agreement) -> str:
    fmt = (lambda x: "n/a" if x is None else f"{x:.3f}")
    lines = [f"Agreement of two raters on {result.items} conversations.", "",
             "| criterion | Cohen's kappa | quadratic kappa | Spearman rho | p |", "|---|---:|---:|---:|---:|"]
    for c, s in result.criteria.items():
        lines.append(f"| {c} | {fmt(s['kappa'])} | {fmt(s['kappa_quadratic'])} | {fmt(s['spearman_rho'])} | "
                     f"{fmt(s['spearman_p'])} |")
    lines += ["", "| model | " + " | ".join(CRITERIA) + " | n |", "|---|" + "---:|" * (len(CRITERIA) + 1)]
    for model, per in result.means.items():
        n = next(iter(per.values()))["n"]
        lines.append(f"| {model} | " + " | ".join(f"{per[c]['mean']:.2f}" for c in CRITERIA) + f" | {n} |")
    return "\n".join(lines) + "\n"


def plot(result: Agreement, path: str | Path) -> Path | None:
    """Mean score per criterion and model (bars), with each criterion's quadratic kappa above it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    import numpy as np

    models = list(result.means)
    x = np.arange(len(CRITERIA))
    width = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(1.6 * len(CRITERIA) + 2, 4))
    for k, model in enumerate(models):
        ax.bar(x + k * width - 0.4 + width / 2, [result.means[model][c]["mean"] for c in CRITERIA], width, label=model)
    for i, c in enumerate(CRITERIA):
        kq = result.criteria[c]["kappa_quadratic"]
        ax.text(i, 5.15, f"κw={kq:.2f}", ha="center", fontsize=8)
    ax.set_xticks(x, [CRITERIA[c][0] for c in CRITERIA])
    ax.set_ylim(0, 5.5)
    ax.set_ylabel("mean rating (1-5, both raters)")
    ax.set_title(f"Human evaluation ({result.items} conversations, 2 raters)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
