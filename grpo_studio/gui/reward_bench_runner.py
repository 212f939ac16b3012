"""The reward test bench's child process: the bench task (engine/child_tasks.py) on what the editor shows.

Reward functions are user code, and generated completions need torch and the model: like the Check
(run_check.py), the bench runs in a child process, never in the window's interpreter. A `BenchRun`
runs on a worker thread: it writes a snapshot (the run file, the editor's text as the reward file,
the typed completions as JSONL), starts the child in a process group of its own (so Cancel also
ends the reward process the child spawns), relays the child's progress, and reads its typed report.

The snapshot lives in a temporary folder; its paths are turned back into the reward file's own name,
so findings and tracebacks read `rewards.py:12` like the file in the editor, whose lines they match.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from grpo_studio.config import RunConfig
from grpo_studio.engine.child_messages import (
    BenchReport,
    BenchRequest,
    TaskFailed,
)
from grpo_studio.engine.child_process import ChildProcess
from grpo_studio.gui.run_snapshot import write_snapshot

Progress = Callable[[str, float], None]
COMMAND: list[str] | None = None  # the child's command line; None = engine.child_tasks (tests replace it)


@dataclass
class TypedGroup:
    """Completions the user typed for one row of the dataset (a GRPO group)."""

    row: int
    completions: list[str]


class BenchResult(BenchReport):
    """The bench's report as the editor shows it, or why there is none."""

    problem: str = ""  # the bench could not run at all (the run file refused, the child crashed)
    details: str = ""  # what the child printed last, for the error state
    cancelled: bool = False
    reward_source: str = ""  # the editor text the bench ran on, to tell whether its lines still match


def split_completions(text: str) -> list[str]:
    """The completions in the typed text: one a line, or, when a line holds only `---`, the blocks
    between such lines (so a completion may span lines).

    >>> split_completions("12\\n\\n 13\\n")
    ['12', ' 13']
    >>> split_completions("step 1\\nstep 2\\n---\\nstep A\\n---\\n")
    ['step 1\\nstep 2', 'step A']
    """
    lines = text.split("\n")
    if any(line.strip() == "---" for line in lines):
        blocks, current = [], []
        for line in lines + ["---"]:
            if line.strip() == "---":
                block = "\n".join(current).strip("\n")
                if block.strip():
                    blocks.append(block)
                current = []
            else:
                current.append(line)
        return blocks
    return [line for line in lines if line.strip()]


class BenchRun:
    """One bench run. `__call__` runs on a worker thread; `cancel()` may be called from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.child: ChildProcess | None = None
        self.cancelled = False

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            child = self.child
        if child is not None:
            child.cancel()

    def _started(self, child: ChildProcess) -> None:
        with self._lock:
            self.child = child
            cancelled = self.cancelled
        if cancelled:
            child.cancel()

    def __call__(self, config: RunConfig, run_path: Path | None, reward_source: str, typed: list[TypedGroup] | None,
                 prompts: int, saved_reward_file: Path | None = None, progress: Progress | None = None) -> BenchResult:
        """`saved_reward_file`: the reward file on disk when the editor's text equals it, so modules
        imported from beside it are found (as Train does)."""
        from grpo_studio.engine.child_tasks import run_task

        say = progress or (lambda message, fraction: None)
        say("starting the bench process", 0.0)
        run_file = write_snapshot(config, run_path, reward_source, saved_reward_file=saved_reward_file)
        folder = run_file.parent
        reward_name = Path(config.rewards.file).name or "rewards.py"
        editor_files = {folder / reward_name, *([saved_reward_file] if saved_reward_file else [])}
        request = BenchRequest(run_file=str(run_file), prompts=max(1, prompts))
        if typed is not None:
            lines = [json.dumps({"row": g.row, "completion": c}) for g in typed for c in g.completions]
            (folder / "completions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
            request.completions_file = str(folder / "completions.jsonl")
        try:
            if self.cancelled:
                return BenchResult(cancelled=True, reward_source=reward_source)
            outcome = run_task(request, progress=say, started=self._started, command=COMMAND)
            if self.cancelled:
                return BenchResult(cancelled=True, reward_source=reward_source)
            if isinstance(outcome.result, BenchReport):
                result = for_editor(outcome.result, folder, reward_name, editor_files)
                result.reward_source = reward_source
                return result
            if isinstance(outcome.result, TaskFailed):  # the run file or the completions were refused
                return BenchResult(problem=_unmap(outcome.result.reason, folder),
                                   details=_unmap(outcome.result.details, folder), reward_source=reward_source)
            reasons = [line for line in outcome.log_tail.splitlines() if line.strip()]  # the child died
            return BenchResult(problem=_unmap(reasons[-1], folder) if reasons else
                               f"the bench process ended with exit code {outcome.returncode} without a report",
                               details=_unmap("\n".join(reasons[-40:]), folder), reward_source=reward_source)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _unmap(text: str, folder: Path) -> str:
    """Snapshot paths as the reward file's own name: `/tmp/grpo-studio-train-x/rewards.py` -> `rewards.py`."""
    for prefix in {str(folder), str(folder.resolve())}:
        text = text.replace(prefix + os.sep, "")
    return text


def _is_editor_file(file: str | None, editor_files: set[Path]) -> bool:
    """The finding is about the text in the editor (the snapshot of it, or the saved file it equals)."""
    if not file:
        return False
    try:
        return Path(file).resolve() in {p.resolve() for p in editor_files}
    except OSError:
        return False


def user_frames_first(details: str, reward_file: str) -> str:
    """A traceback from the first frame in the reward file on: the bench's own frames are noise here."""
    lines = details.splitlines()
    marker = f'  File "{reward_file}"'
    for i, line in enumerate(lines):
        if line.startswith(marker):
            head = lines[:1] if lines and lines[0].startswith("Traceback") else []
            return "\n".join(head + lines[i:])
    return details.rstrip("\n")


def for_editor(report: BenchReport, folder: Path, reward_name: str,
               editor_files: set[Path] | None = None) -> BenchResult:
    """The child's report with lines of the snapshot's reward file as editor lines, paths as the editor names them."""
    editor_files = editor_files or {folder / reward_name}
    saved = [str(p) for p in editor_files if p.parent != folder]
    functions = [f.model_copy(update={"line": f.line if _is_editor_file(f.file, editor_files) else None})
                 for f in report.functions]
    findings = []
    for f in report.findings:
        in_file = _is_editor_file(f.file, editor_files)
        details = _unmap(f.details, folder)
        for path in saved:  # the saved reward file's frames read like the snapshot's
            details = details.replace(f'File "{path}"', f'File "{reward_name}"')
        findings.append(f.model_copy(update={
            "file": reward_name if in_file else (_unmap(f.file, folder) if f.file else None),
            "line": f.line if in_file else None, "message": _unmap(f.message, folder),
            "details": user_frames_first(details, reward_name)}))
    return BenchResult(source=report.source, seconds=report.seconds, functions=functions, groups=report.groups,
                       findings=findings)
