"""Typed training events: what a run tells the world while it runs.

Each event is a small record with a `kind`. The training worker writes them as JSON lines to a
dedicated channel (never stdout, which libraries print to) and into the run store, so a run can
be watched live, reopened later, or compared. The GUI's RunController decodes them back with
`decode_event`.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Callable, Literal, Union

from pydantic import BaseModel, Field, TypeAdapter


class _Event(BaseModel):
    time: float = Field(default_factory=time.time)


class Opened(_Event):
    """The run folder exists (sent before the slow loading, so a supervisor can ask it to stop)."""

    kind: Literal["opened"] = "opened"
    run_dir: str
    resume: bool = False


class Started(_Event):
    kind: Literal["started"] = "started"
    run_dir: str
    max_steps: int
    resumed_from_step: int = 0
    device: str = ""
    model: str = ""
    reward_names: list[str] = []
    trainable_params: int = 0
    total_params: int = 0
    rewards_sha256: str = ""  # of the run folder's rewards.py as this segment trains it ("" = no file)


class Metrics(_Event):
    """Every logged metric of one optimizer step (TRL's names, e.g. `reward`, `kl`, `loss`)."""

    kind: Literal["metrics"] = "metrics"
    step: int
    max_steps: int
    values: dict[str, float]


class Sample(BaseModel):
    group: int  # prompts' index within the step; completions of one prompt share it
    prompt: str
    completion: str
    answer: str | None = None
    rewards: dict[str, float | None]  # per reward function, unweighted; None = not applicable
    total: float | None  # weighted sum, as the trainer used it
    advantage: float | None = None
    length: int | None = None  # completion tokens
    truncated: bool | None = None  # cut at max_completion_length


class Samples(_Event):
    """Completions sampled for one step, with their rewards."""

    kind: Literal["samples"] = "samples"
    step: int
    samples: list[Sample]


class SamplesStored(_Event):
    """A step's sampled completions are in the run store (what the window's event stream carries
    instead of the completions themselves)."""

    kind: Literal["samples_stored"] = "samples_stored"
    step: int
    count: int


class Checkpoint(_Event):
    kind: Literal["checkpoint"] = "checkpoint"
    step: int
    path: str


class Alarm(_Event):
    """A health warning about the run, e.g. no reward spread: what it means and what to try."""

    kind: Literal["alarm"] = "alarm"
    step: int
    code: str
    message: str
    advice: str = ""
    severity: Literal["warning", "error"] = "warning"


class Log(_Event):
    kind: Literal["log"] = "log"
    level: Literal["debug", "info", "warning", "error"] = "info"
    message: str


class Finished(_Event):
    kind: Literal["finished"] = "finished"
    step: int
    stopped: bool = False  # True when stopped on request before max_steps (resumable)
    adapter_dir: str = ""
    seconds: float = 0.0


# Failed.reason of a run stopped on request before its first step (nothing trained, nothing to resume).
STOPPED_BEFORE_TRAINING = "stopped before the first step: nothing was trained"


class Failed(_Event):
    kind: Literal["failed"] = "failed"
    step: int = 0
    reason: str  # one readable line: what went wrong
    hint: str = ""  # what to try
    details: str = ""  # the traceback, for the log pane and bug reports
    input_error: bool = False  # bad run file, data, reward file or model path (CLI exit code 2)
    interrupted: bool = False  # aborted on request (a second Ctrl-C): CLI exit code 130, like a stop


Event = Annotated[
    Union[Opened, Started, Metrics, Samples, SamplesStored, Checkpoint, Alarm, Log, Finished, Failed],
    Field(discriminator="kind"),
]
_adapter: TypeAdapter[Any] = TypeAdapter(Event)

Listener = Callable[[Any], None]


def encode_event(event: _Event) -> str:
    """One JSON line (no newline inside: JSON escapes them)."""
    return event.model_dump_json()


def decode_event(line: str | bytes) -> Any:
    return _adapter.validate_json(line)


def event_from_dict(data: dict[str, Any]) -> Any:
    return _adapter.validate_python(data)


class EventBus:
    """Fans one event out to several listeners.

    A failing viewer never stops training: its error is printed and the event goes on. A `critical`
    listener (the run store) is different: a run whose events cannot be recorded (a full disk, a
    damaged store) must not go on silently, so its error is raised once every listener has had the event."""

    def __init__(self, *listeners: Listener):
        self.listeners: list[Listener] = list(listeners)
        self.critical: set[int] = set()

    def add(self, listener: Listener, critical: bool = False, first: bool = False) -> None:
        if first:
            self.listeners.insert(0, listener)
        else:
            self.listeners.append(listener)
        if critical:
            self.critical.add(id(listener))

    def remove(self, listener: Listener) -> None:
        self.listeners = [x for x in self.listeners if x is not listener]
        self.critical.discard(id(listener))

    def __call__(self, event: Any) -> None:
        error: Exception | None = None
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception as exc:  # noqa: BLE001 - a broken viewer must not cost a training run
                if id(listener) in self.critical:
                    error = error or exc
                    continue
                import sys

                print(f"grpo-studio: event listener failed: {exc!r}", file=sys.stderr)
        if error is not None:
            raise error


__all__ = [
    "Alarm",
    "Checkpoint",
    "Event",
    "EventBus",
    "Failed",
    "Finished",
    "Log",
    "Metrics",
    "Opened",
    "Sample",
    "Samples",
    "SamplesStored",
    "Started",
    "decode_event",
    "encode_event",
    "event_from_dict",
]
