"""resources/runs/gsm8k.toml: its dataset mapping and rewards on real GSM8K rows, through a local path."""

from __future__ import annotations

import doctest
import importlib.util
from pathlib import Path

import pytest

from grpo_studio.config import load_run
from grpo_studio.engine.checks import validate
from grpo_studio.engine.data import load_prompts
from grpo_studio.engine.rewards import load_rewards
from tiny import CHAT_TEMPLATE, build_tokenizer

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "resources" / "runs" / "gsm8k.toml"
SHARED_TEST = ROOT.parent / "shared" / "data" / "gsm8k" / "test.jsonl"


def test_validate_passes_as_shipped():
    report = validate(load_run(RUN))
    assert report.ok, report.problems


def test_mapping_and_rewards_on_local_gsm8k_rows(gsm8k_sample):
    run = load_run(RUN, [f"data.source={gsm8k_sample}"])
    assert validate(run).ok
    data = load_prompts(run, tokenizer=build_tokenizer(CHAT_TEMPLATE), check_length=False)
    ds = data.dataset
    assert data.chat and len(ds) == 12
    system, user = ds[0]["prompt"]
    assert system["role"] == "system" and "<reasoning>" in system["content"]
    assert user == {"role": "user", "content": ds[0]["question"]}
    assert ds["answer"][:4] == ["18", "3", "70000", "540"]

    specs = {s.label: s for s in load_rewards(run, list(ds.column_names))}
    assert {n: s.weight for n, s in specs.items()} == {"correctness_reward": 2.0, "format_reward": 0.5}
    correct, fmt = specs["correctness_reward"].function, specs["format_reward"].function
    # GSM8K's own worked solutions end in the right number: every one is judged correct.
    solutions = [[{"role": "assistant", "content": text}] for text in ds["answer_raw"]]
    assert correct(prompts=ds["prompt"], completions=solutions, answer=ds["answer"]) == [1.0] * 12
    wrong = [[{"role": "assistant", "content": f"<answer>{int(a) + 1}</answer>"}] for a in ds["answer"]]
    assert correct(prompts=ds["prompt"], completions=wrong, answer=ds["answer"]) == [0.0] * 12
    formatted = [[{"role": "assistant", "content": f"<reasoning>\nwork\n</reasoning>\n<answer>\n{a}\n</answer>"}]
                 for a in ds["answer"]]
    assert fmt(prompts=ds["prompt"], completions=formatted) == [1.0] * 12
    assert correct(prompts=ds["prompt"], completions=formatted, answer=ds["answer"]) == [1.0] * 12


@pytest.mark.skipif(not SHARED_TEST.is_file(), reason="../shared/data/gsm8k is not beside this checkout")
def test_every_row_of_the_real_test_split_gets_a_ground_truth():
    run = load_run(RUN, [f"data.source={SHARED_TEST}"])
    data = load_prompts(run, check_length=False)
    assert len(data.dataset) == 1319 and data.missing_answers == 0


def test_reward_doctests():
    path = ROOT / "resources" / "runs" / "gsm8k_rewards.py"
    spec = importlib.util.spec_from_file_location("gsm8k_rewards", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = doctest.testmod(module)
    assert result.attempted >= 3 and result.failed == 0
