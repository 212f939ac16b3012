"""An unreachable hub: found in seconds by one probe, then offline from the cache, with a message that
names HF_HUB_OFFLINE and the local-folder route; a stop request ends a run stuck in a download at once.

The hub is pointed at local addresses only: 127.0.0.1:9 (nothing listens: connection refused), a
socket that accepts and never answers, or a small server in the test that answers the probe and
then hangs on every download.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grpo_studio.config import load_run
from grpo_studio.engine import hub
from grpo_studio.engine.checks import validate
from grpo_studio.engine.events import STOPPED_BEFORE_TRAINING
from grpo_studio.engine.preview import preview
from hub_server import HangingHub

ROOT = Path(__file__).resolve().parents[2]
REFUSED = "http://127.0.0.1:9"


def online_env(tmp_path: Path, endpoint: str) -> dict[str, str]:
    """A child process's environment without the tests' HF_HUB_OFFLINE, an empty hub cache, this endpoint."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
                                                             "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf-home"), PYTHONPATH=str(ROOT),
               PYTHONUNBUFFERED="1")
    return env


@pytest.fixture
def fresh_probe(monkeypatch):
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    hub.reset()
    yield
    hub.reset()
    os.environ["HF_HUB_OFFLINE"] = "1"  # the probe set it; monkeypatch restores the tests' own value


def test_a_refused_connection_is_found_in_well_under_a_second_and_the_process_goes_offline(monkeypatch,
                                                                                            fresh_probe):
    monkeypatch.setenv("HF_ENDPOINT", REFUSED)
    started = time.monotonic()
    state = hub.ensure()
    assert time.monotonic() - started < 2.0
    assert not state.online and "127.0.0.1:9" in state.reason and "refused" in state.reason.lower()
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # for the rest of the process, and its children
    import huggingface_hub.constants

    assert huggingface_hub.constants.HF_HUB_OFFLINE is True
    assert hub.ensure() is state  # probed once


def test_a_hub_that_never_answers_costs_the_probe_timeout_and_no_more(monkeypatch, fresh_probe):
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}")
        started = time.monotonic()
        why = hub.probe(timeout=1.0)
        took = time.monotonic() - started
    assert why is not None and "did not answer within 1 s" in why
    assert 0.9 < took < 3.0


def test_validate_and_the_window_agree_an_unreachable_hub_dataset_is_a_warning(run_file):
    """HF_HUB_OFFLINE=1 (tests/conftest.py) and an empty cache: the same run file on both sides."""
    hub.reset()
    run = load_run(run_file, ["data.source=someone/not-cached-dataset"])
    report = validate(run)
    assert report.ok, report.problems  # a warning, not a problem: it may train where the hub answers
    warning = next(w for w in report.warnings if w.startswith("data.source: "))
    shown = preview(run)  # what the window's Dataset page shows
    assert not shown.problem and shown.unavailable  # the page says "Not previewed": Train is not blocked
    for text in (warning, shown.unavailable):
        assert "'someone/not-cached-dataset' is not on this machine" in text and "HF_HUB_OFFLINE" in text
        assert "hf download --repo-type dataset someone/not-cached-dataset" in text and "local .jsonl" in text


def read_events(proc: subprocess.Popen, until: str, timeout: float) -> list:
    """Events (JSON lines on the worker's stdout) up to and including the first of kind `until`."""
    events: list = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        event = json.loads(line)
        events.append(event)
        if event["kind"] == until:
            return events
    raise AssertionError(f"no {until!r} event in {timeout} s: {events}")


def test_training_a_hub_model_offline_fails_in_seconds_with_what_to_do(run_file, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "grpo_studio.engine.worker", str(run_file),
                             "--set", "model.name=Qwen/Qwen2.5-0.5B-Instruct"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=online_env(tmp_path, REFUSED))
    try:
        events = read_events(proc, "failed", timeout=240)
        stderr = proc.communicate(timeout=60)[1]
    finally:
        proc.kill()
    loading = next(e for e in events if e["kind"] == "log" and e["message"].startswith("loading tokenizer"))
    failed = events[-1]
    assert failed["time"] - loading["time"] < 8  # was about 70 s of retries (one refused probe now)
    reason = failed["reason"]
    assert reason.startswith("model.name: model 'Qwen/Qwen2.5-0.5B-Instruct' is not on this machine")
    assert "HF_HUB_OFFLINE" in reason and "hf download Qwen/Qwen2.5-0.5B-Instruct" in reason
    assert "local model folder" in reason and failed["input_error"]
    assert "Retrying in" not in stderr and "Retrying in" not in json.dumps(events)


@pytest.fixture
def hanging_hub():
    server = HangingHub()
    yield server
    server.close()


def wait_for(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_stop_ends_a_run_stuck_in_a_download_at_once(run_file, tmp_path, hanging_hub):
    """The window's Stop (a STOP file in the run folder) while the worker waits on the hub."""
    proc = subprocess.Popen([sys.executable, "-m", "grpo_studio.engine.worker", str(run_file),
                             "--set", "model.name=someone/slow-model"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=online_env(tmp_path, hanging_hub.url))
    try:
        opened = read_events(proc, "opened", timeout=240)[-1]
        wait_for(lambda: hanging_hub.downloads > 0, timeout=120)  # inside from_pretrained, waiting
        (Path(opened["run_dir"]) / "STOP").write_text("")
        asked = time.monotonic()
        failed = read_events(proc, "failed", timeout=30)[-1]
        code = proc.wait(timeout=30)
        took = time.monotonic() - asked
    finally:
        proc.kill()
    assert took < 5 and failed["reason"] == STOPPED_BEFORE_TRAINING and code == 130  # stopped on request


def test_ctrl_c_stops_the_command_line_while_it_waits_on_the_hub(run_file, tmp_path, hanging_hub):
    proc = subprocess.Popen([sys.executable, "-m", "grpo_studio.cli", "train", str(run_file),
                             "--set", "model.name=someone/slow-model"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=online_env(tmp_path, hanging_hub.url))
    try:
        wait_for(lambda: hanging_hub.downloads > 0, timeout=240)
        proc.send_signal(signal.SIGINT)  # once: there is no step to finish
        asked = time.monotonic()
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - asked
    finally:
        proc.kill()
    assert took < 5 and proc.returncode == 130
    assert STOPPED_BEFORE_TRAINING in err and "Traceback" not in err and "error:" not in err
