"""Work the window hands to a child process: Check, the reward test bench, Evaluate, Export (adapter,
merged model or GGUF file, pushed to the hub if asked) and the Playground's model.

    python -m grpo_studio.engine.child_tasks        (requests: JSON lines on stdin)

Each of them runs user code or loads a model, so none runs in the window's interpreter: a reward
file that hangs, a crash in a native library, or a 7B merge killed for memory ends the child and is
reported, while the window and its unsaved edits stay. The messages are `child_messages`; the
plumbing is `child_process`. The first request names the task; the playground then keeps reading
`Sample` / `StopSampling` requests until its stdin closes (the window's side of that session is
gui/child_runner.py's `ChildRunner`). `run_task` is the window's side of the one-shot tasks: start,
relay progress, return the result (or why there is none), end the child at once on cancel.

Exit codes: 0 done, 1 failed, 2 bad input (the result says which).
"""

from __future__ import annotations

import queue
import sys
import threading
import time
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
    EvalRequest,
    EvalStored,
    Exported,
    ExportRequest,
    PlaygroundOpen,
    PlaygroundReady,
    Progress,
    Reply,
    Request,
    RowInfo,
    Sample,
    Sampled,
    SampledAnswer,
    SessionRequest,
    StopSampling,
    TaskFailed,
    Tokens,
)
from grpo_studio.engine.child_process import ChildProcess, ParentLink
from grpo_studio.engine.error_text import first_line

TASK_COMMAND = [sys.executable, "-m", "grpo_studio.engine.child_tasks"]


# ---- the window's side --------------------------------------------------------------------------


@dataclass
class TaskOutcome:
    """What came back: the result message, or nothing (then the exit code and stderr say why)."""

    result: Any  # CheckReport | BenchReport | EvalStored | Exported | TaskFailed | None
    returncode: int | None
    log_tail: str  # the child's last stderr lines
    cancelled: bool = False
    timed_out: bool = False
    pid: int | None = None  # the child's (a cancelled export's staging folder is named after it)


def run_task(request: BaseModel, *, progress: Callable[[str, float], None] | None = None,
             started: Callable[[ChildProcess], None] | None = None, command: list[str] | None = None,
             timeout_s: float | None = None) -> TaskOutcome:
    """Run one request in a child and wait for it (call from a worker thread, never the GUI thread).

    `started(child)` is called once the child runs, so the caller can end it (`child.cancel()`)."""
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
    return TaskOutcome(result, code, child.tail, cancelled=child.cancelled, timed_out=timed_out.is_set(),
                       pid=child.pid)


# ---- the child's side ---------------------------------------------------------------------------


def progress_to(link: ParentLink) -> Callable[[str, float], None]:
    """The engine's `progress(message, fraction)` callback, as Progress messages to the window."""
    return lambda message, fraction: link.send(Progress(message=message, fraction=max(0.0, min(1.0, fraction))))


def input_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the input was refused (a clear line, no traceback, exit code 2)."""
    from grpo_studio.config import ConfigError
    from grpo_studio.engine.data import DataError
    from grpo_studio.engine.evaluate import EvalError
    from grpo_studio.engine.export import ExportError  # GgufError is one
    from grpo_studio.engine.hub_push import HubPushError
    from grpo_studio.engine.model import ModelError
    from grpo_studio.engine.rewards import RewardError

    return ConfigError, DataError, RewardError, ModelError, EvalError, ExportError, HubPushError


def refused(exc: BaseException) -> TaskFailed:
    """A refused input as one line (the first of its problems), all of them in `details`. An error that
    says the work itself failed (`failed`: an export's full disk) is not bad input, as on the command line."""
    problems = getattr(exc, "problems", None)
    lines = [str(p) for p in problems] if problems else [str(exc)]
    return TaskFailed(reason=lines[0] + (f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""),
                      details="\n".join(lines), input_error=not getattr(exc, "failed", False))


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
    from grpo_studio.config import load_run
    from grpo_studio.engine.reward_bench import read_completions, run_bench

    run = load_run(request.run_file)  # refused input (the run file, the completions): main() says so
    typed = read_completions(request.completions_file) if request.completions_file else None
    report = run_bench(run, completions=typed, prompts=max(1, request.prompts), progress=progress_to(link))
    link.send(bench_report(report))
    return 0 if report.ok else 2


def evaluate(request: EvalRequest, link: ParentLink) -> int:
    from grpo_studio.engine.eval_compare import compare_run, evals_dir, resolve_adapter

    say = progress_to(link)
    label, _ = resolve_adapter(request.run_dir, request.adapter)

    def progress(done: int, total: int) -> None:
        n = max(1, total // 2)
        if done == 0:
            text = "loading the base model"
        elif done <= n:
            text = f"base model: {done} / {n} prompts answered"
        else:
            text = f"{label}: {done - n} / {n} prompts answered"
        say(text, done / max(1, total))

    say("loading the held-out prompts and the reward functions", 0.0)
    result = compare_run(request.run_dir, label, limit=request.limit, progress=progress)
    link.send(EvalStored(path=str(evals_dir(request.run_dir) / f"{result.name}.json")))
    return 0


def export(request: ExportRequest, link: ParentLink) -> int:
    from pathlib import Path

    from grpo_studio.engine.export import export_run
    from grpo_studio.engine.hub_push import HubPushError, push_export, push_problem

    if request.push_repo:
        problem = push_problem(request.push_repo)
        if problem:  # before a long export, not after it
            link.send(TaskFailed(reason=problem, input_error=True))
            return 2
    say = progress_to(link)
    share = 0.85 if request.push_repo else 1.0  # of the progress bar, for the export before a push

    def progress(message: str, fraction: float) -> None:
        say(message, share * fraction)

    out = export_run(request.run_dir, request.dest, request.kind, dtype=request.dtype, gguf_type=request.gguf_type,
                     progress=progress)
    url = ""
    if request.push_repo:
        folder = out if out.is_dir() else out.parent
        try:
            url = push_export(folder, request.push_repo, run_dir=Path(request.run_dir), private=request.private,
                              progress=lambda message, fraction: say(message, share + (1 - share) * fraction))
        except HubPushError as exc:
            link.send(TaskFailed(reason=f"exported to {out}, but not pushed: {exc}", exported=str(out)))
            return 1
    link.send(Exported(path=str(out), url=url))
    return 0


def playground(request: PlaygroundOpen, link: ParentLink) -> int:
    """Load the model once, then answer each `Sample` until the window closes our stdin."""
    from grpo_studio.engine.playground import PlaygroundSession

    session = PlaygroundSession(request.run_dir, request.adapter, progress=progress_to(link))
    cfg = session.cfg
    link.send(PlaygroundReady(
        model=cfg.model.name, adapters=list(session.adapters), system_prompt=cfg.data.system_prompt,
        chat=session.chat, template=cfg.data.prompt_template, rewards=[s.label for s in session.specs],
        rows=[RowInfo(index=i, text=t, answer=a) for i, t, a in session.rows()], rows_from=session.rows_from,
        max_tokens=cfg.grpo.max_completion_length, temperature=cfg.grpo.temperature, device=session.device))
    samples: queue.Queue[Sample | None] = queue.Queue()

    def read_requests() -> None:  # Stop must arrive while a generation runs, so stdin is read apart
        for message in link.requests(SessionRequest):
            if isinstance(message, StopSampling):
                session.stop.set()
            else:
                samples.put(message)
        samples.put(None)  # the window closed our stdin: the page let go of the model

    threading.Thread(target=read_requests, name="requests", daemon=True).start()
    errors = input_errors()
    try:
        while (sample := samples.get()) is not None:
            started = time.perf_counter()
            try:
                session.use_adapter(sample.adapter)
                prompt, answers = session.sample(
                    sample.text, row=sample.row, answer=sample.answer, temperature=sample.temperature,
                    max_tokens=sample.max_tokens,
                    on_text=lambda deltas, i=sample.id: link.send(Tokens(id=i, deltas=deltas)))
            except errors as exc:
                link.send(refused(exc))
                continue
            link.send(Sampled(id=sample.id, prompt=prompt, seconds=time.perf_counter() - started,
                              stopped=session.stop.is_set(),
                              answers=[SampledAnswer(**vars(a)) for a in answers]))
    finally:
        session.close()
    return 0


HANDLERS: dict[str, Callable[[Any, ParentLink], int]] = {
    "check": check, "bench": bench, "eval": evaluate, "export": export, "playground": playground}


def main() -> int:
    link = ParentLink.claim()
    from pydantic import ValidationError

    try:
        request = link.receive(Request)
    except ValidationError as exc:
        link.send(TaskFailed(reason=f"not a task request: {first_line(exc)}"))
        return 2
    from grpo_studio.engine.library_noise import quiet_libraries

    quiet_libraries()
    try:
        return HANDLERS[request.task](request, link)
    except input_errors() as exc:
        link.send(refused(exc))
        return 2
    except Exception as exc:  # noqa: BLE001 - every failure becomes a readable result
        link.send(TaskFailed(reason=f"{type(exc).__name__}: {exc}", details=traceback.format_exc()))
        return 1


if __name__ == "__main__":
    sys.exit(main())
