"""The plan of one GRPO step on this GPU: which generator samples (generation_mode.py) and how the
training half is laid out (training_layout.py), both chosen from the VRAM estimate (vram.py) and what
this process may use of the card.

The generation mode is chosen first, with the training layout as the settings write it; the layout
then takes what memory is left. The two phases never hold their buffers at once, so a larger layout
costs nothing while the training phase stays under the generation phase's peak.
Nothing here imports torch: the window makes the same plan for its memory card.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from grpo_studio.engine.generation_mode import ModeChoice, choose_mode
from grpo_studio.engine.training_layout import Layout, choose_layout


@dataclass
class StepPlan:
    mode: ModeChoice
    layout: Layout
    config: Any  # the run config with the layout in place: what the trainer is built from

    def lines(self) -> list[str]:
        return [self.mode.describe(), self.layout.describe()]


def estimated_peak(model_config: dict[str, Any] | None, config: Any, mode: str, *, world_size: int = 1,
                   merged_layers: int = 0) -> float | None:
    """The estimated peak in bytes of `config` with generation `mode` (None: no config.json, or one
    without the usual decoder fields). The plan, and the trainer's later choices, measure modes by it."""
    from grpo_studio.engine.vram import estimate_for_config

    if model_config is None:
        return None
    try:
        return estimate_for_config(model_config, config, generation_mode=mode, world_size=world_size,
                                   merged_layers=merged_layers).total
    except (KeyError, TypeError, ValueError):
        return None


def plan_step(cfg: Any, model_config: dict[str, Any] | None, capacity_bytes: float | None, *,
              on_gpu: bool = True, world_size: int = 1) -> StepPlan:
    g = cfg.grpo
    as_set = Layout(g.per_device_train_batch_size, g.gradient_accumulation_steps,
                    cfg.lora.gradient_checkpointing == "on" or (cfg.lora.gradient_checkpointing == "auto" and on_gpu))
    frugal = as_set.apply(cfg)
    mode = choose_mode(cfg, model_config, lambda m, merged_layers=0: estimated_peak(
        model_config, frugal, m, world_size=world_size, merged_layers=merged_layers), capacity_bytes, on_gpu=on_gpu)
    layout = choose_layout(cfg, lambda config: estimated_peak(model_config, config, mode.mode, world_size=world_size,
                                                              merged_layers=mode.merged_layers),
                           capacity_bytes, on_gpu=on_gpu, linear_params=_work_limited_params(model_config, on_gpu))
    return StepPlan(mode, layout, layout.apply(cfg))


def _work_limited_params(model_config: dict[str, Any] | None, on_gpu: bool) -> int | None:
    """The model's linear-layer parameters where training_layout's work limit applies; None (no limit:
    any merge that fits) where training packs each prompt once for its completions. Packed, fewer
    micro-steps kept paying past the limit: at 7B 4-bit, 32 x 1 trained in 0.77 s against 1.03 s for
    16 x 2 (H200, the ninth session's call Y, quantized generation, both in one bench call)."""
    from grpo_studio.engine.vram import packs_prompts

    if model_config is not None and on_gpu and packs_prompts(model_config):
        return None
    return _linear_params(model_config)


def _linear_params(model_config: dict[str, Any] | None) -> int | None:
    from grpo_studio.engine.vram import Shape

    try:
        return Shape.from_config(model_config).linear_params if model_config is not None else None
    except (KeyError, TypeError, ValueError):
        return None
