"""The window's side of the child processes that work for it (engine/child_tasks.py is the child,
engine/child_process.py's `ChildProcess` the one way to start, stream, cancel and kill one).

- A one-shot task (Check, the reward bench, Evaluate, Export) is the work of a `TaskRunner`
  (tasks.py): `run_in_child(request, state)` runs it in a child on the task's pool thread, relays its
  progress, returns the `TaskOutcome`, and cancelling the task ends the child at once.
- A long-lived child that serves several requests (the Playground's model) is a `ChildRunner`: its
  replies arrive as a Qt signal on the GUI thread, further requests go out with `send()`.

Both start the child in a process group of its own, so Cancel also ends what it started (the
reward functions' sandbox process).
"""

from __future__ import annotations

import threading
from typing import Any, Sequence

from pydantic import BaseModel
from PySide6.QtCore import QObject, Signal

from grpo_studio.engine.child_process import ChildProcess
from grpo_studio.gui.tasks import TaskState


def run_in_child(request: BaseModel, state: TaskState, **options: Any) -> Any:
    """Work for `TaskRunner.start`: `request` in a child process, its progress as the task's; the
    child is `state.child` once started, and cancelling the task kills it. Returns the TaskOutcome.
    `options`: run_task's (timeout_s, command)."""
    from grpo_studio.engine.child_tasks import TaskOutcome, run_task

    if state.is_cancelled():  # replaced or cancelled before this pool thread got to it: start nothing
        return TaskOutcome(None, None, "", cancelled=True)

    def started(child: ChildProcess) -> None:
        state.child = child
        state.on_cancel(child.cancel)  # at once when the task was cancelled while the child started

    return run_task(request, progress=state.set_progress, started=started, **options)


class ChildRunner(QObject):
    """One long-lived child process. `reply(message)` for each decoded reply; `ended(code, tail)` once
    it is gone (code < 0: ended by that signal; `cancelled` tells whether we ended it). Every reply
    is emitted before `ended`: one thread reads them in order and then waits for the exit."""

    reply = Signal(object)
    ended = Signal(int, str)

    def __init__(self, parent: QObject | None = None, *, command: Sequence[str] | None = None):
        from grpo_studio.engine.child_messages import Reply
        from grpo_studio.engine.child_tasks import TASK_COMMAND

        super().__init__(parent)
        self.child = ChildProcess(command or TASK_COMMAND, reads=Reply, keep_stdin_open=True)

    def start(self, request: BaseModel) -> None:
        """Start the child with its first request. Raises OSError when it cannot start."""
        self.child.start(request)
        threading.Thread(target=self._follow, name="child-replies", daemon=True).start()

    def send(self, request: BaseModel) -> bool:
        """Another request on the child's stdin; False when it is gone (`ended` says how)."""
        return self.running() and self.child.send(request)

    def running(self) -> bool:
        return self.child.running()

    def cancel(self) -> None:
        """End the child and whatever it started, now."""
        if self.running():
            self.child.cancel()

    @property
    def cancelled(self) -> bool:
        return self.child.cancelled

    @property
    def pid(self) -> int | None:
        return self.child.pid

    @property
    def proc(self) -> Any:
        return self.child.proc

    def _follow(self) -> None:
        try:
            for message in self.child.messages():
                self.reply.emit(message)
            self.ended.emit(self.child.wait(), self.child.tail)
        except RuntimeError:
            pass  # the page that started it was closed
