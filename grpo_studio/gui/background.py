"""One-off slow Python work on a thread pool, its result back on the GUI thread (a `Job`'s signals).

A widget's repeated work (a preview, an estimate, a check: the newest wins) uses `tasks.TaskRunner`;
this is the same machinery for work that is started once and never replaced.
"""

from __future__ import annotations

from typing import Any, Callable

from PySide6.QtCore import QObject, QThreadPool, Signal

from grpo_studio.gui.tasks import TaskRunner, TaskState


class Job(QObject):
    """One piece of background work; keep a reference while it runs (results go to its signals)."""

    done = Signal(object)
    failed = Signal(object, str)  # exception, traceback text
    progress = Signal(str, float)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.running = True

    def _finish(self, result: Any) -> None:
        self.running = False
        self.done.emit(result)

    def _fail(self, exc: Any, details: str) -> None:
        self.running = False
        self.failed.emit(exc, details)


def run_in_background(fn: Callable[..., Any], *args: Any, pool: QThreadPool | None = None,
                      parent: QObject | None = None, with_progress: bool = False, **kwargs: Any) -> Job:
    job = Job(parent)

    def work(state: TaskState) -> Any:
        if with_progress:
            kwargs["progress"] = state.set_progress
        return fn(*args, **kwargs)

    TaskRunner(job, pool=pool or QThreadPool.globalInstance()).start(work, job._finish, job._fail, job.progress.emit)
    return job


def serial_pool(parent: QObject | None = None) -> QThreadPool:
    """A pool of one thread: jobs run one after another, never at the same time."""
    pool = QThreadPool(parent)
    pool.setMaxThreadCount(1)
    return pool
