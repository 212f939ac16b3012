"""Each setting's facts live on the setting (config/settings.py); the side lists are derived from them.

The GRPOConfig fields the studio passes and the `grpo.extra` keys it refuses are one list; the
settings marked `memory` are exactly those that move the VRAM estimate.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from grpo_studio.config import (
    MANAGED_TRAINER_FIELDS,
    STUDIO_TRAINER_FIELDS,
    ConfigError,
    LoadedRun,
    RunConfig,
    all_field_specs,
    config_from_dict,
    local_path_settings,
    set_value,
)
from grpo_studio.engine.library_configs import trainer_kwargs

CPU = SimpleNamespace(device="cpu", dtype="float32")


def refusal(key: str) -> str:
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"grpo": {"extra": {key: 1}}})
    (problem,) = caught.value.problems
    assert problem.field == "grpo.extra"
    return problem.message


def test_what_the_studio_passes_to_grpoconfig_is_what_grpo_extra_refuses():
    from trl import GRPOConfig

    passed = set(trainer_kwargs(RunConfig(), Path("/tmp/out"), CPU, [1.0]))
    aliases = {alias for spec in all_field_specs() for alias in spec.trainer_fields[1:]}
    assert passed == set(MANAGED_TRAINER_FIELDS) - aliases, (
        "a GRPOConfig field the studio sets must be a setting's trainer_field or in STUDIO_TRAINER_FIELDS")
    fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    assert passed <= fields, f"not fields of TRL's GRPOConfig: {passed - fields}"
    for key, owner in MANAGED_TRAINER_FIELDS.items():
        message = refusal(key)
        assert message.startswith(f"{key!r} is ")
        assert (owner in message) if not owner.startswith("set by") else ("set by GRPO Studio" in message), message


@pytest.mark.parametrize("key", ["save_strategy", "remove_unused_columns", "logging_nan_inf_filter", "use_cpu",
                                 "bf16", "fp16", "gradient_checkpointing_kwargs", "disable_tqdm",
                                 "log_completions", "dataloader_num_workers", "run_name", "project"])
def test_fields_the_studio_fixes_cannot_be_overridden_through_grpo_extra(key):
    assert refusal(key) == f"{key!r} is set by GRPO Studio: {STUDIO_TRAINER_FIELDS[key]}"


def test_a_setting_names_its_grpoconfig_field_and_the_refusal_names_the_setting():
    assert refusal("learning_rate") == "'learning_rate' is a setting of its own: use grpo.learning_rate"
    assert refusal("warmup_ratio") == "'warmup_ratio' is a setting of its own: use grpo.warmup_ratio"
    assert refusal("reward_weights") == "'reward_weights' is a setting of its own: use rewards.functions[].weight"
    assert refusal("report_to") == "'report_to' is a setting of its own: use run.report_to"
    assert config_from_dict({"grpo": {"extra": {"repetition_penalty": 1.1}}}).grpo.extra == {"repetition_penalty": 1.1}


def test_path_and_title_facts():
    assert local_path_settings() == ["model.name", "data.source", "eval.source"]
    labels = {s.path: s.label for s in all_field_specs()}
    assert labels["grpo.beta"] == "KL coefficient (beta)" and labels["data.split"] == "Split"


def _another_value(spec):
    """A valid value other than the default (None: nothing to try)."""
    if spec.kind == "bool":
        return [not spec.default]
    if spec.kind == "choice":
        return [c for c in spec.choices if c != spec.default][:1]
    if spec.kind == "int":
        return [spec.default + 1, spec.default - 1]
    if spec.kind == "float":
        return [spec.default / 2 if spec.default else 0.05, spec.default + 0.05, spec.default - 0.05]
    if spec.kind == "str":
        return ["x"]
    if spec.kind == "list":
        return [["x"]]
    if spec.kind == "dict":
        return [{"repetition_penalty": 1.1}]
    return []


@pytest.mark.parametrize("checkpointing", ["auto", "off"])  # without recomputation, more settings count
def test_only_settings_marked_memory_move_the_vram_estimate(tmp_path, checkpointing):
    from grpo_studio.engine.vram import estimate_for_run

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({
        "model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
        "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True}))
    base = RunConfig()
    base.model.name = str(model)
    base.lora.gradient_checkpointing = checkpointing

    def parts(cfg: RunConfig) -> dict:
        return estimate_for_run(LoadedRun(cfg, None, tmp_path)).parts

    before = parts(base)
    moved = []
    for spec in all_field_specs():
        if spec.affects_memory or spec.kind == "table":
            continue
        for value in _another_value(spec):
            try:
                changed = set_value(base, spec.path, value)
            except ConfigError:
                continue
            if parts(changed) != before:
                moved.append(spec.path)
            break
    assert not moved, f"{moved} change the VRAM estimate: mark them memory=True in config/settings.py"
    assert parts(set_value(base, "grpo.max_completion_length", 512)) != before  # the test can see a change
