"""The worker process: a clean JSON-lines event stream on stdout, and a stop request honoured."""

from __future__ import annotations

import subprocess
import sys

from grpo_studio.engine.events import decode_event
from grpo_studio.engine.store import RunFolder


def start_worker(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "grpo_studio.engine.worker", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_events_stream_is_only_json(run_file, tmp_path):
    proc = start_worker(str(run_file), "--output", str(tmp_path / "run"), "--set", "grpo.max_steps=2")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    events = [decode_event(line) for line in out.splitlines()]  # every line decodes: nothing else got in
    kinds = [e.kind for e in events]
    assert kinds[0] == "opened" and kinds[-1] == "finished"
    assert "started" in kinds and kinds.count("metrics") == 2 and kinds.count("samples_stored") == 2
    assert "samples" not in kinds  # completions stay in the store: the window reads them from there
    assert all(e.count == 8 for e in events if e.kind == "samples_stored")


def test_stop_file_ends_the_run_with_a_checkpoint(run_file, tmp_path):
    proc = start_worker(str(run_file), "--output", str(tmp_path / "run"), "--set", "grpo.max_steps=500",
                        "--set", "run.save_steps=1000")
    events = []
    assert proc.stdout is not None
    for line in proc.stdout:
        event = decode_event(line)
        events.append(event)
        if event.kind == "metrics" and event.step == 2:
            RunFolder(tmp_path / "run").request_stop()
    proc.wait(timeout=120)
    assert proc.returncode == 130
    finished = events[-1]
    assert finished.kind == "finished" and finished.stopped and finished.step < 500
    assert RunFolder(tmp_path / "run").newest_checkpoint()[0] == finished.step
    assert not RunFolder(tmp_path / "run").stop_request.exists()


def test_bad_run_file_exits_2_with_a_failed_event(tmp_path):
    bad = tmp_path / "run.toml"
    bad.write_text("[grpo]\nnum_generations = 1\n")
    proc = start_worker(str(bad))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2
    (event,) = [decode_event(line) for line in out.splitlines()]
    assert event.kind == "failed" and event.reason == "grpo.num_generations: must be >= 2, got 1"

