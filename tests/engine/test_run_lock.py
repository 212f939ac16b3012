"""One writer per run folder: the lock, its holder record, and its release by the holder's death."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import shutil

import pytest
from fault_checks import assert_whole_run

from grpo_studio.engine.run_lock import LOCK_FILE, RunLock, RunLocked, lock_holder

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="kills with SIGKILL")


def hold_lock_in_child(folder):
    """A plain Python child (no torch) that takes the lock and waits to be killed."""
    code = textwrap.dedent(f"""
        import sys, time
        from grpo_studio.engine.run_lock import RunLock
        RunLock({str(folder)!r}).acquire()
        print("held", flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_with_who_holds_the_lock(tmp_path):
    proc = hold_lock_in_child(tmp_path)
    try:
        holder = lock_holder(tmp_path)
        assert holder is not None and holder.pid == proc.pid and holder.host == socket.gethostname()
        assert abs(holder.since - time.time()) < 60
        with pytest.raises(RunLocked) as refused:
            RunLock(tmp_path).acquire()
        assert f"is being trained by pid {proc.pid} on {socket.gethostname()} since " in str(refused.value)
        assert refused.value.holder == holder
    finally:
        proc.kill()
        proc.wait()


def test_kill_9_releases_the_lock(tmp_path):
    proc = hold_lock_in_child(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (tmp_path / "run.lock").exists()  # the file stays; the lock is what counts
    assert lock_holder(tmp_path) is None
    with RunLock(tmp_path) as lock:
        assert lock.held and lock_holder(tmp_path).pid == os.getpid()
    assert lock_holder(tmp_path) is None


def test_reader_on_a_folder_never_locked(tmp_path):
    assert lock_holder(tmp_path) is None
    assert lock_holder(tmp_path / "missing") is None
    assert not (tmp_path / "run.lock").exists()  # a reader never creates the lock file


def test_lock_is_not_inherited_by_child_processes(tmp_path):
    """A child started while the lock is held (a reward process, a shell) must not keep a run 'live'."""
    lock = RunLock(tmp_path).acquire()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lock.release()
        assert lock_holder(tmp_path) is None  # the child does not hold it
        RunLock(tmp_path).acquire().release()
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("existed", [True, False], ids=["folder existed", "folder made by this run"])
def test_a_run_that_trained_in_the_folder_meanwhile_is_never_cleared(fault_project, finished_run, tmp_path,
                                                                       monkeypatch, existed):
    """The "nothing trained here" check of a new run is asked again under the lock: between the first
    look and the lock another process (a resume, or a run made with the same --output a moment
    earlier) may have trained in the folder, and a new run must not clear that."""
    from grpo_studio.engine import run as run_module

    folder = tmp_path / "run"
    if existed:
        folder.mkdir()
    acquire = RunLock.acquire

    def other_process_trains_first(self):
        if not (folder / "config.toml").exists():  # the other process trained in the folder meanwhile
            shutil.copytree(finished_run, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns(LOCK_FILE))
        return acquire(self)

    monkeypatch.setattr(RunLock, "acquire", other_process_trains_first)
    result = run_module.train(fault_project, output=folder)
    assert result.kind == "failed" and "already exists and is not empty" in result.reason, result
    assert_whole_run(folder)  # the other process's run, untouched
    assert not lock_holder(folder)  # and the lock given back
