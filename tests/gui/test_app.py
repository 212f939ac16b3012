"""Starting the window, screenshots, what persists between launches, closing with unsaved edits."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox

from grpo_studio.gui import app as app_module

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("view", ["settings", "rewards"])
def test_cli_screenshot_paints_the_view_and_exits(run_file, tmp_path, view):
    out = tmp_path / f"{view}.png"
    proc = subprocess.run([sys.executable, "-m", "grpo_studio.cli", "gui", str(run_file), "--screenshot", str(out),
                           "--view", view], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**__import__("os").environ, "GRPO_STUDIO_REPORT_FIRST_PAINT": "1"})
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 10_000
    assert re.search(r"first paint \d+\.\d\d s after launch", proc.stderr)


def test_cli_screenshot_of_a_missing_file_says_so(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "grpo_studio.cli", "gui", str(tmp_path / "nope.toml"),
                           "--screenshot", str(tmp_path / "x.png")], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)
    assert proc.returncode == 2 and "no such run file" in proc.stderr


def test_no_arguments_opens_the_demo_or_a_new_run(monkeypatch, tmp_path, window):
    demo = tmp_path / "demo" / "run.toml"
    monkeypatch.setattr("grpo_studio.cli.demo_run_file", lambda: demo)
    assert app_module.initial_run(None) is None  # no demo yet: a new, empty run
    window.open_initial(None)
    assert window.doc.path is None and window.windowTitle().startswith("Untitled run")
    assert "model.name" in window.doc.problems()  # nothing chosen yet; shown at the field
    demo.parent.mkdir()
    demo.write_text("[model]\nname = 'x'\n")
    assert app_module.initial_run(None) == demo


def test_engine_and_config_never_import_qt():
    package = ROOT / "grpo_studio"
    sources = [*package.glob("config.py"), *package.glob("config/*.py"), *package.glob("engine/*.py")]
    assert len(sources) > 10
    for path in sources:
        text = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+(PySide6|PyQt\d|qtpy|pyqtgraph|superqt)", text, re.M), path


def test_window_layout_and_recent_files_persist(qtbot, run_file):
    from grpo_studio.gui.main_window import MainWindow

    first = MainWindow()
    qtbot.addWidget(first)
    first.resize(1100, 700)
    first.show()
    assert first.open_path(run_file)
    first.show_view("rewards")
    geometry = first.saveGeometry()
    first.close()
    assert not first.isVisible()

    second = MainWindow()
    qtbot.addWidget(second)
    assert second.prefs.recent_files() == [run_file.resolve()]
    assert second.prefs.window_state()[0] == geometry
    assert second.height() == 700  # (the offscreen screen is 800 px wide, so the width is clamped)
    assert second.current_view() == "rewards"
    second._fill_recent()
    assert [a.text() for a in second.recent_menu.actions()][0] == str(run_file.resolve())


def test_closing_with_unsaved_changes_asks(opened, qtbot):
    opened.doc.set_field("lora.r", 8)
    assert opened.windowTitle().endswith("— GRPO Studio") and opened.isWindowModified()
    answers = iter([QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Discard])
    asked = []
    opened.ask = lambda title, text, *a, **k: (asked.append(title), next(answers))[1]
    opened.close()
    assert opened.isVisible() and asked == ["Unsaved changes"]  # cancelled: still open, edits kept
    assert opened.doc.config.lora.r == 8
    opened.close()
    assert not opened.isVisible()


def test_opening_a_broken_run_file_reports_every_problem(window, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[grpo]\nnum_generations = 1\nlearning_rate = -1\n")
    assert not window.open_path(bad)
    assert window.warnings and "grpo.num_generations: must be >= 2, got 1" in window.warnings[0]
    assert "grpo.learning_rate: must be > 0" in window.warnings[0]


def test_keyboard_shortcuts(window):
    shortcuts = {k: a.shortcut().toString() for k, a in window.actions.items()}
    assert shortcuts["save"] == "Ctrl+S" and shortcuts["open"] == "Ctrl+O" and shortcuts["new"] == "Ctrl+N"
    assert shortcuts["train"] == "F5" and shortcuts["stop"] == "Shift+F5"


def test_check_validates_in_a_child_process_and_marks_what_it_finds(opened, qtbot):
    with qtbot.waitSignal(opened.checkFinished, timeout=120_000) as done:
        opened.actions["check"].trigger()
    assert done.args[0].ok
    assert opened.statusBar().currentMessage().startswith("Check passed: 64 training rows; rewards: ")
    bar = opened.problems_bar  # said above the page too, where people look, until the settings change
    assert bar.isVisible() and bar.showing_check and "✓ Check passed" in bar.text.text()
    assert "64 training rows" in bar.text.text()
    opened.doc.set_field("grpo.max_steps", 4)
    assert not bar.isVisible()

    editor = opened.rewards_view.editor
    editor.setPlainText(editor.toPlainText() + "\n\ndef odd_reward(completions, difficulty, **kw):\n"
                                               "    return [0.0] * len(completions)\n")
    line = editor.blockCount() - 2  # the def line
    with qtbot.waitSignal(opened.checkFinished, timeout=120_000) as done:
        opened.actions["check"].trigger()
    assert not done.args[0].ok
    problem = opened.doc.problems()["rewards.file"]
    assert problem.startswith(f"rewards.py line {line}: odd_reward needs argument 'difficulty'")
    assert editor.error_line == line
    assert opened.problems_bar.isVisible() and "Training cannot start" in bar.text.text()
    assert bar.property("level") == "error"
    editor.setPlainText(editor.toPlainText().replace(", difficulty", ""))  # an edit makes the finding stale
    assert "rewards.file" not in opened.doc.problems()


def test_only_the_demo_is_titled_built_in_demo(window):
    from grpo_studio.cli import demo_run_file, resources_dir

    assert window.open_path(demo_run_file())
    assert window.windowTitle().startswith("run.toml (built-in demo)")
    assert window.open_path(resources_dir() / "runs" / "gsm8k.toml")
    assert window.windowTitle().startswith("gsm8k.toml (built-in example)")
