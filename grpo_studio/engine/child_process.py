"""One way to run work in a child process: start it, stream its typed messages, cancel or kill it.

Heavy or risky work (training, user reward code, loading a model to merge it) runs in a child
process, so a crash, a hang or an out-of-memory kill costs that work, never the window and its
unsaved edits. Both ends speak pydantic models, one JSON object a line:

    parent ──stdin──> child     the request (one typed message); a long-lived child (the
                                playground) keeps stdin open and reads further requests
    parent <─stdout── child     typed messages (progress, events, the result), nothing else
    parent <─stderr── child     the child's log: library chatter, tracebacks (followed line by line)

Parent side, `ChildProcess`: start, iterate over `messages()`, `send()` further requests to a
child started with `keep_stdin_open`, `cancel()` / `kill()` from any thread, `wait()`, and the tail
of stderr to explain a child that died without a word (`describe_end`). Child side,
`ParentLink.claim()`: takes over stdout for messages before anything can print to it (file
descriptor 1 is moved to a private copy and pointed at stderr, so even C libraries printing to
stdout land in the log), then `receive()` the request, `requests()` for further ones, and `send()`
messages. Qt-free: the window drives it from a worker thread, the engine could from anywhere.

This module is the package's one `subprocess.Popen`; tests/engine/test_one_way_to_start_children.py
keeps it so and lists the few exceptions with their reasons.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from pydantic import BaseModel, TypeAdapter

from grpo_studio.engine.error_text import first_line

TAIL_LINES = 60  # stderr lines kept to explain a failure


def package_root() -> Path:
    """The folder that holds the grpo_studio package this process runs from."""
    import grpo_studio

    return Path(grpo_studio.__file__).resolve().parent.parent


def child_environment() -> dict[str, str]:
    env = dict(os.environ)
    # The child must import the same grpo_studio as the parent (a checkout may shadow an install).
    root = str(package_root())
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"  # stderr lines arrive as they are printed
    return env


def _adapter(reads: Any) -> TypeAdapter:
    return reads if isinstance(reads, TypeAdapter) else TypeAdapter(reads)


class ChildProcess:
    """A child process and its message stream, seen from the parent.

    `reads`: the type of the messages the child sends (a model, or an annotated union of models).
    `own_group`: start the child in a process group of its own, so `kill()` also ends what it started
    (the reward process of a bench); off for training, which should hear the terminal's Ctrl-C too.
    `keep_stdin_open`: the child serves further requests (`send()`) after the first; otherwise its
    stdin closes once the request is written, so a child reading to the end of it is not left waiting.
    `on_log(line)`: each stderr line, on a thread of its own. `on_bad_line(line)`: a stdout line that
    is not a message (default: passed to on_log)."""

    def __init__(self, command: Sequence[str], *, reads: Any, env: dict[str, str] | None = None,
                 own_group: bool = True, keep_stdin_open: bool = False,
                 on_log: Callable[[str], None] | None = None, on_bad_line: Callable[[str], None] | None = None):
        self.command = list(command)
        self.reads = _adapter(reads)
        self.env = env if env is not None else child_environment()
        self.own_group = own_group and os.name == "posix"
        self.keep_stdin_open = keep_stdin_open
        self.on_log = on_log or (lambda line: None)
        self.on_bad_line = on_bad_line or (lambda line: self.on_log(f"(not a message) {line[:300]}"))
        self.proc: subprocess.Popen | None = None
        self.started = threading.Event()  # set once start() has run, whether or not the child started
        self.cancelled = False
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._lock = threading.Lock()
        self._stdin_lock = threading.Lock()
        self._drain: threading.Thread | None = None

    # ---- starting and streaming ----------------------------------------------------------------
    def start(self, request: BaseModel | None = None) -> None:
        """Start the child and hand it the request. Raises OSError when it cannot start."""
        try:
            with self._lock:
                if self.cancelled:
                    raise OSError("cancelled before it started")
                self.proc = subprocess.Popen(
                    self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    env=self.env, text=True, encoding="utf-8", errors="replace", bufsize=1,
                    start_new_session=self.own_group)
        finally:
            self.started.set()
        self._drain = threading.Thread(target=self._follow_stderr, name="child-stderr", daemon=True)
        self._drain.start()
        if request is not None:
            self.send(request)  # False: it died at once; the exit code and stderr say why
        if not self.keep_stdin_open:
            self.close_stdin()

    def send(self, message: BaseModel) -> bool:
        """One message on the child's stdin (from any thread); False when it can no longer read one."""
        proc = self.proc
        if proc is None or proc.stdin is None:
            return False
        try:
            with self._stdin_lock:
                proc.stdin.write(message.model_dump_json() + "\n")
                proc.stdin.flush()
            return True
        except (OSError, ValueError):  # the child is gone (a broken pipe), or stdin was closed
            return False

    def close_stdin(self) -> None:
        """No more requests: a child reading its stdin to the end sees it end."""
        proc = self.proc
        if proc is not None and proc.stdin is not None:
            with self._stdin_lock:
                try:
                    proc.stdin.close()
                except OSError:
                    pass

    def messages(self) -> Iterator[Any]:
        """The child's messages, decoded, until it closes its stdout (usually: until it ends)."""
        assert self.proc is not None and self.proc.stdout is not None, "start() first"
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                message = self.reads.validate_json(line)
            except ValueError:  # never let one odd line end the stream
                self.on_bad_line(line)
                continue
            yield message

    def wait(self, timeout: float | None = None) -> int:
        """The exit code (negative: ended by that signal), once the child ended and stderr was read."""
        assert self.proc is not None, "start() first"
        code = self.proc.wait(timeout)
        if self._drain is not None:
            self._drain.join(timeout=5)
        return code

    def _follow_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            self._tail.append(line)
            self.on_log(line)

    @property
    def tail(self) -> str:
        """The last lines the child printed on stderr."""
        return "\n".join(self._tail)

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # ---- ending it --------------------------------------------------------------------------------
    def terminate(self) -> None:
        """Ask the child to end (SIGTERM): a worker that handles it finishes cleanly."""
        self.send_signal(signal.SIGTERM)

    def send_signal(self, sig: int) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(sig)
            except OSError:
                pass

    def kill(self) -> None:
        """End the child at once, with whatever it started when it has a process group of its own."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            if self.own_group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        except (ProcessLookupError, PermissionError, OSError):
            pass

    def cancel(self) -> None:
        """The user cancelled: end it at once (from any thread, before or after it started). A child that
        has already exited is not cancelled: its result stands (a finished export is not removed)."""
        with self._lock:
            proc = self.proc
            if proc is not None and proc.poll() is not None:
                return
            self.cancelled = True
        self.kill()


def exit_words(code: int) -> str:
    """A process's exit status in words (a negative code is the signal that ended it, as Python's
    subprocess and multiprocessing report it).

    >>> exit_words(-11)
    'killed by SIGSEGV'
    >>> exit_words(3)
    'exit code 3'
    """
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def describe_end(code: int, tail: str, what: str) -> str:
    """Why a child ended without a result, in one line: how it ended and the last line it printed.

    >>> describe_end(-9, "loading\\nKilled", "export")
    'the export process ended (killed by SIGKILL: out of memory?): Killed'
    >>> describe_end(1, "", "evaluation")
    'the evaluation process ended (exit code 1)'
    """
    last = [line for line in tail.splitlines() if line.strip()][-1:]
    how = exit_words(code) + (": out of memory?" if code == -getattr(signal, "SIGKILL", 9) else "")
    return f"the {what} process ended ({how})" + (f": {last[0]}" if last else "")


class ParentLink:
    """The child's end: the request from stdin, messages to the parent on the original stdout."""

    def __init__(self, stream: Any):
        self.stream = stream
        self._lock = threading.Lock()

    @classmethod
    def claim(cls) -> "ParentLink":
        """Reserve stdout for messages; fd 1 and sys.stdout now go to stderr (the log)."""
        message_fd = os.dup(1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        return cls(os.fdopen(message_fd, "w", encoding="utf-8", buffering=1))

    def receive(self, reads: Any) -> Any:
        """The parent's request: one message on stdin."""
        return _adapter(reads).validate_json(sys.stdin.readline())

    def requests(self, reads: Any) -> Iterator[Any]:
        """Further requests of a parent that keeps stdin open, until it closes it (or dies). A line
        that is not one is said on stderr (the log) and skipped."""
        adapter = _adapter(reads)
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                yield adapter.validate_json(line)
            except ValueError as exc:
                print(f"(not a request) {line[:300].rstrip()}: {first_line(exc)}", file=sys.stderr)

    def send(self, message: BaseModel) -> None:
        """One message, one line, flushed (from any thread)."""
        line = message.model_dump_json() + "\n"
        with self._lock:
            self.stream.write(line)
            self.stream.flush()
