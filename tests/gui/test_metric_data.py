"""Smoothing and decimation of long curves (no Qt): the fast paths give what the plain loop gives."""

from __future__ import annotations

import math

import numpy as np
import pytest

from grpo_studio.gui.metric_data import MetricData, Series, decimate, smooth


def smooth_loop(values, weight):
    """TensorBoard's debiased moving average, one value at a time (the definition)."""
    out, last, norm = [], 0.0, 0.0
    for v in values:
        if math.isnan(v):
            out.append(math.nan)
            continue
        last = last * weight + (1 - weight) * v
        norm = norm * weight + (1 - weight)
        out.append(last / norm)
    return np.array(out)


@pytest.mark.parametrize("weight", [0.01, 0.3, 0.6, 0.9, 0.99])
def test_vectorised_smoothing_equals_the_loop(weight):
    rng = np.random.default_rng(1)
    values = rng.normal(size=5000).cumsum() * 3 + 1e4  # large offset: precision matters
    values[rng.integers(0, 5000, 50)] = np.nan
    np.testing.assert_allclose(smooth(values, weight), smooth_loop(values, weight), rtol=1e-12, equal_nan=True)


def test_a_series_smooths_only_what_was_appended_and_starts_over_when_steps_are_replayed():
    rng = np.random.default_rng(2)
    values = rng.normal(size=3000)
    series = Series()
    for step in range(1, 2001):
        series.append(step, values[step - 1])
    first = series.smoothed(0.6).copy()
    np.testing.assert_allclose(first, smooth_loop(values[:2000], 0.6), rtol=1e-12)
    cache = series._smooth
    for step in range(2001, 3001):
        series.append(step, values[step - 1])
    assert series._smooth is cache and cache.n == 2000  # not smoothed again until asked
    np.testing.assert_allclose(series.smoothed(0.6), smooth_loop(values, 0.6), rtol=1e-12)
    assert series._smooth is cache  # extended, not recomputed
    series.append(1500, 100.0)  # a resumed run replays from step 1500
    expected = smooth_loop(np.r_[values[:1499], 100.0], 0.6)
    np.testing.assert_allclose(series.smoothed(0.6), expected, rtol=1e-12)
    np.testing.assert_allclose(series.smoothed(0.3), smooth_loop(series.values, 0.3), rtol=1e-12)


def test_decimation_keeps_every_extreme_and_the_newest_point():
    rng = np.random.default_rng(3)
    x = np.arange(1, 20001, dtype=float)
    y = rng.normal(size=20000)
    y[7777] = 50.0  # a spike must survive
    y[123] = np.nan
    dx, dy = decimate(x, y, 300)
    assert len(dx) <= 2 * 300 + 3
    assert np.nanmax(dy) == 50.0 and np.nanmin(dy) == np.nanmin(y)
    assert dx[-1] == x[-1] and dy[-1] == y[-1]
    assert np.all(np.diff(dx) >= 0)
    short_x, short_y = decimate(x[:100], y[:100], 300)
    assert len(short_x) == 100  # short curves go through untouched


def test_metric_data_loads_whole_arrays_and_keeps_appending():
    data = MetricData()
    data.load({"reward": (np.arange(1, 6), np.array([0.0, 1, 2, 3, 4]))})
    data.add(6, {"reward": 5.0, "kl": None})
    assert data.series["reward"].values.tolist() == [0, 1, 2, 3, 4, 5]
    assert math.isnan(data.series["kl"].values[0]) and data.latest("kl") is None
