"""Reward footguns: a rewards.py edited between segments is said (log and store) with its hash; what a
reward starts ends with the run (also when the run is killed -9); a reward process killed between
calls is restarted with a line in the log."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import textwrap
import time

import fault_runner
import pytest
import tiny
from fault_checks import RUN_SETTINGS, write_fault_project

from grpo_studio.engine.store import RunStore

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="process groups are POSIX")

# Writes its process id, and starts a helper that would sleep for five minutes, beside the run's copy.
REWARDS = tiny.REWARDS + textwrap.dedent('''

    import os
    import subprocess


    def helper_reward(completions, **kwargs):
        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(here, "reward.pid"), "w") as f:
            f.write(str(os.getpid()))
        if not os.path.exists(os.path.join(here, "helper.pid")):
            helper = subprocess.Popen(["sleep", "300"])
            with open(os.path.join(here, "helper.pid"), "w") as f:
                f.write(str(helper.pid))
        return [0.0] * len(completions)
    ''')


@pytest.fixture
def isolated_project(tmp_path, tiny_model):
    run = write_fault_project(tmp_path / "project", tiny_model)
    (run.parent / "rewards.py").write_text(REWARDS)
    run.write_text(run.read_text().replace("isolate = false", "isolate = true"))
    return run


def gone(pid, timeout=10.0):
    """Whether the process ended (or is a zombie nobody has reaped yet) within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def read_pid(path):
    return int(path.read_text())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("end", ["finished", "killed"])
def test_what_a_reward_starts_ends_with_the_run(isolated_project, tmp_path, end):
    folder = tmp_path / "run"
    env = {"GRPO_STUDIO_FAULT": "kill:step_end:1"} if end == "killed" else {}
    out = fault_runner.cli("train", str(isolated_project), "--output", str(folder), "--set", "grpo.max_steps=1",
                           env=env)
    assert out.rc == (-9 if end == "killed" else 0), out
    helper = read_pid(folder / "helper.pid")
    try:
        assert gone(helper), f"the reward's helper process {helper} outlived the run"
    finally:
        if not gone(helper, 0):
            os.kill(helper, signal.SIGKILL)


def test_reward_process_killed_between_calls_is_restarted_and_said(isolated_project, tmp_path):
    folder = tmp_path / "run"
    child = fault_runner.start(["train", str(isolated_project), "--output", str(folder), *RUN_SETTINGS],
                               env={"GRPO_STUDIO_FAULT": "pause:step_end:1"})
    child.wait_for(folder / "FAULT_PAUSED")
    reward_pid = read_pid(folder / "reward.pid")
    os.kill(reward_pid, signal.SIGKILL)
    assert gone(reward_pid)
    (folder / "FAULT_PAUSED").unlink()
    out = child.finish()
    assert out.rc == 0, out
    said = "the reward process of rewards.py had ended (killed by SIGKILL) since the last call; restarted it"
    assert f"warning: {said}" in out.out
    with RunStore(folder / "run.db", readonly=True) as store:
        assert said in [e.message for e in store.events(["log"])]
    assert read_pid(folder / "reward.pid") != reward_pid  # the later calls ran in a new process


def test_an_edited_rewards_py_is_recorded_and_said_on_resume(finished_run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(finished_run, folder)
    rewards = folder / "rewards.py"
    rewards.write_text(rewards.read_text().replace("-len(c) / 32", "-len(c) / 16"))
    changed = fault_runner.cli("train", str(folder), "--resume", "--set", "grpo.max_steps=5")
    assert changed.rc == 0, changed
    assert "warning: rewards.py changed since the previous segment (sha256 " in changed.out
    assert "reward curves after step 4 are scored by the new file" in changed.out
    same = fault_runner.cli("train", str(folder), "--resume", "--set", "grpo.max_steps=6")
    assert same.rc == 0 and "rewards.py changed" not in same.out, same
    with RunStore(folder / "run.db", readonly=True) as store:
        hashes = [e.rewards_sha256 for e in store.events(["started"])]
        logs = [e.message for e in store.events(["log"]) if "rewards.py changed" in e.message]
    assert len(hashes) == 3 and hashes[0] != hashes[1] == hashes[2] and all(len(h) == 64 for h in hashes)
    assert len(logs) == 1
