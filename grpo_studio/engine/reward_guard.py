"""`rewards.on_error = "skip"`: a failing reward call scores None for its batch instead of ending the run.

A None reward leaves that function out of the completion's total (TRL skips NaN), so one flaky
verifier call costs one batch of that signal, not the run. Every failure is reported (a warning
with the function's FILE:LINE message) and counted in the metrics as `rewards/<name>/failures`
(failed calls so far). A function that keeps failing is a broken function, not a flaky one: after
`rewards.max_consecutive_failures` failed calls in a row the run stops anyway, with the checkpoint
and the reason, exactly as with on_error = "stop".
"""

from __future__ import annotations

from typing import Any, Callable

from grpo_studio.engine.metric_names import reward_failures
from grpo_studio.engine.rewards import RewardError


class SkipFailures:
    """Wraps a reward function (in-process or isolated) with the skip policy."""

    def __init__(self, function: Any, max_consecutive: int, report: Callable[[RewardError, int], None]):
        self.function = function
        self.__name__ = function.__name__
        self.max_consecutive = max_consecutive
        self.report = report  # called with the error and the number of failures in a row
        self.failures = 0
        self.consecutive = 0

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
        try:
            values = self.function(prompts, completions, **kwargs)
            self.consecutive = 0
        except RewardError as exc:
            self.failures += 1
            self.consecutive += 1
            if self.consecutive >= self.max_consecutive:
                raise RewardError(
                    f"{exc.message} ({self.consecutive} failed calls in a row: "
                    f"rewards.max_consecutive_failures = {self.max_consecutive})",
                    file=exc.file, line=exc.line, function=self.__name__, details=exc.details) from None
            self.report(exc, self.consecutive)
            values = [None] * len(completions)
        log_metric = kwargs.get("log_metric")
        if log_metric is not None:
            log_metric(reward_failures(self.__name__), float(self.failures))
        return values

    def close(self) -> None:
        close = getattr(self.function, "close", None)
        if close is not None:
            close()
