"""Reading a long run's store for the window (no Qt): whole, and then only what a followed run added."""

from __future__ import annotations

import math

import numpy as np

from grpo_studio.engine.events import Alarm, Log, Metrics, Sample, Samples, Started
from grpo_studio.engine.store import RunStore
from grpo_studio.gui.stored_run import metric_arrays, read_more, read_stored_run


def write(run_dir, steps, start=1):
    with RunStore(run_dir) as store:
        if start == 1:
            store.record(Started(run_dir=str(run_dir), max_steps=100))
        for step in range(start, start + steps):
            values = {"reward": step / 10, "kl": math.nan if step == 2 else 0.1}  # NaN is stored as NULL
            store.record(Metrics(step=step, max_steps=100, values=values))
            store.record(Samples(step=step, samples=[Sample(group=0, prompt="p", completion="c", rewards={},
                                                            total=1.0)]))


def test_metrics_come_back_as_arrays_with_the_index_and_without_it(tmp_path):
    write(tmp_path, 30)
    with RunStore(tmp_path, readonly=True) as store:
        expected = store.metrics()
        with_index = metric_arrays(store.db)
    with RunStore(tmp_path) as store:  # a store written before the index existed
        store.db.execute("DROP INDEX metrics_by_name")
        store.db.commit()
        without = metric_arrays(store.db)
    for got in (with_index, without):
        assert set(got) == set(expected) == {"reward", "kl"}
        for name, (steps, values) in expected.items():
            np.testing.assert_array_equal(got[name][0], steps)
            np.testing.assert_array_equal(got[name][1], values)  # NaN where the store holds NULL
        assert math.isnan(got["kl"][1][1])


def test_a_followed_run_is_read_a_step_and_an_event_at_a_time(tmp_path):
    write(tmp_path, 5)
    stored = read_stored_run(tmp_path)
    assert stored.holder is None and stored.last_sample_step == 5 and [e.kind for e in stored.events] == ["started"]
    write(tmp_path, 3, start=6)
    with RunStore(tmp_path) as store:
        store.record(Alarm(step=7, code="x", message="m"))
        store.record(Log(message="hello"))
    with RunStore(tmp_path, readonly=True) as store:
        more = read_more(store, tmp_path, after_step=5, after_event_id=stored.last_event_id)
    assert more.metrics["reward"][0].tolist() == [6, 7, 8] and more.last_sample_step == 8
    assert [e.kind for e in more.events] == ["alarm", "log"] and more.last_event_id > stored.last_event_id
    with RunStore(tmp_path, readonly=True) as store:
        nothing = read_more(store, tmp_path, after_step=8, after_event_id=more.last_event_id)
    assert nothing.metrics == {} and nothing.events == [] and nothing.last_event_id == more.last_event_id
