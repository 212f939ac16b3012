"""Our run file onto the libraries' configs: GRPOConfig, LoraConfig and BitsAndBytesConfig.

Which GRPOConfig field a setting sets is a fact of the setting (`trainer_field` in
config/settings.py, which also makes `grpo.extra` refuse it); this module turns values into what TRL
expects and adds the fields GRPO Studio fixes. When TRL, PEFT or transformers rename something, the
setting's fact or this module changes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from grpo_studio.config import (
    OPTIMIZER_NAMES,
    ConfigProblem,
    QuantizationSettings,
    RewardFunction,
    RunConfig,
    all_field_specs,
    field_specs,
    get_value,
)


def bnb_config(q: QuantizationSettings, placement: Any) -> Any:
    import torch
    from transformers import BitsAndBytesConfig

    if q.load_in == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = placement.dtype if q.compute_dtype == "auto" else q.compute_dtype
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=q.quant_type,
        bnb_4bit_use_double_quant=q.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, compute),
    )


def lora_config(cfg: RunConfig) -> Any:
    """PEFT LoraConfig, or None when LoRA is off (full fine-tuning)."""
    if not cfg.lora.enabled:
        return None
    from peft import LoraConfig

    lo = cfg.lora
    return LoraConfig(
        r=lo.r,
        lora_alpha=lo.alpha,
        lora_dropout=lo.dropout,
        target_modules=lo.target_modules,
        use_rslora=lo.use_rslora,
        modules_to_save=lo.modules_to_save or None,
        bias="none",
        task_type="CAUSAL_LM",
    )


def optimizer_name(choice: str, on_gpu: bool) -> str:
    """transformers' optimizer name; plain AdamW runs as the fused kernel on a GPU (same algorithm,
    one launch per step instead of several per parameter tensor)."""
    if choice == "adamw_torch" and on_gpu:
        return "adamw_torch_fused"
    return OPTIMIZER_NAMES[choice]


def grpo_trainer_fields() -> set[str]:
    from trl import GRPOConfig

    return {f.name for f in dataclasses.fields(GRPOConfig)}


def check_extra(cfg: RunConfig) -> list[ConfigProblem]:
    """Keys of grpo.extra that GRPOConfig does not have (imports TRL, so only when extra is set)."""
    if not cfg.grpo.extra:
        return []
    known = grpo_trainer_fields()
    return [
        ConfigProblem(f"grpo.extra.{key}", "not a field of TRL's GRPOConfig")
        for key in cfg.grpo.extra
        if key not in known
    ]


# How a setting's value becomes its GRPOConfig field's value, where it is not the value itself.
_TO_TRAINER: dict[str, Callable[[Any, "_Context"], Any]] = {
    "grpo.generation_batch_size": lambda v, ctx: v or None,  # 0 = one optimizer step's worth
    "grpo.epsilon_high": lambda v, ctx: v or None,  # 0 = same as epsilon
    "grpo.warmup_ratio": lambda v, ctx: v,  # into warmup_steps: transformers 5 reads a float below 1 as a ratio
    "grpo.optimizer": lambda v, ctx: optimizer_name(v, ctx.on_gpu),
    # "auto" is resolved before this (training_layout.py); left unresolved it means on.
    "lora.gradient_checkpointing": lambda v, ctx: v != "off",
    "run.output_dir": lambda v, ctx: str(ctx.output_dir),  # the run folder's checkpoints/
    "run.save_total_limit": lambda v, ctx: v or None,  # 0 keeps all
    "rewards.functions[].weight": lambda v, ctx: ctx.reward_weights,  # one per reward, files' functions too
}


@dataclasses.dataclass
class _Context:
    output_dir: Path
    on_gpu: bool
    reward_weights: list[float]


def _studio_fields(placement: Any, ctx: _Context) -> dict[str, Any]:
    """The GRPOConfig fields GRPO Studio fixes (config.STUDIO_TRAINER_FIELDS says why each)."""
    on_gpu = placement.device == "cuda"
    return dict(
        run_name=ctx.output_dir.parent.name,  # trackers (run.report_to) name the run after its folder
        project="grpo-studio",
        use_cpu=not on_gpu,
        bf16=on_gpu and placement.dtype == "bfloat16",
        fp16=on_gpu and placement.dtype == "float16",
        gradient_checkpointing_kwargs={"use_reentrant": False},
        # logging and checkpoints: the run store and our events do the reporting
        logging_nan_inf_filter=False,  # a NaN loss must reach the health alarms, not be hidden from the log
        save_strategy="steps",
        disable_tqdm=True,
        log_completions=False,
        remove_unused_columns=False,
        dataloader_num_workers=0,
    )


def trainer_kwargs(cfg: RunConfig, output_dir: Path, placement: Any, reward_weights: list[float]) -> dict[str, Any]:
    """Every GRPOConfig field GRPO Studio sets: each setting's `trainer_field`, then the fixed ones."""
    ctx = _Context(Path(output_dir), placement.device == "cuda", list(reward_weights))
    kwargs: dict[str, Any] = {}
    for spec in [*all_field_specs(), *field_specs(RewardFunction, "rewards.functions[]")]:
        if spec.trainer_fields:
            value = get_value(cfg, spec.path) if "[]" not in spec.path else None
            kwargs[spec.trainer_fields[0]] = _TO_TRAINER.get(spec.path, lambda v, c: v)(value, ctx)
    kwargs.update(_studio_fields(placement, ctx))
    return kwargs


def grpo_config(cfg: RunConfig, output_dir: Path, placement: Any, reward_weights: list[float]) -> Any:
    """TRL's GRPOConfig for this run: what the studio sets, then grpo.extra (which may not touch those)."""
    from trl import GRPOConfig

    kwargs = trainer_kwargs(cfg, output_dir, placement, reward_weights)
    kwargs.update(cfg.grpo.extra)
    return GRPOConfig(**kwargs)


TRACKER_PACKAGES = {"tensorboard": "tensorboard", "trackio": "trackio", "wandb": "wandb"}


def check_trackers(cfg: RunConfig) -> list[ConfigProblem]:
    """Each tracker in run.report_to needs its package; say which pip command installs it."""
    import importlib.util

    return [
        ConfigProblem("run.report_to", f"{name!r} needs the {TRACKER_PACKAGES[name]} package: "
                                       f"pip install {TRACKER_PACKAGES[name]} (or remove it from run.report_to)")
        for name in cfg.run.report_to
        if importlib.util.find_spec(TRACKER_PACKAGES[name]) is None
    ]


def place_trackers(trainer: Any, report_to: list[str], run_dir: Path) -> None:
    """Put the trackers' callbacks after ours (Trainer's pop_callback / add_callback), so they receive
    the perf/* metrics ours adds to the logs; TensorBoard writes into RUN_DIR/tensorboard rather than
    under the checkpoints."""
    if not report_to:
        return
    from transformers.integrations import get_reporting_integration_callbacks

    for callback_class in get_reporting_integration_callbacks(list(report_to)):
        callback = trainer.pop_callback(callback_class)
        if callback is None:
            continue
        if callback_class.__name__ == "TensorBoardCallback" and getattr(callback, "logging_dir", None) is None:
            callback.logging_dir = str(run_dir / "tensorboard")
        trainer.add_callback(callback)
