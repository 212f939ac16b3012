"""The reward test bench: run the reward functions on real rows before any GPU time is spent.

Completions come from the user (typed in the editor, or a JSONL file) or from the run's own model
(a few prompts x grpo.num_generations, sampled as training will). Every reward function is called
per group, the way training calls it (same arguments, same isolation, same contract checks), and
the report says, per function: the scores, the mean, the time per call, the errors (FILE:LINE and
the traceback), and the warnings that predict a run that learns nothing:

- a group whose completions all get the same total reward: zero advantage, nothing learned;
- a function that never rewards anything (0 for every completion), or gives every completion the
  same score, or never scores (None everywhere), or has no spread inside any group.

`run_bench` returns a `BenchReport` (dataclasses) that the CLI prints and the window renders.
Where the completions come from, and the completions file format: `reward_bench_groups`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from grpo_studio.config import LoadedRun
from grpo_studio.engine.data import DataError
from grpo_studio.engine.model import ModelError
from grpo_studio.engine.reward_bench_groups import (  # noqa: F401 - TypedCompletion, read_completions: API
    BenchGroup,
    Group,
    Progress,
    TypedCompletion,
    generated_groups,
    load_rows,
    read_completions,
    typed_groups,
)
from grpo_studio.engine.rewards import RewardContractError, RewardError

# ---- the report ---------------------------------------------------------------------------


@dataclass
class Finding:
    """One warning or error, printed as `FILE:LINE: message` when the line is known."""

    code: str  # exception | contract | timeout | crash | load | input | zero_spread | never_rewards | ...
    message: str
    file: str | None = None
    line: int | None = None
    function: str | None = None
    details: str = ""  # the traceback, for the editor's error pane
    groups: list[int] = field(default_factory=list)  # the groups it happened in

    def __str__(self) -> str:
        text = self.message
        if len(self.groups) > 1:
            text += f" [in groups {', '.join(str(g) for g in self.groups)}]"
        if self.file and self.line:
            return f"{self.file}:{self.line}: {text}"
        if self.file:
            return f"{self.file}: {text}"
        return text


@dataclass
class FunctionResult:
    name: str
    weight: float
    file: str | None = None
    line: int | None = None
    scores: list[list[float | None] | None] = field(default_factory=list)  # per group; None = the call failed
    seconds: list[float] = field(default_factory=list)  # per call, as the trainer waits for it
    seconds_inside: list[float] = field(default_factory=list)  # per call, inside the reward process
    errors: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)

    @property
    def values(self) -> list[float]:
        return [v for group in self.scores if group for v in group if v is not None]

    @property
    def mean(self) -> float | None:
        values = self.values
        return sum(values) / len(values) if values else None

    @property
    def ms_per_call(self) -> float | None:
        return 1000 * sum(self.seconds) / len(self.seconds) if self.seconds else None


@dataclass
class BenchReport:
    source: str  # "typed" | "generated"
    groups: list[BenchGroup] = field(default_factory=list)
    functions: list[FunctionResult] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    errors: list[Finding] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Every reward function ran cleanly (warnings allowed)."""
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        functions = []
        for f in self.functions:
            data = asdict(f)
            data.update(mean=f.mean, ms_per_call=f.ms_per_call, calls=len(f.seconds))
            data["errors"] = [str(e) for e in f.errors]
            data["warnings"] = [str(w) for w in f.warnings]
            data["tracebacks"] = [e.details for e in f.errors if e.details]
            functions.append(data)
        # The same findings as records (code, file, line, groups, traceback), for tools that mark lines.
        findings = [dict(asdict(f), level=level) for level, items in (("error", self.errors),
                                                                      ("warning", self.warnings)) for f in items]
        return {"ok": self.ok, "source": self.source, "seconds": self.seconds,
                "errors": [str(e) for e in self.errors], "warnings": [str(w) for w in self.warnings],
                "findings": findings, "functions": functions, "groups": [asdict(g) for g in self.groups]}


# ---- the bench ----------------------------------------------------------------------------

def run_bench(run: LoadedRun, *, completions: list[TypedCompletion] | None = None, prompts: int = 4,
              source: str | None = None, progress: Progress | None = None,
              should_stop: Callable[[], bool] | None = None) -> BenchReport:
    """Run the reward functions on typed completions, or on `prompts` rows x grpo.num_generations
    completions sampled from the run's model. `source` is unsaved editor text of the reward file.

    Never raises for a problem in the inputs: data, model and reward-file problems are errors in the
    report, like a function that fails."""
    started = time.time()
    report = BenchReport(source="typed" if completions is not None else "generated")
    say = progress or (lambda message, fraction: None)
    from grpo_studio.engine.rewards import close_rewards, load_rewards

    def done() -> BenchReport:
        report.seconds = time.time() - started
        return report

    try:
        tokenizer, data = load_rows(run, completions is not None,
                                    lambda text: report.warnings.append(Finding("input", text)), say)
    except (DataError, ModelError) as exc:
        report.errors.append(Finding("input", str(exc)))
        return done()
    # The reward file before the model: a typo should cost a second, not a model load and a generation.
    say("loading the reward functions", 0.1)
    try:
        specs = load_rewards(run, columns=list(data.column_names), source=source)
    except RewardError as exc:
        code = _kind(exc)  # a load that hangs or crashes says so; anything else is a load error
        report.errors.append(Finding("load" if code == "exception" else code, exc.message, exc.file, exc.line,
                                     details=exc.details))
        return done()
    try:
        if completions is None:
            groups = generated_groups(run, data, tokenizer, prompts, say)
        else:
            groups = typed_groups(run, data, tokenizer, completions)
    except (DataError, ModelError) as exc:
        close_rewards(specs)
        report.errors.append(Finding("input", str(exc)))
        return done()
    if not groups:
        close_rewards(specs)
        report.errors.append(Finding("input", "no completions to score: type some, or let the model generate"))
        return done()
    report.groups = [g.shown for g in groups]
    try:
        functions = [_bench_function(run, spec) for spec in specs]
        for i, (spec, fn) in enumerate(zip(specs, functions)):
            if should_stop and should_stop():
                break
            say(f"running {spec.label}", 0.7 + 0.3 * i / len(specs))
            report.functions.append(_run_function(run, spec.label, spec.weight, fn, groups))
    except ModelError as exc:
        report.errors.append(Finding("input", str(exc)))
    finally:
        close_rewards(specs)
    _totals(report)
    _warn_functions(report)
    for f in report.functions:
        report.errors += f.errors
        report.warnings += f.warnings
    _warn_groups(report)
    return done()


def _bench_function(run: LoadedRun, spec: Any) -> Any:
    if spec.function is not None:
        return spec.function
    from grpo_studio.engine.reward_model import RewardModelFunction, load_reward_model

    return RewardModelFunction(load_reward_model(run, spec.model, spec.label))


def _kind(exc: RewardError) -> str:
    from grpo_studio.engine.reward_sandbox import RewardCrash, RewardTimeout

    if isinstance(exc, RewardTimeout):
        return "timeout"
    if isinstance(exc, RewardCrash):
        return "crash"
    if isinstance(exc, RewardContractError):
        return "contract"
    return "exception"


def _run_function(run: LoadedRun, name: str, weight: float, fn: Any, groups: list[Group]) -> FunctionResult:
    from grpo_studio.engine.reward_sandbox import TrainerStateView

    path = getattr(fn, "path", None)
    result = FunctionResult(name, weight, file=str(path) if path else None, line=getattr(fn, "line", None))
    state = TrainerStateView(global_step=0, max_steps=run.config.grpo.max_steps, epoch=0.0)
    seen: dict[str, Finding] = {}
    for index, g in enumerate(groups):
        n = len(g.completions)
        kwargs = {key: [value] * n for key, value in g.columns.items()}
        kwargs.update(completion_ids=g.completion_ids, trainer_state=state,
                      log_extra=lambda *a: None, log_metric=lambda *a: None)
        started = time.perf_counter()
        try:
            scores = fn([g.prompt] * n, g.completions, **kwargs)
        except RewardError as exc:
            result.scores.append(None)
            kind = _kind(exc)
            key = f"{exc.line}:{exc.message}"
            if key not in seen:  # the same failure in several groups: one finding that lists them
                seen[key] = Finding(kind, exc.message, exc.file, exc.line, name, exc.details)
                result.errors.append(seen[key])
            seen[key].groups.append(index)
            if kind in ("timeout", "crash"):
                # Each further call would cost another timeout (or a restart): one is enough to know.
                if index + 1 < len(groups):
                    seen[key].message += " (not called on the remaining groups)"
                result.scores += [None] * (len(groups) - index - 1)
                break
            continue
        result.seconds.append(time.perf_counter() - started)
        timing = getattr(fn, "timing", None)
        if timing is not None:
            result.seconds_inside.append(timing.inside)
        result.scores.append(scores)
    return result


def _totals(report: BenchReport) -> None:
    """Per completion, the weighted sum of the functions that scored it, as TRL computes the reward."""
    for gi, group in enumerate(report.groups):
        totals: list[float | None] = []
        for ci in range(len(group.completions)):
            parts = []
            failed = False
            for f in report.functions:
                scores = f.scores[gi] if gi < len(f.scores) else None
                if scores is None:
                    failed = True
                    break
                if scores[ci] is not None:
                    parts.append(f.weight * scores[ci])
            totals.append(None if failed or not parts else sum(parts))
        group.totals = totals


def _same(values: list[float]) -> bool:
    return len(values) > 1 and max(values) - min(values) <= 1e-9 * max(1.0, abs(values[0]))


def _warn_functions(report: BenchReport) -> None:
    """Functions that ran cleanly but cannot teach: never scoring, never rewarding, constant, flat per group."""
    for f in report.functions:
        if f.errors:
            continue
        where = {"file": f.file, "line": f.line, "function": f.name}
        values = f.values
        scored = sum(len(s) for s in f.scores if s)
        if not values:
            f.warnings.append(Finding("all_none", f"{f.name} returned None for every completion ({scored}): it "
                                      "never scores anything (None means 'skip this completion')", **where))
        elif all(v == 0 for v in values):
            f.warnings.append(Finding("never_rewards", f"{f.name} gave 0 to every completion ({len(values)} of "
                                      f"{scored}): it never rewards anything; check that it matches real "
                                      "completions (a pattern that never matches?)", **where))
        elif len(values) > 1 and _same(values):
            f.warnings.append(Finding("constant", f"{f.name} gave every completion the same score {values[0]:g}: "
                                      "it cannot tell completions apart, so it teaches nothing", **where))
        else:
            spread = [s for s in f.scores if s and len([v for v in s if v is not None]) > 1]
            if spread and all(_same([v for v in s if v is not None]) for s in spread) and len(spread) > 1:
                f.warnings.append(Finding("no_group_spread", f"{f.name} gives all completions of a prompt the "
                                          "same score in every group: it moves no advantage (GRPO compares "
                                          "completions of the same prompt)", **where))


def _warn_groups(report: BenchReport) -> None:
    """Groups whose completions all get the same total reward: zero advantage for that prompt."""
    file = next((f.file for f in report.functions if f.file), None)
    for i, g in enumerate(report.groups):
        totals = [t for t in g.totals if t is not None]
        if len(g.totals) > 1 and len(totals) == len(g.totals) and _same(totals):
            row = f"row {g.row}" if g.row is not None else "a typed row"
            report.warnings.append(Finding(
                "zero_spread", f"group {i} ({row}): all {len(totals)} completions have the same total reward "
                f"{totals[0]:g}: zero advantage, nothing is learned from this prompt", file, groups=[i]))


def format_score(value: float | None) -> str:
    """A score for a table cell: `-` for None.

    >>> format_score(None), format_score(0.5), format_score(1/3)
    ('-', '0.5', '0.333')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3g}"
