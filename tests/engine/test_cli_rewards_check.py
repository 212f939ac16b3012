"""`grpo-studio rewards-check` as scripts use it: FILE:LINE lines, JSON, exit codes 0 and 2."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grpo_studio.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


BROKEN = textwrap.dedent('''\
    def correctness_reward(completions, answer, **kwargs):
        return [1.0 if c.strip() == a else 0.0 for c, a in zip(completions, answer)]


    def length_reward(completions, **kwargs):
        return [len(c) for c in completions][:1]
    ''')


def test_clean_rewards_on_typed_completions_exit_0(run_file, tmp_path):
    completions = tmp_path / "c.jsonl"
    completions.write_text('{"row": 0, "completion": "7"}\n{"row": 0, "completion": "x"}\n')
    out = cli("rewards-check", str(run_file), "--completions", str(completions))
    assert out.returncode == 0, out.stderr
    assert "2 completions (typed) in 1 groups, 2 reward functions" in out.stdout
    assert "correctness_reward" in out.stdout and "ms/call" in out.stdout


def test_errors_and_warnings_one_per_line_and_exit_2(run_file, tmp_path):
    rewards = run_file.parent / "rewards.py"
    rewards.write_text(BROKEN)
    completions = tmp_path / "c.jsonl"
    completions.write_text('{"row": 0, "completion": "nope"}\n{"row": 0, "completion": "no"}\n')
    out = cli("rewards-check", str(run_file), "--completions", str(completions))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert f"{rewards}:5: length_reward returned 1 values for 2 completions; expected one per completion" in lines
    assert (f"{rewards}:1: warning: correctness_reward gave 0 to every completion (2 of 2): it never rewards anything; "
            "check that it matches real completions (a pattern that never matches?)") in lines
    assert "Traceback" not in out.stderr

    as_json = cli("rewards-check", str(run_file), "--completions", str(completions), "--json")
    assert as_json.returncode == 2
    report = json.loads(as_json.stdout)
    assert report["ok"] is False
    assert report["errors"] == [f"{rewards}:5: length_reward returned 1 values for 2 completions; expected one per "
                                "completion"]
    assert report["warnings"][0].startswith(f"{rewards}:1: correctness_reward gave 0 to every completion")
    assert [f["name"] for f in report["functions"]] == ["correctness_reward", "length_reward"]
    # The same findings as records, for programs that mark lines (the window's bench panel).
    assert [(f["level"], f["code"], f["line"], f["function"], f["groups"]) for f in report["findings"]] == [
        ("error", "contract", 5, "length_reward", [0]), ("warning", "never_rewards", 1, "correctness_reward", [])]
    progress = [json.loads(line) for line in as_json.stderr.splitlines() if line.startswith('{"progress"')]
    assert progress[0] == {"progress": 0.0, "message": "loading the tokenizer and the data"}
    assert progress[-1]["message"] == "running length_reward"


def test_generated_completions_and_a_bad_completions_file(run_file, tmp_path):
    out = cli("rewards-check", str(run_file), "--prompts", "2", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["source"] == "generated" and [len(g["completions"]) for g in report["groups"]] == [4, 4]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"row": 0, "completion": "1"}\n{"row": 0\n')
    out = cli("rewards-check", str(run_file), "--completions", str(bad))
    assert out.returncode == 2 and out.stderr.startswith(f"{bad}:2: not valid JSON")
