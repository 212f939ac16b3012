"""Health alarms: notice, from the logged metrics, a run that trains but learns nothing.

`HealthWatch.observe(step, metrics)` is fed every logged step (TRL's metric names) and returns the
`Alarm` events to emit. Each alarm has a code, a message with the numbers, and advice. It fires
once per episode: when its condition has held for the configured number of steps, and again only
after the condition has cleared. Thresholds come from the run file's `[alarms]` section.

| code             | watches                     | means                                                  |
|------------------|-----------------------------|--------------------------------------------------------|
| zero_spread      | frac_reward_zero_std        | every group scored all its completions the same        |
| truncated        | completions/clipped_ratio   | most completions are cut at max_completion_length      |
| non_finite       | loss, grad_norm             | the update is NaN or infinite                          |
| reward_flat      | reward                      | the mean reward is not moving                          |
| entropy_collapse | entropy                     | the policy samples (nearly) the same completion always |

Pure Python on purpose: the rules are tested with synthetic metric sequences, no training needed.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from grpo_studio.config import AlarmSettings
from grpo_studio.engine import metric_names as m
from grpo_studio.engine.events import Alarm


@dataclass
class Streak:
    """How many logged steps in a row a condition has held, and whether this episode has alarmed."""

    count: int = 0
    fired: bool = False

    def update(self, holds: bool, needed: int) -> bool:
        """True exactly once per episode: on the step the condition has held `needed` times in a row."""
        if not holds:
            self.count, self.fired = 0, False
            return False
        self.count += 1
        if self.count >= needed and not self.fired:
            self.fired = True
            return True
        return False


def _pct(x: float) -> str:
    return f"{x:.0%}"


class HealthWatch:
    """Turns a stream of logged metrics into alarms."""

    def __init__(self, settings: AlarmSettings, max_completion_length: int | None = None):
        self.s = settings
        self.max_completion_length = max_completion_length
        self.streaks: dict[str, Streak] = {}
        self.rewards: deque[float] = deque(maxlen=max(settings.reward_window, 1))
        self.entropy_start: list[float] = []  # the first few entropies: the baseline of "collapsed"

    def _streak(self, code: str) -> Streak:
        return self.streaks.setdefault(code, Streak())

    def observe(self, step: int, metrics: dict[str, Any]) -> list[Alarm]:
        if not self.s.enabled:
            return []
        values = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        alarms: list[Alarm | None] = [
            self._non_finite(step, values),
            self._zero_spread(step, values),
            self._truncated(step, values),
            self._reward_flat(step, values),
            self._entropy_collapse(step, values),
        ]
        return [a for a in alarms if a is not None]

    # ---- the rules ------------------------------------------------------------------------

    def _non_finite(self, step: int, v: dict[str, float]) -> Alarm | None:
        if not self.s.non_finite:
            return None
        bad = [(name, v[name]) for name in (m.LOSS, m.GRAD_NORM) if name in v and not math.isfinite(v[name])]
        if not self._streak("non_finite").update(bool(bad), 1):
            return None
        what = " and ".join(f"the {'gradient norm' if n == m.GRAD_NORM else n} is {x}" for n, x in bad)
        return Alarm(
            step=step, code="non_finite", severity="error",
            message=f"at step {step} {what}: this update is broken, and the weights may now hold NaN.",
            advice="Lower grpo.learning_rate; keep grpo.max_grad_norm above 0 so gradients are clipped; prefer "
                   "bfloat16 to float16 (model.dtype); check for huge reward values. Resume from the last "
                   "checkpoint before this step.")

    def _zero_spread(self, step: int, v: dict[str, float]) -> Alarm | None:
        needed = self.s.zero_spread_steps
        if not needed or m.ZERO_STD_FRACTION not in v:
            return None
        frac = v[m.ZERO_STD_FRACTION]
        if not self._streak("zero_spread").update(frac >= self.s.zero_spread_fraction - 1e-9, needed):
            return None
        reward = f" (mean reward {v[m.REWARD]:.3g})" if m.REWARD in v else ""
        return Alarm(
            step=step, code="zero_spread",
            message=f"for {needed} steps in a row, {_pct(frac)} of the groups gave every completion of a prompt the "
                    f"same reward{reward}: their advantages are zero, so the model learns nothing from them.",
            advice="Check the rewards on real completions with `grpo-studio rewards-check`. If nothing is ever "
                   "right, give partial credit (e.g. a format reward) or use easier prompts; if everything is "
                   "right, use harder ones. More varied completions help too: raise grpo.num_generations or "
                   "grpo.temperature.")

    def _truncated(self, step: int, v: dict[str, float]) -> Alarm | None:
        needed = self.s.truncated_steps
        if not needed or m.CLIPPED_RATIO not in v:
            return None
        ratio = v[m.CLIPPED_RATIO]
        if not self._streak("truncated").update(ratio >= self.s.truncated_fraction, needed):
            return None
        limit = f" ({self.max_completion_length} tokens)" if self.max_completion_length else ""
        return Alarm(
            step=step, code="truncated",
            message=f"{_pct(ratio)} of the completions were cut at grpo.max_completion_length{limit}, for "
                    f"{needed} steps in a row: their final answers are missing, so answer rewards cannot "
                    "score them.",
            advice="Raise grpo.max_completion_length; ask for shorter reasoning in the prompt or system prompt; add "
                   "a length reward; or turn on grpo.mask_truncated_completions so cut completions don't train.")

    def _reward_flat(self, step: int, v: dict[str, float]) -> Alarm | None:
        window = self.s.reward_window
        if not window or m.REWARD not in v or not math.isfinite(v[m.REWARD]):
            return None
        self.rewards.append(v[m.REWARD])
        if len(self.rewards) < window:
            return None
        values = list(self.rewards)
        half = window // 2
        first = sum(values[:half]) / max(half, 1)
        second = sum(values[half:]) / (window - half)
        change = second - first
        if not self._streak("reward_flat").update(abs(change) < self.s.reward_min_change, 1):
            return None
        return Alarm(
            step=step, code="reward_flat",
            message=f"the mean reward has not moved in {window} steps: {first:.3g} in the first half of that window, "
                    f"{second:.3g} in the second (change {change:+.3g}, below alarms.reward_min_change = "
                    f"{self.s.reward_min_change:g}).",
            advice="If it is stuck at its lowest value, the task may be too hard for the model: check "
                   "`grpo-studio rewards-check`, add partial credit, or use easier prompts. If it is at its best, "
                   "training is done: stop. Otherwise try a larger grpo.learning_rate or more LoRA capacity "
                   "(lora.r).")

    def _entropy_collapse(self, step: int, v: dict[str, float]) -> Alarm | None:
        ratio = self.s.entropy_ratio
        if not ratio or m.ENTROPY not in v or not math.isfinite(v[m.ENTROPY]):
            return None
        entropy = v[m.ENTROPY]
        if len(self.entropy_start) < 3:
            self.entropy_start.append(entropy)
            return None
        start = sum(self.entropy_start) / len(self.entropy_start)
        if start <= 0 or not self._streak("entropy_collapse").update(entropy < ratio * start, self.s.entropy_steps):
            return None
        return Alarm(
            step=step, code="entropy_collapse",
            message=f"the token entropy fell to {entropy:.3g}, {_pct(entropy / start)} of its {start:.3g} at the "
                    "start: the model now samples (nearly) the same completion every time, so groups lose their "
                    "reward spread and exploration stops.",
            advice="Lower grpo.learning_rate; raise grpo.temperature; set grpo.beta > 0 to keep the model near the "
                   "base model; grpo.epsilon_high (e.g. 0.28, clip-higher) keeps rare tokens alive.")
