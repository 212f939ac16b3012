"""Trackers are opt-in (run.report_to): TensorBoard gets the window's metrics, under transformers'
train/ prefix, in RUN_DIR/tensorboard; a tracker without its package is bad input, said at once."""

from __future__ import annotations

import importlib.util

import pytest

from grpo_studio.config import load_run
from grpo_studio.engine.checks import validate
from grpo_studio.engine.run import train
from grpo_studio.engine.store import RunStore


def test_off_by_default(run_file):
    assert load_run(run_file).config.run.report_to == []


def test_tensorboard_event_files_hold_the_window_metrics(run_file, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = train(run_file, output=tmp_path / "run", overrides=["grpo.max_steps=2", 'run.report_to=["tensorboard"]'])
    assert result.kind == "finished", result
    logs = tmp_path / "run" / "tensorboard"
    assert list(logs.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(logs))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    with RunStore(tmp_path / "run", readonly=True) as store:
        window = set(store.metric_names())  # what the window plots
    for name in ("reward", "rewards/correctness_reward/mean", "rewards/length_reward/mean", "loss",
                 "perf/step_seconds"):
        assert name in window and f"train/{name}" in tags, name
    assert {f"train/{name}" for name in window} <= tags
    assert [e.step for e in events.Scalars("train/reward")] == [1, 2]
    assert not (tmp_path / "run" / "checkpoints" / "runs").exists()  # not transformers' default place


def test_missing_tracker_package_is_bad_input(run_file, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    run = load_run(run_file, ['run.report_to=["wandb"]'])
    expected = "run.report_to: 'wandb' needs the wandb package: pip install wandb (or remove it from run.report_to)"
    assert expected in validate(run).problems
    result = train(run_file, output=tmp_path / "run", overrides=['run.report_to=["wandb"]'])
    assert result.kind == "failed" and result.input_error and expected in result.reason
    assert not (tmp_path / "run").exists()  # found before the run folder was made


def test_unknown_tracker_names_the_field(run_file):
    from grpo_studio.config import ConfigError

    with pytest.raises(ConfigError) as caught:
        load_run(run_file, ['run.report_to=["mlflow"]'])
    assert str(caught.value.problems[0]).startswith("run.report_to[0]: must be one of 'tensorboard', 'trackio' or")
