"""Run slow Python work on a thread pool and get the result back on the GUI thread.

The work function never touches widgets; its result (or exception) comes back through a queued
signal to an object that lives on the GUI thread, which then calls `done` or `failed` there.
A `progress(text, fraction)` callback may be passed to work that reports progress.
"""

from __future__ import annotations

import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal


class _Relay(QObject):
    finished = Signal(object)
    errored = Signal(object, str)
    progressed = Signal(str, float)


class _Task(QRunnable):
    def __init__(self, fn: Callable[..., Any], args: tuple, kwargs: dict, relay: _Relay):
        super().__init__()
        self.fn, self.args, self.kwargs, self.relay = fn, args, kwargs, relay
        self.setAutoDelete(True)

    def run(self) -> None:
        try:
            try:
                result = self.fn(*self.args, **self.kwargs)
            except BaseException as exc:  # noqa: BLE001 - reported on the GUI thread
                self.relay.errored.emit(exc, traceback.format_exc())
            else:
                self.relay.finished.emit(result)
        except RuntimeError:
            pass  # the widget that asked was closed meanwhile: nobody is left to tell


class Job(QObject):
    """One piece of background work; keep a reference while it runs (results go to its callbacks)."""

    done = Signal(object)
    failed = Signal(object, str)  # exception, traceback text
    progress = Signal(str, float)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.running = True
        self._relay = _Relay(self)
        self._relay.finished.connect(self._finish)
        self._relay.errored.connect(self._fail)
        self._relay.progressed.connect(self.progress)

    def _finish(self, result: Any) -> None:
        self.running = False
        self.done.emit(result)

    def _fail(self, exc: Any, details: str) -> None:
        self.running = False
        self.failed.emit(exc, details)

    def report(self, text: str, fraction: float) -> None:
        """A progress callback safe to call from the worker thread."""
        try:
            self._relay.progressed.emit(text, fraction)
        except RuntimeError:
            pass  # the dialog was closed


def run_in_background(fn: Callable[..., Any], *args: Any, pool: QThreadPool | None = None,
                      parent: QObject | None = None, with_progress: bool = False, **kwargs: Any) -> Job:
    job = Job(parent)
    if with_progress:
        kwargs["progress"] = job.report
    (pool or QThreadPool.globalInstance()).start(_Task(fn, args, kwargs, job._relay))
    return job


def serial_pool(parent: QObject | None = None) -> QThreadPool:
    """A pool of one thread: jobs run one after another, never at the same time."""
    pool = QThreadPool(parent)
    pool.setMaxThreadCount(1)
    return pool
