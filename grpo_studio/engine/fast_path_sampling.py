"""Which of GRPOConfig's settings the fast generator can honour: an allowlist, not a denylist.

The fast path (engine/fast_generation.py) samples the way TRL's `generate` does only for the
settings it implements. A sampling knob it does not know (`min_p` today, whatever a future GRPOConfig
adds tomorrow) would be silently ignored, and training would sample from another distribution than
the one configured. So every GRPOConfig field is, to the fast path, one of:

- implemented (`IMPLEMENTED`): temperature, top-p, top-k, the length limit, two generation kwargs;
- known to leave sampling alone (`NOT_SAMPLING`, and all of transformers' `TrainingArguments`);
- only in effect behind a switch that blocks the fast path anyway (`vllm_*` behind `use_vllm`);
- anything else: when it differs from its default, the fast path steps aside and says which field.
"""

from __future__ import annotations

import dataclasses
from typing import Any

IMPLEMENTED = {"temperature", "top_p", "top_k", "max_completion_length", "generation_kwargs"}
IMPLEMENTED_GENERATION_KWARGS = {"min_new_tokens", "suppress_tokens"}

# GRPOConfig's own fields that do not change how one completion is sampled from the policy: the loss,
# rewards, batching, reference model, logging, prompt formatting (prompts arrive as token ids).
NOT_SAMPLING = {
    "model_init_kwargs", "trust_remote_code", "router_aux_loss_coef", "disable_dropout", "num_generations",
    "num_generations_eval", "ds3_gather_for_generation", "shuffle_dataset", "pad_to_multiple_of",
    "generation_batch_size", "steps_per_generation", "chat_template_kwargs", "beta", "num_iterations", "epsilon",
    "delta", "epsilon_high", "sapo_temperature_neg", "sapo_temperature_pos", "vespo_k_pos", "vespo_lambda_pos",
    "vespo_k_neg", "vespo_lambda_neg", "importance_sampling_level", "reward_weights", "multi_objective_aggregation",
    "scale_rewards", "loss_type", "mask_truncated_completions", "sync_ref_model", "ref_model_mixup_alpha",
    "ref_model_sync_steps", "top_entropy_quantile", "entropy_coef", "use_adaptive_entropy", "entropy_coef_min",
    "entropy_coef_max", "entropy_coef_delta", "entropy_target", "off_policy_mask_threshold",
    "use_bias_correction_kl", "log_completions", "log_multimodal", "num_completions_to_print", "log_unique_prompts",
    "log_completions_hub_repo",
}
# Fields that only take effect when a switch is on that keeps the fast path off by itself.
BEHIND_SWITCH = {"vllm_": "use_vllm", "transformers_continuous_batching_config": "use_transformers_continuous_batching"}


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def _behind_switch(name: str) -> bool:
    return any(name.startswith(prefix) for prefix in BEHIND_SWITCH)


def sampling_blocker(args: Any) -> str | None:
    """Why the fast path cannot sample as this GRPOConfig asks (naming the field), or None."""
    from transformers import TrainingArguments

    training_fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    for field in dataclasses.fields(args):
        name = field.name
        if name in IMPLEMENTED or name in NOT_SAMPLING or name in training_fields or _behind_switch(name):
            continue
        value = getattr(args, name)
        if value != _default(field):
            return f"{name} = {value!r} is not implemented by the fast path"
    unsupported = set(args.generation_kwargs or {}) - IMPLEMENTED_GENERATION_KWARGS
    if unsupported:
        return f"generation_kwargs {sorted(unsupported)} are not implemented by the fast path"
    return None
