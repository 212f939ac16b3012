"""Background work for a widget: one task at a time, the newest wins, results hop back queued.

The shape is Orange's `TaskState` / `ConcurrentWidgetMixin`. A widget owns a `TaskRunner`; `start`
runs `work(state)` on a pool thread and cancels the task it replaces (its result, when it comes, is
dropped). The work never touches widgets: it reports through its `TaskState` (progress, "was I
cancelled?", and `on_cancel` to end a child process at once), and its result or exception comes
back through a queued signal to the GUI thread, where `on_done` / `on_failed` run.

    self.preview_task = TaskRunner(self)
    config = self.doc.config.model_copy(deep=True)        # copied on the GUI thread
    self.preview_task.start(lambda state: preview(config), self._show)

Work that runs in a child process uses `child_runner.run_in_child(request, state)`.
"""

from __future__ import annotations

import threading
import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal


class TaskState:
    """What a running task sees of the widget that started it (any method, from any thread)."""

    def __init__(self, relay: "_Relay | None" = None) -> None:
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._on_cancel: list[Callable[[], None]] = []
        self._relay = relay
        self._callbacks: tuple[Any, Any, Any] = (None, None, None)  # on_done, on_failed, on_progress
        self.child: Any = None  # the child process the task runs, once started (child_runner.run_in_child)

    def set_progress(self, text: str, fraction: float) -> None:
        relay = self._relay
        if relay is not None and not self.is_cancelled():
            try:
                relay.progressed.emit(self, text, fraction)
            except RuntimeError:
                pass  # the widget is gone

    def is_cancelled(self) -> bool:
        return self._cancelled.is_set()

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Run `callback` when the task is cancelled (at once if it already was): e.g. kill its child."""
        with self._lock:
            now = self._cancelled.is_set()
            if not now:
                self._on_cancel.append(callback)
        if now:
            _quietly(callback)

    def cancel(self) -> None:
        with self._lock:
            if self._cancelled.is_set():
                return
            self._cancelled.set()
            callbacks, self._on_cancel = self._on_cancel, []
        for callback in callbacks:
            _quietly(callback)


def _quietly(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:  # noqa: BLE001 - ending a task must never raise into the GUI
        traceback.print_exc()


class _Relay(QObject):
    """Lives on the GUI thread, one per runner (for its whole life: deleting one while a pool thread
    may still emit on it crashes); the pool thread emits, Qt queues the call over."""

    finished = Signal(object, object)  # state, result
    errored = Signal(object, object, str)  # state, exception, traceback text
    progressed = Signal(object, str, float)  # state, text, fraction


class _Run(QRunnable):
    def __init__(self, work: Callable[[TaskState], Any], state: TaskState, relay: _Relay):
        super().__init__()
        self.work, self.state, self.relay = work, state, relay
        self.setAutoDelete(True)

    def run(self) -> None:
        try:
            if self.state.is_cancelled():
                return  # replaced before it began: nobody wants its result
            try:
                result = self.work(self.state)
            except BaseException as exc:  # noqa: BLE001 - reported on the GUI thread
                self.relay.errored.emit(self.state, exc, traceback.format_exc())
            else:
                self.relay.finished.emit(self.state, result)
        except RuntimeError:
            pass  # the widget that asked was closed meanwhile: nobody is left to tell


class TaskRunner(QObject):
    """One background task at a time for the widget that owns it; a new one cancels the old.
    Besides the callbacks given to `start`, the current task's progress and result are signals, for
    whoever else watches (a status bar, a test)."""

    progressed = Signal(str, float)  # text, fraction
    finished = Signal(object)  # the result

    def __init__(self, parent: QObject | None = None, *, pool: QThreadPool | None = None):
        super().__init__(parent)
        if pool is None:
            pool = QThreadPool(self)
            pool.setMaxThreadCount(1)  # tasks run one after another: a cancelled one finishes first
        self.pool = pool
        self.state: TaskState | None = None  # the current task's; None when idle
        self._relay = _Relay(self)
        self._relay.finished.connect(self._finished)
        self._relay.errored.connect(self._errored)
        self._relay.progressed.connect(self._progressed)

    def start(self, work: Callable[[TaskState], Any], on_done: Callable[[Any], None],
              on_failed: Callable[[BaseException, str], None] | None = None,
              on_progress: Callable[[str, float], None] | None = None) -> TaskState:
        self.cancel()
        state = TaskState(self._relay)
        state._callbacks = (on_done, on_failed, on_progress)
        self.state = state
        self.pool.start(_Run(work, state, self._relay))
        return state

    # A result is shown only while its task is the current one (not cancelled, not replaced).
    def _finished(self, state: TaskState, result: Any) -> None:
        if state is self.state:
            self.state = None
            state._callbacks[0](result)
            self.finished.emit(result)

    def _errored(self, state: TaskState, exc: BaseException, details: str) -> None:
        if state is self.state:
            self.state = None
            if state._callbacks[1] is not None:
                state._callbacks[1](exc, details)

    def _progressed(self, state: TaskState, text: str, fraction: float) -> None:
        if state is not self.state:
            return
        if state._callbacks[2] is not None:
            state._callbacks[2](text, fraction)
        self.progressed.emit(text, fraction)

    def cancel(self) -> None:
        """Cancel the current task: it is told to stop, and its result is dropped."""
        state, self.state = self.state, None
        if state is not None:
            state.cancel()

    def is_running(self) -> bool:
        """A task was started and its result has not come back yet."""
        return self.state is not None

    def shutdown(self, timeout_ms: int = 30000) -> bool:
        """Cancel and wait for the pool (a thread must not outlive the interpreter)."""
        self.cancel()
        return self.pool.waitForDone(timeout_ms)
