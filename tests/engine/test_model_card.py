"""Every export carries a real model card: what the base model is, what was trained and how, the
held-out result when one was measured, the exact run file, and how to load it."""

from __future__ import annotations

import tiny

from grpo_studio.engine.eval_compare import compare_run
from grpo_studio.engine.export import export_adapter, export_merged
from grpo_studio.engine.model_card import card_metadata


def test_adapter_and_merged_cards(run_file, tmp_path):
    run_dir = tiny.make_run_folder(run_file, tmp_path / "run")
    before = export_adapter(run_dir, tmp_path / "adapter-before") / "README.md"
    assert "## Held-out result\n\nNot measured yet" in before.read_text()

    comparison = compare_run(run_dir, limit=3, overrides=["rewards.isolate=false"])
    card = (export_adapter(run_dir, tmp_path / "adapter") / "README.md").read_text()
    assert "More Information Needed" not in card  # PEFT's empty template is gone
    assert card_metadata(card) == {"library_name": "peft", "pipeline_tag": "text-generation"}
    assert "- grpo\n" in card and "- lora\n" in card
    assert f"This is a LoRA adapter (PEFT format) for `{tiny_model_path(run_dir)}`. The adapter was trained" in card
    assert "- **LoRA**: rank 4, alpha 8, dropout 0, on all-linear" in card
    assert "- **Rewards** (weighted sum): every function ending in `_reward` in rewards.py" in card
    assert "8 completions x 1 accumulation steps, learning rate 0.001" in card and "4 completions per prompt" in card
    b, t = comparison.base, comparison.tuned
    assert f"| accuracy | {b.accuracy:.1%} ({b.correct}/3) | {t.accuracy:.1%} ({t.correct}/3) |" in card
    assert "Greedy decoding on 3 held-out prompts (the first 3)" in card
    assert (run_dir / "config.toml").read_text().strip() in card  # the exact run file
    assert "def correctness_reward" in card  # and its reward functions
    assert "AutoPeftModelForCausalLM.from_pretrained" in card and "base_model_name_or_path" in card

    merged = (export_merged(run_dir, tmp_path / "merged", dtype="float32") / "README.md").read_text()
    assert card_metadata(merged)["library_name"] == "transformers"
    assert "AutoModelForCausalLM.from_pretrained" in merged and "the LoRA adapter merged into" in merged


def tiny_model_path(run_dir):
    from grpo_studio.config import load_run

    return load_run(run_dir / "config.toml").config.model.name
