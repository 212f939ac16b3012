"""The reward test bench's child process: `grpo-studio rewards-check --json` on what the editor shows.

Reward functions are user code, and generated completions need torch and the model: like the Check
(run_check.py), the bench runs in a child process, never in the window's interpreter. A `BenchRun`
runs on a worker thread: it writes a snapshot (the run file, the editor's text as the reward file,
the typed completions as JSONL), starts the child in a process group of its own (so Cancel also
ends the reward process the child spawns), relays the child's progress lines, and reads its report.

The snapshot lives in a temporary folder; its paths are turned back into the reward file's own name,
so findings and tracebacks read `rewards.py:12` like the file in the editor, whose lines they match.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from grpo_studio.config import RunConfig
from grpo_studio.gui.run_controller import worker_environment
from grpo_studio.gui.run_snapshot import write_snapshot

Progress = Callable[[str, float], None]
CLI = [sys.executable, "-m", "grpo_studio.cli"]  # the command line the bench runs (tests replace it)


@dataclass
class TypedGroup:
    """Completions the user typed for one row of the dataset (a GRPO group)."""

    row: int
    completions: list[str]


@dataclass
class BenchFinding:
    level: str  # "error" | "warning"
    code: str  # exception | contract | timeout | crash | load | input | zero_spread | never_rewards | ...
    message: str
    line: int | None = None  # a line of the editor's text; None when the finding is not about the file
    function: str | None = None
    details: str = ""  # the traceback, with the reward file's frames first
    groups: list[int] = field(default_factory=list)
    file: str | None = None  # the reward file's name, or another file it names (a helper module)

    def text(self) -> str:
        where = f"{self.file}:{self.line}: " if self.file and self.line else f"{self.file}: " if self.file else ""
        return where + self.message


@dataclass
class BenchFunction:
    name: str
    weight: float
    line: int | None
    scores: list[list[float | None] | None]  # per group; None where the call failed
    mean: float | None
    ms_per_call: float | None
    calls: int

    @property
    def values(self) -> list[float]:
        return [v for group in self.scores if group for v in group if v is not None]

    @property
    def failed(self) -> bool:
        return any(group is None for group in self.scores)

    @property
    def minimum(self) -> float | None:
        return min(self.values, default=None)

    @property
    def maximum(self) -> float | None:
        return max(self.values, default=None)


@dataclass
class BenchGroupResult:
    row: int | None
    prompt: str
    answer: str | None
    completions: list[str]
    totals: list[float | None]

    @property
    def zero_spread(self) -> bool:
        """Every completion got the same total: this prompt teaches nothing."""
        values = [t for t in self.totals if t is not None]
        return len(self.totals) > 1 and len(values) == len(self.totals) and max(values) - min(values) <= 1e-9


@dataclass
class BenchResult:
    source: str = ""  # "typed" | "generated"
    seconds: float = 0.0
    functions: list[BenchFunction] = field(default_factory=list)
    groups: list[BenchGroupResult] = field(default_factory=list)
    findings: list[BenchFinding] = field(default_factory=list)
    problem: str = ""  # the bench could not run at all (the run file refused, the child crashed)
    details: str = ""  # what the child printed last, for the error state
    cancelled: bool = False
    reward_source: str = ""  # the editor text the bench ran on, to tell whether its lines still match

    @property
    def errors(self) -> list[BenchFinding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[BenchFinding]:
        return [f for f in self.findings if f.level == "warning"]


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
        self._proc: subprocess.Popen | None = None
        self.cancelled = False

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            proc = self._proc
        if proc is not None and proc.poll() is None:
            _kill_tree(proc)

    def __call__(self, config: RunConfig, run_path: Path | None, reward_source: str, typed: list[TypedGroup] | None,
                 prompts: int, saved_reward_file: Path | None = None, progress: Progress | None = None) -> BenchResult:
        """`saved_reward_file`: the reward file on disk when the editor's text equals it, so modules
        imported from beside it are found (as Train does)."""
        say = progress or (lambda message, fraction: None)
        say("starting the bench process", 0.0)
        run_file = write_snapshot(config, run_path, reward_source, saved_reward_file=saved_reward_file)
        folder = run_file.parent
        reward_name = Path(config.rewards.file).name or "rewards.py"
        editor_files = {folder / reward_name, *([saved_reward_file] if saved_reward_file else [])}
        command = [*CLI, "rewards-check", str(run_file), "--json"]
        if typed is not None:
            lines = [json.dumps({"row": g.row, "completion": c}) for g in typed for c in g.completions]
            (folder / "completions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
            command += ["--completions", str(folder / "completions.jsonl")]
        else:
            command += ["--prompts", str(max(1, prompts))]
        report_file = folder / "report.json"
        try:
            with report_file.open("w", encoding="utf-8") as out:
                # stdout to a file: a big report must not fill a pipe nobody reads while stderr is followed.
                with self._lock:
                    if self.cancelled:
                        return BenchResult(cancelled=True, reward_source=reward_source)
                    self._proc = subprocess.Popen(
                        command, stdout=out, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                        env=worker_environment(), start_new_session=os.name == "posix")
                other = _follow(self._proc, say)
            if self.cancelled:
                return BenchResult(cancelled=True, reward_source=reward_source)
            report = _read_report(report_file.read_text(encoding="utf-8"))
            if report is None:  # the run file itself was refused, or the child died: stderr says why
                code = self._proc.returncode
                reasons = [line for line in other if line.strip()]
                return BenchResult(problem=_unmap(reasons[-1], folder) if reasons else
                                   f"the bench process ended with exit code {code} without a report",
                                   details=_unmap("\n".join(reasons[-40:]), folder), reward_source=reward_source)
            result = parse_report(report, folder, reward_name, editor_files)
            result.reward_source = reward_source
            return result
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _kill_tree(proc: subprocess.Popen) -> None:
    """End the child and whatever it started (the reward process): its whole process group."""
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError, OSError):
        pass


def _follow(proc: subprocess.Popen, say: Progress) -> list[str]:
    """Relay the child's JSON progress lines until it exits; returns its other stderr lines."""
    other: list[str] = []
    assert proc.stderr is not None
    for line in proc.stderr:
        line = line.rstrip("\n")
        if line.startswith('{"progress"'):
            try:
                item = json.loads(line)
                say(str(item["message"]), float(item["progress"]))
                continue
            except (ValueError, KeyError, TypeError):
                pass
        other.append(line)
        del other[:-200]  # the tail is what explains a failure
    proc.wait()
    return other


def _read_report(text: str) -> dict[str, Any] | None:
    start = text.find("{")
    if start < 0:
        return None
    try:
        report = json.loads(text[start:])
    except json.JSONDecodeError:
        return None
    return report if isinstance(report, dict) and "findings" in report else None


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


def parse_report(report: dict[str, Any], folder: Path, reward_name: str,
                 editor_files: set[Path] | None = None) -> BenchResult:
    """`rewards-check --json` output, with lines of the snapshot's reward file as editor lines."""
    editor_files = editor_files or {folder / reward_name}
    saved = [str(p) for p in editor_files if p.parent != folder]
    result = BenchResult(source=str(report.get("source", "")), seconds=float(report.get("seconds") or 0.0))
    for f in report.get("functions", []):
        in_file = _is_editor_file(f.get("file"), editor_files)
        result.functions.append(BenchFunction(
            name=f["name"], weight=float(f.get("weight", 1.0)), line=f.get("line") if in_file else None,
            scores=f.get("scores", []), mean=f.get("mean"), ms_per_call=f.get("ms_per_call"),
            calls=int(f.get("calls", 0))))
    for g in report.get("groups", []):
        result.groups.append(BenchGroupResult(row=g.get("row"), prompt=str(g.get("prompt", "")), answer=g.get("answer"),
                                              completions=list(g.get("completions", [])),
                                              totals=list(g.get("totals", []))))
    for f in report.get("findings", []):
        in_file = _is_editor_file(f.get("file"), editor_files)
        file = reward_name if in_file else (_unmap(f["file"], folder) if f.get("file") else None)
        details = _unmap(f.get("details") or "", folder)
        for path in saved:  # the saved reward file's frames read like the snapshot's
            details = details.replace(f'File "{path}"', f'File "{reward_name}"')
        result.findings.append(BenchFinding(
            level=f.get("level", "error"), code=f.get("code", ""), message=_unmap(str(f.get("message", "")), folder),
            line=f.get("line") if in_file else None, function=f.get("function"),
            details=user_frames_first(details, reward_name),
            groups=list(f.get("groups") or []), file=file))
    return result
