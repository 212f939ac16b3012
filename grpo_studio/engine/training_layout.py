"""How the training half of a GRPO step is laid out on the GPU: micro-batch size and gradient checkpointing.

Measured on one H200 (Qwen2.5-1.5B shape, LoRA r=16 on every projection, 32 completions of 384
tokens per step; `grpo-studio bench`): the training half is bound by kernel launches, not by
arithmetic (258k kernels in one step, the GPU busy 42% of it). Fewer, larger micro-steps and no
recomputation cut the launches: 8 completions x 4 micro-steps with checkpointing took ~1.5 s; 32 x 1
with checkpointing 0.50 s; 8 x 4 without 0.76 s. Both cost memory, so they are chosen only when the
estimated peak fits this process's share of the card:

- `lora.gradient_checkpointing = "auto"`: off when it fits, else on.
- `grpo.auto_micro_batch = true`: merge micro-steps (per_device_train_batch_size x k, accumulation / k)
  when it fits, up to a micro-step of MERGE_WORK_LIMIT work, and further where that costs no memory:
  where the generation phase sets the run's peak (a generator holding merged layers), a larger
  training phase under it is free, and every micro-step saved still saves its launches.
  The gradients are the same: the grpo, dr_grpo, dapo and cispo losses average over the
  whole generation batch however it is split (TRL normalizes by the generation batch's size or token
  count); other loss types keep the micro-batch as set.

On the CPU both stay as set ("auto" checkpointing = off): a CPU run stays bit-identical to TRL's.
Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from grpo_studio.engine.generation_mode import GIB, HEADROOM

# Loss types whose gradient does not depend on how a generation batch is split into micro-steps.
SPLIT_INVARIANT_LOSSES = ("grpo", "dr_grpo", "dapo", "cispo")
# Relative cost of recomputing activations, in a launch-bound training half (measured: ~2x, see above).
CHECKPOINTING_COST = 2.0
# Merging stops where a micro-step already keeps the GPU busy: past this much work (completions x
# tokens each x linear-layer parameters) the launches are a small part of it. Measured on an H200
# with `grpo-studio bench`: at 1.5B, 32 completions of 384 tokens (1.6e13) train 3x faster than
# 8 x 4 micro-steps (the module doc); at 7B 4-bit, 32 x 1 (8e13) trained 4% faster than 16 x 2
# (4e13; 1.24 vs 1.29 s) for 2.8 GiB more memory (11.3 vs 8.6 GiB peak). Past the limit a merge is
# taken only at no cost in memory. The limit is for micro-steps on TRL's padded grid: packed
# (packed_logps.py, each prompt once), the same 32 x 1 trained in 0.79 s against 1.19 s for 16 x 2,
# and 0.77 against 1.03 s (for 9.5 against 7.8 GiB) in another call, so step_plan passes no
# `linear_params` (no limit) where training packs.
MERGE_WORK_LIMIT = 5e13


@dataclass(frozen=True)
class Layout:
    micro_batch: int
    accumulation: int
    checkpointing: bool
    reason: str = ""

    def summary(self) -> str:
        steps = "1 micro-step" if self.accumulation == 1 else f"{self.accumulation} micro-steps"
        gc = "on" if self.checkpointing else "off"
        return f"{self.micro_batch} completions x {steps}, gradient checkpointing {gc}"

    def describe(self) -> str:
        return f"training: {self.summary()} ({self.reason})"

    def apply(self, cfg: Any) -> Any:
        """A copy of the run config with this layout in place (what the trainer is built from)."""
        out = cfg.model_copy(deep=True)
        out.grpo.per_device_train_batch_size = self.micro_batch
        out.grpo.gradient_accumulation_steps = self.accumulation
        out.lora.gradient_checkpointing = "on" if self.checkpointing else "off"
        return out


def candidates(cfg: Any, on_gpu: bool, linear_params: int | None = None) -> list[tuple[int, int, bool]]:
    """(micro-batch, accumulation, checkpointing) layouts allowed by the settings, fastest first.
    With the model's `linear_params`, no merge beyond MERGE_WORK_LIMIT (it would buy memory use,
    not speed)."""
    g, setting = cfg.grpo, cfg.lora.gradient_checkpointing
    merges = [1]
    mergeable = (on_gpu and g.auto_micro_batch and g.loss_type in SPLIT_INVARIANT_LOSSES
                 and g.generation_batch_size in (0, g.per_device_train_batch_size * g.gradient_accumulation_steps))
    if mergeable:
        tokens = cfg.data.max_prompt_length + g.max_completion_length
        merges = [k for k in range(g.gradient_accumulation_steps, 0, -1) if g.gradient_accumulation_steps % k == 0
                  and (k == 1 or linear_params is None
                       or g.per_device_train_batch_size * k * tokens * linear_params <= MERGE_WORK_LIMIT)]
    if setting == "auto":
        checkpointing = [False] if not on_gpu else [False, True]
    else:
        checkpointing = [setting == "on"]
    layouts = [(g.per_device_train_batch_size * k, g.gradient_accumulation_steps // k, gc)
               for k in merges for gc in checkpointing]
    # Launches scale with the number of micro-steps; recomputation roughly doubles them.
    return sorted(layouts, key=lambda lay: lay[1] * (CHECKPOINTING_COST if lay[2] else 1.0))


def choose_layout(cfg: Any, peak_bytes: Callable[[Any], float | None], capacity_bytes: float | None,
                  *, on_gpu: bool = True, linear_params: int | None = None) -> Layout:
    """The fastest allowed layout whose estimated peak (`peak_bytes(config with the layout)`) fits
    `capacity_bytes`; without a known capacity, the settings as written (checkpointing on for auto)."""
    options = candidates(cfg, on_gpu, linear_params)
    g = cfg.grpo
    as_set = (g.per_device_train_batch_size, g.gradient_accumulation_steps)
    if not on_gpu:
        micro, accum, gc = options[0]
        return Layout(micro, accum, gc, "CPU: as set")
    if capacity_bytes is None:
        gc = cfg.lora.gradient_checkpointing != "off"
        return Layout(*as_set, gc, "the card's free memory is not known: as set")
    budget = HEADROOM * capacity_bytes
    for micro, accum, gc in options:
        trial = Layout(micro, accum, gc)
        peak = peak_bytes(trial.apply(cfg))
        if peak is not None and peak <= budget:
            return _merged_further(cfg, trial, peak, peak_bytes, on_gpu) or \
                Layout(micro, accum, gc, f"estimated peak {peak / GIB:.1f} GiB of {capacity_bytes / GIB:.1f} GiB")
    # Nothing fits by the estimate: the most frugal layout allowed, as set (the run may still fit).
    frugal = min(options, key=lambda lay: (not lay[2], lay[0]))
    return Layout(*frugal, "nothing fits by the estimate; the most frugal layout")


def _merged_further(cfg: Any, chosen: Layout, peak: float, peak_bytes: Callable[[Any], float | None],
                    on_gpu: bool) -> Layout | None:
    """A layout with fewer micro-steps than `chosen`, past MERGE_WORK_LIMIT, whose estimated peak is no
    higher than `chosen`'s (the generation phase sets it): the fastest such, or None."""
    for micro, accum, gc in candidates(cfg, on_gpu):  # every merge, fastest first
        if accum >= chosen.accumulation or gc != chosen.checkpointing:
            continue
        trial_peak = peak_bytes(Layout(micro, accum, gc).apply(cfg))
        if trial_peak is not None and trial_peak <= peak:
            return Layout(micro, accum, gc, f"estimated peak {peak / GIB:.1f} GiB, set by generation: "
                                            "fewer micro-steps cost no memory")
    return None
