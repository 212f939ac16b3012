"""A run's metrics as numpy arrays that grow by doubling (no Qt, no pyqtgraph).

The training view appends every metrics event here at once; plots read whole arrays when they
redraw. Kept apart from plots.py so the window can start without importing pyqtgraph.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np


class Series:
    """One metric over steps, in arrays that double when full (appending is amortised O(1))."""

    def __init__(self) -> None:
        self._steps = np.empty(64, dtype=np.float64)
        self._values = np.empty(64, dtype=np.float64)
        self.n = 0

    def append(self, step: float, value: float) -> None:
        if self.n and step <= self._steps[self.n - 1]:
            # A resumed run replays steps: drop what it is about to overwrite.
            self.n = int(np.searchsorted(self._steps[: self.n], step))
        if self.n == len(self._steps):
            self._steps = np.resize(self._steps, 2 * self.n)
            self._values = np.resize(self._values, 2 * self.n)
        self._steps[self.n] = step
        self._values[self.n] = value
        self.n += 1

    @classmethod
    def from_arrays(cls, steps: np.ndarray, values: np.ndarray) -> "Series":
        """A series from whole arrays in step order (a reopened run), without a Python loop."""
        series = cls()
        n = len(steps)
        size = max(64, 1 << max(0, n - 1).bit_length())  # room to grow, as appending would leave
        series._steps = np.empty(size, dtype=np.float64)
        series._values = np.empty(size, dtype=np.float64)
        series._steps[:n] = steps
        series._values[:n] = values
        series.n = n
        return series

    def extend(self, steps: Iterable[float], values: Iterable[float]) -> None:
        for s, v in zip(steps, values):
            self.append(s, v)

    @property
    def steps(self) -> np.ndarray:
        return self._steps[: self.n]

    @property
    def values(self) -> np.ndarray:
        return self._values[: self.n]


class MetricData:
    """Every metric of a run, by TRL's names (`reward`, `rewards/<fn>/mean`, `kl`, ...)."""

    def __init__(self) -> None:
        self.series: dict[str, Series] = {}
        self.version = 0  # bumped on every change, so plots know when to redraw

    def clear(self) -> None:
        self.series.clear()
        self.version += 1

    def add(self, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.series.setdefault(name, Series()).append(step, float("nan") if value is None else value)
        self.version += 1

    def load(self, metrics: dict[str, tuple[list, list]]) -> None:
        for name, (steps, values) in metrics.items():
            if name in self.series and self.series[name].n:
                self.series[name].extend(steps, values)
            else:
                self.series[name] = Series.from_arrays(np.asarray(steps, dtype=np.float64),
                                                       np.asarray(values, dtype=np.float64))
        self.version += 1

    def get(self, name: str) -> Series | None:
        return self.series.get(name)

    def latest(self, name: str) -> float | None:
        s = self.series.get(name)
        if not s or not s.n:
            return None
        v = s.values[-1]
        return None if math.isnan(v) else float(v)


def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """Debiased exponential moving average (TensorBoard's smoothing); NaNs are skipped."""
    if weight <= 0 or len(values) < 2:
        return values
    out = np.empty_like(values)
    last, norm = 0.0, 0.0
    for i, v in enumerate(values):
        if math.isnan(v):
            out[i] = np.nan
            continue
        last = last * weight + (1 - weight) * v
        norm = norm * weight + (1 - weight)
        out[i] = last / norm
    return out
