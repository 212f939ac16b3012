"""The typed messages between the window and the child processes that check, bench and export for it.

One model per message, shared by both ends (the child builds them, the window reads them), so a
result is validated where it arrives and nothing is re-modelled from loose JSON on the window's side.
Requests go to the child (`task`), replies come back (`kind`). The reward bench's report carries
only what the window shows: scores, totals, findings; no per-call timings or duplicate strings.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field

# ---- requests (window -> child) -----------------------------------------------------------------


class CheckRequest(BaseModel):
    """`grpo-studio validate` on a run file: every check that needs no model weights."""

    task: Literal["check"] = "check"
    run_file: str


class BenchRequest(BaseModel):
    """The reward test bench on a run file: typed completions (a JSONL file), or `prompts` rows sampled."""

    task: Literal["bench"] = "bench"
    run_file: str
    completions_file: str | None = None
    prompts: int = 4


class ExportRequest(BaseModel):
    """Export a run folder's adapter, or the base model with the adapter merged in."""

    task: Literal["export"] = "export"
    run_dir: str
    dest: str
    merged: bool = False
    dtype: str = "bfloat16"


Request = Annotated[Union[CheckRequest, BenchRequest, ExportRequest], Field(discriminator="task")]

# ---- replies (child -> window) ------------------------------------------------------------------


class Progress(BaseModel):
    kind: Literal["progress"] = "progress"
    message: str
    fraction: float  # 0..1


class TaskFailed(BaseModel):
    """The task could not be done: one readable line, and what explains it."""

    kind: Literal["task_failed"] = "task_failed"
    reason: str
    details: str = ""
    input_error: bool = False  # the run file, a dataset, a reward file or a path was refused


class CheckReport(BaseModel):
    kind: Literal["check_report"] = "check_report"
    problems: list[str] = []  # `section.key: reason` or `FILE:LINE: reason`, one each
    warnings: list[str] = []
    facts: dict[str, Any] = {}  # what was found: rows, columns, rewards, the VRAM estimate...

    @property
    def ok(self) -> bool:
        return not self.problems


class BenchFinding(BaseModel):
    level: Literal["error", "warning"] = "error"
    code: str  # exception | contract | timeout | crash | load | input | zero_spread | never_rewards | ...
    message: str
    file: str | None = None
    line: int | None = None
    function: str | None = None
    details: str = ""  # the traceback
    groups: list[int] = []

    def text(self) -> str:
        where = f"{self.file}:{self.line}: " if self.file and self.line else f"{self.file}: " if self.file else ""
        return where + self.message


class BenchFunction(BaseModel):
    name: str
    weight: float = 1.0
    file: str | None = None
    line: int | None = None
    scores: list[list[float | None] | None] = []  # per group; None where the call failed
    mean: float | None = None
    ms_per_call: float | None = None
    calls: int = 0

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


class BenchGroup(BaseModel):
    row: int | None = None
    prompt: str = ""
    answer: str | None = None
    completions: list[str] = []
    totals: list[float | None] = []

    @property
    def zero_spread(self) -> bool:
        """Every completion got the same total: this prompt teaches nothing."""
        values = [t for t in self.totals if t is not None]
        return len(self.totals) > 1 and len(values) == len(self.totals) and max(values) - min(values) <= 1e-9


class BenchReport(BaseModel):
    kind: Literal["bench_report"] = "bench_report"
    source: str = ""  # "typed" | "generated"
    seconds: float = 0.0
    functions: list[BenchFunction] = []
    groups: list[BenchGroup] = []
    findings: list[BenchFinding] = []

    @property
    def errors(self) -> list[BenchFinding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[BenchFinding]:
        return [f for f in self.findings if f.level == "warning"]


class Exported(BaseModel):
    kind: Literal["exported"] = "exported"
    path: str


Reply = Annotated[Union[Progress, TaskFailed, CheckReport, BenchReport, Exported], Field(discriminator="kind")]
