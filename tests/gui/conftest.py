"""Fixtures for driving the window with pytest-qt (offscreen; see tests/conftest.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import tiny


@pytest.fixture(scope="session", autouse=True)
def _app_like_the_real_one(qapp):
    """Style and guard the test QApplication once, as `grpo-studio` does (styling it again per test would
    re-polish every widget earlier tests left behind)."""
    from grpo_studio.gui import refcount_guard
    from grpo_studio.gui.style import apply_style

    refcount_guard.install(qapp)  # PySide6 6.12.0 losing references on CPython < 3.12 (see the module)
    apply_style(qapp)


@pytest.fixture(autouse=True)
def _own_settings(tmp_path, monkeypatch):
    """Every test gets its own settings file: nothing read from or written to the user's."""
    monkeypatch.setenv("GRPO_STUDIO_SETTINGS", str(tmp_path / "settings.ini"))


@pytest.fixture
def window(qtbot):
    """An empty main window, shown at the screenshot size; a run still going at the end is killed."""
    from PySide6.QtWidgets import QMessageBox

    from grpo_studio.gui.main_window import MainWindow

    win = MainWindow()
    # No modal dialogs in tests: questions are recorded and answered "Discard" (or "No"), warnings
    # recorded. Tests about a question replace `win.ask` with their own answer.
    win.questions, win.warnings = [], []

    def ask(title, text, buttons=None, default=None):
        win.questions.append(title)
        b = QMessageBox.StandardButton
        return b.Discard if buttons is not None and buttons & b.Discard else b.No

    win.ask = ask
    win.tell = lambda title, text: win.warnings.append(f"{title}: {text}")
    qtbot.addWidget(win)
    win.resize(1280, 800)
    win.show()
    qtbot.waitExposed(win)
    yield win
    if win.controller.is_active():
        win.controller.kill()
        win.controller.wait(30000)
        qtbot.waitUntil(lambda: not win.controller.is_active(), timeout=30000)


@pytest.fixture
def opened(window, run_file):
    """The window with the tiny 3-step run file open."""
    assert window.open_path(run_file)
    return window


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_model) -> Path:
    """A finished 3-step run folder, trained once per session by the real worker process."""
    project = tiny.write_run(tmp_path_factory.mktemp("trained") / "project", tiny_model)
    run_dir = project.parent / "runs" / "done"
    proc = subprocess.run([sys.executable, "-m", "grpo_studio.engine.worker", str(project), "--output",
                           str(run_dir)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def shot(widget, name: str) -> Path:
    """Save what a test sees (tmp/gui-shots), for people reviewing a change."""
    import os
    import tempfile

    folder = Path(os.environ.get("GRPO_STUDIO_SHOTS", Path(tempfile.gettempdir()) / "grpo-studio-shots"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    from PySide6.QtWidgets import QApplication

    QApplication.processEvents()  # layouts that a show()/hide() invalidated settle first, as on screen
    widget.grab().save(str(path))
    return path
