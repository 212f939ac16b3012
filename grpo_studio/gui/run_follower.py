"""Follow a run that another process trains (the command line, another window): every second, read what
its store gained since the last read, off the GUI thread, and hand it to the Training page.

Read-only by construction: the store is opened read-only, and the only other thing looked at is who
holds the run's lock (engine/run_lock.py). When nobody holds it any more, the last read carries the
run's end and the follower stops by itself.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from grpo_studio.engine.error_text import first_line
from grpo_studio.gui.stored_run import RunUpdate, read_more
from grpo_studio.gui.tasks import TaskRunner, TaskState

FOLLOW_MS = 1000


def _read(state: TaskState, run_dir: Path, after_step: int, after_event_id: int) -> RunUpdate:
    from grpo_studio.engine.run_lock import lock_holder
    from grpo_studio.engine.store import RunStore

    if not (run_dir / "run.db").is_file():  # its process has not made the store yet
        return RunUpdate({}, {}, [], lock_holder(run_dir), after_event_id, 0)
    with RunStore(run_dir, readonly=True) as store:  # opened per read: a few ms, nothing held between reads
        state.on_cancel(store.db.interrupt)
        return read_more(store, run_dir, after_step, after_event_id)


class RunFollower(QObject):
    updated = Signal(object)  # a RunUpdate; its `holder` is None once the training process has ended
    failed = Signal(str)  # the store could not be read (one line); the follower tries again next time

    def __init__(self, run_dir: Path, after_step: int, after_event_id: int, parent: QObject | None = None):
        super().__init__(parent)
        self.run_dir = Path(run_dir)
        self.after_step = after_step
        self.after_event_id = after_event_id
        self._reads = TaskRunner(self)
        self.timer = QTimer(self)
        self.timer.setInterval(FOLLOW_MS)
        self.timer.timeout.connect(self.poll)
        self.timer.start()

    @property
    def active(self) -> bool:
        return self.timer.isActive()

    def poll(self) -> None:
        """Read what is new now (the timer does this every second; a read still going is left to finish)."""
        if self._reads.is_running():
            return
        run_dir, step, event_id = self.run_dir, self.after_step, self.after_event_id
        self._reads.start(lambda state: _read(state, run_dir, step, event_id), self._arrived, self._failed)

    def _arrived(self, update: RunUpdate) -> None:
        if not self.active:
            return
        for steps, _ in update.metrics.values():
            self.after_step = max(self.after_step, int(steps[-1]))
        self.after_event_id = update.last_event_id
        if update.holder is None:
            self.stop()  # its end is in this update: nothing more will come
        self.updated.emit(update)

    def _failed(self, exc: BaseException, details: str) -> None:
        if self.active:
            self.failed.emit(first_line(exc))

    def stop(self) -> None:
        self.timer.stop()
        self._reads.cancel()

    def shutdown(self, timeout_ms: int = 10000) -> None:
        self.stop()
        self._reads.shutdown(timeout_ms)
