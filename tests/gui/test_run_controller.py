"""The RunController with stand-in worker processes: events become signals, silent deaths get a cause."""

from __future__ import annotations

import sys
import textwrap

from grpo_studio.gui.run_controller import RunController, describe_exit

FAKE = textwrap.dedent('''\
    import json, os, sys, time
    def emit(**event):
        event.setdefault("time", time.time())
        print(json.dumps(event), flush=True)
    emit(kind="opened", run_dir=sys.argv[1])
    print("some library chatter", file=sys.stderr, flush=True)
    emit(kind="metrics", step=1, max_steps=5, values={"reward": 0.5})
    print("Segmentation fault in a kernel (pretend)", file=sys.stderr, flush=True)
    if sys.argv[2] == "crash":
        os.kill(os.getpid(), 9)
    emit(kind="finished", step=1)
    ''')


def run_fake(qtbot, tmp_path, mode):
    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE)
    controller = RunController()
    kinds, lines = [], []
    controller.event.connect(lambda e: kinds.append(e.kind))
    controller.logLine.connect(lines.append)
    with qtbot.waitSignal(controller.runEnded, timeout=30000) as ended:
        controller.start_command([sys.executable, str(script), str(tmp_path), mode])
        assert controller.is_active()
    assert not controller.is_active() and controller.state == "idle"
    return ended.args[0], kinds, lines


def test_events_and_stderr_lines_arrive_as_signals(qtbot, tmp_path):
    final, kinds, lines = run_fake(qtbot, tmp_path, "ok")
    assert kinds == ["opened", "metrics", "finished"] and final.kind == "finished"
    assert "some library chatter" in lines
    assert "some library chatter" in (tmp_path / "train.log").read_text()  # kept with the run


def test_a_worker_killed_without_a_word_gets_a_readable_failure(qtbot, tmp_path):
    final, kinds, _ = run_fake(qtbot, tmp_path, "crash")
    assert kinds[-1] == "failed"
    assert final.reason == "the training process was killed (SIGKILL)"
    assert "ran out of memory" in final.hint
    assert "Segmentation fault in a kernel (pretend)" in final.details


def test_exit_codes_are_described():
    assert describe_exit(1)[0] == "the training process exited with code 1 without reporting why"
    assert "crashed (SIGSEGV)" in describe_exit(-11)[0]
