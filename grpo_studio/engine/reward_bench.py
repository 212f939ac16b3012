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

Completions file (JSONL), one completion per line; lines with the same row form a group:

    {"row": 0, "completion": "... #### 18"}       row: 0-based row of data.source; its prompt and columns
    {"question": "2+2?", "answer": "4", "completion": "4"}   no row: the line is a row of its own, with
                                                  the dataset's columns (prompt_column, answer_column...)
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from grpo_studio.config import LoadedRun
from grpo_studio.engine.data import DataError
from grpo_studio.engine.model import ModelError
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
class BenchGroup:
    """One prompt and its completions (a GRPO group)."""

    row: int | None  # row of data.source (0-based); None for a row typed in the completions file
    prompt: str
    answer: str | None
    completions: list[str]
    totals: list[float | None] = field(default_factory=list)  # weighted sum, as the trainer computes it


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
        return {"ok": self.ok, "source": self.source, "seconds": self.seconds,
                "errors": [str(e) for e in self.errors], "warnings": [str(w) for w in self.warnings],
                "functions": functions, "groups": [asdict(g) for g in self.groups]}


# ---- typed completions --------------------------------------------------------------------


@dataclass
class TypedCompletion:
    """A completion the user wrote, for a row of the dataset or for a row of its own."""

    completion: str
    row: int | None = None
    columns: dict[str, Any] | None = None
    file: str | None = None  # where it was read from, for messages
    line: int | None = None


def read_completions(path: str | Path) -> list[TypedCompletion]:
    """Parse a completions file (see the module docstring); errors are `FILE:LINE: reason`."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError("completions file not found", file=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read: {exc}", file=path) from None
    out = []
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            item = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"not valid JSON: {exc.msg} (column {exc.colno})", file=path, line=number) from None
        if not isinstance(item, dict) or not isinstance(item.get("completion"), str):
            raise DataError('expected an object with a "completion" string', file=path, line=number)
        completion = item.pop("completion")
        row = item.pop("row", None)
        if row is not None and (isinstance(row, bool) or not isinstance(row, int) or row < 0):
            raise DataError(f'"row" must be a row number (0 or more), got {row!r}', file=path, line=number)
        if row is None and not item:
            raise DataError('give "row" (a row of data.source) or the row\'s columns', file=path, line=number)
        out.append(TypedCompletion(completion, row=row, columns=item if row is None else None, file=str(path),
                                   line=number))
    if not out:
        raise DataError("no completions in the file", file=path)
    return out


# ---- the bench ----------------------------------------------------------------------------

Progress = Callable[[str, float], None]


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
        tokenizer, data = _load_rows(run, completions is not None, report, say)
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
            groups = _generated_groups(run, data, tokenizer, prompts, say)
        else:
            groups = _typed_groups(run, data, tokenizer, completions)
    except (DataError, ModelError) as exc:
        close_rewards(specs)
        report.errors.append(Finding("input", str(exc)))
        return done()
    report.groups = [g.group for g in groups]
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


@dataclass
class _Group:
    """A group with everything a reward function is called with."""

    group: BenchGroup
    prompt: Any  # text, or chat messages
    completions: list[Any]  # text, or [{"role": "assistant", "content": ...}] for chat prompts
    completion_ids: list[list[int]]
    columns: dict[str, Any]  # the row's other columns (answer, ...)


def _load_rows(run: LoadedRun, typed: bool, report: BenchReport, say: Progress) -> tuple[Any, Any]:
    """The tokenizer (optional for typed completions) and the dataset, mapped as for training."""
    from grpo_studio.engine.data import load_prompts
    from grpo_studio.engine.model import load_tokenizer

    say("loading the tokenizer and the data", 0.0)
    try:
        tokenizer = load_tokenizer(run)
    except ModelError as exc:
        if not typed:
            raise
        tokenizer = None
        report.warnings.append(Finding("input", f"{exc}; prompts are built without the model's tokenizer "
                                       "(no chat template) and completion_ids are empty"))
    return tokenizer, load_prompts(run, tokenizer, check_length=False).dataset


def _row_columns(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "prompt"}


def _typed_groups(run: LoadedRun, data: Any, tokenizer: Any, typed: list[TypedCompletion]) -> list[_Group]:
    from grpo_studio.engine.data import extract_answer, format_row, use_chat_template

    settings = run.config.data
    chat = use_chat_template(settings, tokenizer)
    pattern = None
    if settings.answer_pattern:
        import re

        pattern = re.compile(settings.answer_pattern, re.MULTILINE | re.DOTALL)
    keyed: dict[str, tuple[int | None, Any, dict[str, Any], list[str]]] = {}
    for item in typed:
        if item.row is not None:
            if item.row >= len(data):
                raise DataError(f"row {item.row} is out of range: data.source has {len(data)} rows (0 to "
                                f"{len(data) - 1})", file=item.file, line=item.line)
            key = f"row {item.row}"
            if key not in keyed:
                row = data[item.row]
                keyed[key] = (item.row, row["prompt"], _row_columns(row), [])
        else:
            columns = dict(item.columns or {})
            key = json.dumps(columns, sort_keys=True, default=str)
            if key not in keyed:
                prompt = format_row(columns, settings, chat)
                if settings.answer_column:
                    raw = columns.get(settings.answer_column)
                    # A typed row may give the bare answer ("18") where the dataset has "#### 18".
                    columns["answer"] = extract_answer(raw, pattern) or extract_answer(raw, None)
                keyed[key] = (None, prompt, columns, [])
        keyed[key][3].append(item.completion)
    return [_group(row, prompt, columns, texts, tokenizer) for row, prompt, columns, texts in keyed.values()]


def _group(row: int | None, prompt: Any, columns: dict[str, Any], texts: list[str], tokenizer: Any,
           ids: list[list[int]] | None = None) -> _Group:
    from grpo_studio.engine.data import render_prompt

    chat = isinstance(prompt, list)
    completions: list[Any] = [[{"role": "assistant", "content": t}] for t in texts] if chat else list(texts)
    if ids is None:
        ids = [tokenizer(text=t, add_special_tokens=False)["input_ids"] if tokenizer is not None else []
               for t in texts]
    answer = columns.get("answer")
    shown = BenchGroup(row=row, prompt=render_prompt(prompt, tokenizer) if chat else prompt,
                       answer=None if answer is None else str(answer), completions=list(texts))
    return _Group(shown, prompt, completions, ids, columns)


def _generated_groups(run: LoadedRun, data: Any, tokenizer: Any, n_prompts: int, say: Progress) -> list[_Group]:
    """`n_prompts` rows (a seeded sample) x grpo.num_generations completions sampled from the model."""
    cfg = run.config
    rows = sorted(random.Random(cfg.grpo.seed).sample(range(len(data)), min(n_prompts, len(data))))
    say(f"loading {cfg.model.name}", 0.1)
    model = _load_model(run)
    import torch

    torch.manual_seed(cfg.grpo.seed)  # the same completions each time the bench runs
    groups = []
    for i, index in enumerate(rows):
        say(f"generating {cfg.grpo.num_generations} completions for row {index}", 0.2 + 0.5 * i / len(rows))
        row = data[index]
        texts, ids = sample_completions(model, tokenizer, row["prompt"], cfg.grpo.num_generations, run)
        groups.append(_group(index, row["prompt"], _row_columns(row), texts, tokenizer, ids))
    return groups


def _load_model(run: LoadedRun) -> Any:
    from grpo_studio.engine.model import choose_placement, load_model

    placement = choose_placement(run.config.model)
    model = load_model(run, placement)
    if placement.device == "cpu":
        model.to("cpu")
    model.eval()
    return model


def sample_completions(model: Any, tokenizer: Any, prompt: Any, n: int, run: LoadedRun) -> tuple[list[str], list]:
    """n completions of one prompt, sampled with the run's generation settings (as training samples)."""
    import torch

    from grpo_studio.engine.data import prompt_token_ids

    g = run.config.grpo
    device = next(model.parameters()).device
    input_ids = torch.tensor([prompt_token_ids(prompt, tokenizer)], device=device)
    eos = model.generation_config.eos_token_id
    eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos_ids:
        eos_ids.insert(0, tokenizer.eos_token_id)
    with torch.inference_mode():
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), do_sample=True,
                             num_return_sequences=n, max_new_tokens=g.max_completion_length,
                             temperature=g.temperature, top_p=g.top_p, top_k=g.top_k or None,
                             eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id)
    generated = out[:, input_ids.shape[1]:].tolist()
    ids = []
    for seq in generated:  # up to and including the first EOS, as TRL passes completion_ids
        end = next((i + 1 for i, t in enumerate(seq) if t in eos_ids), len(seq))
        ids.append(seq[:end])
    texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
    return texts, ids


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


def _run_function(run: LoadedRun, name: str, weight: float, fn: Any, groups: list[_Group]) -> FunctionResult:
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
