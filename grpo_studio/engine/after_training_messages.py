"""The typed messages between the window and its after-training child process (evaluate, export,
playground), one JSON object a line each way.

Requests go to the child (`task`), replies come back (`kind`). One pydantic model per message,
shared by both ends, so a reply is validated where it arrives. The playground is a session: after
its `PlaygroundOpen`, the window sends `Sample` and `StopSampling` requests on the same stdin for
as long as the page keeps the model.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, Field

# ---- requests (window -> child) -----------------------------------------------------------------


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
    task: Literal["stop"] = "stop"


Request = Annotated[Union[EvalRequest, ExportRequest, PlaygroundOpen, Sample, StopSampling],
                    Field(discriminator="task")]

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
    input_error: bool = False  # the run folder, its data, reward file, a path or a name was refused
    exported: str = ""  # an export that succeeded before its push failed


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
    adapters: list[str]  # "adapter", "checkpoint-20", ...; the first is loaded
    adapter: str
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


Reply = Annotated[Union[Progress, TaskFailed, EvalStored, Exported, PlaygroundReady, Tokens, Sampled],
                  Field(discriminator="kind")]
