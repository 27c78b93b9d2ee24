"""arabic-prompts: build, publish, train on and evaluate Arabic instruction data."""

__version__ = "0.1.0"
