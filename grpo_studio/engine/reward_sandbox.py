"""Reward functions in a child process: a time limit per call, and a crash costs a call, not the run.

One long-lived child per reward file imports the file once and answers calls over a pipe
(multiprocessing with "spawn": a fresh interpreter that shares nothing with the trainer, CUDA
included). Each call may take `rewards.timeout_s`; when it runs over, or the child dies (segfault,
`os._exit`, killed for memory), the child is killed and the call raises a `RewardError` that names
the function and the cause. The next call starts a fresh child, which loads the file again.

Only what a function's signature asks for crosses the pipe, as plain data: `trainer_state` becomes
a `TrainerStateView` (global_step, max_steps, epoch, num_train_epochs), and calls to `log_metric`
and `log_extra` are recorded in the child and replayed on TRL's real callables here.

What this protects: the training process (and the window) from a reward that hangs, crashes the
interpreter, or calls `sys.exit`; a stuck verifier costs `timeout_s`, not the night.
What it does not: it is NOT a security sandbox. The child runs as the same user, with the same
files, network, environment variables and GPUs as the trainer; reward code can delete files, send
data anywhere, or use all the memory of the machine (the OS may then kill the child or the
trainer). Run reward files you trust. The code-execution template adds resource limits for the
model's code, which is a different matter (see resources/reward_templates/code_execution.py).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import multiprocessing.connection
import multiprocessing.util
import os
import signal
import sys
import threading
import time
import traceback
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from grpo_studio.engine.rewards import (
    RewardContractError,
    RewardError,
    RewardFunction,
    Signature,
    check_rewards,
    load_module,
    select_functions,
)

# Callables TRL passes that cannot cross a process boundary: recorded in the child, replayed here.
RECORDED = ("log_metric", "log_extra")


@dataclass(frozen=True)
class TrainerStateView:
    """What an isolated reward function receives as `trainer_state`: the fields used for shaping.

    >>> TrainerStateView(global_step=10, max_steps=100).global_step
    10
    """

    global_step: int = 0
    max_steps: int = 0
    epoch: float | None = None
    num_train_epochs: int = 0

    @classmethod
    def of(cls, state: Any) -> "TrainerStateView":
        return cls(global_step=int(getattr(state, "global_step", 0) or 0),
                   max_steps=int(getattr(state, "max_steps", 0) or 0),
                   epoch=getattr(state, "epoch", None),
                   num_train_epochs=int(getattr(state, "num_train_epochs", 0) or 0))


@dataclass(frozen=True)
class FunctionInfo:
    """A reward function as the child found it: what the parent needs to call it."""

    name: str
    signature: Signature
    line: int | None


@dataclass
class CallTiming:
    """Seconds of the newest call: as the trainer waited, and inside the child (the difference is overhead)."""

    wall: float = 0.0
    inside: float = 0.0


class RewardTimeout(RewardError):
    """A reward call (or loading the file) ran past its time limit; the reward process was killed."""


class RewardCrash(RewardError):
    """The reward process died (segfault, os._exit, killed for memory) while loading or running a function."""


def _error_data(exc: RewardError) -> dict[str, Any]:
    return {"message": exc.message, "file": exc.file, "line": exc.line, "function": exc.function,
            "details": exc.details, "contract": isinstance(exc, RewardContractError)}


def _error_from(data: dict[str, Any]) -> RewardError:
    cls = RewardContractError if data.pop("contract", False) else RewardError
    message = data.pop("message")
    return cls(message, **data)


# ---- the child ------------------------------------------------------------------------------


class _Recorder:
    """Stands in for TRL's log_metric / log_extra in the child; the parent replays the calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    def log_metric(self, name: str, value: float) -> None:
        self.calls.append(("log_metric", str(name), float(value)))

    def log_extra(self, column: str, values: list) -> None:
        plain = [v if v is None or isinstance(v, (str, int, float, bool)) else str(v) for v in values]
        self.calls.append(("log_extra", str(column), plain))


def _own_process_group() -> None:
    """Lead a process group of its own, so that what the reward code starts (a verifier, a shell,
    a pool) can be ended with it: the trainer kills the whole group when the run ends."""
    if hasattr(os, "setpgid"):
        try:
            os.setpgid(0, 0)
        except OSError:
            pass


def _end_group() -> None:
    """Kill this process's group (itself and what the reward code started), if it leads one."""
    if hasattr(os, "killpg") and os.getpgrp() == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)


def _exit_with_parent() -> None:
    """Die when the parent does, even in the middle of a user's endless loop, with what it started."""
    parent = mp.parent_process()
    if parent is None:
        return

    def watch() -> None:
        mp.connection.wait([parent.sentinel])
        _end_group()
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _child_main(conn: Any, path: str, names: list[str] | None, columns: list[str] | None,
                source: str | None) -> None:
    # Ctrl-C in a terminal reaches the whole process group: the trainer turns it into a clean stop,
    # which needs this child to keep answering rather than die mid-call.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _own_process_group()
    _exit_with_parent()
    file = Path(path)
    try:
        functions = {f.__name__: f for f in select_functions(load_module(file, source), file, names, columns)}
    except RewardError as exc:
        conn.send(("error", _error_data(exc)))
        return
    except BaseException as exc:  # noqa: BLE001 - e.g. sys.exit() at the top of the file
        conn.send(("error", {"message": f"error while loading: {type(exc).__name__}: {exc}", "file": path,
                             "line": None, "function": None, "details": traceback.format_exc()}))
        return
    conn.send(("ready", [FunctionInfo(f.__name__, f.signature, f.line) for f in functions.values()]))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            # The parent is gone (killed -9 before it could say "close"). This often comes before the
            # exit-with-parent watcher wakes: end what the reward code started here too, or it lives on.
            _end_group()
            return
        if message[0] == "close":
            return
        _, name, args, recorded = message
        recorder = _Recorder()
        for key in recorded:
            args[key] = getattr(recorder, key)
        function: RewardFunction = functions[name]
        started = time.perf_counter()
        try:
            # The same call and contract check as in-process rewards: one code path to trust.
            values = function.call(args, len(args["completions"]))
            reply: tuple = ("ok", values, recorder.calls, time.perf_counter() - started)
        except RewardError as exc:
            reply = ("error", _error_data(exc))
        except BaseException as exc:  # noqa: BLE001 - sys.exit() in user code must not end the child
            reply = ("error", _error_data(function.error(exc)))
        conn.send(reply)


# ---- the parent -----------------------------------------------------------------------------


def describe_exit(code: int | None) -> str:
    """A child's exit code in words, or "still running" (None)."""
    from grpo_studio.engine.child_process import exit_words

    return "still running" if code is None else exit_words(code)


class RewardProcess:
    """The child process that holds one reward file; restarted after a timeout or a crash."""

    def __init__(self, path: str | Path, names: list[str] | None, columns: list[str] | None, *,
                 timeout_s: float = 30.0, load_timeout_s: float = 120.0, source: str | None = None,
                 notify: Callable[[str], None] | None = None):
        self.path = Path(path)
        self.names = names
        self.columns = columns
        self.timeout_s = timeout_s
        self.load_timeout_s = load_timeout_s
        self.source = source
        self.restarts = 0
        self.notify = notify or (lambda text: None)
        self._proc: Any = None
        self._conn: Any = None
        self._finalizer: Any = None
        self.infos = self._start()

    # -- lifecycle --

    def _start(self) -> list[FunctionInfo]:
        ctx = mp.get_context("spawn")
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        # Not a daemon: daemons may not start processes, and reward code may (a multiprocessing pool).
        proc = ctx.Process(target=_child_main, name=f"rewards:{self.path.name}",
                           args=(child_conn, str(self.path), self.names, self.columns, self.source))
        with _main_module_hidden():
            proc.start()
        child_conn.close()
        self._proc, self._conn = proc, parent_conn
        # Runs on garbage collection, close(), or interpreter exit before multiprocessing joins its children.
        self._finalizer = mp.util.Finalize(self, _stop, args=(proc, parent_conn), exitpriority=10)
        reply = self._receive(self.load_timeout_s, None, "load_timeout_s", "loading")
        if reply[0] == "error":
            self.close()
            raise _error_from(reply[1])
        return reply[1]

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._proc = self._conn = None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def functions(self) -> list["IsolatedRewardFunction"]:
        return [IsolatedRewardFunction(self, info) for info in self.infos]

    # -- calls --

    def call(self, name: str, args: dict[str, Any], recorded: list[str]) -> tuple[list, list, float]:
        """Run `name(**args)` in the child: (values, recorded log calls, seconds inside the child)."""
        if not self.alive:
            if self._proc is not None:  # it died between calls (killed from outside, say): say so
                how = describe_exit(self._proc.exitcode)
                self.close()
                self.notify(f"the reward process of {self.path.name} had ended ({how}) since the last call; "
                            "restarted it")
            self.restarts += 1
            self._start()
        try:
            self._conn.send(("call", name, args, recorded))
        except (TypeError, AttributeError, ValueError) as exc:  # pickling: something that can't be sent
            raise RewardError(f"{name}: cannot send its arguments to the reward process ({exc}); set "
                              "rewards.isolate = false to run rewards in the training process",
                              file=self.path, function=name) from None
        except (BrokenPipeError, EOFError, OSError):
            pass  # the child died just now: _receive reports how
        reply = self._receive(self.timeout_s, name, "timeout_s", "running")
        if reply[0] == "error":
            raise _error_from(reply[1])
        return reply[1], reply[2], reply[3]

    def _receive(self, timeout: float, name: str | None, setting: str, doing: str) -> tuple:
        conn, proc = self._conn, self._proc
        ready = mp.connection.wait([conn, proc.sentinel], timeout)
        if conn in ready:
            try:
                return conn.recv()
            except (EOFError, OSError):
                pass  # the pipe closed: the child died; fall through to say how
        what = name or "the reward file"
        if not ready:
            self.close()
            if name is None:
                message = (f"the reward file took longer than {timeout:g} s to load (rewards.{setting}); "
                           "the reward process was stopped")
            else:
                message = (f"{name} did not return within {timeout:g} s (rewards.{setting}); the reward process "
                           "was stopped")
            raise RewardTimeout(message, file=self.path, line=self._line(name), function=name)
        proc.join(5)
        how = describe_exit(proc.exitcode)
        self.close()
        raise RewardCrash(f"the reward process died while {doing} {what} ({how})", file=self.path,
                          line=self._line(name), function=name)

    def _line(self, name: str | None) -> int | None:
        infos = getattr(self, "infos", None) or []
        return next((i.line for i in infos if i.name == name), None)


_START_LOCK = threading.Lock()  # two threads starting children at once must not swap __main__ crosswise


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Start a spawn child without importing the parent's main script in it.

    The child needs nothing from that script; spawn's default would run it again (an unguarded
    script that calls train() would then start a second run) and cost its imports."""
    with _START_LOCK:
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            sys.modules["__main__"] = main


def _stop(proc: Any, conn: Any) -> None:
    """Ask the child to finish, make sure it has, and end what the reward code started (its group)."""
    try:
        conn.send(("close",))
    except Exception:  # noqa: BLE001 - already gone
        pass
    try:
        conn.close()
    except Exception:  # noqa: BLE001
        pass
    # Wait for the exit without reaping: until join() the exited child holds its pid, so its group id
    # cannot name anybody else's processes when the group is killed.
    mp.connection.wait([proc.sentinel], 0.5)
    kill_group(proc.pid)
    if proc.is_alive():  # no group of its own (setpgid refused): kill it alone
        proc.kill()
    proc.join(5)


def kill_group(pgid: int | None) -> None:
    """SIGKILL a reward process and every process left in its group (what the reward code started)."""
    if pgid is None or not hasattr(os, "killpg"):
        return
    try:
        if os.getpgid(0) != pgid:  # never our own group (in case the child could not make its own)
            os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass  # nothing left


class IsolatedRewardFunction:
    """A reward function that runs in the reward process; called exactly like `RewardFunction`."""

    def __init__(self, process: RewardProcess, info: FunctionInfo):
        self.process = process
        self.__name__ = info.name  # TRL names metrics after this
        self.signature = info.signature
        self.path = process.path
        self.line = info.line
        self.timing = CallTiming()

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
        args = self.signature.select({"prompts": prompts, "completions": completions, **kwargs})
        callbacks = {key: args.pop(key) for key in RECORDED if key in args}
        if args.get("trainer_state") is not None:
            args["trainer_state"] = TrainerStateView.of(args["trainer_state"])
        if "environments" in args:
            args["environments"] = None  # live objects of the trainer: they cannot cross the pipe
        started = time.perf_counter()
        values, logged, inside = self.process.call(self.__name__, args, [k for k in callbacks if callbacks[k]])
        self.timing = CallTiming(time.perf_counter() - started, inside)
        values = check_rewards(self.__name__, values, len(completions))
        for kind, key, value in logged:
            callbacks[kind](key, value)
        return values

    def close(self) -> None:
        self.process.close()
