"""Work the window hands to a child process: Check, the reward test bench, the export.

    python -m grpo_studio.engine.child_tasks        (the request comes as one JSON line on stdin)

Each of them runs user code or loads a model, so none runs in the window's interpreter: a reward
file that hangs, a crash in a native library, or a 7B merge killed for memory ends the child and is
reported, while the window and its unsaved edits stay. The messages are `child_messages`; the
plumbing is `child_process`. `run_task` is the window's side: start, relay progress, return the
result (or why there is none), end the child at once on cancel.

Exit codes: 0 done, 1 failed, 2 bad input (the result says which).
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from pydantic import BaseModel

from grpo_studio.engine.child_messages import (
    BenchFinding,
    BenchFunction,
    BenchGroup,
    BenchReport,
    BenchRequest,
    CheckReport,
    CheckRequest,
    Exported,
    ExportRequest,
    Progress,
    Reply,
    Request,
    TaskFailed,
)
from grpo_studio.engine.child_process import ChildProcess, ParentLink

TASK_COMMAND = [sys.executable, "-m", "grpo_studio.engine.child_tasks"]


# ---- the window's side --------------------------------------------------------------------------


@dataclass
class TaskOutcome:
    """What came back: the result message, or nothing (then the exit code and stderr say why)."""

    result: Any  # CheckReport | BenchReport | Exported | TaskFailed | None
    returncode: int | None
    log_tail: str  # the child's last stderr lines
    cancelled: bool = False
    timed_out: bool = False


def run_task(request: BaseModel, *, progress: Callable[[str, float], None] | None = None,
             started: Callable[[ChildProcess], None] | None = None, command: list[str] | None = None,
             timeout_s: float | None = None) -> TaskOutcome:
    """Run one request in a child and wait for it (call from a worker thread, never the GUI thread).

    `started(child)` is called once the child runs, so the caller can end it (`child.cancel()`)."""
    import threading

    child = ChildProcess(command or TASK_COMMAND, reads=Reply)
    try:
        child.start(request)
    except OSError as exc:
        return TaskOutcome(TaskFailed(reason=f"cannot start {child.command[0]}: {exc}"), None, "",
                           cancelled=child.cancelled)
    if started is not None:
        started(child)
    timed_out = threading.Event()

    def time_out() -> None:
        timed_out.set()
        child.kill()

    timer = threading.Timer(timeout_s, time_out) if timeout_s else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    result = None
    try:
        for message in child.messages():
            if isinstance(message, Progress):
                if progress is not None:
                    progress(message.message, message.fraction)
            else:
                result = message
        code = child.wait()
    finally:
        if timer is not None:
            timer.cancel()
    return TaskOutcome(result, code, child.tail, cancelled=child.cancelled, timed_out=timed_out.is_set())



# ---- the child's side ---------------------------------------------------------------------------


def _config_failure(exc: Any) -> TaskFailed:
    lines = [str(p) for p in exc.problems]
    return TaskFailed(reason=lines[-1] if lines else str(exc), details="\n".join(lines), input_error=True)


def check(request: CheckRequest, link: ParentLink) -> int:
    from grpo_studio.config import ConfigError, load_run
    from grpo_studio.engine.checks import validate

    try:
        run = load_run(request.run_file)
    except ConfigError as exc:  # the run file itself was refused: each reason is a problem
        link.send(CheckReport(problems=[str(p) for p in exc.problems]))
        return 2
    report = validate(run)
    link.send(CheckReport(problems=report.problems, warnings=report.warnings, facts=report.facts))
    return 0 if report.ok else 2


def bench_report(report: Any) -> BenchReport:
    """The engine's bench report as the window reads it."""
    functions = [BenchFunction(name=f.name, weight=f.weight, file=f.file, line=f.line, scores=f.scores, mean=f.mean,
                               ms_per_call=f.ms_per_call, calls=len(f.seconds)) for f in report.functions]
    groups = [BenchGroup(row=g.row, prompt=g.prompt, answer=g.answer, completions=g.completions, totals=g.totals)
              for g in report.groups]
    findings = [BenchFinding(level=level, code=f.code, message=f.message, file=f.file, line=f.line,
                             function=f.function, details=f.details, groups=f.groups)
                for level, items in (("error", report.errors), ("warning", report.warnings)) for f in items]
    return BenchReport(source=report.source, seconds=report.seconds, functions=functions, groups=groups,
                       findings=findings)


def bench(request: BenchRequest, link: ParentLink) -> int:
    from grpo_studio.config import ConfigError, load_run
    from grpo_studio.engine.data import DataError
    from grpo_studio.engine.reward_bench import read_completions, run_bench

    try:
        run = load_run(request.run_file)
        typed = read_completions(request.completions_file) if request.completions_file else None
    except ConfigError as exc:
        link.send(_config_failure(exc))
        return 2
    except DataError as exc:
        link.send(TaskFailed(reason=str(exc), input_error=True))
        return 2
    report = run_bench(run, completions=typed, prompts=max(1, request.prompts),
                       progress=lambda message, fraction: link.send(Progress(message=message, fraction=fraction)))
    link.send(bench_report(report))
    return 0 if report.ok else 2


def export(request: ExportRequest, link: ParentLink) -> int:
    from grpo_studio.engine.export import ExportError, export_adapter, export_merged

    def progress(message: str, fraction: float) -> None:
        link.send(Progress(message=message, fraction=fraction))

    try:
        if request.merged:
            path = export_merged(request.run_dir, request.dest, dtype=request.dtype, progress=progress)
        else:
            path = export_adapter(request.run_dir, request.dest, progress=progress)
    except ExportError as exc:
        link.send(TaskFailed(reason=str(exc), input_error=True))
        return 2
    link.send(Exported(path=str(path)))
    return 0


HANDLERS = {"check": check, "bench": bench, "export": export}


def main() -> int:
    link = ParentLink.claim()
    from pydantic import ValidationError

    try:
        request = link.receive(Request)
    except ValidationError as exc:
        link.send(TaskFailed(reason=f"not a task request: {exc}"))
        return 2
    from grpo_studio.engine.library_noise import quiet_libraries

    quiet_libraries()
    try:
        return HANDLERS[request.task](request, link)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a readable result
        link.send(TaskFailed(reason=f"{type(exc).__name__}: {exc}", details=traceback.format_exc()))
        return 1


if __name__ == "__main__":
    sys.exit(main())
