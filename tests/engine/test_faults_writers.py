"""Two writers on one run folder: the second (`train --resume`, the window's Resume) is refused,
names the live one, and changes nothing; the live run goes on to finish whole."""

from __future__ import annotations

import socket
import sys

import fault_runner
import pytest
from fault_checks import RUN_SETTINGS, assert_whole_run

from grpo_studio.engine.events import decode_event
from grpo_studio.engine.run_lock import lock_holder
from grpo_studio.engine.store import RunStore

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX test harness")


def store_state(folder):
    with RunStore(folder / "run.db", readonly=True) as store:
        return store.meta(), store.metrics(["reward"]), [store.count_samples(step=s) for s in range(1, 5)]


def test_second_writer_is_refused_while_a_run_is_live(fault_project, tmp_path):
    folder = tmp_path / "run"
    child = fault_runner.start(["train", str(fault_project), "--output", str(folder), *RUN_SETTINGS],
                               env={"GRPO_STUDIO_FAULT": "pause:step_end:2"})
    live = child.proc
    paused = folder / "FAULT_PAUSED"
    child.wait_for(paused)
    try:
        holder = lock_holder(folder)
        assert holder is not None and holder.pid == live.pid and holder.host == socket.gethostname()
        before = store_state(folder)
        who = f"is being trained by pid {live.pid} on {socket.gethostname()} since "

        second = fault_runner.cli("train", str(folder), "--resume")
        assert second.rc == 2, second
        assert who in second.err and "Traceback" not in second.err
        assert second.err.count("\n") <= 2  # the refusal, and no more

        window = fault_runner.start([str(folder), "--resume"], entry="worker").finish()
        assert window.rc == 2, window
        (failed,) = [decode_event(line) for line in window.out.splitlines()]
        assert failed.kind == "failed" and who in failed.reason and failed.input_error

        assert store_state(folder) == before  # neither refused writer touched the store
    finally:
        paused.unlink()
    done = child.finish()
    assert done.rc == 0, done
    assert_whole_run(folder)
