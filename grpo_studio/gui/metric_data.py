"""A run's metrics as numpy arrays that grow by doubling (no Qt, no pyqtgraph).

The training view appends every metrics event here at once; plots read whole arrays when they
redraw. Kept apart from plots.py so the window can start without importing pyqtgraph.

Long runs (tens of thousands of steps) stay cheap to draw: smoothing is vectorised and kept per
series, so a new step smooths one point, not the whole run again (`Series.smoothed`), and
`decimate` reduces a curve to a min/max pair per pixel column before it reaches the painter.
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
        self.revision = 0  # bumped when points already there change (not by appending)
        self._smooth: _Smoothed | None = None

    def append(self, step: float, value: float) -> None:
        if self.n and step <= self._steps[self.n - 1]:
            # A resumed run replays steps: drop what it is about to overwrite.
            self.n = int(np.searchsorted(self._steps[: self.n], step))
            self.revision += 1
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

    def smoothed(self, weight: float) -> np.ndarray:
        """`smooth(values, weight)`, computed once and then only for the points appended since."""
        if weight <= 0 or self.n < 2:
            return self.values
        cache = self._smooth
        if cache is None or cache.weight != weight or cache.revision != self.revision or cache.n > self.n:
            cache = self._smooth = _Smoothed(weight, self.revision)
        if cache.n < self.n:
            cache.extend(self._values[cache.n: self.n])
        return cache.out[: self.n]


class _Smoothed:
    """One series' smoothed values for one weight, and the moving average's state at its end."""

    def __init__(self, weight: float, revision: int):
        self.weight, self.revision = weight, revision
        self.out = np.empty(0, dtype=np.float64)
        self.n = 0
        self.state = (0.0, 0.0)

    def extend(self, values: np.ndarray) -> None:
        more, self.state = ema(values, self.weight, self.state)
        end = self.n + len(more)
        if end > len(self.out):
            self.out = np.resize(self.out, max(64, 2 * end))
        self.out[self.n: end] = more
        self.n = end


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
    """Debiased exponential moving average (TensorBoard's smoothing); NaNs are skipped.

    >>> smooth(np.array([1.0, 2.0, np.nan, 3.0]), 0.5).round(4).tolist()
    [1.0, 1.6667, nan, 2.4286]
    """
    if weight <= 0 or len(values) < 2:
        return values
    return ema(np.asarray(values, dtype=np.float64), weight)[0]


def ema(values: np.ndarray, weight: float, state: tuple[float, float] = (0.0, 0.0)
        ) -> tuple[np.ndarray, tuple[float, float]]:
    """The debiased moving average of `values`, continuing from `state` (the running sum and the
    running weight), and the state after the last value. NaNs are skipped: they stay NaN and do not
    decay the average.

    Vectorised: with a = 1 - weight, the average after k more values is
    w^k * (last + a * sum_j v_j * w^-j), a cumulative sum. w^-j grows quickly, so the values go in
    chunks short enough that it stays below 1e250 (room for values up to 1e58; terms from earlier chunks
    decay into the state)."""
    out = np.full(len(values), np.nan)
    finite = ~np.isnan(values)
    v = values[finite]
    last, norm = state
    if not len(v):
        return out, state
    if not 0 < weight < 1:
        raise ValueError(f"smoothing weight {weight} is not between 0 and 1")
    a = 1.0 - weight
    chunk = max(1, min(len(v), int(250 * math.log(10) / -math.log(weight))))
    result = np.empty(len(v))
    powers = weight ** np.arange(1, chunk + 1)  # w^1 .. w^chunk
    for start in range(0, len(v), chunk):
        part = v[start: start + chunk]
        k = len(part)
        p = powers[:k]
        running = p * (last + a * np.cumsum(part / p))  # the moving sum after each value
        weights = 1.0 - p * (1.0 - norm)  # the same recurrence for a series of ones
        result[start: start + k] = running / weights
        last, norm = float(running[-1]), float(weights[-1])
    out[finite] = result
    return out, (last, norm)


def decimate(x: np.ndarray, y: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """At most about 2 * bins points that draw like all of them: each run of points becomes its lowest
    and its highest value (pyqtgraph's "peak" downsampling, done once per redraw instead of per paint),
    and the last point stays exact, so a live run's newest value is where it really is.

    >>> decimate(np.arange(8.0), np.array([0, 5, 1, 2, 9, 3, 4, 4.0]), 2)
    (array([0., 0., 4., 4., 7.]), array([0., 5., 3., 9., 4.]))
    """
    n = len(x)
    if bins < 1 or n <= 2 * bins + 1:
        return x, y
    size = -(-(n - 1) // bins)  # points per bin (the last point is kept apart)
    full = (n - 1) // size
    body_y = y[: full * size].reshape(full, size)
    xs, ys = [np.repeat(x[: full * size: size], 2)], [np.empty(2 * full)]
    ys[0][0::2] = np.fmin.reduce(body_y, axis=1)  # fmin/fmax: NaNs are ignored unless the whole bin is NaN
    ys[0][1::2] = np.fmax.reduce(body_y, axis=1)
    rest = slice(full * size, n - 1)
    if rest.stop > rest.start:
        tail = y[rest]
        xs.append(np.repeat(x[rest.start], 2))
        ys.append(np.array([np.fmin.reduce(tail), np.fmax.reduce(tail)]))
    xs.append(x[-1:])
    ys.append(y[-1:])
    return np.concatenate(xs), np.concatenate(ys)
