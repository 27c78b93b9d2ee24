# ruff: noqa: E501
"""lighteval custom tasks for the arabic-prompts dataset (held-out test prompts, ROUGE-L).

Standalone: this file imports only the standard library, lighteval and lighteval's own
dependencies (datasets, huggingface_hub, pyarrow, PyYAML, rouge_score, spaCy via
``lighteval[multilingual]``), so evaluators can download it alone and pass it to
``lighteval ... --custom-tasks arabic_prompts.py``.

Tasks: one generative task ``arabic_prompts:<task>`` per task config of the dataset, evaluated
on the ``test`` split; ``arabic_prompts`` (no colon) runs them all (lighteval expands a name to
every task sharing that prefix).

Metrics: ``rougeL_ar`` (Arabic-aware ROUGE-L F1 on a 0-1 scale, normalised text) and
``rougeL_ar_raw`` (same tokenizer, no normalisation). See eval_tasks/README.md.

Environment variables (read when lighteval imports this file):
  ARABIC_PROMPTS_DATASET   Hub dataset id, or a local dataset folder (Hub layout). Default:
                           DEFAULT_HF_REPO.
  ARABIC_PROMPTS_REVISION  Hub revision (branch/tag/commit) of a Hub dataset.
  ARABIC_PROMPTS_TASKS     comma-separated task names to register (default: all configs).
  ARABIC_PROMPTS_CACHE     where cache-safe snapshots of local folders are kept
                           (default: ~/.cache/arabic_prompts/local_datasets).

Offline: lighteval 0.13 imports every built-in task at start-up and its ``tiny_benchmarks``
task downloads a pickle at import, which fails offline. Run lighteval through this file,
``python arabic_prompts.py accelerate ...`` (same arguments as ``lighteval``), which replaces
that one built-in task by an empty stub when, and only when, its import fails.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import sys
import tempfile
import types
import unicodedata
from collections import namedtuple
from functools import lru_cache
from pathlib import Path

import numpy as np

from lighteval.metrics.metrics_sample import ROUGE
from lighteval.metrics.utils.metric_utils import SampleLevelMetric
from lighteval.tasks.lighteval_task import LightevalTaskConfig
from lighteval.tasks.requests import Doc, SamplingMethod


logger = logging.getLogger(__name__)

# The Hub dataset id this project will publish the dataset under (our own repository, not a
# third party's). Override with ARABIC_PROMPTS_DATASET (a Hub id or a local folder).
DEFAULT_HF_REPO = "arabic-prompts/arabic-prompts"

SUITE = "arabic_prompts"
ENV_DATASET = "ARABIC_PROMPTS_DATASET"
ENV_REVISION = "ARABIC_PROMPTS_REVISION"
ENV_TASKS = "ARABIC_PROMPTS_TASKS"
ENV_CACHE = "ARABIC_PROMPTS_CACHE"

EVAL_SPLIT = "test"
FEWSHOT_SPLIT = "train"

# Generation budget (new tokens) and stop sequences per task family. Arabic costs 2-4 tokens a
# word on most tokenizers. Few-shot examples are joined with "\n\n" by lighteval, so every
# family stops there; one-line answers also stop at the first newline.
FAMILY_GENERATION: dict[str, tuple[int, tuple[str, ...]]] = {
    "classification": (32, ("\n",)),
    "question_answering": (64, ("\n",)),
    "extraction": (128, ("\n\n",)),
    "sequence_labeling": (256, ("\n\n",)),
    "translation": (128, ("\n",)),
    "text_correction": (512, ("\n",)),
    "summarization": (256, ("\n\n",)),
    "generation": (256, ("\n\n",)),
}
DEFAULT_FAMILY = "generation"

# Task config name -> task family, as in the project's catalog (builders/catalog; a test keeps the
# two in step). Used for the Hub dataset when its README cannot be read (offline) and
# ARABIC_PROMPTS_TASKS is unset, and for the family of a Hub task.
STATIC_TASKS: dict[str, str] = {
    "answer_sentence_selection": "question_answering",
    "back_transliteration": "generation",
    "boolean_qa": "question_answering",
    "claim_article_stance": "classification",
    "claim_verification": "classification",
    "closed_qa": "question_answering",
    "commonsense_reasoning": "question_answering",
    "country_dialect_identification": "classification",
    "creative_writing": "generation",
    "cross_lingual_qa": "question_answering",
    "dependency_parsing": "sequence_labeling",
    "dependency_relation_labeling": "sequence_labeling",
    "diacritization": "text_correction",
    "dialect_identification": "classification",
    "dialect_to_english_translation": "translation",
    "dialectness_estimation": "classification",
    "dictionary_definition": "generation",
    "domain_classification": "classification",
    "emotion_classification": "classification",
    "entity_counting": "extraction",
    "entity_type_classification": "classification",
    "event_coreference": "classification",
    "extractive_qa": "question_answering",
    "fact_verification": "question_answering",
    "fine_grained_ner": "sequence_labeling",
    "grammar_correction": "text_correction",
    "hate_speech_detection": "classification",
    "headline_generation": "generation",
    "hemistich_completion": "generation",
    "instruction_following": "generation",
    "intent_classification": "classification",
    "keyphrase_extraction": "extraction",
    "lemmatization": "sequence_labeling",
    "location_extraction": "extraction",
    "math_word_problems": "generation",
    "morphological_feature_tagging": "sequence_labeling",
    "morphological_segmentation": "sequence_labeling",
    "multi_aspect_tweet_analysis": "classification",
    "multiple_choice_qa": "question_answering",
    "named_entity_recognition": "sequence_labeling",
    "natural_language_inference": "classification",
    "offense_severity_classification": "classification",
    "offensive_language_detection": "classification",
    "open_qa": "question_answering",
    "organization_extraction": "extraction",
    "person_name_extraction": "extraction",
    "person_role_classification": "extraction",
    "poetry_era_classification": "classification",
    "poetry_generation": "generation",
    "poetry_meter_classification": "classification",
    "poetry_rhyme_identification": "classification",
    "poetry_theme_classification": "classification",
    "pos_tagging": "sequence_labeling",
    "question_generation": "generation",
    "reading_comprehension": "question_answering",
    "root_identification": "extraction",
    "sarcasm_detection": "classification",
    "semantic_textual_similarity": "classification",
    "sentence_completion": "question_answering",
    "sentiment_analysis": "classification",
    "sentiment_rating": "classification",
    "stance_detection": "classification",
    "stance_target_identification": "classification",
    "story_writing": "generation",
    "subjectivity_detection": "classification",
    "summarization": "summarization",
    "text_undiacritization": "text_correction",
    "textual_entailment": "classification",
    "title_generation": "generation",
    "tokenization": "sequence_labeling",
    "topic_classification": "classification",
    "translation_ar_en": "translation",
    "translation_en_ar": "translation",
    "transliteration": "generation",
    "word_diacritization": "text_correction",
    "word_sentiment_polarity": "classification",
}


# --------------------------------------------------------------------------------------------
# Arabic-aware ROUGE-L
# --------------------------------------------------------------------------------------------

_DIACRITICS = (
    "\u0610-\u061a"  # honorific / Quranic signs above letters
    "\u064b-\u065f"  # tashkeel: fathatan ... wavy hamza below
    "\u0670"  # superscript alef
    "\u06d6-\u06dc\u06df-\u06e4\u06e7\u06e8\u06ea-\u06ed"  # Quranic annotation marks
)
_DIACRITICS_RE = re.compile(f"[{_DIACRITICS}]")
_TATWEEL = "\u0640"
_CHAR_MAP = str.maketrans(
    {
        # alef variants -> bare alef
        "\u0622": "\u0627",  # آ
        "\u0623": "\u0627",  # أ
        "\u0625": "\u0627",  # إ
        "\u0671": "\u0627",  # ٱ (wasla)
        "\u0672": "\u0627",
        "\u0673": "\u0627",
        # alef maqsura and Farsi yeh -> yaa
        "\u0649": "\u064a",  # ى
        "\u06cc": "\u064a",  # ی
        # taa marbuta -> haa
        "\u0629": "\u0647",  # ة
        # punctuation
        "\u060c": ",",  # ،
        "\u061b": ";",  # ؛
        "\u061f": "?",  # ؟
        "\u066a": "%",  # ٪
        "\u066b": ".",  # ٫ decimal separator
        "\u066c": ",",  # ٬ thousands separator
        "\u06d4": ".",  # ۔
        "\u00ab": '"',  # «
        "\u00bb": '"',  # »
        _TATWEEL: None,
        **{chr(0x0660 + d): str(d) for d in range(10)},  # Arabic-Indic digits
        **{chr(0x06F0 + d): str(d) for d in range(10)},  # Extended Arabic-Indic digits
    }
)


def normalize_arabic(text: str) -> str:
    """Normalise Arabic text for scoring.

    NFKC (presentation forms to letters), then: drop diacritics (tashkeel, superscript alef,
    Quranic marks) and tatweel; alef variants to bare alef; alef maqsura and Farsi yeh to yaa;
    taa marbuta to haa; Arabic-Indic digits to ASCII; Arabic punctuation to ASCII; casefold.
    """
    text = unicodedata.normalize("NFKC", text)
    text = _DIACRITICS_RE.sub("", text)
    return text.translate(_CHAR_MAP).casefold()


def _has_word_char(token: str) -> bool:
    return any(ch.isalnum() for ch in token)


class ArabicRougeTokenizer:
    """Word tokenizer for ROUGE that keeps Arabic letters and digits.

    Splits with lighteval's Arabic word tokenizer (``get_word_tokenizer(Language.ARABIC)``, a
    blank spaCy Arabic pipeline) and keeps the tokens that hold at least one letter or digit
    (punctuation-only tokens are dropped). ``normalize=True`` applies ``normalize_arabic`` first;
    ``normalize=False`` keeps the text as written (diacritics, letter variants, case).

    Has the ``tokenize(text)`` method that rouge_score's RougeScorer and lighteval's ROUGE take.
    """

    def __init__(self, normalize: bool = True, cache_size: int = 65536):
        self.normalize = normalize
        self._word_tokenizer = None
        self._cached = lru_cache(maxsize=cache_size)(self._tokenize) if cache_size else self._tokenize

    @property
    def word_tokenizer(self):
        if self._word_tokenizer is None:
            try:
                from lighteval.metrics.utils.linguistic_tokenizers import get_word_tokenizer
                from lighteval.utils.language import Language

                self._word_tokenizer = get_word_tokenizer(Language.ARABIC)
            except ImportError as err:  # pragma: no cover - depends on the install
                raise ImportError(
                    "The Arabic ROUGE tokenizer needs lighteval's multilingual extra: "
                    "pip install 'lighteval[multilingual]'"
                ) from err
        return self._word_tokenizer

    def _tokenize(self, text: str) -> tuple[str, ...]:
        if self.normalize:
            text = normalize_arabic(text)
        if not text.strip():
            return ()
        return tuple(tok for tok in self.word_tokenizer.word_tokenize(text) if _has_word_char(tok))

    def tokenize(self, text: str) -> list[str]:
        if text is None:
            return []
        return list(self._cached(text))

    def __getstate__(self):  # picklable (lighteval may copy metrics)
        return {"normalize": self.normalize}

    def __setstate__(self, state):
        self.__init__(normalize=state["normalize"])


def lcs_length(a, b) -> int:
    """Length of the longest common subsequence of two token sequences.

    Bit-parallel (Allison-Dix / Hyyro): one big-int operation per token of ``b``.
    """
    if not a or not b:
        return 0
    if len(a) < len(b):  # fewer bits per word: put the shorter sequence in the bit vector
        a, b = b, a
    masks: dict = {}
    for i, tok in enumerate(b):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    n = len(b)
    full = (1 << n) - 1
    v = full
    for tok in a:
        u = v & masks.get(tok, 0)
        v = ((v + u) | (v - u)) & full
    return n - v.bit_count()


Score = namedtuple("Score", ["precision", "recall", "fmeasure"])


def rouge_l_from_tokens(target_tokens, prediction_tokens) -> Score:
    """ROUGE-L precision/recall/F1 (0-1) of token sequences, as rouge_score computes it."""
    if not target_tokens or not prediction_tokens:
        return Score(0.0, 0.0, 0.0)
    lcs = lcs_length(target_tokens, prediction_tokens)
    precision = lcs / len(prediction_tokens)
    recall = lcs / len(target_tokens)
    fmeasure = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return Score(precision, recall, fmeasure)


class ArabicRougeLScorer:
    """Drop-in for ``rouge_scorer.RougeScorer(["rougeL"], tokenizer=ArabicRougeTokenizer())``."""

    def __init__(self, normalize: bool = True, tokenizer: ArabicRougeTokenizer | None = None):
        self.tokenizer = tokenizer or ArabicRougeTokenizer(normalize=normalize)

    def score(self, target: str, prediction: str) -> dict[str, Score]:
        return {
            "rougeL": rouge_l_from_tokens(self.tokenizer.tokenize(target), self.tokenizer.tokenize(prediction))
        }

    def score_multi(self, targets: list[str], prediction: str) -> dict[str, Score]:
        scores = [self.score(t, prediction)["rougeL"] for t in targets] or [Score(0.0, 0.0, 0.0)]
        return {"rougeL": max(scores, key=lambda s: s.fmeasure)}


@lru_cache(maxsize=2)
def _default_scorer(normalize: bool) -> ArabicRougeLScorer:
    return ArabicRougeLScorer(normalize=normalize)


def rouge_l(prediction: str, target: str, normalize: bool = True) -> float:
    """Arabic-aware ROUGE-L F1 of one prediction against one reference, 0-1."""
    return _default_scorer(normalize).score(target, prediction)["rougeL"].fmeasure


class ArabicRougeL(ROUGE):
    """lighteval's ROUGE (rougeL) with the Arabic tokenizer and the bit-parallel LCS scorer.

    Scores match ``rouge_score.RougeScorer(["rougeL"], tokenizer=ArabicRougeTokenizer(...))``.
    Several references: the best one counts.
    """

    def __init__(self, normalize: bool = True):
        tokenizer = ArabicRougeTokenizer(normalize=normalize)
        super().__init__("rougeL", tokenizer=tokenizer, aggregation_function=max)
        self.normalize = normalize
        self.scorer = ArabicRougeLScorer(tokenizer=tokenizer)


rougeL_ar = SampleLevelMetric(
    metric_name="rougeL_ar",
    sample_level_fn=ArabicRougeL(normalize=True),
    category=SamplingMethod.GENERATIVE,
    corpus_level_fn=np.mean,
    higher_is_better=True,
)
rougeL_ar_raw = SampleLevelMetric(
    metric_name="rougeL_ar_raw",
    sample_level_fn=ArabicRougeL(normalize=False),
    category=SamplingMethod.GENERATIVE,
    corpus_level_fn=np.mean,
    higher_is_better=True,
)
METRICS = [rougeL_ar, rougeL_ar_raw]


# --------------------------------------------------------------------------------------------
# Dataset resolution
# --------------------------------------------------------------------------------------------


class DatasetSpecError(ValueError):
    """The dataset folder / repo or the task selection is unusable."""


def _front_matter(readme: Path) -> dict:
    import yaml

    text = readme.read_text(encoding="utf-8")
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, flags=re.S)
    if not match:
        raise DatasetSpecError(f"{readme}: no YAML front matter (--- ... ---) with `configs:`")
    try:
        data = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as err:
        raise DatasetSpecError(f"{readme}: invalid YAML front matter: {err}") from err
    if not isinstance(data, dict):
        raise DatasetSpecError(f"{readme}: YAML front matter is not a mapping")
    return data


def read_configs(readme: Path) -> dict[str, dict[str, list[str]]]:
    """Task configs of a dataset card: {config_name: {split: [path patterns]}} ("default" excluded)."""
    configs = _front_matter(readme).get("configs")
    if not isinstance(configs, list) or not configs:
        raise DatasetSpecError(f"{readme}: the YAML front matter has no `configs:` list")
    out: dict[str, dict[str, list[str]]] = {}
    for entry in configs:
        if not isinstance(entry, dict) or "config_name" not in entry:
            raise DatasetSpecError(f"{readme}: a `configs` entry has no config_name: {entry!r}")
        name = str(entry["config_name"])
        if name == "default":
            continue
        data_files = entry.get("data_files")
        splits: dict[str, list[str]] = {}
        if isinstance(data_files, list):
            for item in data_files:
                if isinstance(item, dict) and "split" in item and "path" in item:
                    paths = item["path"] if isinstance(item["path"], list) else [item["path"]]
                    splits[str(item["split"])] = [str(p) for p in paths]
        elif isinstance(data_files, dict):
            splits = {str(k): [str(p) for p in (v if isinstance(v, list) else [v])] for k, v in data_files.items()}
        out[name] = splits
    return out


def _files_for(folder: Path, patterns: list[str]) -> list[Path]:
    files: list[Path] = []
    for pattern in patterns:
        files.extend(sorted(p for p in folder.glob(pattern) if p.is_file()))
    return files


def _family_of(files: list[Path], where: str) -> str:
    import pyarrow.parquet as pq

    for file in files:
        try:
            schema_names = pq.read_schema(file).names
        except Exception as err:  # noqa: BLE001 - report which file is broken
            raise DatasetSpecError(f"{where}: cannot read parquet file {file}: {err}") from err
        missing = [c for c in ("inputs", "targets") if c not in schema_names]
        if missing:
            raise DatasetSpecError(f"{where}: {file} has no column(s) {', '.join(missing)}")
        if "task_family" not in schema_names:
            continue
        column = pq.read_table(file, columns=["task_family"]).column("task_family")
        for value in column.to_pylist():
            if value:
                if value not in FAMILY_GENERATION:
                    logger.warning(f"{where}: unknown task_family {value!r}; using {DEFAULT_FAMILY!r} settings")
                return str(value)
    return DEFAULT_FAMILY


def local_tasks(folder: Path) -> dict[str, str]:
    """Task name -> task family for a local Hub-layout dataset folder (tasks with a test split)."""
    readme = folder / "README.md"
    if not readme.is_file():
        raise DatasetSpecError(f"dataset folder {folder}: no README.md with `configs:`")
    tasks: dict[str, str] = {}
    for name, splits in read_configs(readme).items():
        where = f"dataset folder {folder}, task {name!r}"
        if EVAL_SPLIT not in splits:
            logger.warning(f"{where}: no {EVAL_SPLIT!r} split in the README configs; task skipped")
            continue
        files = _files_for(folder, splits[EVAL_SPLIT])
        if not files:
            raise DatasetSpecError(f"{where}: no file matches {splits[EVAL_SPLIT]} for split {EVAL_SPLIT!r}")
        tasks[name] = _family_of(files, where)
    if not tasks:
        raise DatasetSpecError(f"dataset folder {folder}: no task config with a {EVAL_SPLIT!r} split")
    return tasks


def _snapshot_root() -> Path:
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "arabic_prompts" / "local_datasets"


def _snapshot_files(folder: Path) -> list[Path]:
    files = [folder / "README.md"]
    data_dir = folder / "data"
    if data_dir.is_dir():
        files.extend(sorted(p for p in data_dir.rglob("*") if p.is_file()))
    return files


def content_hash(folder: Path) -> str:
    """sha256 over the README and every file under data/ (relative names and bytes)."""
    digest = hashlib.sha256()
    for file in _snapshot_files(folder):
        digest.update(file.relative_to(folder).as_posix().encode("utf-8") + b"\0")
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def local_snapshot(folder: Path, root: Path | None = None) -> Path:
    """A content-addressed copy of a local dataset folder, safe against stale `datasets` caches.

    datasets 5.2 reuses the Arrow cache of a local folder whose name and configs match an
    earlier load, even after the folder was rebuilt with new rows. The snapshot's folder name
    holds the content hash, so new content always gets a new cache entry. Files are hard links
    when the file system allows it (no extra space), copies otherwise.
    """
    folder = folder.resolve()
    root = (root or _snapshot_root()).expanduser()
    digest = content_hash(folder)[:16]
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", folder.name) or "dataset"
    target = root / f"{name}-{digest}"
    if (target / ".complete").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        for file in _snapshot_files(folder):
            dest = staging / file.relative_to(folder)
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(file, dest)
            except OSError:
                shutil.copy2(file, dest)
        (staging / ".complete").write_text(str(folder) + "\n", encoding="utf-8")
        try:
            os.rename(staging, target)
        except OSError:  # another process made it first (or a partial one is in the way)
            if not (target / ".complete").is_file():
                shutil.rmtree(target, ignore_errors=True)
                os.rename(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _looks_like_path(spec: str) -> bool:
    """A Hub id is `name` or `namespace/name`; anything else is meant as a folder."""
    return spec.startswith(("/", ".", "~")) or spec.count("/") > 1 or (os.sep != "/" and os.sep in spec)


def _hub_tasks(repo_id: str, revision: str | None) -> dict[str, str] | None:
    """Task configs from the Hub dataset card, or None when it cannot be read (offline...)."""
    try:
        from huggingface_hub import hf_hub_download

        readme = hf_hub_download(repo_id, "README.md", repo_type="dataset", revision=revision)
        names = read_configs(Path(readme))
    except Exception as err:  # noqa: BLE001 - any failure falls back to the static list
        logger.info(f"Could not read the task list of {repo_id} from the Hub ({type(err).__name__}); using the static list")
        return None
    return {name: STATIC_TASKS.get(name, DEFAULT_FAMILY) for name in names}


def resolve_dataset(dataset: str | None = None, revision: str | None = None) -> tuple[str, str | None, dict[str, str]]:
    """(hf_repo for load_dataset, revision, {task: family}) for a Hub id or a local folder."""
    spec = (dataset or os.environ.get(ENV_DATASET) or DEFAULT_HF_REPO).strip()
    revision = revision or os.environ.get(ENV_REVISION) or None
    path = Path(spec).expanduser()
    if path.is_dir():
        tasks = local_tasks(path)
        return str(local_snapshot(path)), None, tasks
    if _looks_like_path(spec):
        raise DatasetSpecError(f"dataset folder {spec} does not exist (from {ENV_DATASET} or the `dataset` argument)")
    tasks = _hub_tasks(spec, revision) or dict(STATIC_TASKS)
    return spec, revision, tasks


# --------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------


def prompt_fn(line: dict, task_name: str | None = None) -> Doc:
    """Dataset row -> generative Doc: the prompt is `inputs`, the single reference `targets`."""
    inputs, targets = line.get("inputs"), line.get("targets")
    if not isinstance(inputs, str) or not isinstance(targets, str):
        raise ValueError(
            f"task {task_name}: row {line.get('id', line.get('__index'))!r} needs string `inputs` and `targets` "
            f"(got {type(inputs).__name__} and {type(targets).__name__})"
        )
    # source_id: the prompts of one source text (one per template) are one cluster for `evaluate compare`
    specific = {k: line[k] for k in ("id", "source_id", "task_family", "template_name", "dataset_name") if k in line}
    return Doc(
        task_name=task_name,
        query=inputs.rstrip(),
        choices=[targets.strip()],
        gold_index=0,
        specific=specific or None,
    )


def task_config(task: str, family: str, hf_repo: str, revision: str | None = None) -> LightevalTaskConfig:
    generation_size, stop = FAMILY_GENERATION.get(family, FAMILY_GENERATION[DEFAULT_FAMILY])
    return LightevalTaskConfig(
        name=f"{SUITE}:{task}",
        prompt_function=prompt_fn,
        hf_repo=hf_repo,
        hf_subset=task,
        hf_revision=revision,
        hf_avail_splits=["train", "validation", EVAL_SPLIT],
        evaluation_splits=[EVAL_SPLIT],
        few_shots_split=FEWSHOT_SPLIT,
        few_shots_select="random_sampling_from_train",
        generation_size=generation_size,
        stop_sequence=list(stop),
        metrics=list(METRICS),
        version=0,
    )


def build_tasks_table(
    dataset: str | None = None, tasks: str | list[str] | None = None, revision: str | None = None
) -> list[LightevalTaskConfig]:
    """Task configs for `dataset` (default: ARABIC_PROMPTS_DATASET or DEFAULT_HF_REPO)."""
    hf_repo, revision, available = resolve_dataset(dataset, revision)
    wanted = tasks if tasks is not None else os.environ.get(ENV_TASKS)
    if isinstance(wanted, str):
        wanted = [t.strip() for t in wanted.split(",") if t.strip()]
    if wanted:
        is_local = Path(hf_repo).is_dir()
        unknown = [t for t in wanted if t not in available]
        if unknown and is_local:
            raise DatasetSpecError(
                f"dataset {dataset or os.environ.get(ENV_DATASET)}: unknown task(s) {', '.join(unknown)}; "
                f"available: {', '.join(sorted(available))}"
            )
        available = {t: available.get(t, STATIC_TASKS.get(t, DEFAULT_FAMILY)) for t in wanted}
    return [task_config(task, family, hf_repo, revision) for task, family in sorted(available.items())]


_TASKS_TABLE: list[LightevalTaskConfig] | None = None


def __getattr__(name: str):
    """``TASKS_TABLE`` is built on first access (lighteval reads it right after import), so that
    importing this file for its scorer has no side effect."""
    global _TASKS_TABLE
    if name == "TASKS_TABLE":
        if _TASKS_TABLE is None:
            _TASKS_TABLE = build_tasks_table()
        return _TASKS_TABLE
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------------------------
# Offline launcher
# --------------------------------------------------------------------------------------------


def install_offline_guard() -> bool:
    """Make lighteval's task registry start offline. Returns True when a stub was installed.

    lighteval's built-in ``tiny_benchmarks`` task downloads a pickle when imported; offline that
    raises and the whole registry fails. Try the real import; if it fails, register an empty
    module in its place (only the tinyBenchmarks tasks become unavailable).
    """
    name = "lighteval.tasks.tasks.tiny_benchmarks"
    if name in sys.modules:
        return False
    try:
        __import__(name)
        return False
    except Exception as err:  # noqa: BLE001 - requests' ConnectionError and friends
        stub = types.ModuleType(name)
        stub.TASKS_TABLE = []
        stub.__doc__ = "Stub: the tinyBenchmarks pickle could not be downloaded (offline)."
        sys.modules[name] = stub
        logger.warning(f"lighteval's tiny_benchmarks tasks disabled: {type(err).__name__} while importing them (offline?)")
        return True


class _XXHashStrCompat:
    """xxhash module proxy whose xxh64 accepts str (encoded as UTF-8), as xxhash < 4 did."""

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        return getattr(self._module, name)

    def xxh64(self, data=b"", *args, **kwargs):
        if isinstance(data, str):
            data = data.encode("utf-8")
        return self._module.xxh64(data, *args, **kwargs)


def install_xxhash_compat() -> bool:
    """lighteval 0.13 hashes str with xxhash.xxh64, which xxhash 4 rejects ("Strings must be
    encoded before hashing") after every evaluation. With xxhash >= 4, give lighteval's details
    logger a proxy that encodes str first. Returns True when the proxy was installed."""
    import xxhash

    try:
        xxhash.xxh64("x")
        return False
    except TypeError:
        pass
    import lighteval.logging.info_loggers as info_loggers

    if not isinstance(info_loggers.xxhash, _XXHashStrCompat):
        info_loggers.xxhash = _XXHashStrCompat(xxhash)
    return True


def main(argv: list[str] | None = None) -> None:
    """``python arabic_prompts.py <lighteval arguments>``: lighteval's CLI with the offline guard
    and the xxhash >= 4 compatibility proxy."""
    install_offline_guard()
    install_xxhash_compat()
    from lighteval.__main__ import app

    argv = list(sys.argv[1:] if argv is None else argv)
    sys.argv = ["lighteval", *argv]
    app()


if __name__ == "__main__":
    main()
