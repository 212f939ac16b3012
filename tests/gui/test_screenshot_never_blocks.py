"""`grpo-studio gui … --screenshot` never waits for a person: where the window would open a dialog, the
message goes to stderr and the command exits non-zero (each case with a time limit: a hang fails)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PySide6.QtWidgets import QMessageBox

from grpo_studio.gui import dialogs

LIMIT_S = 60  # far beyond the few seconds a screenshot takes; before the fix these waited forever


def screenshot(target, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grpo_studio.cli", "gui", str(target), "--screenshot",
                           str(tmp_path / "shot.png")], capture_output=True, text=True, timeout=LIMIT_S)


def test_a_folder_without_config_toml(tmp_path):
    folder = tmp_path / "not-a-run"
    folder.mkdir()
    proc = screenshot(folder, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert f"error: Not a run folder: {folder} has no config.toml" in proc.stderr
    assert not (tmp_path / "shot.png").exists()


@pytest.mark.parametrize("damage", ["missing", "not UTF-8"])
def test_a_missing_or_unreadable_rewards_py_and_the_unsaved_changes_question(run_file, tmp_path, damage):
    reward_file = run_file.parent / "rewards.py"
    if damage == "missing":
        reward_file.unlink()
    else:
        reward_file.write_bytes(b"def f(completions, **kw):\n    return [0.0 for _ in completions]  # \xff\xfe\n")
    proc = screenshot(run_file, tmp_path)
    # The window opens with example reward functions in the editor (unsaved); closing it would ask about them.
    assert proc.returncode == 1, proc.stderr
    assert 'the window would ask "Unsaved changes": Save the changes to run.toml?' in proc.stderr
    assert ("rewards.py was not found beside run.toml" if damage == "missing" else "rewards.py is not UTF-8 text") \
        in proc.stderr
    assert (tmp_path / "shot.png").is_file()  # the view itself was painted
    assert reward_file.exists() == (damage != "missing")  # nothing was saved over or created


def test_a_bad_run_file(run_file, tmp_path):
    run_file.write_text(run_file.read_text().replace("max_steps = 3", "max_steps = 3\nmax_stpes = 4"))
    proc = screenshot(run_file, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "error: Cannot open the run file" in proc.stderr and "max_stpes" in proc.stderr


def test_a_dialog_opened_any_other_way_is_refused_too(qtbot, capfd, monkeypatch):
    """The guard for a dialog that does not come through dialogs.py: refused the moment it shows."""
    from PySide6.QtWidgets import QApplication

    ended = []
    # Not the real exit: it would end every later event loop of this test process too (as it should in a
    # screenshot). The guard closes the dialog itself as well; that is what ends it here.
    monkeypatch.setattr(dialogs, "_end_app", ended.append)
    app = QApplication.instance()
    guard = dialogs.install_guard(app)
    dialogs.set_headless(True)
    try:
        answer = QMessageBox.question(None, "Overwrite?", "Replace the adapter folder?")  # returns, not waits
        assert dialogs.exit_code == dialogs.EXIT_QUESTION
    finally:
        dialogs.set_headless(False)
        app.removeEventFilter(guard)
    assert answer != QMessageBox.StandardButton.Yes and ended == [dialogs.EXIT_QUESTION]
    assert 'error: Overwrite?: Replace the adapter folder?' in capfd.readouterr().err
