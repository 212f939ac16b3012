"""Isolated reward functions: every way user code can fail, each with its message, and the process survives.

One reward process per test file module (loading costs ~0.3 s); tests that kill it get their own.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from grpo_studio.config import loads_run
from grpo_studio.engine.reward_sandbox import RewardCrash, RewardProcess, RewardTimeout, TrainerStateView
from grpo_studio.engine.rewards import RewardContractError, RewardError, close_rewards, load_rewards

REWARDS = textwrap.dedent('''\
    import os
    import signal
    import sys
    import time


    def ok_reward(completions, answer, **kwargs):
        return [1.0 if c == a else 0.0 for c, a in zip(completions, answer)]


    def raises_reward(completions, **kwargs):
        table = {}
        return [table[c] for c in completions]


    def short_reward(completions, **kwargs):
        return [1.0]


    def nan_reward(completions, **kwargs):
        return [float("nan")] * len(completions)


    def forgot_return_reward(completions, **kwargs):
        [len(c) for c in completions]


    def skip_reward(completions, **kwargs):
        return [None if c == "?" else 0.5 for c in completions]


    def hang_reward(completions, **kwargs):
        while True:
            time.sleep(0.05)


    def exit_reward(completions, **kwargs):
        os._exit(3)


    def segfault_reward(completions, **kwargs):
        os.kill(os.getpid(), signal.SIGSEGV)


    def sys_exit_reward(completions, **kwargs):
        sys.exit("bye")


    def chatty_reward(completions, **kwargs):
        print("a reward that prints", flush=True)
        return [0.0] * len(completions)


    def shaped_reward(completions, trainer_state, log_metric, log_extra, **kwargs):
        log_metric("shaped/step", trainer_state.global_step)
        log_extra("note", [object() for _ in completions])
        return [trainer_state.global_step / trainer_state.max_steps] * len(completions)
    ''')


def write(tmp_path: Path, source: str = REWARDS, name: str = "rewards.py") -> Path:
    path = tmp_path / name
    path.write_text(source)
    return path


@pytest.fixture(scope="module")
def functions(tmp_path_factory):
    path = write(tmp_path_factory.mktemp("sandbox"))
    process = RewardProcess(path, None, ["prompt", "answer"], timeout_s=1.5)
    yield {f.__name__: f for f in process.functions()}
    process.close()


def call(fn, completions, **kwargs):
    return fn(prompts=["p"] * len(completions), completions=completions, **kwargs)


def test_a_clean_function_scores_and_reports_its_time(functions):
    fn = functions["ok_reward"]
    assert call(fn, ["4", "5"], answer=["4", "4"], trainer_state=None) == [1.0, 0.0]
    assert fn.timing.wall >= fn.timing.inside > 0
    assert fn.line == 7 and fn.path.name == "rewards.py"


def test_exception_names_the_function_and_the_line_and_keeps_the_traceback(functions):
    with pytest.raises(RewardError) as info:
        call(functions["raises_reward"], ["x"])
    err = info.value
    assert str(err).endswith("rewards.py:13: raises_reward raised KeyError: 'x'")
    assert err.function == "raises_reward" and err.line == 13
    assert "Traceback" in err.details and 'rewards.py", line 13' in err.details
    assert call(functions["ok_reward"], ["1"], answer=["1"]) == [1.0]  # the process lives on


@pytest.mark.parametrize("name, message", [
    ("short_reward", "rewards.py:16: short_reward returned 1 values for 2 completions; expected one per completion"),
    ("nan_reward", "rewards.py:20: nan_reward returned nan for completion 0; rewards must be finite (return None "
                   "to skip a completion)"),
    ("forgot_return_reward", "rewards.py:24: forgot_return_reward returned NoneType None; expected a list of 2 "
                             "floats"),
])
def test_contract_violations_are_errors_in_the_isolated_path_too(functions, name, message):
    with pytest.raises(RewardContractError) as info:
        call(functions[name], ["a", "b"])
    assert str(info.value).endswith(message)


def test_none_skips_a_completion(functions):
    assert call(functions["skip_reward"], ["?", "ok"]) == [None, 0.5]


def test_a_hang_is_stopped_at_the_time_limit_and_the_next_call_works(functions):
    with pytest.raises(RewardTimeout) as info:
        call(functions["hang_reward"], ["a"])
    assert str(info.value).endswith("rewards.py:32: hang_reward did not return within 1.5 s (rewards.timeout_s); "
                                    "the reward process was stopped")
    process = functions["ok_reward"].process
    assert not process.alive
    assert call(functions["ok_reward"], ["1"], answer=["1"]) == [1.0]  # a fresh process, file loaded again
    assert process.alive and process.restarts >= 1


@pytest.mark.parametrize("name, how", [("exit_reward", "exit code 3"), ("segfault_reward", "killed by SIGSEGV")])
def test_a_crash_of_the_reward_process_is_an_error_not_a_crash_of_ours(functions, name, how):
    with pytest.raises(RewardCrash) as info:
        call(functions[name], ["a"])
    assert f"the reward process died while running {name} ({how})" in str(info.value)
    assert info.value.function == name
    assert call(functions["ok_reward"], ["1"], answer=["1"]) == [1.0]


def test_sys_exit_in_a_reward_is_an_exception(functions):
    with pytest.raises(RewardError, match=r"rewards.py:46: sys_exit_reward raised SystemExit: bye"):
        call(functions["sys_exit_reward"], ["a"])
    assert functions["ok_reward"].process.alive


def test_printing_does_not_disturb_the_pipe(functions, capfd):
    assert call(functions["chatty_reward"], ["a"]) == [0.0]


def test_trainer_state_and_log_callbacks_cross_the_process_boundary(functions):
    class State:  # stands in for transformers' TrainerState, which has many more fields
        global_step, max_steps, epoch, num_train_epochs = 5, 20, 0.5, 1

    metrics, extras = [], []
    scores = call(functions["shaped_reward"], ["a", "b"], trainer_state=State(),
                  log_metric=lambda k, v: metrics.append((k, v)), log_extra=lambda k, v: extras.append((k, v)))
    assert scores == [0.25, 0.25]
    assert metrics == [("shaped/step", 5.0)]
    assert extras[0][0] == "note" and all(isinstance(v, str) for v in extras[0][1])  # made plain


def test_trainer_state_view_of_a_real_trainer_state():
    from transformers import TrainerState

    view = TrainerStateView.of(TrainerState(global_step=3, max_steps=10, epoch=0.25))
    assert (view.global_step, view.max_steps, view.epoch) == (3, 10, 0.25)


def test_an_argument_that_cannot_be_pickled_says_how_to_opt_out(functions):
    with pytest.raises(RewardError, match="cannot send its arguments to the reward process .* rewards.isolate = "
                                          "false"):
        call(functions["ok_reward"], ["a"], answer=[lambda: 1])
    assert call(functions["ok_reward"], ["1"], answer=["1"]) == [1.0]


# ---- loading ----------------------------------------------------------------------------------


def test_syntax_error_in_the_isolated_load(tmp_path):
    path = write(tmp_path, "def a_reward(completions):\n    return [1.0 for c in completions\n")
    with pytest.raises(RewardError) as info:
        RewardProcess(path, None, None)
    assert str(info.value) == f"{path}:2: syntax error: '[' was never closed"


def test_error_while_loading_names_its_line(tmp_path):
    path = write(tmp_path, "import math\n\nVALUE = {}['missing']\n")
    with pytest.raises(RewardError) as info:
        RewardProcess(path, None, None)
    assert str(info.value) == f"{path}:3: error while loading: KeyError: 'missing'"


def test_a_file_that_hangs_while_loading_is_stopped(tmp_path):
    path = write(tmp_path, "import time\ntime.sleep(60)\n\ndef a_reward(completions):\n    return []\n")
    with pytest.raises(RewardTimeout, match="the reward file took longer than 1 s to load "
                                            r"\(rewards.load_timeout_s\); the reward process was stopped"):
        RewardProcess(path, None, None, load_timeout_s=1)


def test_a_file_that_crashes_the_interpreter_while_loading(tmp_path):
    path = write(tmp_path, "import os\nos._exit(7)\n")
    with pytest.raises(RewardCrash, match=r"the reward process died while loading the reward file \(exit code 7\)"):
        RewardProcess(path, None, None)


def test_unsaved_editor_text_is_what_runs_with_its_line_numbers(tmp_path):
    path = write(tmp_path, "def a_reward(completions):\n    return [0.0] * len(completions)\n")
    edited = "\n\ndef a_reward(completions):\n    return [1 / 0] * len(completions)\n"
    run = loads_run('[rewards]\nfile = "rewards.py"\n', base_dir=tmp_path)
    for isolated in (True, False):
        specs = load_rewards(run, isolated=isolated, source=edited)
        with pytest.raises(RewardError) as info:
            specs[0].function(prompts=["p"], completions=["c"])
        assert str(info.value) == f"{path}:4: a_reward raised ZeroDivisionError: division by zero"
        assert "return [1 / 0] * len(completions)" in info.value.details  # the editor's line, quoted
        close_rewards(specs)


def test_isolate_false_runs_in_this_process(tmp_path):
    write(tmp_path, "import os\n\ndef pid_reward(completions):\n    return [float(os.getpid())] * len(completions)\n")
    run = loads_run('[rewards]\nfile = "rewards.py"\nisolate = false\n', base_dir=tmp_path)
    import os

    specs = load_rewards(run)
    assert specs[0].function(prompts=["p"], completions=["c"]) == [float(os.getpid())]
    isolated = load_rewards(run, isolated=True)
    assert isolated[0].function(prompts=["p"], completions=["c"]) != [float(os.getpid())]
    close_rewards(isolated)
    assert not isolated[0].function.process.alive
