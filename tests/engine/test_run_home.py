"""One home for runs: the command line and the window put run folders in the same place, and every
run made is listed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from grpo_studio.cli import demo_run_file, resources_dir
from grpo_studio.config import load_run, loads_run
from grpo_studio.engine import run_home
from grpo_studio.engine.run import find_latest_run, new_run_folder


def test_builtin_run_files_keep_their_runs_in_the_user_data_folder(tmp_path):
    data = Path(os.environ["GRPO_STUDIO_DATA_DIR"])  # tests/conftest.py: never the user's own
    assert run_home.user_runs_dir() == data / "runs"
    for builtin in (demo_run_file(), resources_dir() / "runs" / "gsm8k.toml"):
        assert run_home.is_builtin(builtin)
        assert run_home.runs_dir(builtin, "runs") == data / "runs"
    mine = tmp_path / "project" / "run.toml"
    assert not run_home.is_builtin(mine)
    assert run_home.runs_dir(mine, "runs") == tmp_path / "project" / "runs"  # beside the run file
    assert run_home.runs_dir(mine, str(tmp_path / "elsewhere")) == tmp_path / "elsewhere"
    assert run_home.runs_dir(None, "runs", base_dir=tmp_path) == tmp_path / "runs"  # read from text
    assert run_home.runs_dir(None, "runs") == data / "runs"  # not saved anywhere yet


def test_the_engine_makes_the_demo_run_folder_there_and_notes_it(tmp_path):
    demo = load_run(demo_run_file())
    folder = new_run_folder(demo)
    assert folder.path.parent == run_home.user_runs_dir() and folder.path.name.startswith("demo-")
    assert not (demo_run_file().parent / "runs" / folder.path.name).exists()
    (folder.path / "config.toml").write_text("")
    assert find_latest_run(demo).path == folder.path  # `train --resume` looks in the same place
    mine = loads_run("[run]\nname = 'mine'\n", base_dir=tmp_path)
    other = new_run_folder(mine)
    (other.path / "config.toml").write_text("")
    assert other.path.parent == tmp_path / "runs"
    assert run_home.recorded_runs() == [other.path, folder.path]  # newest first, from anywhere


def test_the_list_of_runs_forgets_deleted_folders_and_survives_a_damaged_file(tmp_path):
    made = []
    for i in range(4):
        path = tmp_path / f"run{i}"
        path.mkdir()
        (path / "config.toml").write_text("")
        run_home.record_run(path)
        made.append(path)
    run_home.record_run(made[1])  # recorded twice (a resume): listed once, as the newest
    assert run_home.recorded_runs() == [made[1], made[3], made[2], made[0]]
    for path in made[:3]:
        shutil.rmtree(path)
    assert run_home.recorded_runs() == [made[3]]
    index = Path(os.environ["GRPO_STUDIO_DATA_DIR"]) / "runs.txt"
    assert index.read_text().splitlines() == [str(made[3])]  # rewritten once most were gone
    index.write_bytes(b"\xff\xfe not text\n")
    assert run_home.recorded_runs() == []
