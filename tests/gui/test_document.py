"""The run document and the training snapshot: pure logic under the forms."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from grpo_studio.config import load_run
from grpo_studio.engine.run_home import user_runs_dir
from grpo_studio.gui.document import RunDocument
from grpo_studio.gui.run_snapshot import output_dir_for, write_snapshot


def saved_elsewhere(run_file, tmp_path):
    """The run file opened and saved as another file in another folder: (document, new path)."""
    doc = RunDocument()
    doc.load(run_file)
    target = tmp_path / "elsewhere" / "copy.toml"
    target.parent.mkdir()
    doc.save(target)
    return doc, target


def test_save_as_elsewhere_keeps_local_paths_pointing_at_the_same_files(qapp, run_file, tmp_path):
    doc, target = saved_elsewhere(run_file, tmp_path)
    saved = load_run(target)
    assert saved.resolve(saved.config.data.source).resolve() == (run_file.parent / "train.jsonl").resolve()
    assert (target.parent / "rewards.py").read_text() == (run_file.parent / "rewards.py").read_text()
    assert not doc.is_modified() and doc.path == target.resolve()


def test_save_as_elsewhere_keeps_a_reward_models_folder_too(qapp, tiny_model, tmp_path):
    """Reward models are settings too: Save As, the training snapshot and the frozen run file all
    rewrite the same paths (config.with_local_paths); a relative reward-model folder was left behind."""
    import tiny

    from grpo_studio.engine.run import freeze_run_file
    from grpo_studio.engine.store import RunFolder

    project = tmp_path / "project"
    (project / "rm").mkdir(parents=True)
    run_file = tiny.write_run(project, tiny_model, extra='\n[[rewards.functions]]\nname = "correctness_reward"\n'
                                                         '\n[[rewards.functions]]\nmodel = "rm"\n')
    doc, target = saved_elsewhere(run_file, tmp_path)
    saved = load_run(target)
    assert saved.resolve(saved.config.rewards.functions[1].model).resolve() == (project / "rm").resolve()
    snap = tomllib.loads(write_snapshot(doc.config, doc.path, doc.reward_source, folder=tmp_path / "snap").read_text())
    assert Path(snap["rewards"]["functions"][1]["model"]) == (project / "rm").resolve()
    (tmp_path / "run").mkdir()
    frozen = freeze_run_file(load_run(run_file), RunFolder(tmp_path / "run"))
    assert Path(frozen.config.rewards.functions[1].model) == project / "rm"


def test_modified_follows_the_content_not_the_edit_count(qapp, run_file):
    doc = RunDocument()
    doc.load(run_file)
    doc.set_field("lora.r", 8)
    assert doc.is_modified()
    doc.set_field("lora.r", 4)  # back to what is on disk
    assert not doc.is_modified()


def test_snapshot_trains_unsaved_edits_with_absolute_paths(qapp, run_file, tmp_path):
    doc = RunDocument()
    doc.load(run_file)
    doc.set_field("grpo.max_steps", 7)
    doc.set_reward_source(doc.reward_source + "\n# edited, not saved\n")
    snap = write_snapshot(doc.config, doc.path, doc.reward_source, folder=tmp_path / "snap")
    data = tomllib.loads(snap.read_text())
    assert data["grpo"]["max_steps"] == 7
    assert Path(data["data"]["source"]).is_absolute() and Path(data["model"]["name"]).is_absolute()
    assert data["run"]["output_dir"] == str((run_file.parent / "runs").resolve())
    assert (snap.parent / data["rewards"]["file"]).read_text().endswith("# edited, not saved\n")
    assert "# edited" not in (run_file.parent / "rewards.py").read_text()


def test_runs_of_the_builtin_run_files_go_to_the_user_folder(qapp, tmp_path):
    from grpo_studio.resource_paths import demo_run_file, resources_dir
    from grpo_studio.config import RunConfig

    assert user_runs_dir() == Path(os.environ["GRPO_STUDIO_DATA_DIR"]) / "runs"  # tests never touch the user's
    assert output_dir_for(RunConfig(), demo_run_file()) == user_runs_dir()
    assert output_dir_for(RunConfig(), resources_dir() / "runs" / "gsm8k.toml") == user_runs_dir()  # not .../runs/runs
    assert output_dir_for(RunConfig(), None) == user_runs_dir()
    assert output_dir_for(RunConfig(), tmp_path / "mine" / "run.toml") == tmp_path / "mine" / "runs"


def test_check_findings_are_keyed_by_the_setting_to_fix():
    from grpo_studio.gui.run_check import problems_by_field

    found = problems_by_field([
        "model.max_seq_length: 4096 exceeds the model's context of 2048 tokens",
        "/home/me/project/rewards.py:12: odd_reward needs argument 'difficulty'",
        "/home/me/project/rewards.py: no function 'nope_reward' (rewards.functions); defined: a_reward",
        "/home/me/project/train.jsonl:57: not valid JSON: Expecting value (column 1)",
        "rewards.functions[0]: give either name (a function) or model, not both",
        "something without a field",
    ], "rewards.py", "train.jsonl")
    assert found == {
        "model.max_seq_length": "4096 exceeds the model's context of 2048 tokens",
        "rewards.file": "rewards.py line 12: odd_reward needs argument 'difficulty'",
        "data.source": "/home/me/project/train.jsonl:57: not valid JSON: Expecting value (column 1)",
        "rewards.functions[0]": "give either name (a function) or model, not both",
        "run": "something without a field",
    }
