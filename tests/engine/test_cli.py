"""The CLI end to end, in subprocesses, as scripts use it: output lines and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path




def cli(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grpo_studio.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def test_help_is_fast_and_lists_commands():
    out = cli("--help")
    assert out.returncode == 0
    for command in ("train", "validate", "eval", "export", "gui"):
        assert command in out.stdout


def test_validate_ok_and_problems(run_file):
    ok = cli("validate", str(run_file))
    assert ok.returncode == 0, ok.stderr
    assert "valid; 64 training rows; rewards: correctness_reward, length_reward" in ok.stdout
    bad = cli("validate", str(run_file), "--set", "grpo.num_generations=3", "--set", "data.prompt_column=q")
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert "grpo.num_generations: 3 does not divide the generation batch 8 (8 completions x 1 accumulation " \
           "steps)" in lines
    assert any(line.endswith("train.jsonl:1: no column 'q' (data.prompt_column); columns are: question, answer")
               for line in lines)
    assert "Traceback" not in bad.stderr


def test_validate_reward_file_problems_as_file_line(run_file):
    (run_file.parent / "rewards.py").write_text("def a_reward(completions):\n    return [1.0 for c in x\n")
    bad = cli("validate", str(run_file))
    assert bad.returncode == 2
    assert bad.stderr.strip().endswith("rewards.py:2: syntax error: '[' was never closed")


def test_validate_setting_errors(run_file):
    bad = cli("validate", str(run_file), "--set", "lora.r=0", "--set", "grpo.optimizer=adam")
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [
        "lora.r: must be >= 1, got 0",
        "grpo.optimizer: must be one of 'adamw_torch', 'adamw_8bit', 'paged_adamw_8bit', 'adafactor' or 'sgd', "
        "got 'adam'",
    ]


def test_train_eval_export_end_to_end(run_file, tiny_model, tmp_path):
    out = cli("train", str(run_file), "--output", str(tmp_path / "run"), "--set", "grpo.max_steps=2")
    assert out.returncode == 0, out.stderr
    assert "step 1/2 | reward" in out.stdout and "step 2/2 | reward" in out.stdout
    assert "finished 2 steps" in out.stdout
    run_dir = tmp_path / "run"
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()

    again = cli("train", str(run_file), "--output", str(run_dir))
    assert again.returncode == 2 and "already exists and is not empty" in again.stderr

    base = cli("eval", str(run_file), "--json", "--limit", "8")
    assert base.returncode == 0, base.stderr
    result = json.loads(base.stdout)
    assert result["n"] == 8 and 0.0 <= result["accuracy"] <= 1.0 and result["adapter"] is None
    tuned = cli("eval", str(run_dir), "--json", "--limit", "8")  # a run folder: its adapter
    assert json.loads(tuned.stdout)["adapter"].endswith("adapter")

    exported = cli("export", str(run_dir), "--to", str(tmp_path / "exp"))
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "exp" / "adapter_config.json").is_file()
    assert not (tmp_path / "exp" / "optimizer.pt").exists()
    merged = cli("export", str(run_dir), "--merged", "--dtype", "float32", "--to", str(tmp_path / "merged"))
    assert merged.returncode == 0, merged.stderr
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert not any("lora" in n for n, _ in model.named_parameters())


def test_train_bad_model_is_exit_2_without_traceback(run_file):
    out = cli("train", str(run_file), "--set", "model.name=/nowhere/model")
    assert out.returncode == 2
    assert out.stderr.startswith("error: model.name: folder not found: /nowhere/model")
    assert "Traceback" not in out.stderr


def test_resume_without_an_earlier_run(run_file):
    out = cli("train", str(run_file), "--resume")
    assert out.returncode == 2
    assert "no earlier run of 'tiny'" in out.stderr
