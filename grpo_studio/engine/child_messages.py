"""The typed messages between the window and the child processes that work for it: Check, the reward
bench, Evaluate, Export and the Playground's model (engine/child_tasks.py is the child).

One model per message, shared by both ends (the child builds them, the window reads them), so a
result is validated where it arrives and nothing is re-modelled from loose JSON on the window's side.
Requests go to the child (`task`), replies come back (`kind`). Replies carry only what the window
shows: the reward bench's report has scores, totals and findings, no per-call timings or duplicate
strings; the playground streams each answer's new text and its scores, nothing of the model's state.

The first request names the task. The playground is a session: after its `PlaygroundOpen`, the
window sends `Sample` and `StopSampling` (a `SessionRequest`) on the same stdin for as long as the
page keeps the model.
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


class EvalRequest(BaseModel):
    """Base model vs. an adapter of a run folder on its held-out split, stored in RUN_DIR/evals/."""

    task: Literal["eval"] = "eval"
    run_dir: str
    adapter: str | None = None  # "adapter", "checkpoint-20" or a folder; None: the run's newest
    limit: int = 0  # the first N held-out prompts; 0: all of them (or eval.limit)


class ExportRequest(BaseModel):
    """Export a run folder (adapter, merged model or GGUF file), then push it to the hub if asked."""

    task: Literal["export"] = "export"
    run_dir: str
    dest: str
    kind: Literal["adapter", "merged", "gguf"] = "adapter"
    dtype: str = "bfloat16"  # merged
    gguf_type: str = "f16"  # gguf
    push_repo: str = ""  # a hub repo id; empty: no push
    private: bool = False


class PlaygroundOpen(BaseModel):
    """Load a run's base model (and an adapter) once, then answer `Sample` requests until stdin ends."""

    task: Literal["playground"] = "playground"
    run_dir: str
    adapter: str | None = None


Request = Annotated[Union[CheckRequest, BenchRequest, EvalRequest, ExportRequest, PlaygroundOpen],
                    Field(discriminator="task")]


class Sample(BaseModel):
    """Answer one prompt with the base model and with an adapter, side by side, streaming tokens."""

    task: Literal["sample"] = "sample"
    id: int
    text: str  # the user's prompt (the prompt column's value), before the run's template
    row: int | None = None  # the held-out row it came from, when the text is still that row's
    answer: str | None = None  # ground truth for the reward functions' `answer` column
    adapter: str | None = None  # switch to this adapter first
    temperature: float = 0.0  # 0: greedy
    max_tokens: int = 64


class StopSampling(BaseModel):
    """Stop the answers where they are (they come back as a `Sampled` marked stopped)."""

    task: Literal["stop"] = "stop"


SessionRequest = Annotated[Union[Sample, StopSampling], Field(discriminator="task")]

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
    input_error: bool = False  # the run file or folder, a dataset, a reward file, a path or a name was refused
    exported: str = ""  # an export that succeeded before its push failed


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


class EvalStored(BaseModel):
    kind: Literal["eval_stored"] = "eval_stored"
    path: str  # RUN_DIR/evals/NAME.json


class Exported(BaseModel):
    kind: Literal["exported"] = "exported"
    path: str
    url: str = ""  # the hub repo, when pushed


class RowInfo(BaseModel):
    """A held-out row the playground offers."""

    index: int
    text: str  # the prompt column's value
    answer: str | None = None


class PlaygroundReady(BaseModel):
    kind: Literal["playground_ready"] = "playground_ready"
    model: str
    adapters: list[str]  # "adapter", "checkpoint-20", ...
    system_prompt: str
    chat: bool  # the tokenizer's chat template is applied
    template: str  # data.prompt_template
    rewards: list[str]
    rows: list[RowInfo]
    rows_from: str  # where the rows come from (the held-out file, or the training data)
    max_tokens: int  # grpo.max_completion_length
    temperature: float  # grpo.temperature
    device: str


class Tokens(BaseModel):
    """New text of each side (base, adapter) since the last message."""

    kind: Literal["tokens"] = "tokens"
    id: int
    deltas: list[str]


class SampledAnswer(BaseModel):
    label: str  # "base", "adapter", "checkpoint-20"
    text: str
    tokens: int
    truncated: bool  # cut at max_tokens
    rewards: dict[str, float | None] = {}
    reward_errors: dict[str, str] = {}  # function: why it gave no score
    total: float | None = None  # weighted sum, as training adds them


class Sampled(BaseModel):
    kind: Literal["sampled"] = "sampled"
    id: int
    prompt: str  # what the model saw (template and chat template applied)
    answers: list[SampledAnswer]
    seconds: float
    stopped: bool = False  # the user stopped it: the answers are partial


Reply = Annotated[Union[Progress, TaskFailed, CheckReport, BenchReport, EvalStored, Exported, PlaygroundReady,
                        Tokens, Sampled], Field(discriminator="kind")]
