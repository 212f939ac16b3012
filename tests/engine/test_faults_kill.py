"""kill -9 at named points of a run (tests/fault_runner.py, grpo_studio/engine/faults.py), then
`train --resume`: every step stored exactly once, the final adapter whole, nothing left half-written.

Each case kills a real `grpo-studio train` process with SIGKILL at a point chosen by
GRPO_STUDIO_FAULT (no sleeping and hoping), then resumes it and checks the whole run
(fault_checks.assert_whole_run). Runs: 4 steps, checkpoints at steps 2 and 4.
"""

from __future__ import annotations

import os
import re
import sys

import fault_runner
import pytest
from fault_checks import RUN_SETTINGS, STEPS, assert_whole_run, leftovers

from grpo_studio.engine.store import RunFolder, RunStore

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="kill -9 is POSIX")

# (point[:N], what the run had done when it died, in the default suite). The rest run with
# GRPO_STUDIO_EXHAUSTIVE=1 (each case costs two short runs: a few seconds of CPU).
KILL_POINTS = [
    ("store_write:2", "inside the store transaction of step 2's metrics", True),
    ("step_end:1", "after step 1 was stored, before any checkpoint", False),
    ("checkpoint_begin:1", "as checkpoint-2 began", False),
    ("save_model:1", "inside checkpoint-2's model save", True),
    ("checkpoint_written:1", "checkpoint-2 written in staging, not yet renamed", True),
    ("checkpoint_renamed:1", "checkpoint-2 in place, before old checkpoints were rotated", False),
    ("step_end:3", "after step 3, between checkpoints", False),
    ("checkpoint_written:2", "the final checkpoint-4 staged, not yet renamed", True),
    ("save_model:3", "inside the final adapter's save", True),
    ("adapter_written:1", "final adapter staged, not yet renamed", False),
    ("finished:1", "adapter in place, before the store said finished", True),
]
exhaustive = pytest.mark.skipif(not os.environ.get("GRPO_STUDIO_EXHAUSTIVE"),
                                reason="exhaustive fault case: set GRPO_STUDIO_EXHAUSTIVE=1")


def killed_run(fault_project, folder, point, *extra):
    outcome = fault_runner.cli("train", str(fault_project), "--output", str(folder), *RUN_SETTINGS, *extra,
                               env={"GRPO_STUDIO_FAULT": f"kill:{point}"})
    assert outcome.rc == -9, outcome  # it died at the point, by SIGKILL
    return outcome


@pytest.mark.parametrize("point", [pytest.param(p, marks=() if default else exhaustive, id=p)
                                   for p, _, default in KILL_POINTS])
def test_kill_9_then_resume_loses_nothing(fault_project, tmp_path, point):
    folder = tmp_path / "run"
    killed_run(fault_project, folder, point)
    resumed = fault_runner.cli("train", str(folder), "--resume")
    assert resumed.rc == 0, resumed
    assert "Traceback" not in resumed.err
    assert_whole_run(folder)
    if point in ("adapter_written:1", "finished:1"):  # all steps were trained: only the save is completed
        assert "completing the final adapter from checkpoint-4 (no training)" in resumed.out
        assert not re.search(r"step \d+/\d+", resumed.out)  # no step line: nothing trained


def test_kill_9_before_step_1_leaves_a_folder_the_retry_reuses(fault_project, tmp_path):
    folder = tmp_path / "run"
    killed_run(fault_project, folder, "folder_opened:1")
    assert (folder / "config.toml").is_file()  # killed: nothing could clean up
    retry = fault_runner.cli("train", str(fault_project), "--output", str(folder), *RUN_SETTINGS)
    assert retry.rc == 0, retry  # the same --output is free again: that run never reached step 1
    assert_whole_run(folder)


def test_kill_9_while_replacing_an_adapter_keeps_a_way_back(fault_project, tmp_path):
    """A run finished at step 2, resumed to step 4, killed between moving the old adapter aside and
    renaming the new one in: the resume completes the adapter from checkpoint-4."""
    folder = tmp_path / "run"
    first = fault_runner.cli("train", str(fault_project), "--output", str(folder), *RUN_SETTINGS,
                             "--set", "grpo.max_steps=2")
    assert first.rc == 0, first
    killed = fault_runner.cli("train", str(folder), "--resume", "--set", f"grpo.max_steps={STEPS}",
                              env={"GRPO_STUDIO_FAULT": "kill:adapter_swapped:1"})
    assert killed.rc == -9, killed
    assert not (folder / "adapter").exists() and (folder / ".adapter.old").is_dir()
    resumed = fault_runner.cli("train", str(folder), "--resume", "--set", f"grpo.max_steps={STEPS}")
    assert resumed.rc == 0, resumed
    assert_whole_run(folder)


def test_kill_9_twice_in_a_row(fault_project, tmp_path):
    """Killed in a checkpoint save, then killed again in the resumed run's final save."""
    folder = tmp_path / "run"
    killed_run(fault_project, folder, "checkpoint_written:2")
    again = fault_runner.cli("train", str(folder), "--resume", env={"GRPO_STUDIO_FAULT": "kill:adapter_written:1"})
    assert again.rc == -9, again
    assert leftovers(RunFolder(folder)) == [str(folder / ".adapter.partial"), str(folder / ".space-reserve")]
    with RunStore(folder / "run.db", readonly=True) as store:
        assert store.meta()["status"] == "running"
    resumed = fault_runner.cli("train", str(folder), "--resume")
    assert resumed.rc == 0, resumed
    assert_whole_run(folder)
