"""Reward files: loading errors at their line, signatures, and the contract on every call."""

from __future__ import annotations

import math
import textwrap

import pytest

from grpo_studio.config import loads_run
from grpo_studio.engine.rewards import RewardContractError, RewardError, check_rewards, load_rewards


def rewards_run(tmp_path, source: str, functions: str = ""):
    (tmp_path / "rewards.py").write_text(textwrap.dedent(source))
    text = '[model]\nname = "m"\n[data]\nsource = "d.jsonl"\n[rewards]\nfile = "rewards.py"\n' + functions
    return loads_run(text, base_dir=tmp_path)


COLUMNS = ["prompt", "answer", "question"]


def test_discovers_functions_ending_in_reward_in_file_order(tmp_path):
    run = rewards_run(tmp_path, """
        def helper(x):
            return x

        def format_reward(completions, **kw):
            return [0.0] * len(completions)

        def correctness_reward(prompts, completions, answer):
            return [float(c == a) for c, a in zip(completions, answer)]
        """)
    specs = load_rewards(run, COLUMNS)
    assert [s.label for s in specs] == ["format_reward", "correctness_reward"]
    fn = specs[1].function
    # Only the arguments it names are passed, although TRL passes many more.
    assert fn(prompts=["p", "p"], completions=["1", "2"], answer=["1", "1"], trainer_state=None,
              question=["q", "q"]) == [1.0, 0.0]


def test_syntax_error_at_its_line(tmp_path):
    run = rewards_run(tmp_path, "def f_reward(completions):\n    return [1.0 for c in completions\n\n")
    with pytest.raises(RewardError) as info:
        load_rewards(run)
    assert str(info.value).startswith(f"{tmp_path / 'rewards.py'}:2: syntax error")


def test_error_while_loading_at_its_line(tmp_path):
    run = rewards_run(tmp_path, "import math\n\nTABLE = {'a': 1}\nVALUE = TABLE['b']\n")
    with pytest.raises(RewardError) as info:
        load_rewards(run)
    assert str(info.value) == f"{tmp_path / 'rewards.py'}:4: error while loading: KeyError: 'b'"


def test_missing_function_lists_what_is_defined(tmp_path):
    run = rewards_run(tmp_path, "def a_reward(completions):\n    return []\n",
                      '[[rewards.functions]]\nname = "b_reward"\n')
    with pytest.raises(RewardError, match="no function 'b_reward' \\(rewards.functions\\); defined: a_reward"):
        load_rewards(run)


def test_no_reward_functions(tmp_path):
    with pytest.raises(RewardError, match="no reward functions"):
        load_rewards(rewards_run(tmp_path, "def helper(completions):\n    return []\n"))


def test_missing_file(tmp_path):
    run = loads_run('[rewards]\nfile = "nope.py"\n', base_dir=tmp_path)
    with pytest.raises(RewardError, match="nope.py: reward file not found"):
        load_rewards(run)


def test_signature_needs_completions_and_known_columns(tmp_path):
    run = rewards_run(tmp_path, "def a_reward(prompts, outputs):\n    return []\n")
    with pytest.raises(RewardError, match=r"rewards.py:1: a_reward must take a `completions` argument"):
        load_rewards(run, COLUMNS)
    run = rewards_run(tmp_path, "\n\ndef a_reward(completions, solution):\n    return []\n")
    with pytest.raises(RewardError, match=r"rewards.py:3: a_reward needs argument 'solution', but no dataset "
                                          r"column has that name \(columns: prompt, answer, question\)"):
        load_rewards(run, COLUMNS)


@pytest.mark.parametrize("result, message", [
    ([1.0], "f returned 1 values for 2 completions; expected one per completion"),
    (1.0, "f returned float 1.0; expected a list of 2 floats"),
    ([1.0, float("nan")], "f returned nan for completion 1; rewards must be finite"),
    ([1.0, math.inf], "f returned inf for completion 1"),
    ([1.0, "1"], "f returned '1' (str) for completion 1; expected a number or None"),
    ([True, 1.0], "f returned True (bool) for completion 0"),
])
def test_contract_violations_are_errors(result, message):
    with pytest.raises(RewardContractError) as info:
        check_rewards("f", result, 2)
    assert message in str(info.value)


def test_contract_accepts_numbers_none_and_arrays():
    import numpy as np

    assert check_rewards("f", [1, None], 2) == [1.0, None]
    assert check_rewards("f", np.array([0.5, 1.0]), 2) == [0.5, 1.0]


def test_exception_in_a_reward_points_at_the_line(tmp_path):
    run = rewards_run(tmp_path, """
        def a_reward(completions, **kwargs):
            out = []
            for c in completions:
                out.append(1 / len(c))
            return out
        """)
    fn = load_rewards(run, COLUMNS)[0].function
    with pytest.raises(RewardError) as info:
        fn(prompts=["p"], completions=[""])
    assert str(info.value) == f"{tmp_path / 'rewards.py'}:5: a_reward raised ZeroDivisionError: division by zero"
    assert "Traceback" in info.value.details
