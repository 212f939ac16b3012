"""Run `grpo-studio` commands in child processes cheaply, for the fault-injection tests.

A `kill -9` needs a process of its own, and a fresh Python that imports torch, transformers and
TRL costs seconds of CPU each time. The children here are forked from a forkserver that imported
those once (a clean, single-threaded process: forking it is safe, unlike forking pytest), so each
command costs only its own work. The command runs through `grpo_studio.cli.main`, the same code as
the `grpo-studio` script; its stdout and stderr are captured in files, and the exit status is the
child's (-9 when it killed itself at a fault point).

`GRPO_STUDIO_FAULT` (see grpo_studio/engine/faults.py) in `env` makes the command fail on purpose.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
import types
from dataclasses import dataclass
from pathlib import Path

PRELOAD = ["grpo_studio.cli", "grpo_studio.engine.run", "grpo_studio.engine.trainer", "grpo_studio.engine.export",
           "grpo_studio.engine.evaluate", "peft", "datasets", "trl", "forkserver_ready"]
_context = None


@dataclass
class Outcome:
    rc: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"exit {self.rc}\n--- stdout\n{self.out[-3000:]}\n--- stderr\n{self.err[-3000:]}"


def _context_for_tests():  # noqa: ANN202
    global _context
    if _context is None:
        _context = mp.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def _child(args: list[str], env: dict[str, str], out: str, err: str, cwd: str | None, entry: str) -> None:
    os.environ.pop("GRPO_STUDIO_FAULT", None)  # only what this command asks for, never the server's
    os.environ.update(env)
    if cwd:
        os.chdir(cwd)
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - lives as long as the child
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    if entry == "worker":  # the window's training process: events as JSON lines on stdout
        from grpo_studio.engine.worker import main
    else:
        from grpo_studio.cli import main

    code = main(args)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip atexit handlers inherited from the server


@dataclass
class Child:
    """A running command: its process, where its output goes, and finish() to wait for its Outcome."""

    proc: mp.process.BaseProcess
    out_path: Path
    err_path: Path
    args: list[str]

    def output(self) -> tuple[str, str]:
        return self.out_path.read_text(errors="replace"), self.err_path.read_text(errors="replace")

    def wait_for(self, path: Path, timeout: float = 300) -> None:
        """Until `path` exists (a pause point's FAULT_PAUSED file); fails if the command ends first."""
        deadline = time.monotonic() + timeout
        while not path.exists():
            assert self.proc.is_alive(), f"grpo-studio {' '.join(self.args)} ended first: {self.finish()}"
            assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
            time.sleep(0.05)

    def wait_for_text(self, text: str, timeout: float = 60) -> None:
        """Until the command has written `text` to stdout or stderr."""
        deadline = time.monotonic() + timeout
        while not any(text in stream for stream in self.output()):
            assert self.proc.is_alive(), f"grpo-studio {' '.join(self.args)} ended first: {self.finish()}"
            assert time.monotonic() < deadline, f"{text!r} did not appear within {timeout} s"
            time.sleep(0.02)

    def finish(self, timeout: float = 300) -> Outcome:
        self.proc.join(timeout)
        if self.proc.exitcode is None:
            self.proc.kill()
            self.proc.join()
            raise TimeoutError(f"grpo-studio {' '.join(self.args)} did not end within {timeout} s")
        outcome = Outcome(self.proc.exitcode, *self.output())
        shutil.rmtree(self.out_path.parent, ignore_errors=True)
        return outcome


def start(args: list[str], env: dict[str, str] | None = None, cwd: str | Path | None = None,
          entry: str = "cli") -> Child:
    """Start `grpo-studio ARGS` (entry="worker": the window's worker process) in a child."""
    tmp = Path(tempfile.mkdtemp(prefix="grpo-fault-"))
    out, err = tmp / "out", tmp / "err"
    out.touch()
    err.touch()
    proc = _context_for_tests().Process(target=_child, args=(list(args), dict(env or {}), str(out), str(err),
                                                              str(cwd) if cwd else None, entry))
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")  # the child needs nothing from pytest's main
    try:
        proc.start()
    finally:
        sys.modules["__main__"] = main
    return Child(proc, out, err, list(args))


def cli(*args: str, env: dict[str, str] | None = None, cwd: str | Path | None = None,
        timeout: float = 300) -> Outcome:
    """`grpo-studio ARGS` in a child process, to its end."""
    return start(list(args), env, cwd).finish(timeout)
