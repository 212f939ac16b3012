"""RunController: starts the training worker process, supervises it from a QThread, and turns its
JSON-lines events into Qt signals.

The worker is a separate process (`python -m grpo_studio.engine.worker`), so a CUDA error, an
out-of-memory kill or a segfault costs a run, never the window. Its stdout carries only events;
its stderr (library chatter, tracebacks) is shown in the log pane and written to the run folder's
train.log. When the process dies without saying why, the controller says it: exit code, signal,
and the last lines it printed.

Stop asks politely (a STOP file in the run folder: finish the step, save a checkpoint, exit 130);
Kill ends the process at once. Starting, streaming and killing: engine/child_process.py.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

from PySide6.QtCore import QObject, QThread, Signal, Slot

from grpo_studio.engine.child_process import ChildProcess, child_environment, exit_words
from grpo_studio.engine.events import Event, Failed, Finished, Log
from grpo_studio.engine.store import RunFolder


def worker_command(run: str | Path, *, resume: bool = False, output: str | Path | None = None,
                   overrides: Sequence[str] = ()) -> list[str]:
    cmd = [sys.executable, "-m", "grpo_studio.engine.worker", str(run)]
    if output is not None:
        cmd += ["--output", str(output)]
    if resume:
        cmd.append("--resume")
    for item in overrides:
        cmd += ["--set", item]
    return cmd


worker_environment = child_environment  # the worker imports the same grpo_studio as the window


def describe_exit(code: int) -> tuple[str, str]:
    """A reason and a hint for a worker that ended without a result event."""
    if code < 0:
        name = exit_words(code).removeprefix("killed by ")
        if -code == getattr(signal, "SIGKILL", 9):
            return (f"the training process was killed ({name})",
                    "When nobody killed it, the system most likely ran out of memory: lower the batch size, "
                    "num_generations or max_completion_length.")
        if -code == getattr(signal, "SIGSEGV", 11):
            return (f"the training process crashed ({name})",
                    "A native library (CUDA, bitsandbytes, a kernel) crashed; the log shows its last words.")
        return f"the training process ended by {name}", ""
    return (f"the training process exited with code {code} without reporting why",
            "The log below shows what it printed last.")


class _Supervisor(QObject):
    """Lives on the controller's thread: runs the worker and reads its event stream to the end."""

    event = Signal(object)
    stderr_line = Signal(str)
    ended = Signal(int, str)  # exit code, last stderr lines

    def __init__(self, command: list[str], env: dict[str, str]):
        super().__init__()
        # Training shares the window's process group: Ctrl-C in the terminal stops it cleanly too.
        self.child = ChildProcess(command, reads=Event, env=env, own_group=False, on_log=self._log_line,
                                  on_bad_line=lambda line: self.stderr_line.emit(f"(not an event) {line[:300]}"))
        self.run_dir: Path | None = None
        self._log_lock = threading.Lock()
        self._log_buffer: list[str] = []
        self._log_file: Any = None

    @Slot()
    def run(self) -> None:
        try:
            self.child.start()
        except OSError as exc:
            self.ended.emit(-255, f"cannot start {self.child.command[0]}: {exc}")
            return
        for event in self.child.messages():
            if event.kind == "opened":
                self._open_log(Path(event.run_dir))
            self.event.emit(event)
        code = self.child.wait()
        with self._log_lock:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
        self.ended.emit(code, self.child.tail)

    def _open_log(self, run_dir: Path) -> None:
        with self._log_lock:
            self.run_dir = run_dir
            try:
                self._log_file = RunFolder(run_dir).log_file.open("a", encoding="utf-8")
                self._log_file.writelines(self._log_buffer)
                self._log_file.flush()
            except OSError:
                self._log_file = None
            self._log_buffer = []

    def _log_line(self, line: str) -> None:
        """A stderr line of the worker (on the child's stderr thread): to train.log and the log pane."""
        with self._log_lock:
            if self._log_file is not None:
                self._log_file.write(line + "\n")
                self._log_file.flush()
            else:
                self._log_buffer.append(line + "\n")
        self.stderr_line.emit(line)


class RunController(QObject):
    """One training run at a time: start, stop, kill; its events as signals on the GUI thread."""

    event = Signal(object)  # every decoded engine event, in order
    logLine = Signal(str)  # one line the worker printed on stderr
    stateChanged = Signal(str)  # "idle" | "running" | "stopping"
    runEnded = Signal(object)  # the final Finished or Failed (made up here when the worker died silently)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.state = "idle"
        self.run_dir: Path | None = None
        self.last_event: Any = None
        self._final: Any = None
        self._stop_requested = False
        self._thread: QThread | None = None
        self._supervisor: _Supervisor | None = None
        self.command: list[str] = []

    # ---- control ---------------------------------------------------------------------------
    def is_active(self) -> bool:
        return self.state != "idle"

    def start(self, run: str | Path, *, resume: bool = False, output: str | Path | None = None,
              overrides: Sequence[str] = ()) -> None:
        """Start the worker on a run file (or, with resume, a run folder)."""
        self.start_command(worker_command(run, resume=resume, output=output, overrides=overrides))

    def start_command(self, command: list[str], env: dict[str, str] | None = None) -> None:
        if self.is_active():
            raise RuntimeError("a run is already in progress")
        self.command = command
        self.run_dir = None
        self.last_event = None
        self._final = None
        self._stop_requested = False
        thread = QThread(self)
        supervisor = _Supervisor(command, env or worker_environment())
        supervisor.moveToThread(thread)
        thread.started.connect(supervisor.run)
        supervisor.event.connect(self._on_event)
        supervisor.stderr_line.connect(self.logLine)
        supervisor.ended.connect(self._on_ended)
        self._thread, self._supervisor = thread, supervisor
        self._set_state("running")
        thread.start()

    def stop(self) -> None:
        """Finish the current step, save a checkpoint, exit (the worker's own clean stop)."""
        if not self.is_active():
            return
        self._stop_requested = True
        if self.run_dir is not None:
            try:
                RunFolder(self.run_dir).request_stop()
            except OSError:
                self._signal_worker(signal.SIGTERM)
        else:
            # Before the run folder exists there is nothing to save: SIGTERM ends it cleanly too.
            self._signal_worker(signal.SIGTERM)
        self._set_state("stopping")

    def kill(self) -> None:
        """End the worker now; the newest complete checkpoint remains resumable."""
        if self.is_active():
            self._stop_requested = True
            child = self._child()
            if child is not None:
                child.kill()

    def _child(self) -> ChildProcess | None:
        sup = self._supervisor
        if sup is None:
            return None
        sup.child.started.wait(timeout=10)
        return sup.child

    def _signal_worker(self, sig: int) -> None:
        child = self._child()
        if child is not None:
            child.send_signal(sig)

    def wait(self, timeout_ms: int = 30000) -> bool:
        """Block until the supervising thread ends (for closing the window and for tests)."""
        return self._thread.wait(timeout_ms) if self._thread is not None else True

    # ---- events ----------------------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.stateChanged.emit(state)

    def _on_event(self, event: Any) -> None:
        self.last_event = event
        if event.kind == "opened":
            self.run_dir = Path(event.run_dir)
            if self._stop_requested:  # Stop was pressed before the folder existed
                RunFolder(self.run_dir).request_stop()
        if event.kind in ("finished", "failed"):
            self._final = event
        self.event.emit(event)

    def _on_ended(self, code: int, tail: str) -> None:
        final = self._final
        if final is None:
            if self._stop_requested and code in (130, -signal.SIGTERM, 0):
                final = Finished(step=0, stopped=True)
                self.event.emit(Log(level="warning", message="stopped before training began"))
            elif code == -255:
                final = Failed(reason=tail, hint="Check that Python and grpo-studio are installed correctly.")
            else:
                reason, hint = describe_exit(code)
                if self._stop_requested and code == -getattr(signal, "SIGKILL", 9):
                    reason, hint = "the training process was killed on request", (
                        "Resume continues from the newest complete checkpoint.")
                final = Failed(reason=reason, hint=hint, details=tail)
            self.event.emit(final)
        thread = self._thread
        self._thread, self._supervisor = None, None
        if thread is not None:
            thread.quit()
            thread.wait(5000)
            thread.deleteLater()
        self._set_state("idle")
        self.runEnded.emit(final)
