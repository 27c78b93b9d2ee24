"""Synthetic Arabic multi-turn dialogues: a topic x country grid prompted into an Arabic LLM, parsed, validated,
filtered and written as a Hub dataset; perplexity, RAVEN novelty and two-rater human evaluation of models
fine-tuned on it. One module per job:

grid        the topic and country axes (YAML data under ``grid/``) and the (topic, country, seed) cells
prompt      the versioned generation prompt (sandboxed Jinja, ``prompts/``)
formats     a model's own prompt format around that prompt (Jais, a chat template, plain)
backends    generators behind one interface: transformers, vLLM, any OpenAI-compatible endpoint
parse       model output -> messages; validation (alternating roles, turn count, non-empty)
filters     Arabic-script ratio per turn, length bounds, exact and near-duplicate (MinHash) conversations
steps       the datatrove steps that generate, check and write conversations
perplexity  sliding-window perplexity and bits-per-byte on held-out conversations
ngram_index hashed, sharded, streaming n-gram index of a training corpus
raven       RAVEN n-gram novelty (McCoy et al. 2021)
human_eval  rating sheets for two raters (CSV, Argilla) and their agreement
cli         `arabic-prompts dialogues ...`
"""
