"""rewards.on_error = "skip": a failed call scores None, is reported and counted; failures in a row stop."""

from __future__ import annotations

import pytest

from grpo_studio.engine.reward_guard import SkipFailures
from grpo_studio.engine.rewards import RewardError


class Flaky:
    """Fails on the calls whose number is in `failing` (1-based)."""

    __name__ = "flaky_reward"

    def __init__(self, failing: set[int]):
        self.failing, self.calls = failing, 0

    def __call__(self, prompts, completions, **kwargs):
        self.calls += 1
        if self.calls in self.failing:
            raise RewardError(f"flaky_reward raised RuntimeError: call {self.calls}", file="r.py", line=3,
                              function="flaky_reward")
        return [1.0] * len(completions)


def test_failures_are_skipped_reported_and_counted_until_too_many_in_a_row():
    reports, metrics = [], []
    guard = SkipFailures(Flaky({2, 4, 5}), max_consecutive=3, report=lambda exc, n: reports.append((str(exc), n)))

    def call():
        return guard(["p", "p"], ["a", "b"], log_metric=lambda k, v: metrics.append((k, v)))

    assert call() == [1.0, 1.0]
    assert call() == [None, None]
    assert call() == [1.0, 1.0]  # a success resets the count in a row
    assert call() == [None, None] and call() == [None, None]
    assert reports == [("r.py:3: flaky_reward raised RuntimeError: call 2", 1),
                       ("r.py:3: flaky_reward raised RuntimeError: call 4", 1),
                       ("r.py:3: flaky_reward raised RuntimeError: call 5", 2)]
    assert [v for _, v in metrics] == [0.0, 1.0, 1.0, 2.0, 3.0]
    assert {k for k, _ in metrics} == {"rewards/flaky_reward/failures"}


def test_the_bound_stops_the_run_with_the_last_error():
    guard = SkipFailures(Flaky({1, 2}), max_consecutive=2, report=lambda exc, n: None)
    assert guard(["p"], ["a"]) == [None]
    with pytest.raises(RewardError) as info:
        guard(["p"], ["a"])
    assert str(info.value) == ("r.py:3: flaky_reward raised RuntimeError: call 2 (2 failed calls in a row: "
                               "rewards.max_consecutive_failures = 2)")
    assert info.value.function == "flaky_reward"
