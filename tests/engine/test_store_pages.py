"""Sample pages in every order the window offers, checked against a plain sort of every row: the
ids-first query (sorting without the texts) and the indexes behind it return exactly the same rows."""

from __future__ import annotations

import random

import pytest

from grpo_studio.engine.events import Sample, Samples
from grpo_studio.engine.store import RunStore

KEYS = {"step": lambda r: (r.step, r.group, r.id), "-step": lambda r: (-r.step, r.group, r.id),
        "total": lambda r: (r.total, r.step, r.id), "-total": lambda r: (-r.total, r.step, r.id)}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rng = random.Random(0)
    run_dir = tmp_path_factory.mktemp("run")
    with RunStore(run_dir) as writer:
        for step in range(1, 41):
            writer.record(Samples(step=step, samples=[
                Sample(group=i // 4, prompt=f"prompt {step}/{i}", rewards={"r": 0.0},
                       completion=("carry " if i % 5 == 0 else "") + "x" * 50,
                       total=rng.choice([0.0, 0.5, 1.0, 1.5]))  # many ties, as real rewards have
                for i in range(8)]))
    with RunStore(run_dir, readonly=True) as reader:
        yield reader


@pytest.mark.parametrize("order", list(KEYS))
@pytest.mark.parametrize("filters", [{}, {"step_min": 7, "step_max": 31}, {"text": "carry"}, {"total_min": 0.5}])
def test_pages_are_the_rows_in_order(store, order, filters):
    everything = store.samples(limit=10_000, **filters)
    expected = sorted(everything, key=KEYS[order])
    assert len(expected) == store.count_samples(**filters) > 0
    paged = [row for offset in range(0, len(expected), 37)
             for row in store.samples(limit=37, offset=offset, order=order, **filters)]
    assert [r.id for r in paged] == [r.id for r in expected]
    assert paged[0].prompt and paged[0].rewards == {"r": 0.0}  # whole rows, not just their ids


def test_the_window_s_orders_use_their_indexes(store):
    plans = {order: " ".join(str(row[-1]) for row in store.db.execute(
        f"EXPLAIN QUERY PLAN SELECT id FROM samples ORDER BY {sql} LIMIT 200")) for order, sql in
        {"total": "total, step, id", "-total": "total DESC, step, id"}.items()}
    assert "samples_by_total " in plans["total"] + " " and "TEMP B-TREE" not in plans["total"]
    assert "samples_by_total_desc" in plans["-total"] and "TEMP B-TREE" not in plans["-total"]
