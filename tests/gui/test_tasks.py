"""TaskRunner: one background task per widget, the newest wins, results hop back to the GUI thread."""

from __future__ import annotations

import threading

from PySide6.QtCore import QThread
from PySide6.QtWidgets import QApplication

from grpo_studio.gui.tasks import TaskRunner


def test_a_new_task_cancels_the_old_and_only_the_newest_result_arrives(qtbot):
    runner = TaskRunner()
    release, running = threading.Event(), threading.Event()
    done, cancelled, threads = [], [], []

    def slow(state):
        state.on_cancel(lambda: cancelled.append("first"))
        running.set()
        release.wait(10)
        return "stale"

    def fast(state):
        threads.append(QThread.currentThread())
        return "fresh"

    def show(result):
        threads.append(QThread.currentThread())
        done.append(result)

    runner.start(slow, show)
    assert running.wait(10)
    runner.start(fast, show)  # replaces the first: told to stop, its result dropped
    assert cancelled == ["first"] and runner.is_running()
    release.set()
    qtbot.waitUntil(lambda: not runner.is_running(), timeout=10_000)
    runner.pool.waitForDone(10_000)
    qtbot.wait(50)  # a late result of the first task would arrive now
    assert done == ["fresh"]
    assert threads[0] is not threads[1] and threads[1] is QApplication.instance().thread()


def test_failures_and_progress_come_back_and_cancel_drops_them(qtbot):
    runner = TaskRunner()
    failures, progress = [], []

    def broken(state):
        state.set_progress("half way", 0.5)
        raise ValueError("bad input")

    runner.start(broken, lambda result: None, lambda exc, details: failures.append((exc, details)),
                 lambda text, fraction: progress.append((text, fraction)))
    qtbot.waitUntil(lambda: bool(failures), timeout=10_000)
    (exc, details), = failures
    assert isinstance(exc, ValueError) and "bad input" in details and progress == [("half way", 0.5)]

    results = []
    state = runner.start(lambda state: "never shown", results.append)
    runner.cancel()
    assert state.is_cancelled() and not runner.is_running()
    assert runner.shutdown(10_000)
    qtbot.wait(50)
    assert results == []
    late = []
    state.on_cancel(lambda: late.append(True))  # registered after the cancel: runs at once
    assert late == [True]
