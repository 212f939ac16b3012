"""The names of the logged training metrics, said once.

TRL's GRPOTrainer logs a step's metrics under its own names; GRPO Studio adds a few under `perf/`.
The trainer, the health alarms, the terminal report and the window's plots all take the names from
here, and `tests/engine/test_trl_contract.py` trains one real step and checks that the installed
TRL still logs every name in `TRL_METRICS`: a rename in TRL fails that test instead of leaving a plot
empty and an alarm silent. Plain strings, no imports: the window reads them without loading TRL.
"""

from __future__ import annotations

# ---- logged by TRL (GRPOTrainer and transformers' Trainer), every logged step -------------------
REWARD = "reward"  # mean weighted total reward of the step's completions
REWARD_STD = "reward_std"
ZERO_STD_FRACTION = "frac_reward_zero_std"  # share of groups whose completions all scored the same
LOSS = "loss"
GRAD_NORM = "grad_norm"
LEARNING_RATE = "learning_rate"
ENTROPY = "entropy"
MEAN_LENGTH = "completions/mean_length"  # completion tokens
MAX_LENGTH = "completions/max_length"
CLIPPED_RATIO = "completions/clipped_ratio"  # share of completions cut at max_completion_length
KL = "kl"  # only when grpo.beta > 0

# One metric per reward function: rewards/<function>/mean (TRL) and rewards/<function>/failures (ours,
# with rewards.on_error = "skip", logged through TRL's log_metric).
REWARD_PREFIX = "rewards/"
MEAN_SUFFIX = "/mean"


def reward_mean(function: str) -> str:
    """
    >>> reward_mean("correctness_reward")
    'rewards/correctness_reward/mean'
    """
    return f"{REWARD_PREFIX}{function}{MEAN_SUFFIX}"


def reward_failures(function: str) -> str:
    return f"{REWARD_PREFIX}{function}/failures"


# What the contract test requires of one training step (KL: with beta > 0; per-function means too).
TRL_METRICS = (REWARD, REWARD_STD, ZERO_STD_FRACTION, LOSS, GRAD_NORM, LEARNING_RATE, ENTROPY, MEAN_LENGTH,
               MAX_LENGTH, CLIPPED_RATIO, KL)

# ---- GRPO Studio's own ----------------------------------------------------------------------------
STEP_SECONDS = "perf/step_seconds"
TOKENS_PER_SECOND = "perf/tokens_per_second"
GPU_MEMORY_GIB = "perf/gpu_memory_gib"  # peak allocated, only on a GPU
GENERATION_SECONDS = "perf/generation_seconds"
