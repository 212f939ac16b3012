"""The built-in demo keeps its promise: the starter is clearly imperfect, and the demo run file,
through the real engine, raises its greedy held-out accuracy by at least 20 points."""

from __future__ import annotations

import doctest
import importlib.util
from pathlib import Path

from grpo_studio.cli import demo_run_file
from grpo_studio.config import load_run
from grpo_studio.engine.checks import validate
from grpo_studio.engine.eval_compare import compare_run
from grpo_studio.engine.run import train

DEMO = demo_run_file()


def test_demo_files_are_there_and_valid():
    assert DEMO == Path(__file__).resolve().parents[2] / "resources" / "demo" / "run.toml"
    report = validate(load_run(DEMO))
    assert report.ok, report.problems
    assert report.facts["rows"] == 3000 and report.facts["rewards"] == ["correctness_reward", "format_reward"]
    spec = importlib.util.spec_from_file_location("demo_rewards", DEMO.parent / "rewards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert doctest.testmod(module).failed == 0


def test_demo_run_raises_held_out_accuracy_by_20_points(tmp_path):
    result = train(DEMO, output=tmp_path / "demo")
    assert result.kind == "finished", getattr(result, "details", result)
    assert result.step == 40
    compared = compare_run(tmp_path / "demo")  # the base model and the adapter on the same prompts
    before, after = compared.base, compared.tuned
    assert before.n == 256 and before.accuracy < 0.5  # clearly imperfect: it forgets every carry
    assert after.accuracy - before.accuracy >= 0.20, (before.accuracy, after.accuracy)
    assert compared.counts["fixed"] > compared.counts["broken"]  # answers the base got wrong and the adapter right
    assert after.format_rate is not None and compared.format_rule == "format_reward >= 1"


def test_the_demo_command_states_one_training_time(monkeypatch, capsys, tmp_path):
    """`finished 40 steps in ...` and `training took ...` are one figure (they were two different ones)."""
    import re
    from types import SimpleNamespace

    from grpo_studio import cli
    from grpo_studio.engine import evaluate as evaluate_module
    from grpo_studio.engine import run as run_module
    from grpo_studio.engine.events import Finished

    scores = iter([SimpleNamespace(accuracy=0.285, correct=73, n=256), SimpleNamespace(accuracy=0.988, correct=253,
                                                                                         n=256)])
    monkeypatch.setattr(evaluate_module, "evaluate", lambda run, adapter=None: next(scores))

    def fake_train(run, output=None, listener=None, stop_requested=None):
        finished = Finished(step=40, seconds=227.0, adapter_dir=str(tmp_path / "adapter"))
        listener(finished)
        return finished

    monkeypatch.setattr(run_module, "train", fake_train)
    monkeypatch.setattr(cli.StopOnSignal, "install", lambda self: None)  # keep pytest's own Ctrl-C
    assert cli.main(["demo"]) == 0
    out = capsys.readouterr().out
    times = re.findall(r"(?:finished 40 steps in|training took) (\S+?);?$", out, re.M)
    assert times == ["3m47s", "3m47s"], out
