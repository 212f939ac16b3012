"""The window's child process after training (engine/child_tasks.py: eval, export): typed replies on
stdout and nothing else (libraries that print land in its log), refused input as one clear reply with
exit code 2."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import tiny

from grpo_studio.engine.child_messages import EvalRequest, ExportRequest, Reply
from grpo_studio.engine.child_tasks import TASK_COMMAND as COMMAND
from pydantic import TypeAdapter

REPLIES = TypeAdapter(Reply)
ROOT = Path(__file__).resolve().parents[2]  # the checkout, first on the child's path


def run_child(request_line: str, env_extra: dict | None = None) -> tuple[int, list, str]:
    env = os.environ | {"PYTHONPATH": str(ROOT)} | (env_extra or {})
    proc = subprocess.run(COMMAND, input=request_line + "\n", capture_output=True, text=True, timeout=300, env=env)
    return proc.returncode, [REPLIES.validate_json(line) for line in proc.stdout.splitlines()], proc.stderr


@pytest.fixture
def run_dir(run_file, tmp_path):
    return tiny.make_run_folder(run_file, tmp_path / "run")


def test_export_replies_are_all_typed_lines(run_dir, tmp_path):
    code, replies, _ = run_child(ExportRequest(run_dir=str(run_dir), dest=str(tmp_path / "out")).model_dump_json())
    assert code == 0
    assert replies[-1].kind == "exported" and replies[-1].path == str(tmp_path / "out")
    assert {r.kind for r in replies[:-1]} == {"progress"}  # every other line a progress reply, none lost to noise
    assert (tmp_path / "out" / "adapter_config.json").is_file()


def test_refused_input_is_one_reply_with_exit_code_2(run_dir, tmp_path, monkeypatch):
    code, replies, _ = run_child('{"task": "nonsense"}')
    assert code == 2 and replies[-1].kind == "task_failed" and "not a task request" in replies[-1].reason

    config = run_dir / "config.toml"
    config.write_text(config.read_text().replace("learning_rate = 0.001", 'learning_rate = "fast"'))
    code, replies, _ = run_child(EvalRequest(run_dir=str(run_dir)).model_dump_json())
    assert code == 2 and replies[-1].kind == "task_failed" and replies[-1].input_error
    assert replies[-1].reason.startswith("grpo.learning_rate:")

    # a push that cannot happen is refused before the export, not after it
    code, replies, _ = run_child(ExportRequest(run_dir=str(run_dir), dest=str(tmp_path / "out"),
                                               push_repo="me/x").model_dump_json(),
                                 {"HF_HUB_OFFLINE": "0", "HF_TOKEN": "", "HF_HOME": str(tmp_path / "no-login")})
    assert code == 2 and "no Hugging Face login: run `hf auth login`" in replies[-1].reason
    assert not (tmp_path / "out").exists()
