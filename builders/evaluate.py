"""``arabic-prompts evaluate``: compare lighteval runs and write results into model cards.

``evaluate compare RESULTS...`` reads lighteval result files (``results_<date>.json``) and the
per-item details saved beside them (``--save-details``) for several models, and writes:

- ``comparison.md`` / ``scores.csv``: per-task scores with bootstrap 95% CIs and the macro average;
- ``pairwise.csv`` (also in the Markdown): for every pair of models, on the items both scored,
  the paired-bootstrap 95% CI of the score difference and a paired sign-flip permutation test;
- ``families.png``: a bar chart of per-task-family scores (macro over the family's tasks);
- ``comparison.json``: all of the above, machine-readable.

``--into-model-card PATH`` writes one model's results as ``model-index`` entries into a model
card (README.md YAML front matter), e.g. a PEFT adapter's, with huggingface_hub's ModelCard /
EvalResult (and ``metadata_update`` with ``--push-to-hub``).

``evaluate merge-adapter`` merges a LoRA adapter into its base model (safetensors), the folder to
give lighteval as ``model_name=`` (lighteval 0.13's own adapter loader requires peft==0.3.0); it runs
``builders.training.merge.merge_adapter``, the same code as ``arabic-prompts merge``.

The lighteval task file and its Arabic ROUGE-L scorer live in ``eval_tasks/arabic_prompts.py``
(standalone, for evaluators). ``compare`` works on the per-item scores lighteval saved, so it needs
no scorer; it reads the file's DEFAULT_HF_REPO without importing it (that would import lighteval).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import sys
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
EVAL_TASKS_FILE = REPO_ROOT / "eval_tasks" / "arabic_prompts.py"
SUITE_PREFIX = "arabic_prompts:"
DEFAULT_METRIC = "rougeL_ar"
METRIC_NAMES = {
    "rougeL_ar": "ROUGE-L (Arabic, normalised)",
    "rougeL_ar_raw": "ROUGE-L (Arabic, not normalised)",
}


class EvaluateError(ValueError):
    """Unusable input for `evaluate`; the message names the file or task."""


def eval_tasks_constant(name: str):
    """A literal module-level constant of eval_tasks/arabic_prompts.py, read without importing it
    (importing it imports lighteval, which takes seconds)."""
    import ast

    if not EVAL_TASKS_FILE.is_file():
        raise EvaluateError(f"{EVAL_TASKS_FILE} not found (run from a checkout of the repository)")
    for node in ast.parse(EVAL_TASKS_FILE.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise EvaluateError(f"{EVAL_TASKS_FILE}: no constant {name}")


# --------------------------------------------------------------------------------------------
# Reading lighteval runs
# --------------------------------------------------------------------------------------------


@dataclass
class Run:
    label: str
    model_name: str
    results_file: Path
    details_dir: Path
    metric: str
    task_scores: dict[str, float]  # task -> aggregated score from the results file
    items: dict[str, dict[str, float]]  # task -> {item key: score}
    families: dict[str, str] = field(default_factory=dict)  # task -> task family
    clusters: dict[str, dict[str, str]] = field(default_factory=dict)  # task -> {item key: source_id}
    dataset_repo: str | None = None
    dataset_revision: str | None = None


def task_id(results_key: str) -> str:
    """'arabic_prompts:sentiment_analysis|0' -> 'sentiment_analysis' ('|k' kept when k != 0)."""
    name, _, shots = results_key.partition("|")
    if name.startswith(SUITE_PREFIX):
        name = name[len(SUITE_PREFIX):]
    return name if shots in ("", "0") else f"{name}|{shots}"


def _is_aggregate(results_key: str) -> bool:
    return results_key == "all" or ":_average" in results_key


def _find_details_dir(results_file: Path, date_id: str) -> Path | None:
    for ancestor in list(results_file.parents)[:8]:
        details_root = ancestor / "details"
        if details_root.is_dir():
            hits = sorted(details_root.rglob(f"details_*_{date_id}.parquet"))
            if hits:
                return hits[0].parent
    return None


def _read_details(file: Path, metric: str, where: str) -> tuple[dict[str, float], dict[str, str], str | None]:
    """Per-item scores of one details file, each item's cluster (the row's ``source_id``: the prompts of one
    source text under several templates are one cluster; an item without one is its own cluster) and the
    task family."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(file, columns=["doc", "metric"])
    except Exception as err:  # noqa: BLE001 - name the file
        raise EvaluateError(f"{where}: cannot read details file {file}: {err}") from err
    items: dict[str, float] = {}
    clusters: dict[str, str] = {}
    family = None
    for row in table.to_pylist():
        metrics = row.get("metric") or {}
        if metric not in metrics or metrics[metric] is None:
            raise EvaluateError(f"{where}: details file {file} has no per-item {metric!r} (has {sorted(metrics)})")
        doc = row.get("doc") or {}
        specific = doc.get("specific") or {}
        key = str(specific.get("id") or doc.get("id"))
        family = family or specific.get("task_family")
        base, n = key, 1
        while key in items:  # repeated ids: keep both, in order
            n += 1
            key = f"{base}#{n}"
        items[key] = float(metrics[metric])
        clusters[key] = str(specific.get("source_id") or f"item:{key}")
    if not items:
        raise EvaluateError(f"{where}: details file {file} has no rows")
    return items, clusters, family


def load_run(path: str | Path, label: str | None = None, metric: str = DEFAULT_METRIC) -> Run:
    """One lighteval run: its results file and the details saved with it."""
    results_file = Path(path)
    if not results_file.is_file():
        raise EvaluateError(f"{results_file}: results file not found")
    try:
        data = json.loads(results_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise EvaluateError(f"{results_file}: not a lighteval results file (invalid JSON: {err})") from err
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise EvaluateError(f"{results_file}: not a lighteval results file (no `results` mapping)")
    general = data.get("config_general") or {}
    model_name = str(general.get("model_name") or (general.get("model_config") or {}).get("model_name") or "")
    if not model_name:
        raise EvaluateError(f"{results_file}: no config_general.model_name")
    keys = [k for k, v in data["results"].items() if not _is_aggregate(k) and isinstance(v, dict) and metric in v]
    if not keys:
        raise EvaluateError(f"{results_file}: no task with metric {metric!r} in `results`")
    stem = results_file.stem
    if not stem.startswith("results_"):
        raise EvaluateError(f"{results_file}: expected a lighteval file named results_<date>.json")
    date_id = stem[len("results_"):]
    details_dir = _find_details_dir(results_file, date_id)
    if details_dir is None:
        raise EvaluateError(
            f"{results_file}: no details (details/**/details_*_{date_id}.parquet) found; "
            "run lighteval with --save-details and keep its output folder layout"
        )
    run = Run(label=label or model_name, model_name=model_name, results_file=results_file,
              details_dir=details_dir, metric=metric, task_scores={}, items={})
    config_tasks = data.get("config_tasks") or {}
    for key in sorted(keys):
        tid = task_id(key)
        run.task_scores[tid] = float(data["results"][key][metric])
        file = details_dir / f"details_{key}_{date_id}.parquet"
        if not file.is_file():
            raise EvaluateError(f"{results_file}: task {key}: details file {file} not found")
        run.items[tid], run.clusters[tid], family = _read_details(file, metric, f"{results_file}: task {key}")
        run.families[tid] = family or "unknown"
        cfg = config_tasks.get(key) or {}
        run.dataset_repo = run.dataset_repo or cfg.get("hf_repo")
        run.dataset_revision = run.dataset_revision or cfg.get("hf_revision")
    return run


def parse_run_spec(spec: str) -> tuple[str | None, str]:
    """'LABEL=path/results_x.json' or 'path/results_x.json' -> (label, path)."""
    label, sep, path = spec.partition("=")
    if sep and label and not Path(spec).exists():
        return label, path
    return None, spec


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------


def _chunks(total: int, n_items: int) -> list[int]:
    size = max(1, min(total, 2_000_000 // max(1, n_items)))
    return [min(size, total - start) for start in range(0, total, size)]


Group = tuple[np.ndarray, np.ndarray]  # (per-item values, dense cluster index of each item)


def cluster_index(labels: list[str]) -> np.ndarray:
    """Dense 0..k-1 cluster numbers for per-item cluster labels (first appearance order)."""
    return np.unique(np.array(labels, dtype=object), return_inverse=True)[1].astype(np.int64)


def _sums(group: Group) -> tuple[np.ndarray, np.ndarray]:
    values, clusters = group
    return np.bincount(clusters, weights=values), np.bincount(clusters).astype(float)


def bootstrap_ci(groups: list[Group], n_boot: int, rng: np.random.Generator,
                 alpha: float = 0.05) -> tuple[float, float]:
    """Percentile CI of the macro mean (mean over groups of the group means), resampling **clusters** (source
    texts) with replacement within each group, each cluster bringing all its items: a test text scored under
    five templates counts as one draw, not five. With one item per cluster this is the plain item bootstrap.
    A paired CI when the values are paired differences."""
    stats = np.zeros(n_boot)
    for g in groups:
        sums, counts = _sums(g)
        k = len(sums)
        out = []
        for size in _chunks(n_boot, k):
            idx = rng.integers(0, k, size=(size, k))
            out.append(sums[idx].sum(axis=1) / counts[idx].sum(axis=1))
        stats += np.concatenate(out)
    stats /= len(groups)
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def permutation_test(diffs: list[Group], n_perm: int, rng: np.random.Generator) -> float:
    """Two-sided paired sign-flip permutation test of the macro mean difference being 0.

    Under H0 (the two systems are exchangeable on each source text) the paired differences of one cluster
    keep or flip their sign together, with probability 1/2. p = (1 + #{|null| >= |observed|}) / (1 + n_perm)."""
    observed = float(np.mean([d.mean() for d, _ in diffs]))
    null = np.zeros(n_perm)
    for g in diffs:
        sums, counts = _sums(g)
        k, n = len(sums), counts.sum()
        out = []
        for size in _chunks(n_perm, k):
            signs = rng.integers(0, 2, size=(size, k), dtype=np.int8) * 2 - 1
            out.append((signs * sums).sum(axis=1) / n)
        null += np.concatenate(out)
    null /= len(diffs)
    extreme = int(np.sum(np.abs(null) >= abs(observed) - 1e-12))
    return (1 + extreme) / (1 + n_perm)


CORRECTIONS = {"bh": "Benjamini-Hochberg (false discovery rate)", "holm": "Holm (family-wise error)",
               "none": "none"}


def adjust_p(p_values: list[float], method: str) -> list[float]:
    """p-values adjusted across tasks: Benjamini-Hochberg (``scipy.stats.false_discovery_control``), Holm, or none."""
    if method == "none" or not p_values:
        return list(p_values)
    p = np.asarray(p_values, dtype=float)
    if method == "bh":
        from scipy.stats import false_discovery_control

        return [float(x) for x in false_discovery_control(p, method="bh")]
    if method == "holm":
        order = np.argsort(p)
        adjusted = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order])
        out = np.empty_like(p)
        out[order] = np.minimum(adjusted, 1.0)
        return [float(x) for x in out]
    raise EvaluateError(f"--correction must be one of {', '.join(CORRECTIONS)}, not {method!r}")


@dataclass
class Pairwise:
    model_a: str
    model_b: str
    task: str  # a task id, or "macro_average"
    n: int
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    significant: bool  # p_adjusted < alpha
    clusters: int = 0  # source texts the items come from
    p_adjusted: float | None = None  # across the tasks of this pair (the macro row is one test: its own p)


@dataclass
class Comparison:
    metric: str
    runs: list[Run]
    tasks: list[str]  # union, sorted
    common_tasks: list[str]  # tasks every run has (the macro average is over these)
    families: dict[str, str]
    scores: dict[str, dict[str, float]]  # label -> task -> score
    score_ci: dict[str, dict[str, tuple[float, float]]]  # label -> task / macro_average -> CI
    macro: dict[str, float]
    family_scores: dict[str, dict[str, float]]  # label -> family -> score
    family_ci: dict[str, dict[str, tuple[float, float]]]
    pairwise: list[Pairwise]
    alpha: float
    n_boot: int
    n_perm: int
    correction: str = "bh"
    clustered: bool = True  # resampled by source_id (False: every item is its own cluster)


MACRO = "macro_average"


def _group(run: Run, task: str, keys: list[str], clustered: bool) -> np.ndarray:
    labels = [run.clusters.get(task, {}).get(k, k) if clustered else k for k in keys]
    return cluster_index(labels)


def _paired(run_a: Run, run_b: Run, task: str, clustered: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a, b = run_a.items[task], run_b.items[task]
    keys = sorted(set(a) & set(b))
    return np.array([a[k] for k in keys]), np.array([b[k] for k in keys]), _group(run_a, task, keys, clustered)


def _scores(run: Run, task: str, clustered: bool) -> Group:
    keys = list(run.items[task])
    return np.array([run.items[task][k] for k in keys]), _group(run, task, keys, clustered)


def compare_runs(runs: list[Run], n_boot: int = 10_000, n_perm: int = 10_000, seed: int = 0,
                 alpha: float = 0.05, correction: str = "bh", clustered: bool = True) -> Comparison:
    """Scores, CIs and paired tests. ``clustered``: resample and permute by source text (the items' source_id;
    an item without one is its own cluster); ``correction``: adjust the per-task p-values of each model pair
    across tasks (``bh``, ``holm`` or ``none``)."""
    if len(runs) < 1:
        raise EvaluateError("compare needs at least one results file")
    if correction not in CORRECTIONS:
        raise EvaluateError(f"--correction must be one of {', '.join(CORRECTIONS)}, not {correction!r}")
    labels = [r.label for r in runs]
    if len(set(labels)) != len(labels):
        raise EvaluateError(f"two runs share a label ({', '.join(labels)}); name them LABEL=results.json")
    metrics = {r.metric for r in runs}
    metric = metrics.pop()
    rng = np.random.default_rng(seed)
    tasks = sorted(set().union(*(r.task_scores for r in runs)))
    common = sorted(set.intersection(*(set(r.task_scores) for r in runs)))
    if not common:
        raise EvaluateError("the results files share no task; nothing to compare")
    for r in runs:
        missing = [t for t in tasks if t not in r.task_scores]
        if missing:
            logger.warning(f"{r.label} ({r.results_file}) has no results for {', '.join(missing)}; "
                           "the macro average uses the tasks every model has")
    families: dict[str, str] = {}
    for r in runs:
        for t, fam in r.families.items():
            if families.get(t, "unknown") == "unknown":
                families[t] = fam
    scores = {r.label: dict(r.task_scores) for r in runs}
    macro = {r.label: float(np.mean([r.task_scores[t] for t in common])) for r in runs}
    score_ci: dict[str, dict[str, tuple[float, float]]] = {}
    for r in runs:
        groups = {t: _scores(r, t, clustered) for t in r.task_scores}
        score_ci[r.label] = {t: bootstrap_ci([groups[t]], n_boot, rng, alpha) for t in r.task_scores}
        score_ci[r.label][MACRO] = bootstrap_ci([groups[t] for t in common], n_boot, rng, alpha)
    fam_names = sorted({families.get(t, "unknown") for t in common})
    family_scores: dict[str, dict[str, float]] = {}
    family_ci: dict[str, dict[str, tuple[float, float]]] = {}
    for r in runs:
        family_scores[r.label], family_ci[r.label] = {}, {}
        for fam in fam_names:
            fam_tasks = [t for t in common if families.get(t, "unknown") == fam]
            family_scores[r.label][fam] = float(np.mean([r.task_scores[t] for t in fam_tasks]))
            family_ci[r.label][fam] = bootstrap_ci([_scores(r, t, clustered) for t in fam_tasks], n_boot, rng, alpha)
    pairwise: list[Pairwise] = []
    for run_a, run_b in combinations(runs, 2):
        per_task = {}
        for t in sorted(set(run_a.task_scores) & set(run_b.task_scores)):
            a, b, clusters = _paired(run_a, run_b, t, clustered)
            if len(a) == 0:
                logger.warning(f"task {t}: {run_a.label} and {run_b.label} share no item; not compared")
                continue
            if len(a) < max(len(run_a.items[t]), len(run_b.items[t])):
                logger.warning(f"task {t}: only {len(a)} items are common to {run_a.label} and {run_b.label}")
            per_task[t] = (a, b, clusters)
        rows = []
        for name, triples in [*((t, [p]) for t, p in per_task.items()),
                              (MACRO, [per_task[t] for t in common if t in per_task])]:
            if not triples:
                continue
            diffs = [(a - b, c) for a, b, c in triples]
            lo, hi = bootstrap_ci(diffs, n_boot, rng, alpha)
            p = permutation_test(diffs, n_perm, rng)
            mean_a = float(np.mean([a.mean() for a, _, _ in triples]))
            mean_b = float(np.mean([b.mean() for _, b, _ in triples]))
            rows.append(Pairwise(run_a.label, run_b.label, name, int(sum(len(a) for a, _, _ in triples)),
                                 mean_a, mean_b, mean_a - mean_b, lo, hi, p, False,
                                 clusters=int(sum(c.max() + 1 for _, _, c in triples))))
        task_rows = [pw for pw in rows if pw.task != MACRO]
        for pw, adj in zip(task_rows, adjust_p([pw.p_value for pw in task_rows], correction)):
            pw.p_adjusted = adj
        for pw in rows:
            if pw.task == MACRO:
                pw.p_adjusted = pw.p_value  # one test over all tasks
            pw.significant = bool(pw.p_adjusted < alpha)
        pairwise += rows
    return Comparison(metric, runs, tasks, common, families, scores, score_ci, macro, family_scores,
                      family_ci, pairwise, alpha, n_boot, n_perm, correction, clustered)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _fmt(x: float | None) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def markdown(cmp: Comparison) -> str:
    labels = [r.label for r in cmp.runs]
    level = int(round((1 - cmp.alpha) * 100))
    out = [f"# Model comparison: {cmp.metric} ({METRIC_NAMES.get(cmp.metric, cmp.metric)} F1, 0-1)", ""]
    out.append(f"Score per task (bootstrap {level}% CI). Macro average: mean of the "
               f"{len(cmp.common_tasks)} task(s) every model has.")
    out.append("")
    out.append(f"Statistics: {_method(cmp)}")
    out.append("")
    out.append("| task | family | " + " | ".join(labels) + " |")
    out.append("|---|---|" + "---:|" * len(labels))
    for t in cmp.tasks:
        cells = []
        for lab in labels:
            if t in cmp.scores[lab]:
                lo, hi = cmp.score_ci[lab][t]
                cells.append(f"{cmp.scores[lab][t]:.4f} ({lo:.4f}–{hi:.4f})")
            else:
                cells.append("—")
        out.append(f"| {t} | {cmp.families.get(t, 'unknown')} | " + " | ".join(cells) + " |")
    cells = [f"**{cmp.macro[lab]:.4f}** ({cmp.score_ci[lab][MACRO][0]:.4f}–{cmp.score_ci[lab][MACRO][1]:.4f})"
             for lab in labels]
    out.append(f"| **macro average** | {len(cmp.common_tasks)} tasks | " + " | ".join(cells) + " |")
    out += ["", "## Task families (macro over each family's tasks)", ""]
    fams = sorted(next(iter(cmp.family_scores.values())))
    out.append("| family | " + " | ".join(labels) + " |")
    out.append("|---|" + "---:|" * len(labels))
    for fam in fams:
        out.append(f"| {fam} | " + " | ".join(f"{cmp.family_scores[lab][fam]:.4f}" for lab in labels) + " |")
    if cmp.pairwise:
        out += ["", f"## Paired comparisons (A − B on the items both scored; paired bootstrap {level}% CI, "
                    f"{cmp.n_boot} resamples; two-sided sign-flip permutation test, {cmp.n_perm} permutations; "
                    f"p adjusted across tasks: {CORRECTIONS[cmp.correction]}; significant: adjusted p < {cmp.alpha})", ""]
        out.append("| A | B | task | n | source texts | A | B | A − B | CI | p | adjusted p | significant |")
        out.append("|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|---|")
        for pw in cmp.pairwise:
            task = f"**{pw.task}**" if pw.task == MACRO else pw.task
            out.append(f"| {pw.model_a} | {pw.model_b} | {task} | {pw.n} | {pw.clusters} | {pw.mean_a:.4f} | "
                       f"{pw.mean_b:.4f} | {pw.diff:+.4f} | [{pw.ci_low:+.4f}, {pw.ci_high:+.4f}] | {pw.p_value:.4g} | "
                       f"{pw.p_adjusted:.4g} | {'yes' if pw.significant else 'no'} |")
    out += ["", "Runs:", ""]
    for r in cmp.runs:
        out.append(f"- {r.label}: model `{r.model_name}`, `{r.results_file}`")
    return "\n".join(out) + "\n"


def _method(cmp: Comparison) -> str:
    unit = ("source texts (the prompts of one `source_id`, under every template, are resampled and sign-flipped "
            "together; items without a source_id are their own cluster)") if cmp.clustered else "items"
    return (f"bootstrap and permutation over {unit}; per-task p-values of each model pair adjusted across tasks "
            f"with {CORRECTIONS[cmp.correction]}; the macro-average test is a single test.")


def scores_csv(cmp: Comparison) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    labels = [r.label for r in cmp.runs]
    w.writerow(["task", "family", *[c for lab in labels for c in (lab, f"{lab}_ci_low", f"{lab}_ci_high")]])
    for t in [*cmp.tasks, MACRO]:
        row = [t, cmp.families.get(t, "") if t != MACRO else ""]
        for lab in labels:
            value = cmp.macro[lab] if t == MACRO else cmp.scores[lab].get(t)
            ci = cmp.score_ci[lab].get(t)
            row += [_fmt(value) if value is not None else "", *(f"{c:.4f}" for c in ci)] if ci else [
                _fmt(value) if value is not None else "", "", ""]
        w.writerow(row)
    return buf.getvalue()


def pairwise_csv(cmp: Comparison) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["model_a", "model_b", "task", "n", "clusters", "mean_a", "mean_b", "diff", "ci_low", "ci_high",
                "p_value", "p_adjusted", "significant"])
    for pw in cmp.pairwise:
        w.writerow([pw.model_a, pw.model_b, pw.task, pw.n, pw.clusters, f"{pw.mean_a:.6f}", f"{pw.mean_b:.6f}",
                    f"{pw.diff:.6f}", f"{pw.ci_low:.6f}", f"{pw.ci_high:.6f}", f"{pw.p_value:.6g}",
                    f"{pw.p_adjusted:.6g}", str(pw.significant).lower()])
    return buf.getvalue()


def family_chart(cmp: Comparison, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r.label for r in cmp.runs]
    fams = sorted(next(iter(cmp.family_scores.values())))
    x = np.arange(len(fams))
    width = 0.8 / max(1, len(labels))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(fams) * max(1, len(labels)) ** 0.5 + 2), 4.5))
    for i, lab in enumerate(labels):
        vals = np.array([cmp.family_scores[lab][f] for f in fams])
        lo = np.array([cmp.family_ci[lab][f][0] for f in fams])
        hi = np.array([cmp.family_ci[lab][f][1] for f in fams])
        err = np.vstack([np.clip(vals - lo, 0, None), np.clip(hi - vals, 0, None)])
        ax.bar(x + (i - (len(labels) - 1) / 2) * width, vals, width, yerr=err, capsize=3, label=lab)
    ax.set_xticks(x, fams, rotation=20, ha="right")
    ax.set_ylabel(f"{cmp.metric} (0-1)")
    ax.set_ylim(0, 1)
    ax.set_title(f"{METRIC_NAMES.get(cmp.metric, cmp.metric)} by task family (95% CI)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_comparison(cmp: Comparison, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "markdown": out / "comparison.md",
        "scores_csv": out / "scores.csv",
        "pairwise_csv": out / "pairwise.csv",
        "chart": out / "families.png",
        "json": out / "comparison.json",
    }
    files["markdown"].write_text(markdown(cmp), encoding="utf-8")
    files["scores_csv"].write_text(scores_csv(cmp), encoding="utf-8")
    files["pairwise_csv"].write_text(pairwise_csv(cmp), encoding="utf-8")
    family_chart(cmp, files["chart"])
    payload = {
        "metric": cmp.metric,
        "alpha": cmp.alpha,
        "statistics": {"clustered_by": "source_id" if cmp.clustered else "item", "correction": cmp.correction,
                       "correction_name": CORRECTIONS[cmp.correction], "description": _method(cmp)},
        "runs": [{"label": r.label, "model_name": r.model_name, "results_file": str(r.results_file)} for r in cmp.runs],
        "tasks": cmp.tasks,
        "common_tasks": cmp.common_tasks,
        "families": cmp.families,
        "scores": cmp.scores,
        "score_ci": cmp.score_ci,
        "macro_average": cmp.macro,
        "family_scores": cmp.family_scores,
        "pairwise": [pw.__dict__ for pw in cmp.pairwise],
    }
    files["json"].write_text(json.dumps(payload, indent=2, ensure_ascii=False), encoding="utf-8")
    return files


# --------------------------------------------------------------------------------------------
# Model cards
# --------------------------------------------------------------------------------------------


def _is_hub_id(value: str | None) -> bool:
    if not value:
        return False
    return not Path(value).expanduser().exists() and not value.startswith(("/", ".", "~")) and value.count("/") == 1


def eval_results_for(run: Run, dataset_id: str, macro_tasks: list[str] | None = None,
                     dataset_revision: str | None = None) -> list:
    """huggingface_hub EvalResults: one per task, plus the macro average (config 'default')."""
    from huggingface_hub import EvalResult

    metric_name = METRIC_NAMES.get(run.metric, run.metric)
    common = dict(task_type="text-generation", dataset_type=dataset_id, metric_type="rouge",
                  metric_name=metric_name, metric_config=run.metric, dataset_split="test",
                  dataset_revision=dataset_revision)
    results = [EvalResult(task_name=f"Arabic prompts: {t}", dataset_name=f"arabic-prompts {t}", dataset_config=t,
                          metric_value=round(run.task_scores[t], 4), **common) for t in sorted(run.task_scores)]
    tasks = macro_tasks or sorted(run.task_scores)
    results.append(EvalResult(task_name=f"Arabic prompts: macro average over {len(tasks)} tasks",
                              dataset_name="arabic-prompts (macro average)", dataset_config="default",
                              metric_value=round(float(np.mean([run.task_scores[t] for t in tasks])), 4),
                              **common))
    return results


def _card_readme(path: Path) -> Path:
    if path.is_dir():
        return path / "README.md"
    if path.suffix.lower() == ".md":
        return path
    raise EvaluateError(f"{path}: --into-model-card takes a model folder or its README.md")


def update_model_card(card_path: str | Path, run: Run, dataset_id: str, macro_tasks: list[str] | None = None,
                      model_name: str | None = None) -> Path:
    """Merge the run's results into the card's model-index (same task/dataset/metric -> replaced)."""
    from huggingface_hub import ModelCard

    readme = _card_readme(Path(card_path))
    if readme.is_file():
        try:
            card = ModelCard.load(readme)
        except Exception as err:  # noqa: BLE001 - name the file
            raise EvaluateError(f"{readme}: cannot read the model card: {err}") from err
    elif readme.parent.is_dir():
        card = ModelCard("---\n{}\n---\n")
    else:
        raise EvaluateError(f"{readme.parent}: model folder not found")
    new = eval_results_for(run, dataset_id, macro_tasks, run.dataset_revision)
    existing = list(card.data.eval_results or [])
    kept = [e for e in existing if not any(e.is_equal_except_value(n) for n in new)]
    card.data.eval_results = kept + new
    card.data.model_name = model_name or card.data.model_name or readme.parent.resolve().name
    card.save(readme)
    return readme


def push_model_card_results(repo_id: str, run: Run, dataset_id: str, macro_tasks: list[str] | None = None,
                            model_name: str | None = None) -> str:
    """Merge the results into a Hub model repo's card with huggingface_hub.metadata_update."""
    from huggingface_hub import metadata_update
    from huggingface_hub.repocard_data import eval_results_to_model_index

    results = eval_results_for(run, dataset_id, macro_tasks, run.dataset_revision)
    metadata = {"model-index": eval_results_to_model_index(model_name or repo_id.split("/")[-1], results)}
    return metadata_update(repo_id, metadata, overwrite=True,
                           commit_message="Add arabic-prompts evaluation results (lighteval)")


def pick_card_run(runs: list[Run], card_path: str | Path | None, label: str | None) -> Run:
    if label:
        for r in runs:
            if r.label == label:
                return r
        raise EvaluateError(f"--card-model {label!r} is none of the runs ({', '.join(r.label for r in runs)})")
    if len(runs) == 1:
        return runs[0]
    if card_path is not None:
        folder = Path(card_path)
        folder = folder.parent if folder.suffix.lower() == ".md" else folder
        for r in runs:
            if Path(r.model_name).expanduser().exists() and Path(r.model_name).resolve() == folder.resolve():
                return r
    raise EvaluateError(f"several runs; name the one whose results go into the model card with --card-model "
                        f"({', '.join(r.label for r in runs)})")


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def cmd_compare(args) -> int:
    runs = []
    for spec in args.results:
        label, path = parse_run_spec(spec)
        runs.append(load_run(path, label=label, metric=args.metric))
    cmp = compare_runs(runs, n_boot=args.n_boot, n_perm=args.n_perm, seed=args.seed, alpha=args.alpha,
                       correction=args.correction, clustered=args.cluster == "source_id")
    files = write_comparison(cmp, Path(args.out))
    print(files["markdown"].read_text(encoding="utf-8"))
    print("wrote " + ", ".join(str(p) for p in files.values()))
    if args.into_model_card or args.push_to_hub:
        run = pick_card_run(runs, args.into_model_card, args.card_model)
        dataset_id = args.dataset_id or (run.dataset_repo if _is_hub_id(run.dataset_repo) else None)
        if dataset_id is None:
            dataset_id = eval_tasks_constant("DEFAULT_HF_REPO")
        if args.into_model_card:
            readme = update_model_card(args.into_model_card, run, dataset_id, cmp.common_tasks, args.card_name)
            print(f"wrote the model-index results of {run.label} into {readme}")
        if args.push_to_hub:
            url = push_model_card_results(args.push_to_hub, run, dataset_id, cmp.common_tasks, args.card_name)
            print(f"updated the model card of {args.push_to_hub} on the Hub: {url}")
    return 0


def cmd_merge_adapter(args) -> int:
    from builders.training.merge import merge_adapter  # one implementation, shared with `arabic-prompts merge`

    out = merge_adapter(args.base, args.adapter, args.out, dtype=args.dtype, trust_remote_code=args.trust_remote_code)
    print(f"merged {args.adapter} into {args.base}: {out}")
    print(f'evaluate it: lighteval accelerate "model_name={out},dtype={args.dtype}" "arabic_prompts|0" '
          "--custom-tasks eval_tasks/arabic_prompts.py --save-details")
    return 0


def add_cli(subparsers) -> None:
    """Register `evaluate` (with `compare` and `merge-adapter`) on an argparse subparsers object."""
    ev = subparsers.add_parser("evaluate", help="compare lighteval runs; model cards; merge LoRA adapters")
    esub = ev.add_subparsers(dest="evaluate_command", required=True)

    c = esub.add_parser("compare", help="per-task tables, paired bootstrap CIs and tests, family chart",
                        description="Compare lighteval runs of the arabic_prompts tasks (results_<date>.json "
                                    "files, with the details saved by --save-details).")
    c.add_argument("results", nargs="+", metavar="RESULTS",
                   help="lighteval results_<date>.json files, optionally LABEL=path")
    c.add_argument("--out", default="eval_comparison", help="output folder (default: eval_comparison)")
    c.add_argument("--metric", default=DEFAULT_METRIC, help=f"metric to compare (default: {DEFAULT_METRIC})")
    c.add_argument("--n-boot", type=int, default=10_000, help="bootstrap resamples (default: 10000)")
    c.add_argument("--n-perm", type=int, default=10_000, help="permutations of the paired test (default: 10000)")
    c.add_argument("--alpha", type=float, default=0.05, help="significance level (default: 0.05)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--correction", choices=sorted(CORRECTIONS), default="bh",
                   help="adjust per-task p-values across tasks: bh (Benjamini-Hochberg, default), holm, none")
    c.add_argument("--cluster", choices=["source_id", "item"], default="source_id",
                   help="resampling unit: source_id (default: a source text's prompts under every template "
                        "together) or item")
    c.add_argument("--into-model-card", metavar="PATH",
                   help="model folder (e.g. a PEFT adapter) or README.md to write model-index results into")
    c.add_argument("--push-to-hub", metavar="REPO_ID",
                   help="also merge the results into this Hub model repo's card (metadata_update)")
    c.add_argument("--card-model", metavar="LABEL", help="whose results go into the card (default: the only run, "
                                                         "or the run whose model_name is the card's folder)")
    c.add_argument("--card-name", help="model-index name (default: the card's model_name or folder name)")
    c.add_argument("--dataset-id", help="Hub dataset id for the model-index (default: the evaluated Hub dataset, "
                                        "else the project's dataset id)")
    c.set_defaults(func=cmd_compare)

    m = esub.add_parser("merge-adapter", help="merge a LoRA adapter into its base model for lighteval")
    m.add_argument("--base", required=True, help="base model id or folder")
    m.add_argument("--adapter", required=True, help="PEFT adapter folder")
    m.add_argument("--out", required=True, help="output folder (safetensors)")
    m.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    m.add_argument("--trust-remote-code", action="store_true",
                   help="allow the base model's own code (off by default; only for models you trust)")
    m.set_defaults(func=cmd_merge_adapter)


def main(argv: list[str] | None = None) -> int:
    """`python -m builders.evaluate compare ...` (same as `arabic-prompts evaluate compare ...`)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m builders.evaluate")
    sub = parser.add_subparsers(dest="command", required=True)
    add_cli(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(["evaluate", *argv])
    try:
        return args.func(args)
    except (EvaluateError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
