"""GRPO Studio: improve a language model's reasoning with GRPO, point and click or headless."""

__version__ = "0.1.0"
