"""The one way to run work in a child process: typed messages both ways, a log apart from them,
cancel that ends the whole process group, and the window's tasks (check, bench, export) answering
with typed results."""

from __future__ import annotations

import os
import sys
import textwrap
import time
from typing import Literal

from pydantic import BaseModel

from grpo_studio.engine.child_messages import (
    BenchRequest,
    CheckReport,
    CheckRequest,
    ExportRequest,
    TaskFailed,
)
from grpo_studio.engine.child_process import ChildProcess
from grpo_studio.engine.child_tasks import run_task


class Echo(BaseModel):
    kind: Literal["echo"] = "echo"
    text: str
    n: int


CHILD = textwrap.dedent('''\
    import os, subprocess, sys, time
    from pydantic import BaseModel
    from grpo_studio.engine.child_process import ParentLink

    class Echo(BaseModel):
        kind: str = "echo"
        text: str
        n: int

    link = ParentLink.claim()
    request = link.receive(Echo)
    print("a library printing to stdout")      # must land in the log, not the messages
    os.write(1, b"C code writing to fd 1\\n")
    print("a traceback, say", file=sys.stderr)
    for i in range(request.n):
        link.send(Echo(text=request.text.upper(), n=i))
    if request.text == "serve":  # a long-lived child: every further request answered, until stdin closes
        for more in link.requests(Echo):
            link.send(Echo(text=more.text.upper(), n=more.n))
    if request.text == "hang":
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        link.send(Echo(text=str(grandchild.pid), n=-1))
        time.sleep(60)
    ''')


def start(tmp_path, text: str, n: int, logs: list[str], **options) -> ChildProcess:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = ChildProcess([sys.executable, str(script)], reads=Echo, on_log=logs.append, **options)
    child.start(Echo(text=text, n=n))
    return child


def test_typed_messages_both_ways_and_the_log_apart(tmp_path):
    logs: list[str] = []
    child = start(tmp_path, "hello", 3, logs)
    messages = list(child.messages())
    assert child.wait(30) == 0
    assert messages == [Echo(text="HELLO", n=0), Echo(text="HELLO", n=1), Echo(text="HELLO", n=2)]
    assert {"a library printing to stdout", "C code writing to fd 1", "a traceback, say"} <= set(logs)
    assert "a traceback, say" in child.tail


def test_a_long_lived_child_answers_further_requests_until_its_stdin_closes(tmp_path):
    logs: list[str] = []
    child = start(tmp_path, "serve", 0, logs, keep_stdin_open=True)
    stream = child.messages()
    assert child.send(Echo(text="one", n=1)) and next(stream) == Echo(text="ONE", n=1)
    child.proc.stdin.write("not a request\n")  # said in the child's log, and it keeps serving
    assert child.send(Echo(text="two", n=2)) and next(stream) == Echo(text="TWO", n=2)
    child.close_stdin()  # no more requests: the child ends on its own
    assert list(stream) == [] and child.wait(30) == 0
    assert any(line.startswith("(not a request) not a request") for line in logs)
    assert not child.send(Echo(text="late", n=3))  # it is gone: False, no exception


def test_a_one_shot_childs_stdin_closes_after_its_request(tmp_path):
    child = start(tmp_path, "serve", 0, [])  # it would serve forever if its stdin stayed open
    assert list(child.messages()) == [] and child.wait(30) == 0
    assert not child.send(Echo(text="late", n=1))


def test_a_line_that_is_not_a_message_is_reported_not_fatal(tmp_path):
    script = tmp_path / "odd.py"
    script.write_text("import json\nprint('garbage')\nprint(json.dumps({'kind': 'echo', 'text': 'x', 'n': 1}))\n")
    bad: list[str] = []
    child = ChildProcess([sys.executable, str(script)], reads=Echo, on_bad_line=bad.append)
    child.start()
    assert list(child.messages()) == [Echo(text="x", n=1)] and bad == ["garbage"]
    assert child.wait(30) == 0


def test_cancel_ends_the_child_and_what_it_started(tmp_path):
    logs: list[str] = []
    child = start(tmp_path, "hang", 0, logs)
    stream = child.messages()
    grandchild = int(next(stream).text)
    child.cancel()
    assert list(stream) == [] and child.wait(10) < 0 and child.cancelled
    for _ in range(100):  # the whole process group is gone, not only the child
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the grandchild outlived cancel()")


def test_cancel_after_the_child_ended_leaves_its_result_standing(tmp_path):
    # Cancel pressed between a finished export's exit and its outcome: not a cancelled export (the
    # export dialog removes the folder of a cancelled one).
    child = start(tmp_path, "done", 1, [])
    assert list(child.messages()) == [Echo(text="DONE", n=0)]
    child.proc.wait(30)
    child.cancel()
    assert not child.cancelled and child.wait(30) == 0


def test_a_child_that_cannot_start_raises_oserror(tmp_path):
    child = ChildProcess([str(tmp_path / "no-such-program")], reads=Echo)
    try:
        child.start()
    except OSError:
        assert child.started.is_set()
    else:
        raise AssertionError("expected OSError")


# ---- the window's tasks, through the real child entry point -------------------------------------


def test_check_of_a_refused_run_file_reports_each_problem(tmp_path):
    bad = tmp_path / "run.toml"
    bad.write_text("[grpo]\nnum_generations = 1\nlearning_rate = -1\n")
    outcome = run_task(CheckRequest(run_file=str(bad)))
    assert isinstance(outcome.result, CheckReport) and outcome.returncode == 2
    assert sorted(outcome.result.problems) == ["grpo.learning_rate: must be > 0.0, got -1",
                                               "grpo.num_generations: must be >= 2, got 1"]
    assert not outcome.result.ok


def test_bench_and_export_failures_come_back_typed(tmp_path):
    bad = tmp_path / "run.toml"
    bad.write_text("[model]\nnmae = 'typo'\n")
    outcome = run_task(BenchRequest(run_file=str(bad)))
    assert isinstance(outcome.result, TaskFailed) and outcome.result.input_error
    assert outcome.result.reason.startswith("model.nmae: unknown setting")
    progress: list[tuple[str, float]] = []
    outcome = run_task(ExportRequest(run_dir=str(tmp_path), dest=str(tmp_path / "out")),
                       progress=lambda m, f: progress.append((m, f)))
    assert isinstance(outcome.result, TaskFailed) and "not a run folder" in outcome.result.reason
    assert outcome.returncode == 2 and not (tmp_path / "out").exists()


def test_a_request_that_is_not_one_is_refused_by_the_child(tmp_path):
    child = ChildProcess([sys.executable, "-m", "grpo_studio.engine.child_tasks"], reads=TaskFailed)
    child.start(Echo(text="x", n=1))
    (message,) = list(child.messages())
    assert child.wait(30) == 2 and message.reason.startswith("not a task request")
