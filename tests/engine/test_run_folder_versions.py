"""Run files and run stores carry a format version; old run folders keep opening after a rename, and a
folder from a newer GRPO Studio is refused with a message that says so.

The rename is simulated: a run folder is written by today's code, then a "next version" of the
settings (or of an event) with one field renamed is put in place, with its migration.
"""

from __future__ import annotations

import sqlite3
from typing import Annotated, Union

import pytest
from pydantic import Field, TypeAdapter, create_model

import tiny
from grpo_studio.config import ConfigError, GrpoSettings, RunConfig, load_run, versions
from grpo_studio.config import run_file as run_file_module
from grpo_studio.config.settings import Section
from grpo_studio.engine import events as events_module
from grpo_studio.engine import store_versions
from grpo_studio.engine.events import (
    Alarm,
    Checkpoint,
    Failed,
    Finished,
    Log,
    Metrics,
    Opened,
    Sample,
    Samples,
    SamplesStored,
    Started,
)
from grpo_studio.engine.run import freeze_run_file, new_run_folder, train
from grpo_studio.engine.store import RunStore


@pytest.fixture
def todays_folder(tmp_path, tiny_model):
    """A run folder as today's code writes it: the frozen run file and a store with its events."""
    run = load_run(tiny.write_run(tmp_path / "project", tiny_model))
    folder = new_run_folder(run)
    freeze_run_file(run, folder)
    with RunStore(folder.database) as store:
        for event in (Opened(run_dir=str(folder.path)),
                      Started(run_dir=str(folder.path), max_steps=3, reward_names=["correctness_reward"]),
                      Metrics(step=1, max_steps=3, values={"reward": 0.5}),
                      Samples(step=1, samples=[Sample(group=0, prompt="1+2=", completion="3",
                                                      rewards={"correctness_reward": 1.0}, total=1.0)]),
                      Checkpoint(step=1, path=str(folder.checkpoints / "checkpoint-1")),
                      Finished(step=1, stopped=True)):
            store.record(event)
    return folder


def _renamed(model, old: str, new: str, base):
    """The model as a next version would define it: one field renamed, the rest as they are."""
    fields = {(new if name == old else name): (info.annotation, info) for name, info in model.model_fields.items()}
    return create_model(model.__name__, __base__=base, **fields)


def test_todays_folder_records_its_versions(todays_folder):
    assert todays_folder.config.read_text().startswith(f"schema_version = {versions.RUN_FILE_VERSION}\n")
    with sqlite3.connect(todays_folder.database) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == store_versions.STORE_VERSION
    assert load_run(todays_folder.config).config.grpo.max_steps == 3


def test_every_version_has_its_migration():
    assert set(versions.MIGRATIONS) == set(range(1, versions.RUN_FILE_VERSION))
    assert set(store_versions.MIGRATIONS) == set(range(1, store_versions.STORE_VERSION))


def test_a_run_folder_written_today_opens_after_a_setting_is_renamed(todays_folder, monkeypatch):
    # The next version calls grpo.max_steps grpo.total_steps.
    grpo_v2 = _renamed(GrpoSettings, "max_steps", "total_steps", Section)
    config_v2 = create_model("RunConfig", __base__=RunConfig, grpo=(grpo_v2, grpo_v2()))
    monkeypatch.setattr(run_file_module, "RunConfig", config_v2)
    monkeypatch.setattr(versions, "RUN_FILE_VERSION", 2)
    monkeypatch.setitem(versions.MIGRATIONS, 1,
                        lambda data: versions.rename_setting(data, "grpo.max_steps", "grpo.total_steps"))

    run = load_run(todays_folder.config)
    assert run.config.grpo.total_steps == 3 and not hasattr(run.config.grpo, "max_steps")
    monkeypatch.setitem(versions.MIGRATIONS, 1, lambda data: data)  # without its migration...
    with pytest.raises(ConfigError) as caught:  # ...today's file would not open
        load_run(todays_folder.config)
    assert "grpo.max_steps: unknown setting" in str(caught.value)


def test_a_run_store_written_today_reads_after_an_event_field_is_renamed(todays_folder, monkeypatch):
    # The next version calls Started.max_steps Started.total_steps.
    started_v2 = _renamed(Started, "max_steps", "total_steps", events_module._Event)
    union = Union[Opened, started_v2, Metrics, Samples, SamplesStored, Checkpoint, Alarm, Log, Finished, Failed]
    monkeypatch.setattr(events_module, "_adapter", TypeAdapter(Annotated[union, Field(discriminator="kind")]))
    monkeypatch.setattr(store_versions, "STORE_VERSION", 2)
    monkeypatch.setitem(store_versions.MIGRATIONS, 1, store_versions.Migration(
        events=lambda e: store_versions.rename_event_field(e, "started", "max_steps", "total_steps")))

    with RunStore(todays_folder.database, readonly=True) as store:  # the Runs page, a reopened run
        (started,) = store.events(["started"])
        assert started.total_steps == 3 and [e.kind for e in store.events()][-1] == "finished"
    with RunStore(todays_folder.database) as store:  # a resumed run upgrades the file before writing
        store.record(Log(message="resumed"))
    with sqlite3.connect(todays_folder.database) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
        (payload,) = db.execute("SELECT payload FROM events WHERE kind = 'started'").fetchone()
    assert '"total_steps":3' in payload.replace(" ", "") and "max_steps" not in payload
    with RunStore(todays_folder.database, readonly=True) as store:
        assert store.events(["started"])[0].total_steps == 3


def test_a_folder_from_a_newer_version_is_refused_with_a_clear_message(todays_folder):
    text = todays_folder.config.read_text()
    todays_folder.config.write_text(text.replace(f"schema_version = {versions.RUN_FILE_VERSION}",
                                                 f"schema_version = {versions.RUN_FILE_VERSION + 1}"))
    with pytest.raises(ConfigError) as caught:
        load_run(todays_folder.config)
    (problem,) = caught.value.problems
    assert problem.field == "schema_version"
    assert "was written by a newer GRPO Studio" in problem.message and "update GRPO Studio" in problem.message

    todays_folder.config.write_text(text)
    with sqlite3.connect(todays_folder.database) as db:
        db.execute(f"PRAGMA user_version = {store_versions.STORE_VERSION + 1}")
    with pytest.raises(store_versions.StoreVersionError, match="written by a newer GRPO Studio"):
        RunStore(todays_folder.database, readonly=True)
    failed = train(todays_folder.path, resume=True)
    assert failed.kind == "failed" and failed.input_error
    assert "run.db was written by a newer GRPO Studio" in failed.reason
