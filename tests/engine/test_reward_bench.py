"""The reward test bench on real GSM8K rows: scores, timing, errors at FILE:LINE, and the warnings that
predict a run that learns nothing."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from grpo_studio.config import load_run
from grpo_studio.engine.data import DataError
from grpo_studio.engine.reward_bench import TypedCompletion, read_completions, run_bench

TEMPLATES = Path(__file__).resolve().parents[2] / "resources" / "reward_templates"
DATA = Path(__file__).resolve().parents[1] / "data"

# The math-verify template, plus four functions with the classic mistakes.
REWARDS = (TEMPLATES / "math_answer.py").read_text() + textwrap.dedent('''\


    def format_reward(completions, **kwargs):
        # The tag is misspelt: it never matches anything.
        return [1.0 if "<answr>" in _math_text(c) else 0.0 for c in completions]


    def politeness_reward(completions, **kwargs):
        return [0.1] * len(completions)


    def picky_reward(completions, answer, **kwargs):
        # Divides by False for a wrong answer.
        return [1.0 / (_math_text(c).split("####")[1].strip() == a) for c, a in zip(completions, answer)]


    def skipping_reward(completions, **kwargs):
        return [None] * len(completions)
    ''')


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.fixture
def project(tmp_path, tiny_model):
    """A GSM8K run file: the 12 test rows of tests/data, the tiny model's tokenizer, the rewards above."""
    shutil.copy(DATA / "gsm8k_test_sample.jsonl", tmp_path / "gsm8k.jsonl")
    (tmp_path / "rewards.py").write_text(REWARDS)
    (tmp_path / "run.toml").write_text(textwrap.dedent(f'''\
        [model]
        name = "{tiny_model}"
        max_seq_length = 512
        [data]
        source = "gsm8k.jsonl"
        prompt_column = "question"
        answer_column = "answer"
        answer_pattern = '####\\s*(.+?)\\s*$'
        max_prompt_length = 400
        [rewards]
        timeout_s = 2
        [grpo]
        per_device_train_batch_size = 4
        num_generations = 2
        max_completion_length = 12
        '''))
    return tmp_path


def typed(*items: tuple) -> list[TypedCompletion]:
    return [TypedCompletion(text, row=row) for row, text in items]


def test_typed_completions_on_gsm8k_rows(project):
    rewards = str(project / "rewards.py")
    completions = typed(
        (0, "16 - 3 - 4 = 9 eggs, 9 * 2 = 18\n#### 18"), (0, "#### 17"), (0, "I think it is 18\n#### 18"),
        (1, "2 + 1 = 3\n#### 3"), (1, "#### 4"),
    )
    report = run_bench(load_run(project / "run.toml", ["rewards.functions=[]"]), completions=completions)
    assert report.source == "typed"
    assert [(g.row, g.answer, len(g.completions)) for g in report.groups] == [(0, "18", 3), (1, "3", 2)]
    assert report.groups[0].prompt.startswith("Janet’s ducks lay 16 eggs per day.")
    by_name = {f.name: f for f in report.functions}
    assert list(by_name) == ["math_answer_reward", "format_reward", "politeness_reward", "picky_reward",
                             "skipping_reward"]
    math = by_name["math_answer_reward"]
    assert math.scores == [[1.0, 0.0, 1.0], [1.0, 0.0]]
    assert math.mean == pytest.approx(0.6) and len(math.seconds) == 2 and math.ms_per_call > 0
    assert len(math.seconds_inside) == 2  # isolated: the time inside the reward process too
    # picky_reward fails on one completion of each group: one error, listing both groups.
    (error,) = by_name["picky_reward"].errors
    line = line_of(REWARDS, "return [1.0 / (")
    assert str(error) == (f"{rewards}:{line}: picky_reward raised ZeroDivisionError: float division by zero "
                          "[in groups 0, 1]")
    assert error.code == "exception" and "Traceback" in error.details
    assert by_name["picky_reward"].scores == [None, None]
    assert not report.ok and report.errors == [error]
    warnings = [str(w) for w in report.warnings]
    assert warnings == [
        f"{rewards}:{line_of(REWARDS, 'def format_reward')}: format_reward gave 0 to every completion (5 of 5): it "
        "never rewards anything; check that it matches real completions (a pattern that never matches?)",
        f"{rewards}:{line_of(REWARDS, 'def politeness_reward')}: politeness_reward gave every completion the same "
        "score 0.1: it cannot tell completions apart, so it teaches nothing",
        f"{rewards}:{line_of(REWARDS, 'def skipping_reward')}: skipping_reward returned None for every completion "
        "(5): it never scores anything (None means 'skip this completion')",
    ]
    # A group with a failed function has no totals (training would have stopped there).
    assert report.groups[0].totals == [None, None, None]
    data = json.loads(json.dumps(report.to_json()))
    assert data["ok"] is False and data["errors"] == [str(error)] and data["warnings"] == warnings
    assert data["functions"][0]["scores"] == [[1.0, 0.0, 1.0], [1.0, 0.0]]


def test_zero_spread_in_a_group_is_a_warning(project):
    run = load_run(project / "run.toml", ['rewards.functions=[{name = "math_answer_reward"}]'])
    completions = typed((0, "#### 18"), (0, "so 18"), (3, "#### 540"), (3, "#### 541"))
    report = run_bench(run, completions=completions)
    assert report.ok
    assert [str(w) for w in report.warnings] == [
        f"{project / 'rewards.py'}: group 0 (row 0): all 2 completions have the same total reward 1: zero "
        "advantage, nothing is learned from this prompt"]
    assert [g.totals for g in report.groups] == [[1.0, 1.0], [1.0, 0.0]]


def test_a_hanging_function_costs_one_timeout(project):
    source = REWARDS + "\n\ndef slow_reward(completions, **kwargs):\n    import time\n    time.sleep(60)\n"
    run = load_run(project / "run.toml", ['rewards.functions=[{name = "math_answer_reward"}, {name = "slow_reward"}]',
                                          "rewards.timeout_s=1"])
    completions = typed((0, "#### 18"), (0, "#### 1"), (1, "#### 3"), (1, "#### 4"))
    report = run_bench(run, completions=completions, source=source)  # unsaved editor text
    slow = report.functions[1]
    (error,) = slow.errors
    assert error.code == "timeout" and error.line == line_of(source, "def slow_reward")
    assert error.message == ("slow_reward did not return within 1 s (rewards.timeout_s); the reward process was "
                             "stopped (not called on the remaining groups)")
    assert report.seconds < 15
    assert report.functions[0].scores == [[1.0, 0.0], [1.0, 0.0]]  # the other function ran normally


def test_a_syntax_error_is_reported_at_its_line(project):
    run = load_run(project / "run.toml")
    report = run_bench(run, completions=typed((0, "#### 18")), source="def a_reward(completions):\n    return [\n")
    assert [(e.code, str(e)) for e in report.errors] == [
        ("load", f"{project / 'rewards.py'}:2: syntax error: '[' was never closed")]
    assert report.functions == [] and not report.ok


def test_rows_typed_in_the_completions_file(project, tmp_path):
    path = tmp_path / "mine.jsonl"
    lines = [{"row": 0, "completion": "#### 18"},
             {"question": "What is 2+3?", "answer": "5", "completion": "#### 5"},
             {"question": "What is 2+3?", "answer": "5", "completion": "#### 6"},
             {"question": "Half of 1?", "answer": "#### 1/2", "completion": "\\boxed{0.5}"}]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    run = load_run(project / "run.toml", ['rewards.functions=[{name = "math_answer_reward"}]'])
    report = run_bench(run, completions=read_completions(path))
    assert [(g.row, g.prompt, g.answer) for g in report.groups] == [
        (0, report.groups[0].prompt, "18"), (None, "What is 2+3?", "5"), (None, "Half of 1?", "1/2")]
    assert report.functions[0].scores == [[1.0], [1.0, 0.0], [1.0]]


@pytest.mark.parametrize("text, message", [
    ('{"row": 0, "completion": "x"}\n\n{"row": 1, "completion": "y"\n', ":3: not valid JSON"),
    ('{"row": 0}\n', ':1: expected an object with a "completion" string'),
    ('{"row": -1, "completion": "x"}\n', ':1: "row" must be a row number (0 or more), got -1'),
    ('{"completion": "x"}\n', ":1: give \"row\" (a row of data.source) or the row's columns"),
])
def test_completions_file_errors_name_the_line(tmp_path, text, message):
    path = tmp_path / "c.jsonl"
    path.write_text(text)
    with pytest.raises(DataError) as info:
        read_completions(path)
    assert str(info.value).startswith(f"{path}{message}")


def test_nothing_to_score_is_an_input_error(project):
    report = run_bench(load_run(project / "run.toml"), completions=[])
    assert [str(e) for e in report.errors] == ["no completions to score: type some, or let the model generate"]


def test_a_row_out_of_range_is_an_input_error(project, tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"row": 0, "completion": "a"}\n{"row": 40, "completion": "b"}\n')
    report = run_bench(load_run(project / "run.toml"), completions=read_completions(path))
    assert [str(e) for e in report.errors] == [
        f"{path}:2: row 40 is out of range: data.source has 12 rows (0 to 11)"]


def test_completions_generated_by_the_model(project):
    run = load_run(project / "run.toml", ['rewards.functions=[{name = "math_answer_reward"}, '
                                          '{name = "politeness_reward"}]'])
    steps = []
    report = run_bench(run, prompts=3, progress=lambda message, fraction: steps.append(message))
    assert report.source == "generated"
    assert len(report.groups) == 3 and all(len(g.completions) == 2 for g in report.groups)
    assert len({g.row for g in report.groups}) == 3
    assert any(s.startswith("generating 2 completions for row") for s in steps)
    # A random tiny model never answers GSM8K: the bench says so before any GPU time is spent.
    codes = sorted({w.code for w in report.warnings})
    assert codes == ["never_rewards", "zero_spread"] or codes == ["constant", "never_rewards", "zero_spread"]
    assert report.ok
    again = run_bench(run, prompts=3)
    assert [g.completions for g in again.groups] == [g.completions for g in report.groups]  # seeded
