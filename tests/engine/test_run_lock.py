"""One writer per run folder: the lock, its holder record, and its release by the holder's death."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from grpo_studio.engine.run_lock import RunLock, RunLocked, lock_holder

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
