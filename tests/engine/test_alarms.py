"""Health alarms on synthetic metric sequences: each fires with its numbers, once per episode."""

from __future__ import annotations

import math

from grpo_studio.config import AlarmSettings
from grpo_studio.engine.alarms import HealthWatch

HEALTHY = {"loss": 0.01, "grad_norm": 0.5, "reward": 0.5, "frac_reward_zero_std": 0.25,
           "completions/clipped_ratio": 0.1, "entropy": 0.8}


def feed(watch: HealthWatch, steps: list[dict], first_step: int = 1) -> list:
    """All alarms raised while feeding `steps` (each a dict of metrics on top of HEALTHY)."""
    alarms = []
    for i, values in enumerate(steps):
        alarms += watch.observe(first_step + i, {**HEALTHY, **values})
    return alarms


def test_a_healthy_run_raises_nothing():
    watch = HealthWatch(AlarmSettings(reward_window=10))
    rising = [{"reward": 0.1 + 0.02 * i} for i in range(40)]
    assert feed(watch, rising) == []


def test_zero_spread_after_n_steps_once_per_episode():
    watch = HealthWatch(AlarmSettings(zero_spread_steps=3))
    alarms = feed(watch, [{"frac_reward_zero_std": 1.0, "reward": 0.0}] * 6)
    assert [(a.code, a.step) for a in alarms] == [("zero_spread", 3)]
    assert alarms[0].message == ("for 3 steps in a row, 100% of the groups gave every completion of a prompt the "
                                 "same reward (mean reward 0): their advantages are zero, so the model learns "
                                 "nothing from them.")
    assert "grpo-studio rewards-check" in alarms[0].advice and alarms[0].severity == "warning"
    # The spread comes back, then goes again: a new episode, a new alarm.
    alarms = feed(watch, [{"frac_reward_zero_std": 0.5}] + [{"frac_reward_zero_std": 1.0}] * 3, first_step=7)
    assert [(a.code, a.step) for a in alarms] == [("zero_spread", 10)]


def test_zero_spread_fraction_and_off():
    watch = HealthWatch(AlarmSettings(zero_spread_steps=2, zero_spread_fraction=0.75))
    assert [a.code for a in feed(watch, [{"frac_reward_zero_std": 0.8}] * 2)] == ["zero_spread"]
    assert feed(HealthWatch(AlarmSettings(zero_spread_steps=0)), [{"frac_reward_zero_std": 1.0}] * 20) == []


def test_truncated_completions():
    watch = HealthWatch(AlarmSettings(truncated_steps=2, truncated_fraction=0.5), max_completion_length=256)
    alarms = feed(watch, [{"completions/clipped_ratio": 0.9}, {"completions/clipped_ratio": 0.75}])
    assert len(alarms) == 1 and alarms[0].code == "truncated"
    assert alarms[0].message.startswith("75% of the completions were cut at grpo.max_completion_length (256 tokens), "
                                        "for 2 steps in a row")
    assert "grpo.max_completion_length" in alarms[0].advice


def test_non_finite_loss_or_grad_norm_is_an_error_alarm():
    watch = HealthWatch(AlarmSettings())
    alarms = feed(watch, [{}, {"grad_norm": math.nan}, {"grad_norm": math.nan, "loss": math.inf}, {}, {"loss": math.nan}])
    assert [(a.code, a.step, a.severity) for a in alarms] == [("non_finite", 2, "error"), ("non_finite", 5, "error")]
    assert alarms[0].message.startswith("at step 2 the gradient norm is nan: this update is broken")
    assert "learning_rate" in alarms[0].advice
    assert feed(HealthWatch(AlarmSettings(non_finite=False)), [{"loss": math.nan}]) == []


def test_reward_not_moving():
    watch = HealthWatch(AlarmSettings(reward_window=10, reward_min_change=0.01))
    flat = [{"reward": 0.3 + (0.001 if i % 2 else -0.001)} for i in range(15)]
    alarms = feed(watch, flat)
    assert [(a.code, a.step) for a in alarms] == [("reward_flat", 10)]
    assert alarms[0].message.startswith("the mean reward has not moved in 10 steps: 0.3 in the first half of that "
                                        "window, 0.3 in the second")
    assert feed(HealthWatch(AlarmSettings(reward_window=0)), flat) == []


def test_entropy_collapse_relative_to_the_start():
    watch = HealthWatch(AlarmSettings(entropy_ratio=0.1, entropy_steps=2))
    steps = [{"entropy": 1.0}] * 3 + [{"entropy": 0.5}, {"entropy": 0.05}, {"entropy": 0.04}, {"entropy": 0.03}]
    alarms = feed(watch, steps)
    assert [(a.code, a.step) for a in alarms] == [("entropy_collapse", 6)]
    assert alarms[0].message.startswith("the token entropy fell to 0.04, 4% of its 1 at the start")


def test_alarms_off():
    watch = HealthWatch(AlarmSettings(enabled=False, zero_spread_steps=1))
    assert feed(watch, [{"frac_reward_zero_std": 1.0, "loss": math.nan}]) == []


def test_alarm_events_travel_as_json():
    from grpo_studio.engine.events import decode_event, encode_event

    (alarm,) = feed(HealthWatch(AlarmSettings(zero_spread_steps=1)), [{"frac_reward_zero_std": 1.0}])
    back = decode_event(encode_event(alarm))
    assert back.kind == "alarm" and back.code == "zero_spread" and back.advice == alarm.advice
