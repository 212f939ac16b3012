"""The bad-input catalogue: `train` refuses what `validate` refuses, before a model loads, with the
same one line and exit 2, and leaves no run folder behind (the retry with the same --output works).
Also: a double Ctrl-C exits 130."""

from __future__ import annotations

import json
import os
import signal
import sys

import fault_runner
import pytest
from fault_checks import RUN_SETTINGS, assert_whole_run

from grpo_studio import cli
from grpo_studio.engine.store import RunFolder, RunStore

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX test harness")


def rows(*questions):
    return "".join(json.dumps({"question": q, "answer": "1"}) + "\n" for q in questions)


# (id, --set overrides or a data file's text, the expected error line; {project} = the run file's folder,
# {data} = the data file)
CATALOGUE = [
    ("num_generations", ["grpo.num_generations=3"],
     "grpo.num_generations: 3 does not divide the generation batch 8 (8 completions x 1 accumulation steps)"),
    ("seq_too_short", ["model.max_seq_length=20"],
     "model.max_seq_length: 20 is shorter than data.max_prompt_length 32 + grpo.max_completion_length 8 = 40"),
    ("seq_past_context", ["model.max_seq_length=300"],
     "model.max_seq_length: 300 exceeds the model's context of 256 tokens"),
    ("temperature", ["grpo.temperature=1e-300"], "grpo.temperature: must be >= 0.01, got 1e-300"),
    ("threshold_nan", ["eval.threshold=nan"], "eval.threshold: input should be a finite number, got nan"),
    ("empty_model", ['model.name=""'], "model.name: is empty: give a hub id or a local folder"),
    ("missing_data", ["data.source=missing/train.jsonl"],
     "data.source: file not found: {project}/missing/train.jsonl"),  # beside the run file, not in the run folder
    ("null_prompt", rows("1+1=", "2+2=", None, "3+3="),
     "{data}:3: no prompt: 'question' (data.prompt_column) is empty or null; fill it in or remove the row"),
    ("too_small", rows("1+1="),
     "data.source: 1 usable rows, but one step needs 2 prompts (generation batch 8 / grpo.num_generations 4): add "
     "rows, or lower grpo.per_device_train_batch_size or grpo.gradient_accumulation_steps"),
    ("blank_jsonl", "\n  \n\n", "{data}: has no rows (only blank lines)"),
    ("ten_mb_line", '{"question": "1+1=", "answer": ' + "9" * 10_000_000 + "}\n" + rows("2+2="),
     "{data}:1: not readable JSON: Exceeds the limit (4300 digits) for integer string conversion: value has "
     "10000000 digits; write such a value as a string"),
]


@pytest.mark.parametrize("case, bad, expected", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_train_refuses_what_validate_refuses(fault_project, tmp_path, capsys, case, bad, expected):
    overrides = bad
    data = tmp_path / "bad.jsonl"
    if isinstance(bad, str):
        data.write_text(bad)
        overrides = [f"data.source={data}"]
    expected = expected.format(project=fault_project.parent, data=data)
    sets = [arg for o in overrides for arg in ("--set", o)]

    assert cli.main(["validate", str(fault_project), *sets]) == 2
    assert expected in capsys.readouterr().err.splitlines()

    output = tmp_path / "run"
    out = fault_runner.cli("train", str(fault_project), "--output", str(output), *RUN_SETTINGS, *sets)
    assert out.rc == 2, out
    assert "Traceback" not in out.err and "loading model" not in out.out  # refused before any model loaded
    errors = [line for line in out.err.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {expected}"], out
    assert not output.exists()  # nothing left behind to block the retry


def test_after_bad_data_the_retry_with_the_same_output_works(fault_project, tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text(rows("1+1=", None, "2+2=", "3+3="))
    output = tmp_path / "run"
    bad = fault_runner.cli("train", str(fault_project), "--output", str(output), *RUN_SETTINGS,
                           "--set", f"data.source={data}")
    assert bad.rc == 2 and "was removed" in bad.out, bad  # the folder was made, then removed again
    assert not output.exists()
    data.write_text(rows("1+1=", "5+2=", "2+2=", "3+3="))
    good = fault_runner.cli("train", str(fault_project), "--output", str(output), *RUN_SETTINGS,
                            "--set", f"data.source={data}")
    assert good.rc == 0, good
    assert_whole_run(output)


def test_double_ctrl_c_exits_130(fault_project, tmp_path):
    """First Ctrl-C: finish the step and stop. Second: abort now, exit 130, resumable from the step stored."""
    output = tmp_path / "run"
    child = fault_runner.start(["train", str(fault_project), "--output", str(output), *RUN_SETTINGS],
                               env={"GRPO_STUDIO_FAULT": "pause:step_end:1"})
    child.wait_for(output / "FAULT_PAUSED")
    os.kill(child.proc.pid, signal.SIGINT)
    child.wait_for_text("Ctrl-C again to abort")
    os.kill(child.proc.pid, signal.SIGINT)
    out = child.finish()
    assert out.rc == 130, out
    assert "error: interrupted" in out.err and "Traceback" not in out.err
    with RunStore(output / "run.db", readonly=True) as store:
        assert store.meta()["status"] == "stopped" and store.last_step() == 1


def test_ctrl_c_while_loading_stops_at_once(fault_project, tmp_path):
    """Before step 1 there is no step to finish: one Ctrl-C ends the run at once (engine/stop.py), exit
    130, and a new run that never reached step 1 leaves no folder."""
    output = tmp_path / "run"
    child = fault_runner.start(["train", str(fault_project), "--output", str(output), *RUN_SETTINGS],
                               env={"GRPO_STUDIO_FAULT": "pause:folder_opened"})
    child.wait_for(output / "FAULT_PAUSED")
    os.kill(child.proc.pid, signal.SIGINT)
    out = child.finish()
    assert out.rc == 130, out
    assert "stopped before the first step" in out.err and "Traceback" not in out.err
    assert not output.exists()


def test_stop_while_loading_ends_before_step_1_and_leaves_no_folder(fault_project, tmp_path):
    """The window's Stop (a STOP file) while the run still loads: no step is trained, exit 130, and a
    new run that never reached step 1 leaves no folder."""
    output = tmp_path / "run"
    child = fault_runner.start(["train", str(fault_project), "--output", str(output), *RUN_SETTINGS],
                               env={"GRPO_STUDIO_FAULT": "pause:folder_opened"})
    child.wait_for(output / "FAULT_PAUSED")
    RunFolder(output).request_stop()
    (output / "FAULT_PAUSED").unlink()
    out = child.finish()
    assert out.rc == 130, out
    assert "stopped before the first step: nothing was trained" in out.err and "loading model" not in out.out
    assert not output.exists()


def test_the_stop_message_never_goes_through_stderrs_buffer(monkeypatch, capfd):
    """A signal handler that prints while the main thread is inside a print to stderr fails with "reentrant
    call inside BufferedWriter" (seen once with a double Ctrl-C): the message is written to the descriptor."""
    import sys

    from grpo_studio.cli import stop_on_signal

    class Busy:  # stderr's buffer, mid-write in the main thread
        def write(self, text):
            raise RuntimeError("reentrant call inside <_io.BufferedWriter name='<stderr>'>")

        def fileno(self):
            return 2

        def flush(self):
            pass

    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        stop = stop_on_signal()
        stop.training = True
        monkeypatch.setattr(sys, "stderr", Busy())
        stop.handle_signal(signal.SIGINT, None)
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])
    assert "Ctrl-C again to abort" in capfd.readouterr().err
