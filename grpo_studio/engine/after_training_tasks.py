"""What the window hands to a child process after training: evaluate, export (GGUF, the hub), and
the playground's model.

    python -m grpo_studio.engine.after_training_tasks     (requests: JSON lines on stdin)

Each of these loads a model or runs reward code, so none runs in the window's interpreter: an
out-of-memory kill or a crash in a native library ends the child and is reported, while the window
and its unsaved edits stay. The first request names the task; the playground then keeps reading
`Sample` / `StopSampling` requests until stdin closes. Replies are `after_training_messages` on
stdout, which is reserved for them (fd 1 is pointed at stderr, so libraries that print land in
the log); the window's side is gui/child_runner.py.

Exit codes: 0 done, 1 failed, 2 bad input (the reply says which).
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
import traceback
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from grpo_studio.engine.after_training_messages import (
    EvalRequest,
    EvalStored,
    Exported,
    ExportRequest,
    PlaygroundOpen,
    PlaygroundReady,
    Progress,
    Request,
    RowInfo,
    Sample,
    SampledAnswer,
    Sampled,
    StopSampling,
    TaskFailed,
    Tokens,
)

COMMAND = [sys.executable, "-m", "grpo_studio.engine.after_training_tasks"]
REQUESTS: TypeAdapter = TypeAdapter(Request)


class Link:
    """The child's end: requests from stdin, replies on the original stdout (from any thread)."""

    def __init__(self) -> None:
        reply_fd = os.dup(1)
        os.dup2(2, 1)  # whatever prints from here on (C libraries too) goes to the log
        sys.stdout = sys.stderr
        self.stream = os.fdopen(reply_fd, "w", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()

    def send(self, message: BaseModel) -> None:
        line = message.model_dump_json() + "\n"
        with self._lock:
            self.stream.write(line)
            self.stream.flush()

    def progress(self, message: str, fraction: float) -> None:
        self.send(Progress(message=message, fraction=max(0.0, min(1.0, fraction))))


def input_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the input was refused (a clear line, no traceback)."""
    from grpo_studio.config import ConfigError
    from grpo_studio.engine.data import DataError
    from grpo_studio.engine.evaluate import EvalError
    from grpo_studio.engine.export import ExportError
    from grpo_studio.engine.gguf_export import GgufError
    from grpo_studio.engine.hub_push import HubPushError
    from grpo_studio.engine.model import ModelError
    from grpo_studio.engine.rewards import RewardError

    return ConfigError, DataError, RewardError, ModelError, EvalError, ExportError, GgufError, HubPushError


def refused(exc: BaseException) -> TaskFailed:
    problems = getattr(exc, "problems", None)
    lines = [str(p) for p in problems] if problems else [str(exc)]
    return TaskFailed(reason=lines[0] + (f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""),
                      details="\n".join(lines), input_error=True)


# ---- evaluate -----------------------------------------------------------------------------------


def evaluate(request: EvalRequest, link: Link) -> int:
    from grpo_studio.engine.eval_compare import compare_run, evals_dir, resolve_adapter

    label, _ = resolve_adapter(request.run_dir, request.adapter)

    def progress(done: int, total: int) -> None:
        n = max(1, total // 2)
        if done == 0:
            text = "loading the base model"
        elif done <= n:
            text = f"base model: {done} / {n} prompts answered"
        else:
            text = f"{label}: {done - n} / {n} prompts answered"
        link.progress(text, done / max(1, total))

    link.progress("loading the held-out prompts and the reward functions", 0.0)
    result = compare_run(request.run_dir, label, limit=request.limit, progress=progress)
    link.send(EvalStored(path=str(evals_dir(request.run_dir) / f"{result.name}.json")))
    return 0


# ---- export -------------------------------------------------------------------------------------


def export(request: ExportRequest, link: Link) -> int:
    from pathlib import Path

    from grpo_studio.engine.export import export_adapter, export_merged
    from grpo_studio.engine.hub_push import HubPushError, push_export, push_problem

    if request.push_repo:
        problem = push_problem(request.push_repo)
        if problem:  # before a long export, not after it
            link.send(TaskFailed(reason=problem, input_error=True))
            return 2
    share = 0.85 if request.push_repo else 1.0

    def progress(message: str, fraction: float) -> None:
        link.progress(message, share * fraction)

    if request.kind == "gguf":
        from grpo_studio.engine.gguf_export import export_gguf

        out = export_gguf(request.run_dir, request.dest, request.gguf_type, progress=progress)
    elif request.kind == "merged":
        out = export_merged(request.run_dir, request.dest, dtype=request.dtype, progress=progress)
    else:
        out = export_adapter(request.run_dir, request.dest, progress=progress)
    url = ""
    if request.push_repo:
        folder = out if out.is_dir() else out.parent
        try:
            url = push_export(folder, request.push_repo, run_dir=Path(request.run_dir), private=request.private,
                              progress=lambda message, fraction: link.progress(message, share + (1 - share) * fraction))
        except HubPushError as exc:
            link.send(TaskFailed(reason=f"exported to {out}, but not pushed: {exc}", exported=str(out)))
            return 1
    link.send(Exported(path=str(out), url=url))
    return 0


# ---- the playground -----------------------------------------------------------------------------


def playground(request: PlaygroundOpen, link: Link) -> int:
    from grpo_studio.engine.playground import PlaygroundSession

    session = PlaygroundSession(request.run_dir, request.adapter, progress=link.progress)
    cfg = session.cfg
    link.send(PlaygroundReady(
        model=cfg.model.name, adapters=list(session.adapters), adapter=session.adapter,
        system_prompt=cfg.data.system_prompt, chat=session.chat, template=cfg.data.prompt_template,
        rewards=[s.label for s in session.specs],
        rows=[RowInfo(index=i, text=t, answer=a) for i, t, a in session.rows()],
        rows_from=session.rows_from, max_tokens=cfg.grpo.max_completion_length, temperature=cfg.grpo.temperature,
        device=session.device))
    samples: queue.Queue[Sample | None] = queue.Queue()

    def read_requests() -> None:  # Stop must arrive while a generation runs, so stdin is read apart
        for line in sys.stdin:
            try:
                message = REQUESTS.validate_json(line)
            except ValidationError:
                continue
            if isinstance(message, StopSampling):
                session.stop.set()
            elif isinstance(message, Sample):
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


HANDLERS: dict[str, Any] = {"eval": evaluate, "export": export, "playground": playground}


def main() -> int:
    link = Link()
    try:
        request = REQUESTS.validate_json(sys.stdin.readline())
    except ValidationError as exc:
        link.send(TaskFailed(reason=f"not a task request: {str(exc).splitlines()[0]}"))
        return 2
    if request.task not in HANDLERS:
        link.send(TaskFailed(reason=f"{request.task!r} is not a task of its own"))
        return 2
    from grpo_studio.engine.library_noise import quiet_libraries

    quiet_libraries()
    try:
        return HANDLERS[request.task](request, link)
    except input_errors() as exc:
        link.send(refused(exc))
        return 2
    except Exception as exc:  # noqa: BLE001 - every failure becomes a readable reply
        link.send(TaskFailed(reason=f"{type(exc).__name__}: {exc}", details=traceback.format_exc()))
        return 1


if __name__ == "__main__":
    sys.exit(main())
