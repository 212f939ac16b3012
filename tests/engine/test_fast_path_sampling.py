"""The fast path samples only as configured: an allowlist of the GRPOConfig fields it implements.

Every other field that differs from its default (a sampling knob TRL has today, or one a future TRL
adds) keeps the fast path off, and the reason names the field. CPU only: the decision is made from
the config before any GPU work.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest

from grpo_studio.config import RunConfig
from grpo_studio.engine.fast_path_sampling import sampling_blocker
from grpo_studio.engine.library_configs import grpo_config

CPU = SimpleNamespace(device="cpu", dtype="float32")


def trl_args(tmp_path: Path, **grpo: object):
    cfg = RunConfig()
    for key, value in grpo.items():
        setattr(cfg.grpo, key, value)
    return grpo_config(cfg, tmp_path, CPU, [1.0])


def test_every_setting_of_the_run_file_is_served_by_the_fast_path(tmp_path):
    assert sampling_blocker(trl_args(tmp_path)) is None
    changed = trl_args(tmp_path, temperature=0.7, top_p=0.9, top_k=20, beta=0.04, epsilon_high=0.28,
                       loss_type="grpo", scale_rewards="batch", num_iterations=2, mask_truncated_completions=True,
                       max_completion_length=64, per_device_train_batch_size=4, num_generations=4,
                       generation_batch_size=16, extra={"generation_kwargs": {"min_new_tokens": 4}})
    assert sampling_blocker(changed) is None


@pytest.mark.parametrize("extra, named", [
    ({"min_p": 0.05}, "min_p = 0.05"),
    ({"repetition_penalty": 1.1}, "repetition_penalty = 1.1"),
    ({"cache_implementation": "static"}, "cache_implementation = 'static'"),
    ({"use_transformers_continuous_batching": True}, "use_transformers_continuous_batching = True"),
    ({"generation_kwargs": {"typical_p": 0.9}}, "generation_kwargs ['typical_p']"),
])
def test_a_sampling_knob_the_fast_path_lacks_keeps_it_off_and_is_named(tmp_path, extra, named):
    reason = sampling_blocker(trl_args(tmp_path, extra=extra))
    assert reason is not None and reason.startswith(named) and "not implemented by the fast path" in reason


def test_a_knob_a_future_trl_adds_keeps_the_fast_path_off(tmp_path):
    from trl import GRPOConfig

    @dataclasses.dataclass
    class FutureGRPOConfig(GRPOConfig):  # as if TRL added a sampling setting the fast path never heard of
        typical_p: float = 1.0

    common = dict(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to=[])
    assert sampling_blocker(FutureGRPOConfig(**common)) is None  # at its default it changes nothing
    assert sampling_blocker(FutureGRPOConfig(typical_p=0.9, **common)) == \
        "typical_p = 0.9 is not implemented by the fast path"


def test_the_trainer_asks_the_allowlist(tmp_path):
    """StudioGRPOTrainer._fast_path_blocker decides by the allowlist once the hardware allows the fast path."""
    from grpo_studio.engine.trainer import StudioGRPOTrainer

    def blocker(**extra: object) -> str | None:
        trainer = SimpleNamespace(
            fast_generation="on", accelerator=SimpleNamespace(device=SimpleNamespace(type="cuda")), use_vllm=False,
            use_transformers_continuous_batching=False, is_deepspeed_enabled=False, is_fsdp_enabled=False,
            tools=None, environment_factories=None, args=trl_args(tmp_path, extra=extra))
        return StudioGRPOTrainer._fast_path_blocker(trainer)

    assert blocker() is None
    assert blocker(min_p=0.1) == "min_p = 0.1 is not implemented by the fast path"
