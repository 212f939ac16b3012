"""The reward templates in resources/reward_templates: their doctests, and their scores on real GSM8K rows
(tests/data: the first 12 test rows, and 5 train rows with answers such as 1,080 and -7)."""

from __future__ import annotations

import doctest
import json
import os
import re
from pathlib import Path

import pytest

from grpo_studio.config import loads_run
from grpo_studio.engine.data import load_prompts
from grpo_studio.engine.rewards import load_module, load_rewards

TEMPLATES = Path(__file__).resolve().parents[2] / "resources" / "reward_templates"
DATA = Path(__file__).resolve().parents[1] / "data"

EXPECTED = {
    "code_execution": ["code_tests_reward", "program_answer_reward"],
    "exact_answer": ["exact_answer_reward"],
    "format_tags": ["strict_format_reward", "soft_format_reward"],
    "length": ["length_reward"],
    "math_answer": ["math_answer_reward"],
    "xml_count": ["xml_count_reward"],
}


def template(name: str):
    return load_module(TEMPLATES / f"{name}.py")


def test_every_template_is_listed_here():
    assert sorted(p.stem for p in TEMPLATES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_template_doctests(name):
    module = template(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
    doc = module.__doc__.strip().splitlines()[0]
    assert doc and doc.endswith(".")  # the title the editor's template menu shows


@pytest.mark.parametrize("module_name", ["reward_sandbox", "reward_bench"])
def test_engine_doctests(module_name):
    import importlib

    result = doctest.testmod(importlib.import_module(f"grpo_studio.engine.{module_name}"))
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_template_is_a_valid_reward_file(tmp_path, name):
    run = loads_run(f'[rewards]\nfile = "{TEMPLATES / name}.py"\n', base_dir=tmp_path)
    specs = load_rewards(run, ["prompt", "answer", "tests"], isolated=False)
    assert [s.label for s in specs] == EXPECTED[name]


# ---- real GSM8K rows --------------------------------------------------------------------------


def gsm8k_rows(name: str = "gsm8k_test_sample.jsonl") -> list[dict]:
    """Rows as the reward functions see them: the run's data pipeline extracts `answer` from '#### N'."""
    run = loads_run(f'[data]\nsource = "{DATA / name}"\nprompt_column = "question"\nanswer_column = "answer"\n'
                    'answer_pattern = \'####\\s*(.+?)\\s*$\'\n', base_dir=DATA)
    return list(load_prompts(run).dataset)


ALL_ROWS = gsm8k_rows() + gsm8k_rows("gsm8k_train_sample.jsonl")


def reasoning(row: dict) -> str:
    """The row's reference solution without its final '#### N' line."""
    return row["answer_raw"].rsplit("####", 1)[0].strip()


def tagged(row: dict, final: str) -> str:
    return f"<reasoning>\n{reasoning(row)}\n</reasoning>\n<answer>\n{final}\n</answer>\n"


def off_by_one(answer: str) -> str:
    return str(int(answer.replace(",", "")) + 1)


def test_math_answer_on_gsm8k_reference_solutions():
    fn = template("math_answer").math_answer_reward
    truths = [r["answer"] for r in ALL_ROWS]
    assert "1,080" in truths and "-7" in truths
    # The dataset's own solutions, ending in "#### N", are right; the same with N + 1 are wrong.
    assert fn([r["answer_raw"] for r in ALL_ROWS], answer=truths) == [1.0] * len(ALL_ROWS)
    wrong = [reasoning(r) + f"\n#### {off_by_one(r['answer'])}" for r in ALL_ROWS]
    assert fn(wrong, answer=truths) == [0.0] * len(ALL_ROWS)
    # Other ways of writing the same answer: tags, \boxed{}, no thousands separator, chat messages.
    plain = [r["answer"].replace(",", "") for r in ALL_ROWS]
    assert fn([tagged(r, p) for r, p in zip(ALL_ROWS, plain)], answer=truths) == [1.0] * len(ALL_ROWS)
    boxed = [[{"role": "assistant", "content": f"{reasoning(r)}\nSo the answer is $\\boxed{{{p}}}$."}]
             for r, p in zip(ALL_ROWS, plain)]
    assert fn(boxed, answer=truths) == [1.0] * len(ALL_ROWS)
    # The raw answer column (a whole solution) works as ground truth too.
    assert fn([f"#### {p}" for p in plain], answer=[r["answer_raw"] for r in ALL_ROWS]) == [1.0] * len(ALL_ROWS)


def test_exact_answer_on_gsm8k_rows_is_exact():
    fn = template("exact_answer").exact_answer_reward
    truths = [r["answer"] for r in ALL_ROWS]
    assert fn([r["answer_raw"] for r in ALL_ROWS], answer=truths) == [1.0] * len(ALL_ROWS)
    assert fn([tagged(r, r["answer"]) for r in ALL_ROWS], answer=truths) == [1.0] * len(ALL_ROWS)
    # 1080 is not the string 1,080: that is what the math-verify template is for.
    scores = fn([tagged(r, r["answer"].replace(",", "")) for r in ALL_ROWS], answer=truths)
    assert scores == [0.0 if "," in t else 1.0 for t in truths]


def test_format_and_xml_count_on_gsm8k_reasoning():
    formats, xml = template("format_tags"), template("xml_count").xml_count_reward
    good = [tagged(r, r["answer"]) for r in ALL_ROWS]
    plain = [r["answer_raw"] for r in ALL_ROWS]
    chatty = [g + "Let me know if you need anything else!" for g in good]
    assert formats.strict_format_reward(good) == [1.0] * len(good)
    assert formats.strict_format_reward(plain + chatty) == [0.0] * (2 * len(good))
    assert formats.soft_format_reward(chatty) == [1.0] * len(good)
    assert formats.soft_format_reward(plain) == [0.0] * len(good)
    assert xml(good) == [0.5] * len(good)
    assert xml(plain) == [0.0] * len(good)
    assert all(0.45 < s < 0.5 for s in xml(chatty))  # a small cost for text after </answer>


def test_length_shaping_on_gsm8k_solutions():
    module = template("length")
    lengths = sorted(len(r["answer_raw"]) for r in ALL_ROWS)  # one token per character, as the tiny tokenizer
    scores = module.length_reward(completion_ids=[[0] * n for n in lengths])
    assert scores == sorted(scores, reverse=True)  # longer never scores higher
    budget = module.MAX_TOKENS - module.BUFFER_TOKENS
    assert all(s == 0.0 for n, s in zip(lengths, scores) if n <= budget)
    assert all(s == -1.0 for n, s in zip(lengths, scores) if n >= module.MAX_TOKENS)


def program(row: dict) -> str:
    """A program of thought from the row's own calculator annotations: <<16-3-4=9>> becomes a step."""
    steps = re.findall(r"<<([^=>]*)=[^>]*>>", row["answer_raw"])
    body = "\n".join(f"    step{i} = {expr}" for i, expr in enumerate(steps))
    return f"```python\ndef solution():\n{body}\n    return step{len(steps) - 1}\n\nprint(solution())\n```"


def test_code_execution_on_gsm8k_programs():
    module = template("code_execution")
    programs = [program(r) for r in ALL_ROWS]
    truths = [r["answer"] for r in ALL_ROWS]
    assert module.program_answer_reward(programs, answer=truths) == [1.0] * len(ALL_ROWS)
    assert module.program_answer_reward(["```python\nprint(0)\n```"] * 2, answer=truths[:2]) == [0.0, 0.0]
    tests = [[f"assert abs(solution() - {t.replace(',', '')}) < 1e-9", "assert solution() is not None"]
             for t in truths]
    assert module.code_tests_reward(programs, tests=tests) == [1.0] * len(ALL_ROWS)
    assert module.code_tests_reward(programs[:1], tests=[[tests[1][0], tests[0][0]]]) == [0.5]
    assert module.code_tests_reward(programs[:2], tests=[None, ""]) == [None, None]


def test_code_execution_limits(tmp_path, monkeypatch):
    module = template("code_execution")
    monkeypatch.setattr(module, "CODE_TIMEOUT_S", 2)
    monkeypatch.setenv("GRPO_STUDIO_SECRET", "hunter2")
    monkeypatch.chdir(tmp_path)
    bomb = "```python\ndef solution():\n    try:\n        return len(bytearray(2 << 30))\n    except MemoryError:\n" \
           "        return 'limited'\n```"
    loop = "```python\nwhile True:\n    pass\n```"
    forged = "```python\nimport sys\nprint('passed 99')\nsys.exit(0)\n```"
    snoop = "```python\nimport os\nopen('left-behind.txt', 'w').write('x')\ndef solution():\n" \
            "    return os.environ.get('GRPO_STUDIO_SECRET')\n```"
    tests = [["assert solution() == 'limited'"], ["assert True"], ["assert solution() == 1"],
             ["assert solution() is None"]]
    import time

    started = time.monotonic()
    scores = module.code_tests_reward([bomb, loop, forged, snoop], tests=tests)
    # A 2 GiB allocation fails under the memory limit; the endless loop is killed at the time limit; exiting
    # early passes nothing, whatever it prints; the environment is not inherited.
    assert scores == [1.0, 0.0, 0.0, 1.0]
    assert time.monotonic() - started < 10
    assert not (tmp_path / "left-behind.txt").exists()  # it wrote into its own temporary folder
    assert os.environ["GRPO_STUDIO_SECRET"] == "hunter2"


def test_templates_survive_the_isolated_path_with_chat_completions(tmp_path):
    """Loaded as a reward file and called through the reward process, as training calls them."""
    from grpo_studio.engine.rewards import close_rewards

    run = loads_run(f'[rewards]\nfile = "{TEMPLATES / "math_answer.py"}"\n', base_dir=tmp_path)
    specs = load_rewards(run, ["prompt", "answer"])
    rows = ALL_ROWS[:4]
    completions = [[{"role": "assistant", "content": tagged(r, r["answer"])}] for r in rows]
    try:
        scores = specs[0].function(prompts=[r["prompt"] for r in rows], completions=completions,
                                   answer=[r["answer"] for r in rows])
    finally:
        close_rewards(specs)
    assert scores == [1.0] * 4
    assert json.dumps(scores)
