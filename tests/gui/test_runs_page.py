"""The Runs page lists every run the user made, from the window or the command line."""

from __future__ import annotations

import shutil

from grpo_studio.config import load_run
from grpo_studio.engine.run import new_run_folder
from grpo_studio.engine.run_home import user_runs_dir


def test_a_run_made_from_the_command_line_is_listed_whatever_run_file_is_open(window, trained_run, tmp_path, qtbot):
    # The command line's way to a run folder (engine.run.new_run_folder), for a run file the window
    # never opened, in a project folder of its own.
    elsewhere = tmp_path / "other-project"
    elsewhere.mkdir()
    shutil.copy(trained_run / "config.toml", elsewhere / "run.toml")
    folder = new_run_folder(load_run(elsewhere / "run.toml", ["run.output_dir=runs"]))
    shutil.copytree(trained_run, folder.path, dirs_exist_ok=True)
    assert folder.path.parent == elsewhere / "runs"

    window.open_initial(None)  # a new, unsaved run file
    window.show_view("runs")
    page = window.runs_view
    qtbot.waitUntil(lambda: page.select(folder.path))
    assert page.table.item(page.table.currentRow(), 1).text() == "finished"
    assert str(user_runs_dir()) in page.where.text()  # where this (unsaved) run file's runs will go
    assert "command line" in page.where.text()
