"""The reward test bench in the reward editor: typed completions scored in a child process, exceptions
marked at their editor line, zero-spread warnings, Cancel."""

from __future__ import annotations

from PySide6.QtCore import Qt

from conftest import shot

BENCH_TIMEOUT_MS = 60_000


def run_bench(qtbot, panel):
    with qtbot.waitSignal(panel.finished, timeout=BENCH_TIMEOUT_MS) as blocker:
        panel.run_button.click()
    return blocker.args[0]


def test_typed_completions_are_scored_and_a_flat_group_is_flagged(opened, qtbot):
    view = opened.rewards_view
    opened.show_view("rewards")
    view.show_bench()
    panel = view.bench
    assert panel.state == "idle" and panel.pages.currentIndex() == 0
    panel.run_button.click()  # nothing typed yet: says so, runs nothing
    assert panel.state == "idle" and "Type at least one completion" in panel.note.text()

    # Row 1 of the tiny data; the row's prompt and answer are shown for typing against.
    panel.typed.row.setValue(1)
    qtbot.waitUntil(lambda: "answer" in panel.typed.row_info.text(), timeout=20_000)
    row = [__import__("json").loads(line) for line in (opened.doc.base_dir / "train.jsonl").read_text().splitlines()][1]
    assert panel.typed.prompt.toPlainText() == row["question"] and row["answer"] in panel.typed.row_info.text()
    panel.typed.completions.setPlainText(f"{row['answer']}\nno idea\n\n")
    panel.typed.add_group()  # a second group whose completions all score the same: nothing to learn
    panel.typed.completions.setPlainText("x\nx")
    assert [(g.row, g.completions) for g in panel.typed.groups()] == [(1, [row["answer"], "no idea"]), (2, ["x", "x"])]

    result = run_bench(qtbot, panel)
    assert panel.state == "results" and not result.errors
    assert [g.row for g in result.groups] == [1, 2]
    names = [panel.results.functions.item(r, 0).text() for r in range(panel.results.functions.rowCount())]
    assert names == ["correctness_reward", "length_reward"]
    correctness = result.functions[0]
    assert correctness.scores == [[1.0, 0.0], [0.0, 0.0]]
    assert panel.results.functions.item(0, 2).text() == "0.25"  # mean
    assert panel.results.functions.item(0, 5).text() != "–"  # ms per call
    scores = panel.results.scores
    assert scores.rowCount() == 4 and scores.item(0, 0).text() == "row 1" and scores.item(2, 0).text() == "row 2"
    flat = [f for f in result.warnings if f.code == "zero_spread"]
    assert len(flat) == 1 and flat[0].groups == [1]
    listed = [panel.results.findings.item(i).text() for i in range(panel.results.findings.count())]
    assert any("zero advantage" in text for text in listed)
    total = scores.item(2, scores.columnCount() - 1)
    assert "zero advantage" in total.toolTip()  # the flat group's totals are marked
    item = next(panel.results.findings.item(i) for i in range(panel.results.findings.count())
                if "zero advantage" in panel.results.findings.item(i).text())
    panel.results._activate(item)  # a click on it selects the group's completions
    assert sorted({i.row() for i in scores.selectedIndexes()}) == [2, 3]
    assert opened.rewards_view.editor.error_line == 0  # warnings mark no line as an error
    shot(opened, "reward-bench-results")


def test_an_exception_is_marked_at_its_line_in_the_editor(opened, qtbot):
    view = opened.rewards_view
    opened.show_view("rewards")
    view.show_bench()
    editor = view.editor
    editor.setPlainText(editor.toPlainText() + "\n\ndef broken_reward(completions, **kwargs):\n"
                                               "    return [1 / 0 for c in completions]\n")
    line = editor.blockCount() - 1  # the `return` line (the text ends with a newline)
    assert "1 / 0" in editor.document().findBlockByNumber(line - 1).text()
    view.bench.typed.completions.setPlainText("7\n8")

    result = run_bench(qtbot, view.bench)
    assert view.bench.state == "results"
    [error] = result.errors
    assert (error.code, error.line, error.function) == ("exception", line, "broken_reward")
    assert "ZeroDivisionError" in error.message
    assert editor.error_line == line  # marked like a syntax error
    assert f"Line {line} in the test bench" in view.syntax_label.text()
    assert 'File "rewards.py", line' in error.details and "grpo_studio" not in error.details  # the user's frames

    editor.go_to_line(1)
    item = view.bench.results.findings.item(0)
    view.bench.results.findings.setCurrentItem(item)
    view.bench.results._activate(item)  # a click on the finding goes to its line, traceback beneath
    assert editor.textCursor().blockNumber() + 1 == line
    details = view.bench.results.details
    assert details.isVisibleTo(view) and "ZeroDivisionError" in details.toPlainText()
    shot(opened, "reward-bench-exception")


def test_cancel_ends_the_bench_process(opened, qtbot):
    panel = opened.rewards_view.bench
    opened.show_view("rewards")
    opened.rewards_view.show_bench()
    panel.mode_generated.setChecked(True)  # sampling loads the model: long enough to cancel
    assert panel.inputs.currentIndex() == 1 and "× 4 per prompt = 16 completions" in panel.group_size.text()
    panel.run_button.click()
    assert panel.state == "running" and not panel.run_button.isEnabled() and panel.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: panel._bench._proc is not None, timeout=10_000)
    process = panel._bench._proc
    with qtbot.waitSignal(panel.finished, timeout=20_000) as blocker:
        qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    assert blocker.args[0].cancelled
    assert process.poll() is not None  # ended, not left running
    assert panel.state == "idle" and panel.note.text() == "Cancelled." and panel.run_button.isEnabled()


def test_a_bench_that_cannot_run_says_why(opened, qtbot, monkeypatch):
    from grpo_studio.gui import reward_bench_runner

    script = "import sys; print('run.toml: model.name: refused for this test', file=sys.stderr); sys.exit(2)"
    monkeypatch.setattr(reward_bench_runner, "CLI", [reward_bench_runner.sys.executable, "-c", script])
    panel = opened.rewards_view.bench
    panel.typed.completions.setPlainText("7")
    result = run_bench(qtbot, panel)
    assert panel.state == "error" and result.problem == "run.toml: model.name: refused for this test"
    assert "The bench could not run" in panel.error_label.text() and panel.run_button.isEnabled()
    opened.doc.new()  # another run file: the old outcome is not shown against it
    assert panel.state == "idle"


def test_ctrl_b_runs_the_bench_from_any_page_before_its_tab_was_ever_shown(opened, qtbot):
    from PySide6.QtGui import QKeySequence

    opened.show_view("settings")
    opened.activateWindow()
    qtbot.waitUntil(opened.isActiveWindow)
    panel = opened.rewards_view.bench
    assert not panel.isVisible() and opened.actions["bench"].shortcut() == QKeySequence("Ctrl+B")
    qtbot.keyClick(opened.settings_view, Qt.Key.Key_B, Qt.KeyboardModifier.ControlModifier)
    assert opened.current_view() == "rewards" and panel.isVisible()
    assert "Type at least one completion" in panel.note.text()  # it ran: and says what it needs first
