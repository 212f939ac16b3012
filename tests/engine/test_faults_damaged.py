"""Damaged files: a truncated or foreign run.db, a damaged newest checkpoint, a damaged adapter, a
non-UTF-8 run file or config.toml. Each gives one line that names the file and what to do, with
exit 2 (bad input) and no traceback; a damaged checkpoint is skipped for the newest loadable one."""

from __future__ import annotations

import shutil
import sqlite3
import sys

import fault_runner
import pytest
from fault_checks import STEPS, assert_whole_run

from grpo_studio import cli
from grpo_studio.engine.integrity import adapter_problem, checkpoint_problem
from grpo_studio.engine.store import RunFolder, RunStore, StoreError

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX test harness")


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.fixture
def run_copy(finished_run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(finished_run, folder)
    return folder


def one_line_error(outcome, *needles):
    assert "Traceback" not in outcome.err, outcome
    lines = [line for line in outcome.err.splitlines() if line.strip()]
    assert any(all(n in line for n in needles) for line in lines), outcome


# ---- run.db -------------------------------------------------------------------------------------


def damage_store(folder, how):
    db = folder / "run.db"
    for side in ("run.db-wal", "run.db-shm"):
        (folder / side).unlink(missing_ok=True)
    if how == "truncated":
        with sqlite3.connect(db) as con:  # enough pages that half the file cuts through tables
            con.execute("PRAGMA journal_mode=DELETE")
        truncate(db, 0.4)
    elif how == "foreign":
        db.unlink()
        with sqlite3.connect(db) as con:
            con.execute("CREATE TABLE contacts (name TEXT)")
    elif how == "garbage":
        db.write_bytes(b"this is not a database at all\n" * 100)


@pytest.mark.parametrize("how", ["truncated", "foreign", "garbage"])
def test_damaged_store_opens_as_one_typed_error(run_copy, how):
    damage_store(run_copy, how)
    with pytest.raises(StoreError) as err:
        with RunStore(run_copy, readonly=True, check=how == "truncated") as store:
            store.meta()
            store.metrics()
            store.events()
    text = str(err.value)
    assert text.startswith(f"{run_copy / 'run.db'}: damaged or not a GRPO Studio run store (")
    assert "move run.db aside" in text and "\n" not in text


def test_resume_with_a_damaged_store_says_so_and_changes_nothing(run_copy):
    damage_store(run_copy, "truncated")
    before = sorted(p.name for p in (run_copy / "checkpoints").iterdir())
    out = fault_runner.cli("train", str(run_copy), "--resume", "--set", "grpo.max_steps=6")
    assert out.rc == 2, out
    one_line_error(out, "error: ", str(run_copy / "run.db"), "damaged", "move run.db aside")
    assert sorted(p.name for p in (run_copy / "checkpoints").iterdir()) == before
    # Doing what the message says works: the run resumes with a new, empty store.
    (run_copy / "run.db").rename(run_copy / "run.db.damaged")
    again = fault_runner.cli("train", str(run_copy), "--resume", "--set", "grpo.max_steps=6")
    assert again.rc == 0, again
    with RunStore(run_copy, readonly=True) as store:
        assert store.metrics(["reward"])["reward"][0] == [5, 6]


# ---- checkpoints ----------------------------------------------------------------------------------


@pytest.mark.parametrize("file", ["optimizer.pt", "adapter_model.safetensors", "trainer_state.json"])
def test_damaged_checkpoint_is_found(finished_run, tmp_path, file):
    ckpt = tmp_path / "checkpoint-4"
    shutil.copytree(finished_run / "checkpoints" / "checkpoint-4", ckpt)
    assert checkpoint_problem(ckpt) is None
    truncate(ckpt / file)
    assert checkpoint_problem(ckpt).startswith(f"{file} is damaged")


def test_resume_skips_a_damaged_newest_checkpoint(run_copy):
    truncate(run_copy / "checkpoints" / "checkpoint-4" / "optimizer.pt")
    out = fault_runner.cli("train", str(run_copy), "--resume", "--set", "grpo.max_steps=6")
    assert out.rc == 0, out
    assert ("warning: skipped checkpoint-4: optimizer.pt is damaged (truncated, or not a PyTorch file); "
            "resuming from an older checkpoint") in out.out
    assert "resuming from checkpoint-2 (step 2)" in out.out
    assert_whole_run(run_copy, steps=6)  # steps 3 and 4 trained again, each stored once


# ---- the adapter ----------------------------------------------------------------------------------


def test_damaged_adapter_is_refused_by_eval_and_export(run_copy, tmp_path, capsys):
    truncate(run_copy / "adapter" / "adapter_model.safetensors")
    assert "truncated" in adapter_problem(run_copy / "adapter")
    for args in (["eval", str(run_copy)], ["export", str(run_copy), "--to", str(tmp_path / "a")],
                 ["export", str(run_copy), "--merged", "--to", str(tmp_path / "m")],
                 ["eval", str(run_copy / "config.toml"), "--adapter", str(run_copy / "adapter")]):
        assert cli.main(args) == 2, args
        err = capsys.readouterr().err
        assert "adapter_model.safetensors is damaged (truncated)" in err and "Traceback" not in err, err
        assert "--resume" in err  # what to do
    assert not (tmp_path / "a").exists() and not (tmp_path / "m").exists()  # nothing broken was copied
    # What the message says: resume rewrites the adapter from the newest checkpoint, without training.
    out = fault_runner.cli("train", str(run_copy), "--resume")
    assert out.rc == 0, out
    assert "completing the final adapter from checkpoint-4 (no training)" in out.out
    assert_whole_run(run_copy)
    assert cli.main(["export", str(run_copy), "--to", str(tmp_path / "a")]) == 0


def test_damaged_checkpoint_named_for_a_comparison_or_the_playground_is_said_before_loading(run_copy, capsys):
    from grpo_studio.engine.evaluate import EvalError
    from grpo_studio.engine.playground import PlaygroundSession

    truncate(run_copy / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors")
    assert cli.main(["eval", str(run_copy), "--compare-base", "--adapter", "checkpoint-2"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint-2: adapter_model.safetensors is damaged (truncated)" in err and "Traceback" not in err, err
    with pytest.raises(EvalError, match="checkpoint-2: adapter_model.safetensors is damaged"):
        PlaygroundSession(run_copy, "checkpoint-2", overrides=["rewards.isolate=false"])
    session = PlaygroundSession(run_copy, overrides=["rewards.isolate=false"])  # the whole final adapter
    try:
        with pytest.raises(EvalError, match="adapter_model.safetensors is damaged"):
            session.use_adapter("checkpoint-2")  # switching to it is refused; the session goes on
        assert session.adapter == "adapter"
    finally:
        session.close()


# ---- non-UTF-8 run files ------------------------------------------------------------------------


def test_non_utf8_run_file_is_one_line_in_every_command(fault_project, tmp_path, capsys):
    bad = tmp_path / "run.toml"
    bad.write_bytes(fault_project.read_bytes().replace(b'name = "tiny"', b'name = "t\xe9st"'))
    line = bad.read_bytes().split(b"\n").index(b'name = "t\xe9st"') + 1
    expected = f"{bad}:{line}: not UTF-8 text (byte 0xe9): save the file as UTF-8"
    for args in (["validate", str(bad)], ["eval", str(bad)], ["rewards-check", str(bad)]):
        assert cli.main(args) == 2, args
        assert capsys.readouterr().err.strip() == expected
    out = fault_runner.cli("train", str(bad))
    assert out.rc == 2 and out.err.strip() == f"error: {expected}", out
    assert not (tmp_path / "runs").exists()


def test_non_utf8_config_toml_of_a_run_folder(run_copy, tmp_path, capsys):
    config = run_copy / "config.toml"
    config.write_bytes(config.read_bytes().replace(b"[model]", b"[model]\n# \xff"))
    line = config.read_bytes().split(b"\n").index(b"# \xff") + 1
    for args in (["eval", str(run_copy)], ["export", str(run_copy), "--to", str(tmp_path / "a")]):
        assert cli.main(args) == 2, args
        err = capsys.readouterr().err
        assert f"{config}:{line}: not UTF-8 text (byte 0xff)" in err and "Traceback" not in err, err
    out = fault_runner.cli("train", str(run_copy), "--resume")
    assert out.rc == 2 and f"{config}:{line}: not UTF-8 text" in out.err, out
    assert RunFolder(run_copy).newest_checkpoint()[0] == STEPS
