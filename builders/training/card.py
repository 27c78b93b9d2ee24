"""The adapter's model card: Hub YAML written with huggingface_hub's ModelCardData (base_model, library_name: peft,
datasets, language, license, pipeline_tag, tags, model-index) and a body rendered from model_cards/adapter.md.j2
(sandboxed jinja2) out of the run's training_run.json. Evaluation results that ``evaluate compare
--into-model-card RUN_DIR`` wrote into the run's README.md are kept as the card's model-index."""

from __future__ import annotations

from pathlib import Path

from builders.training import run_record

CARD_TEMPLATE = "adapter.md.j2"  # in model_cards/, shipped as builders.model_cards
REQUIRED = ("base_model", "library_name", "datasets", "language", "license", "pipeline_tag")
TAGS = ["arabic", "arabic-prompts", "lora", "peft", "sft", "trl"]


class CardError(ValueError):
    """A model card that cannot be made or does not validate; the message says what is missing."""


def is_hub_id(value: str | None) -> bool:
    if not value or Path(value).expanduser().exists() or value.startswith(("/", ".", "~")):
        return False
    org, _, name = value.partition("/")
    return bool(org and name) and "/" not in name


def card_template() -> str:
    """The text of ``model_cards/adapter.md.j2`` (from the installed package, so a wheel install works too)."""
    from importlib import resources

    return (resources.files("builders.model_cards") / CARD_TEMPLATE).read_text(encoding="utf-8")


def existing_eval_results(run_dir: Path) -> list:
    """The model-index already in the run's README.md (written by `evaluate compare --into-model-card`)."""
    from huggingface_hub import ModelCard

    readme = Path(run_dir) / "README.md"
    if not readme.is_file():
        return []
    try:
        return list(ModelCard.load(readme).data.eval_results or [])
    except Exception as err:  # noqa: BLE001 - name the file
        raise CardError(f"{readme}: cannot read its model card: {err}") from err


def _mixture(run: dict) -> dict | None:
    for info in run.get("datasets", []):
        if info.get("mixture_recipe"):
            return info["mixture_recipe"]
    return None


def render_card(run_dir: str | Path, repo_id: str, base_model: str | None = None,
                datasets: list[str] | None = None) -> str:
    """The README.md of a run published as ``repo_id``; raises CardError when it cannot validate."""
    import jinja2
    from huggingface_hub import ModelCardData
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    run_dir = Path(run_dir)
    run = run_record.read(run_dir)
    base = base_model or run["base_model"]
    if not is_hub_id(base):
        raise CardError(f"the base model {base!r} is not a Hub id; name the Hub model it stands for with --base-model")
    hub_datasets = list(datasets or run["data"].get("card_datasets") or
                        [d["source"] for d in run["datasets"] if is_hub_id(d["source"])])
    if not hub_datasets:
        raise CardError("the run was trained on local data only; name the Hub dataset(s) it was published as "
                        "with --dataset ORG/NAME (publish the mixture first: `arabic-prompts publish`)")
    eval_results = existing_eval_results(run_dir)
    name = repo_id.split("/")[-1]
    data = ModelCardData(base_model=base, library_name="peft", datasets=hub_datasets, language=["ar"],
                         license=run["data"].get("card_license") or "apache-2.0", pipeline_tag="text-generation",
                         tags=TAGS, model_name=name, eval_results=eval_results or None)
    versions = {d["source"]: d.get("revision") or d.get("version") or d.get("fingerprint", "")[:12]
                for d in run["datasets"]}
    shown = [{"name": ds, "hub": True, "version": versions.get(ds)} for ds in hub_datasets]
    env = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    body = env.from_string(card_template()).render(
        name=name, repo_id=repo_id, base_model=base, base_revision=run.get("base_model_revision"),
        lora=run.get("lora"), datasets=shown, hp=run["hyperparameters"], global_step=run.get("global_step"),
        train_tokens=run.get("train_tokens"), final_train_loss=_round(run.get("final_train_loss")),
        final_eval_loss=_round(run.get("final_eval_loss")), versions=run.get("versions", {}),
        rows_train=run.get("rows_used", {}).get("train"), rows_eval=run.get("rows_used", {}).get("eval"),
        too_long=sum((run.get("rows_too_long") or {}).values()), added_tokens=run.get("added_tokens") or [],
        mixture=_mixture(run),
        results=[{"task": r.dataset_config or r.dataset_name, "value": r.metric_value} for r in eval_results],
        results_metric=eval_results[0].metric_name if eval_results else "")
    text = f"---\n{data.to_yaml()}\n---\n\n{body}"
    validate_card(text)
    return text


def _round(value):
    return round(float(value), 4) if value is not None else None


def validate_card(text: str):
    """Parse with huggingface_hub's ModelCard (YAML, model-index -> EvalResults) and check the keys the Hub
    needs to list an adapter under its base model. (The Hub's own YAML check needs the network.)"""
    from huggingface_hub import ModelCard

    try:
        card = ModelCard(text, ignore_metadata_errors=False)
    except Exception as err:  # noqa: BLE001 - a card that does not parse
        raise CardError(f"the model card does not parse: {err}") from err
    meta = card.data.to_dict()
    problems = [f"no `{k}`" for k in REQUIRED if not meta.get(k)]
    if meta.get("library_name") not in (None, "peft"):
        problems.append(f"library_name is {meta['library_name']!r}, not 'peft'")
    if meta.get("language") and "ar" not in meta["language"]:
        problems.append("language does not include 'ar'")
    if problems:
        raise CardError("the model card is not valid: " + "; ".join(problems))
    return card


def write_card(run_dir: str | Path, repo_id: str, base_model: str | None = None,
               datasets: list[str] | None = None) -> Path:
    readme = Path(run_dir) / "README.md"
    readme.write_text(render_card(run_dir, repo_id, base_model, datasets), encoding="utf-8")
    return readme
