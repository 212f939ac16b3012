"""One background task at a time for a widget: the newest wins, results hop back queued.

Orange's TaskState shape, with the same API as the `TaskRunner` of the seams branch (gui/tasks.py)
so that it can replace this module by changing an import: `start(work, on_done, on_failed)` runs
`work(state)` on the runner's own thread and cancels the task before it (`state.is_cancelled()` turns
true and its `on_cancel` callbacks run at once, e.g. sqlite3's `interrupt`); a cancelled task's
result is dropped, never shown. The work never touches widgets; its result or exception comes back
through a queued signal and `on_done` / `on_failed` run on the GUI thread.

The runner's pool has one thread, so its tasks run one after another and may share an object that is
not thread-safe (an SQLite connection) without a lock.
"""

from __future__ import annotations

import threading
import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal


class TaskState:
    """What a running task sees of the widget that started it (any method, from any thread)."""

    def __init__(self, on_done: Callable[[Any], None], on_failed: Callable[[BaseException, str], None] | None):
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._on_cancel: list[Callable[[], None]] = []
        self.on_done, self.on_failed = on_done, on_failed

    def is_cancelled(self) -> bool:
        return self._cancelled.is_set()

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Run `callback` when the task is cancelled (at once if it already was)."""
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
    except Exception:  # noqa: BLE001 - cancelling must never raise into the GUI (e.g. a closed connection)
        pass


class _Relay(QObject):
    """Lives on the GUI thread as long as its runner; the pool thread emits, Qt queues the call over."""

    finished = Signal(object, object)  # state, result
    errored = Signal(object, object, str)  # state, exception, traceback text


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
            pass  # the widget that asked was deleted meanwhile: nobody is left to tell


class LatestWins(QObject):
    """One background task at a time for the object that owns it; a new one cancels the old."""

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)
        self.state: TaskState | None = None  # the current task's; None when idle
        self._relay = _Relay(self)
        self._relay.finished.connect(self._finished)
        self._relay.errored.connect(self._errored)

    def start(self, work: Callable[[TaskState], Any], on_done: Callable[[Any], None],
              on_failed: Callable[[BaseException, str], None] | None = None) -> TaskState:
        self.cancel()
        self.state = TaskState(on_done, on_failed)
        self.pool.start(_Run(work, self.state, self._relay))
        return self.state

    def _finished(self, state: TaskState, result: Any) -> None:
        if state is self.state:
            self.state = None
            state.on_done(result)

    def _errored(self, state: TaskState, exc: BaseException, details: str) -> None:
        if state is self.state:
            self.state = None
            if state.on_failed is not None:
                state.on_failed(exc, details)

    def cancel(self) -> None:
        """Tell the current task to stop; its result, when it comes, is dropped."""
        state, self.state = self.state, None
        if state is not None:
            state.cancel()

    def is_running(self) -> bool:
        """A task was started and its result has not come back yet."""
        return self.state is not None

    def shutdown(self, timeout_ms: int = 30000) -> bool:
        """Cancel, and wait for the thread (none may outlive the interpreter)."""
        self.cancel()
        return self.pool.waitForDone(timeout_ms)
