"""The one place that knows the libraries' names: our run file onto GRPOConfig, LoraConfig and
BitsAndBytesConfig. When TRL, PEFT or transformers rename something, only this module changes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from grpo_studio.config import OPTIMIZER_NAMES, ConfigProblem, QuantizationSettings, RunConfig


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


def grpo_config(cfg: RunConfig, output_dir: Path, placement: Any, reward_weights: list[float]) -> Any:
    """TRL's GRPOConfig for this run."""
    from trl import GRPOConfig

    g = cfg.grpo
    on_gpu = placement.device == "cuda"
    kwargs: dict[str, Any] = dict(
        output_dir=str(output_dir),
        # batch and schedule
        per_device_train_batch_size=g.per_device_train_batch_size,
        gradient_accumulation_steps=g.gradient_accumulation_steps,
        generation_batch_size=g.generation_batch_size or None,
        learning_rate=g.learning_rate,
        lr_scheduler_type=g.lr_scheduler_type,
        warmup_steps=g.warmup_ratio,  # transformers 5 reads a float below 1 as a ratio
        weight_decay=g.weight_decay,
        max_grad_norm=g.max_grad_norm,
        max_steps=g.max_steps,
        optim=optimizer_name(g.optimizer, on_gpu),
        seed=g.seed,
        # GRPO
        num_generations=g.num_generations,
        max_completion_length=g.max_completion_length,
        beta=g.beta,
        epsilon=g.epsilon,
        epsilon_high=g.epsilon_high or None,
        loss_type=g.loss_type,
        scale_rewards=g.scale_rewards,
        temperature=g.temperature,
        top_p=g.top_p,
        top_k=g.top_k,
        num_iterations=g.num_iterations,
        mask_truncated_completions=g.mask_truncated_completions,
        reward_weights=reward_weights,
        # precision and memory
        use_cpu=not on_gpu,
        bf16=on_gpu and placement.dtype == "bfloat16",
        fp16=on_gpu and placement.dtype == "float16",
        # "auto" is resolved before this (training_layout.py); left unresolved it means on.
        gradient_checkpointing=cfg.lora.gradient_checkpointing != "off",
        gradient_checkpointing_kwargs={"use_reentrant": False},
        trust_remote_code=cfg.model.trust_remote_code,
        # logging and checkpoints: the run store and our events do the reporting
        logging_steps=cfg.run.logging_steps,
        logging_nan_inf_filter=False,  # a NaN loss must reach the health alarms, not be hidden from the log
        save_strategy="steps",
        save_steps=cfg.run.save_steps,
        save_total_limit=cfg.run.save_total_limit or None,
        # trackers (run.report_to) get every metric the window shows, under transformers' "train/" prefix
        report_to=list(cfg.run.report_to),
        run_name=output_dir.parent.name,  # the run folder's name
        project="grpo-studio",
        disable_tqdm=True,
        log_completions=False,
        remove_unused_columns=False,
        dataloader_num_workers=0,
    )
    kwargs.update(g.extra)
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
