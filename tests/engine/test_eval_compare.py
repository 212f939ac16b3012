"""Base vs. adapter on the held-out split: both models' answers to the same prompts, what
training changed, the result stored with the run and read back."""

from __future__ import annotations

import json

import pytest
import tiny

from grpo_studio.config import load_run
from grpo_studio.engine.eval_compare import (
    adapter_choices,
    change_of,
    compare_run,
    latest_eval,
    list_evals,
    load_eval,
    resolve_adapter,
)
from grpo_studio.engine.evaluate import EvalCancelled, EvalError, evaluate


@pytest.fixture
def run_dir(run_file, tmp_path):
    return tiny.make_run_folder(run_file, tmp_path / "run", checkpoint_step=2)


def test_change_marks():
    assert change_of(False, True) == "fixed" and change_of(True, False) == "broken"
    assert change_of(True, True) == "both_right" and change_of(False, False) == "both_wrong"


def test_compare_scores_both_models_on_the_same_prompts_and_stores_the_result(run_dir):
    seen = []
    result = compare_run(run_dir, limit=6, progress=lambda done, total: seen.append((done, total)))
    # the same numbers as two separate evaluations: the base pass ran before the adapter was applied
    run = load_run(run_dir / "config.toml", ["rewards.isolate=false"])  # (same scores, no second process)
    alone = evaluate(run, limit=6)
    tuned_alone = evaluate(run, adapter=run_dir / "adapter", limit=6)
    assert [p.base.completion for p in result.prompts] == [e["completion"] for e in alone.examples]
    assert [p.tuned.completion for p in result.prompts] == [e["completion"] for e in tuned_alone.examples]
    assert any(p.base.completion != p.tuned.completion for p in result.prompts)  # the adapter changes answers
    assert result.base.accuracy == alone.accuracy and result.tuned.accuracy == tuned_alone.accuracy
    assert result.base.label == "base" and result.tuned.label == "adapter" and result.base.adapter is None
    assert result.base.n == result.tuned.n == 6 == sum(result.counts.values())
    for p in result.prompts:
        assert p.change == change_of(p.base.correct, p.tuned.correct)
        assert p.base.length >= 1 and p.base.rewards.keys() == {"correctness_reward", "length_reward"}
    assert result.base.mean_length == sum(p.base.length for p in result.prompts) / 6
    assert result.format_rule is None and result.base.format_rate is None  # no format reward, no pattern
    assert seen[0] == (0, 12) and seen[-1] == (12, 12) and seen == sorted(seen)

    stored = list_evals(run_dir)
    assert [e.name for e in stored] == ["base-vs-adapter-first6"]
    assert load_eval(stored[0].path) == result
    assert latest_eval(run_dir, "adapter") == result and latest_eval(run_dir, "checkpoint-2") is None
    assert not [p for p in (run_dir / "evals").iterdir() if p.suffix != ".json"]  # no temporary file left


def test_format_rate_and_a_checkpoint_by_name(run_dir):
    result = compare_run(run_dir, "checkpoint-2", limit=4, store=False,
                         overrides=["eval.format=length_reward", "eval.format_threshold=-0.1", "rewards.isolate=false"])
    assert result.tuned.label == "checkpoint-2" and result.tuned.adapter.endswith("checkpoint-2")
    assert result.format_rule == "length_reward >= -0.1"
    for p in result.prompts:
        assert p.tuned.format_ok == (p.tuned.rewards["length_reward"] >= -0.1)
    assert result.tuned.format_rate == sum(p.tuned.format_ok for p in result.prompts) / 4
    assert not (run_dir / "evals").exists()


def test_adapter_names_and_errors(run_dir, tmp_path):
    assert [name for name, _ in adapter_choices(run_dir)] == ["adapter", "checkpoint-2"]
    assert resolve_adapter(run_dir, None) == ("adapter", run_dir / "adapter")
    with pytest.raises(EvalError, match="neither a folder nor one of this run's adapters"):
        resolve_adapter(run_dir, "checkpoint-9")
    with pytest.raises(EvalError, match="not a PEFT adapter folder"):
        compare_run(run_dir, tmp_path)


def test_cancel_stops_between_batches(run_dir):
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(EvalCancelled):
        compare_run(run_dir, limit=4, cancelled=cancelled, overrides=["eval.batch_size=1", "rewards.isolate=false"])
    assert not (run_dir / "evals").exists()


def test_cli_compare_base_json_and_text(run_dir, capsys):
    from grpo_studio.cli import main

    assert main(["eval", str(run_dir), "--compare-base", "--limit", "4", "--json"]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert data["base"]["n"] == data["tuned"]["n"] == 4 and len(data["prompts"]) == 4
    assert json.loads(err.strip().splitlines()[-1]) == {"done": 8, "total": 8}  # progress for a parent process
    assert main(["eval", str(run_dir), "--compare-base", "--limit", "4", "--show", "1"]) == 0
    out, err = capsys.readouterr()
    assert "accuracy" in out and "fixed by training:" in out
    assert f"saved: {run_dir / 'evals' / 'base-vs-adapter-first4.json'}" in out
    assert main(["eval", str(run_dir), "--compare-base", "--adapter", "nothing-here"]) == 2
    assert "neither a folder nor one of this run's adapters" in capsys.readouterr().err
