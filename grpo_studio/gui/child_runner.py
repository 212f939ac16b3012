"""The window's side of a child process that speaks typed JSON lines: start it with a request, send
it more requests, get its replies as a Qt signal on the GUI thread, cancel it at once.

Evaluate, Export and the Playground use it (engine/after_training_tasks.py is the child). The
child runs in a process group of its own, so Cancel also ends what it started (the reward
functions' sandbox process). Its stdout carries only replies; its stderr (library chatter,
tracebacks) is kept as a tail that explains a child that died without a word. Two reader threads
decode the streams; their signals hop to the GUI thread queued, in order: every reply before
`ended`.

This is the one place the after-training pages touch processes; it has the shape of
engine/child_process.py's `ChildProcess` on the seams branch (start with a request, stream typed
messages, cancel/kill the process group, a stderr tail), plus `send()` for a child that serves
several requests.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import threading
from typing import Any, Sequence

from pydantic import BaseModel, TypeAdapter, ValidationError
from PySide6.QtCore import QObject, Signal

from grpo_studio.gui.run_controller import worker_environment

TAIL_LINES = 40


class ChildRunner(QObject):
    """One child process at a time. `reply(message)` for each decoded reply; `ended(code, tail)` once
    it is gone (code < 0: ended by that signal; `cancelled` tells whether we ended it)."""

    reply = Signal(object)
    ended = Signal(int, str)

    def __init__(self, command: Sequence[str], reads: Any, parent: QObject | None = None):
        super().__init__(parent)
        self.command = list(command)
        self.reads = reads if isinstance(reads, TypeAdapter) else TypeAdapter(reads)
        self.proc: subprocess.Popen | None = None
        self.cancelled = False
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._lock = threading.Lock()

    def start(self, request: BaseModel) -> None:
        """Start the child with its first request. Raises OSError when it cannot start."""
        if self.running():
            raise RuntimeError("a child process is already running")
        self.cancelled = False
        self._tail.clear()
        self.proc = subprocess.Popen(
            self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=worker_environment(), text=True, encoding="utf-8", errors="replace", bufsize=1,
            start_new_session=os.name == "posix")
        proc, stderr_done = self.proc, threading.Event()
        threading.Thread(target=self._follow_stderr, args=(proc, stderr_done), name="child-stderr",
                         daemon=True).start()
        threading.Thread(target=self._follow_stdout, args=(proc, stderr_done), name="child-stdout",
                         daemon=True).start()
        self.send(request)

    def send(self, request: BaseModel) -> bool:
        """Another request on the child's stdin; False when it is gone."""
        proc = self.proc
        if proc is None or proc.poll() is not None or proc.stdin is None:
            return False
        try:
            with self._lock:
                proc.stdin.write(request.model_dump_json() + "\n")
                proc.stdin.flush()
            return True
        except (OSError, ValueError):  # it died meanwhile; `ended` says how
            return False

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def cancel(self) -> None:
        """End the child and whatever it started, now."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        self.cancelled = True
        try:
            if os.name == "posix":
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        except (ProcessLookupError, PermissionError, OSError):
            pass

    @property
    def tail(self) -> str:
        return "\n".join(self._tail)

    # ---- reader threads ---------------------------------------------------------------------------
    def _emit(self, signal_: Any, *args: Any) -> None:
        try:
            signal_.emit(*args)
        except RuntimeError:
            pass  # the page that started it was closed

    def _follow_stdout(self, proc: subprocess.Popen, stderr_done: threading.Event) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                message = self.reads.validate_json(line)
            except (ValidationError, ValueError):
                self._tail.append(f"(not a reply) {line[:300]}")
                continue
            self._emit(self.reply, message)
        code = proc.wait()
        stderr_done.wait(5)  # the tail is complete when `ended` explains a failure
        self._emit(self.ended, code, self.tail)

    def _follow_stderr(self, proc: subprocess.Popen, stderr_done: threading.Event) -> None:
        try:
            assert proc.stderr is not None
            for line in proc.stderr:
                if line.strip():
                    self._tail.append(line.rstrip("\n"))
        finally:
            stderr_done.set()


def describe_end(code: int, tail: str, what: str) -> str:
    """Why a child ended without a result, in one line."""
    last = [line for line in tail.splitlines() if line.strip()][-1:]
    if code < 0:
        try:
            how = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"ended by signal {-code}"
        if -code == 9:
            how += ": out of memory?"
    else:
        how = f"exit code {code}"
    return f"the {what} process ended ({how})" + (f": {last[0]}" if last else "")
