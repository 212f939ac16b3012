"""Reward failures in real tiny GRPO runs: each ends in a clean, resumable state, or (skip) is survived.

Every run trains 3 steps of the tiny CPU model (tests/tiny.py). A failing reward fails from step 2 on,
so step 1 completed and must be kept as a checkpoint: nothing is lost.
"""

from __future__ import annotations

import textwrap

import pytest

import tiny
from grpo_studio.engine.events import Failed, Finished
from grpo_studio.engine.run import train
from grpo_studio.engine.store import RunFolder, RunStore

# Appended to tiny.REWARDS (16 lines): the functions below start at line 18.
FAILING = {
    "hang": textwrap.dedent('''

        def broken_reward(completions, trainer_state, **kwargs):
            import time
            if trainer_state.global_step >= 1:
                time.sleep(3600)
            return [0.0] * len(completions)
        '''),
    "crash": textwrap.dedent('''

        def broken_reward(completions, trainer_state, **kwargs):
            import os
            if trainer_state.global_step >= 1:
                os._exit(1)
            return [0.0] * len(completions)
        '''),
    "nan": textwrap.dedent('''

        def broken_reward(completions, trainer_state, **kwargs):
            if trainer_state.global_step >= 1:
                return [float("nan")] * len(completions)
            return [0.0] * len(completions)
        '''),
}

FIXED = textwrap.dedent('''

    def broken_reward(completions, **kwargs):
        return [0.0] * len(completions)
    ''')


def run_dir(project) -> RunFolder:
    return RunFolder(next((project / "runs").iterdir()))


@pytest.mark.parametrize("case, reason", [
    ("hang", "rewards.py:18: broken_reward did not return within 1 s (rewards.timeout_s); the reward process "
             "was stopped"),
    ("crash", "rewards.py:18: the reward process died while running broken_reward (exit code 1)"),
    ("nan", "rewards.py:18: broken_reward returned nan for completion 0; rewards must be finite (return None to "
            "skip a completion)"),
])
def test_a_failing_reward_stops_the_run_with_a_checkpoint_and_the_reason(tmp_path, tiny_model, case, reason):
    project = tmp_path / "p"
    run = tiny.write_run(project, tiny_model, rewards=tiny.REWARDS + FAILING[case])
    events = []
    result = train(run, listener=events.append, overrides=["run.save_steps=100", "rewards.timeout_s=1"])
    assert isinstance(result, Failed), result
    assert result.reason.endswith(reason)
    assert not result.input_error and result.step == 1
    folder = run_dir(project)
    assert f"Fix broken_reward in {folder.rewards} (the run's copy of your reward file)" in result.hint
    assert f"grpo-studio train {folder.path} --resume" in result.hint
    assert result.hint.startswith("If it is only slow, raise rewards.timeout_s.") == (case == "hang")
    assert folder.newest_checkpoint()[0] == 1  # the completed step is kept
    with RunStore(folder, readonly=True) as store:
        assert store.meta()["status"] == "failed" and store.meta()["failure"] == result.reason
        assert store.metrics(["reward"])["reward"][0] == [1]
    if case != "hang":
        return
    # A first attempt at fixing it has a syntax error: refused before training, the checkpoint untouched.
    source = folder.rewards.read_text()
    folder.rewards.write_text(source.replace("time.sleep(3600)", "time.sleep(3600"))
    refused = train(folder.path, resume=True)
    assert isinstance(refused, Failed) and refused.input_error
    assert refused.reason == f"{folder.rewards}:21: syntax error: '(' was never closed"
    assert folder.newest_checkpoint()[0] == 1
    # Fixed in the run's copy of the reward file: the run resumes and ends as if nothing happened.
    folder.rewards.write_text(source[: source.index("\n\ndef broken_reward")] + FIXED)
    resumed = train(folder.path, resume=True)
    assert isinstance(resumed, Finished), resumed
    assert resumed.step == 3
    with RunStore(folder, readonly=True) as store:
        assert store.metrics(["reward"])["reward"][0] == [1, 2, 3]


def test_skip_policy_survives_an_occasional_failure_and_counts_it(tmp_path, tiny_model):
    flaky = textwrap.dedent('''

        def flaky_reward(completions, trainer_state, **kwargs):
            if trainer_state.global_step == 1:
                raise RuntimeError("verifier unavailable")
            return [0.5] * len(completions)
        ''')
    run = tiny.write_run(tmp_path / "p", tiny_model, rewards=tiny.REWARDS + flaky)
    events = []
    result = train(run, listener=events.append, overrides=["rewards.on_error=skip"])
    assert isinstance(result, Finished) and result.step == 3
    warnings = [e.message for e in events if e.kind == "log" and e.level == "warning"]
    assert any(w.endswith("rewards.py:20: flaky_reward raised RuntimeError: verifier unavailable -- skipped: no "
                          "scores from it for this batch (1 failed call(s) in a row; the run stops at 3)")
               for w in warnings), warnings
    with RunStore(run_dir(tmp_path / "p"), readonly=True) as store:
        steps, failures = store.metrics(["rewards/flaky_reward/failures"])["rewards/flaky_reward/failures"]
        assert (steps, failures) == ([1, 2, 3], [0.0, 1.0, 1.0])
        assert [s.rewards["flaky_reward"] for s in store.samples(step=2)] == [None] * 8  # skipped, not 0
        assert all(s.rewards["flaky_reward"] == 0.5 for s in store.samples(step=3))


def test_skip_policy_still_stops_a_function_that_always_fails(tmp_path, tiny_model):
    broken = "\n\ndef broken_reward(completions, **kwargs):\n    return {}['missing']\n"
    run = tiny.write_run(tmp_path / "p", tiny_model, rewards=tiny.REWARDS + broken)
    result = train(run, overrides=["rewards.on_error=skip", "rewards.max_consecutive_failures=2",
                                   "run.save_steps=100"])
    assert isinstance(result, Failed)
    assert result.reason.endswith("rewards.py:19: broken_reward raised KeyError: 'missing' (2 failed calls in a row: "
                                  "rewards.max_consecutive_failures = 2)")
    assert run_dir(tmp_path / "p").newest_checkpoint()[0] == 1


def test_a_constant_reward_raises_the_zero_spread_alarm(tmp_path, tiny_model):
    constant = "def constant_reward(completions, **kwargs):\n    return [1.0] * len(completions)\n"
    run = tiny.write_run(tmp_path / "p", tiny_model, rewards=constant)
    events = []
    result = train(run, listener=events.append, overrides=["alarms.zero_spread_steps=2", "alarms.truncated_steps=0",
                                                           "rewards.isolate=false"])
    assert isinstance(result, Finished)
    alarms = [e for e in events if e.kind == "alarm"]
    assert [(a.code, a.step) for a in alarms] == [("zero_spread", 2)]
    assert "100% of the groups gave every completion of a prompt the same reward (mean reward 1)" in alarms[0].message
    with RunStore(run_dir(tmp_path / "p"), readonly=True) as store:
        assert [a.code for a in store.events(["alarm"])] == ["zero_spread"]
