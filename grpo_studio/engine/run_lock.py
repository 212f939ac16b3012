"""One writer per run folder: an OS-level lock held by the process that trains the run.

The training process takes an exclusive lock on `RUN_DIR/run.lock` when it opens a run folder and
keeps it until it ends. The operating system drops the lock when the process dies, whatever the
death (a clean exit, an exception, `kill -9`, an OOM kill, a power cut), so a lock can never go
stale. A second `train --resume` (or the window's Resume) on a live run is refused with who holds
it. Under `accelerate launch` / torchrun only the main process takes it.

The file also holds who took the lock, as one JSON line: `{"pid": 1234, "host": "box", "since":
1712345678.9}`. The lock itself, not the file's existence, says whether the run is live: the file
stays behind after the holder ends, and readers must not read anything into that.

API for readers (the window, the runs list; no torch, no Qt, a few system calls):

    holder = lock_holder(run_dir)      # LockHolder | None
    if holder is not None:             # a live process trains this run right now
        print(holder.describe())       # "pid 1234 on box since 2024-04-05 14:01:18"
        # show the run read-only (its store is safe to read while it grows); don't offer Resume
    else:
        ...                            # nobody trains it: Resume / Export / delete are safe

`lock_holder` never blocks and never takes the lock from a writer (a writer that finds a reader
probing retries for a moment). For a writer:

    with RunLock(run_dir):            # raises RunLocked naming the holder; released on exit
        ...train...

On POSIX this is `fcntl.flock` (advisory: only processes that ask are kept out, which all of GRPO
Studio does); on Windows, `msvcrt.locking` on one byte past the holder text (Windows locks are
mandatory, so the holder text stays readable). flock on NFS is emulated with POSIX locks by Linux
and works across hosts on NFSv4; on older network filesystems it may only be local to one host.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

LOCK_FILE = "run.lock"
_WINDOWS_LOCK_OFFSET = 4096  # the byte Windows locks: past the holder text, which stays readable


@dataclass(frozen=True)
class LockHolder:
    """Who holds a run folder's lock: process id, host name, and since when (epoch seconds)."""

    pid: int
    host: str
    since: float

    def describe(self) -> str:
        """`pid 1234 on box since 2024-04-05 14:01:18`"""
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since)) if self.since else "an unknown time"
        return f"pid {self.pid} on {self.host or 'an unknown host'} since {when}"


class RunLocked(Exception):
    """Another process trains this run folder now. `holder` says who (None if it could not be read)."""

    def __init__(self, message: str, holder: LockHolder | None = None):
        super().__init__(message)
        self.holder = holder


def lock_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / LOCK_FILE


def _read_holder(fd: int) -> LockHolder | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, _WINDOWS_LOCK_OFFSET).decode("utf-8", "replace").strip()
        data = json.loads(text.splitlines()[0]) if text else {}
        return LockHolder(int(data.get("pid", 0)), str(data.get("host", "")), float(data.get("since", 0)))
    except (OSError, ValueError, TypeError, AttributeError, IndexError):
        return None


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int, exclusive: bool) -> bool:
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        except OSError:
            pass
else:
    import fcntl

    def _try_lock(fd: int, exclusive: bool) -> bool:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def lock_holder(run_dir: str | Path) -> LockHolder | None:
    """Who trains this run folder right now, or None when no live process does. Cheap; never blocks.

    A holder whose text cannot be read (written a moment ago) comes back as LockHolder(0, "", 0)."""
    path = lock_path(run_dir)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None  # no lock file (or not readable): nobody has trained here under a lock
    try:
        # On POSIX a shared lock probes without writing; on Windows the probe needs the same lock kind.
        if _try_lock(fd, exclusive=sys.platform == "win32"):
            _unlock(fd)
            return None
        return _read_holder(fd) or LockHolder(0, "", 0.0)
    finally:
        os.close(fd)


class RunLock:
    """The exclusive lock of one run folder, held by the process that trains it."""

    def __init__(self, run_dir: str | Path):
        self.path = lock_path(run_dir)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "RunLock":
        """Take the lock or raise RunLocked naming its holder. Idempotent for the holder."""
        if self._fd is not None:
            return self
        # Opened non-inheritable (Python's default): a child process started later never keeps it alive.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        # A reader probing with a shared lock holds it for microseconds: try a few times before refusing.
        for attempt in range(20):
            if _try_lock(fd, exclusive=True):
                break
            if attempt == 19:
                holder = _read_holder(fd)
                os.close(fd)
                who = holder.describe() if holder and holder.pid else "another process"
                raise RunLocked(f"{self.path.parent} is being trained by {who}: wait for it to end, or stop it "
                                f"(the window's Stop, Ctrl-C in its terminal, or create {self.path.parent / 'STOP'})",
                                holder)
            time.sleep(0.025)
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": round(time.time(), 3)})
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, (record + "\n").encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Let go (also happens by itself when the process ends, however it ends)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            _unlock(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
