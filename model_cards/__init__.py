"""The adapter model-card template (shipped in the wheel as ``builders.model_cards``)."""
