"""The Playground page: one child process loads the base model and the adapters once, both answers
stream in side by side, the run's rewards score them; a crashed child is started again by the next
Generate, and training lets the model go."""

from __future__ import annotations

import os
import signal

import tiny
from PySide6.QtCore import Qt

from conftest import shot


def test_playground_streams_both_answers_scores_them_and_survives_a_crash(window, run_file, tmp_path, qtbot):
    run_dir = tiny.make_run_folder(run_file, tmp_path / "runs" / "tiny-1", checkpoint_step=2)
    with qtbot.waitSignal(window.training_view.runLoaded, timeout=30000):
        window.open_run(run_dir)
    view = window.playground_view
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    with qtbot.waitSignal(view.ready, timeout=240000) as ready:
        qtbot.keyClick(window.training_view, Qt.Key.Key_7, Qt.KeyboardModifier.ControlModifier)  # View > Playground
    assert window.current_view() == "playground"
    info = ready.args[0]
    assert info.adapters == ["adapter", "checkpoint-2"] and info.rewards == ["correctness_reward", "length_reward"]
    view.row.setCurrentIndex(3)
    view.row.activated.emit(3)
    assert view.prompt.toPlainText() == info.rows[3].text and view.answer.text() == info.rows[3].answer
    assert view.max_tokens.value() == 8  # the run's max_completion_length

    pid = view.runner.pid
    streamed = []
    view.runner.reply.connect(lambda m: m.kind == "tokens" and streamed.append(m.deltas))
    view.prompt.setFocus()
    qtbot.waitUntil(view.prompt.hasFocus)
    with qtbot.waitSignal(view.sampled, timeout=60000) as got:
        qtbot.keyClick(view.prompt, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)  # Generate
    assert view.prompt.toPlainText() == info.rows[3].text  # the shortcut, not a new line
    sampled = got.args[0]
    base, tuned = sampled.answers
    assert len(streamed) >= 2  # token by token, not one piece at the end
    assert ["".join(d[i] for d in streamed) for i in (0, 1)] == [base.text, tuned.text]
    assert [p.text.toPlainText() for p in view.panes] == [base.text, tuned.text]
    assert base.label == "base" and tuned.label == "adapter" and base.text != tuned.text
    for pane, answer in zip(view.panes, sampled.answers):
        assert set(answer.rewards) == {"correctness_reward", "length_reward"} and answer.total is not None
        assert f"total <b>{answer.total:.2f}</b>" in pane.scores.text()
    assert view.generate_button.isEnabled() and not view.stop_button.isEnabled()
    shot(window, "playground-tiny")

    view.adapter.setCurrentText("checkpoint-2")  # another adapter, the same process: loaded once
    view.prompt.setPlainText("7+5=")  # typed: no row, no ground truth
    view.answer.clear()
    with qtbot.waitSignal(view.sampled, timeout=60000) as got:
        view.generate_button.click()
    assert view.runner.pid == pid and got.args[0].answers[1].label == "checkpoint-2"
    assert view.panes[1].title.text() == "With checkpoint-2"
    assert "no ground truth" in view.panes[0].scores.text()

    os.kill(pid, signal.SIGKILL)  # a crash: said, and the next Generate starts a new process
    qtbot.waitUntil(lambda: view.runner is None, timeout=30000)
    assert "model process ended (killed by SIGKILL" in view.status.text()
    with qtbot.waitSignal(view.sampled, timeout=240000):
        view.generate_button.click()
    assert view.runner.pid != pid

    process = view.runner.proc
    view.set_training(True)  # training needs the memory
    qtbot.waitUntil(lambda: process.poll() is not None, timeout=30000)
    assert not view.loaded() and not view.generate_button.isEnabled()
