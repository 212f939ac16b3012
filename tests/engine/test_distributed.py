"""Several processes (torchrun / accelerate launch; gloo on the CPU here, NCCL on GPUs) train one run:
one run folder, one writer of the store, samples gathered from every process, resumable."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from grpo_studio.engine.store import RunFolder, RunStore

torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
pytestmark = pytest.mark.skipif(torchrun is None, reason="torchrun is not installed beside this Python")


def launch(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([torchrun, "--nproc_per_node", "2", "-m", "grpo_studio.cli", "train", *args],
                          capture_output=True, text=True, timeout=600, env=env)


def test_two_processes_one_run(run_file, tmp_path):
    out = launch(str(run_file), "--output", str(tmp_path / "run"), "--set", "grpo.max_steps=2",
                 "--set", "run.save_steps=2")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert out.stdout.count("finished 2 steps") == 1  # only the main process reports
    folder = RunFolder(tmp_path / "run")
    assert not (run_file.parent / "runs").exists()  # no second folder made by the other process
    with RunStore(folder, readonly=True) as store:
        assert store.metrics(["reward"])["reward"][0] == [1, 2]
        # 8 completions per process per step, gathered from both processes.
        assert len(store.samples(step=1)) == 16
    assert folder.newest_checkpoint()[0] == 2

    resumed = launch(str(tmp_path / "run"), "--resume", "--set", "grpo.max_steps=3")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    with RunStore(folder, readonly=True) as store:
        assert store.metrics(["reward"])["reward"][0] == [1, 2, 3]
