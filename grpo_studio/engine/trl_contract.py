"""What GRPO Studio relies on in TRL beyond its documented API, and the check that the installed
TRL still has it.

`engine/trainer.py` is the one module that touches TRL's and transformers' internals: its
`StudioGRPOTrainer` overrides private `GRPOTrainer` / `Trainer` methods (generation, scoring, and the
checkpoint save it stages), overrides `save_model`, and reads attributes that TRL does not document. Each of them is listed here. The trainer checks the
list when it is built (`check_trainer_class` before, `check_trainer` after `GRPOTrainer.__init__`),
so a TRL that changed them fails at once with a message that names what changed, not with a
`TypeError` in the middle of a run. `tests/engine/test_trl_contract.py` checks the same list, that
the trainer reads nothing that is missing from it, and, on one real training step, the metric names
(`metric_names.TRL_METRICS`) and reward-function arguments that TRL produces.

TRL is pinned in pyproject.toml to the releases this contract was checked on (`SUPPORTED_TRL`);
the README ("Moving the TRL pin") says how to move it.
"""

from __future__ import annotations

import inspect
from typing import Any

SUPPORTED_TRL = ">=1.16,<1.17"  # keep equal to the pin in pyproject.toml

# Private methods: name -> the parameters we pass or override (in order, without self).
PRIVATE_METHODS: dict[str, tuple[str, ...]] = {
    "_generate_single_turn": ("prompt_ids", "images", "multimodal_fields", "num_generations", "has_tool_images"),
    "_generate_and_score_completions": ("inputs",),
    "_save_checkpoint": ("model", "trial"),  # transformers' Trainer: staged checkpoints; one after a reward failure
    "_get_output_dir": ("trial",),  # transformers' Trainer: where _save_checkpoint writes (the staging folder)
    # the training forward, packed without padding (packed_logps.py, which also calls the model with TRL's
    # fused LM head: `fused_lm_head=True, shift_labels=...`)
    "_get_per_token_logps_and_entropies": (
        "model", "input_ids", "attention_mask", "logits_to_keep", "batch_size", "compute_entropy",
        "compute_aux_loss", "pixel_values", "image_grid_thw", "num_images", "pixel_attention_mask",
        "spatial_shapes", "num_tiles", "image_sizes", "token_type_ids", "mm_token_type_ids", "image_position_ids"),
}
# Public Trainer methods that trainer.py overrides (so their parameters matter too); other modules may call them.
OVERRIDDEN_PUBLIC_METHODS: dict[str, tuple[str, ...]] = {
    "save_model": ("output_dir", "_internal_call"),  # a fault-injection point inside every model save
}

# Attributes of a built GRPOTrainer that trainer.py reads (private, undocumented or feature flags).
TRAINER_ATTRIBUTES: tuple[str, ...] = (
    "_metrics",  # {"train"|"eval": {name: [values]}}: where TRL collects the logged metrics
    "_logs",  # the newest generation batch: prompt, completion, rewards[name], advantages
    "_tokenizer",
    "eos_token_ids", "reward_func_names", "reward_weights", "num_generations", "max_completion_length",
    "temperature", "top_p", "top_k",
    "use_vllm", "use_transformers_continuous_batching", "tools", "environment_factories",
    "is_deepspeed_enabled", "is_fsdp_enabled",
    # the documented Trainer API, listed so the check below covers every name trainer.py reads
    "accelerator", "args", "model", "model_wrapped", "state",
)
LOGS_KEYS = ("prompt", "completion", "rewards", "advantages")  # keys of `_logs` read per sample

# The place to go when the check fails.
ADVICE = (f"GRPO Studio supports TRL {SUPPORTED_TRL}: install a supported TRL (pip install 'trl{SUPPORTED_TRL}'), "
          "or adapt grpo_studio/engine/trainer.py and move the pin (README: Moving the TRL pin).")


class TrlContractError(RuntimeError):
    """The installed TRL lacks something GRPO Studio uses."""


def trl_version() -> str:
    import importlib.metadata as md

    try:
        return md.version("trl")
    except md.PackageNotFoundError:
        return "(not installed)"


def class_problems(trainer_class: Any = None) -> list[str]:
    """The private methods GRPO Studio overrides or calls that are missing or changed their parameters."""
    if trainer_class is None:
        from trl import GRPOTrainer as trainer_class
    problems = []
    for name, wanted in {**PRIVATE_METHODS, **OVERRIDDEN_PUBLIC_METHODS}.items():
        method = getattr(trainer_class, name, None)
        if method is None:
            problems.append(f"GRPOTrainer.{name} no longer exists")
            continue
        params = tuple(p for p in inspect.signature(method).parameters if p != "self")
        if params != wanted:
            problems.append(f"GRPOTrainer.{name}({', '.join(params)}) no longer takes ({', '.join(wanted)})")
    return problems


def instance_problems(trainer: Any) -> list[str]:
    """The attributes trainer.py reads that a built trainer lacks."""
    problems = [f"GRPOTrainer has no attribute {name!r}" for name in TRAINER_ATTRIBUTES if not hasattr(trainer, name)]
    logs = getattr(trainer, "_logs", None)
    if logs is not None:
        problems += [f"GRPOTrainer._logs has no key {key!r}" for key in LOGS_KEYS if key not in logs]
    return problems


def _raise(problems: list[str]) -> None:
    if problems:
        raise TrlContractError(f"TRL {trl_version()} is not compatible: " + "; ".join(problems) + ". " + ADVICE)


def check_trainer_class(trainer_class: Any = None) -> None:
    _raise(class_problems(trainer_class))


def check_trainer(trainer: Any) -> None:
    _raise(instance_problems(trainer))
