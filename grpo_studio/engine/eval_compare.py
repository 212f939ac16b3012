"""Did training help? The base model and the trained adapter (or any checkpoint) on the same
held-out prompts, side by side.

Both models answer every prompt greedily; the run's reward functions judge both (see `evaluate`
for what 'correct' and 'well formatted' mean). Each prompt is marked by what training did to it:
`fixed` (base wrong, adapter right), `broken` (the reverse), `both_right` or `both_wrong`.

A comparison of a run folder is stored in RUN_DIR/evals/, one JSON file per adapter evaluated
(`base-vs-adapter.json`, `base-vs-checkpoint-20.json`, `...-first50.json` with a limit), written to
a temporary file and renamed, so a crash never leaves half a file. `list_evals` / `load_eval` read
them back, for the window when a run is reopened and for the model card of an export.

Everything here is Qt-free and runs as well in a child process: progress is `(done, total)` over
both models' prompts, `cancelled()` is checked between generation batches.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ValidationError

from grpo_studio.config import LoadedRun
from grpo_studio.engine.error_text import first_line
from grpo_studio.engine.evaluate import (
    EvalCancelled,
    EvalError,
    EvalResult,
    HeldOut,
    Progress,
    apply_adapter,
    check_adapter,
    load_eval_model,
)
from grpo_studio.engine.store import RunFolder

Change = Literal["fixed", "broken", "both_right", "both_wrong"]
SCHEMA_VERSION = 1
EVALS_DIR = "evals"


class ModelScore(BaseModel):
    """One model's held-out result."""

    label: str  # "base", "adapter", "checkpoint-20", ...
    model: str  # the base model's name or folder
    adapter: str | None  # the adapter folder applied to it; None for the base model
    accuracy: float
    correct: int
    n: int
    format_rate: float | None  # None when the run has no format reward and no answer pattern
    mean_length: float  # completion tokens
    truncated_rate: float
    rewards: dict[str, float | None]  # each reward function's mean (None: it never applied)
    seconds: float


class Answer(BaseModel):
    """One model's answer to one prompt."""

    completion: str
    correct: bool
    format_ok: bool | None
    length: int
    truncated: bool
    rewards: dict[str, float | None]


class PromptComparison(BaseModel):
    index: int  # row of the held-out split
    prompt: str
    answer: str | None  # the ground truth
    base: Answer
    tuned: Answer
    change: Change


class Comparison(BaseModel):
    """Base vs. adapter on one held-out split: what `eval --compare-base` prints and stores."""

    schema_version: int = SCHEMA_VERSION
    name: str  # file stem under RUN_DIR/evals/
    run_dir: str | None
    created: float
    limit: int  # 0 = the whole split (or eval.limit)
    correctness: str  # "correctness_reward >= 1"
    format_rule: str | None
    base: ModelScore
    tuned: ModelScore
    counts: dict[str, int]  # prompts per change
    prompts: list[PromptComparison]

    def summary(self) -> dict[str, Any]:
        """Everything but the per-prompt answers."""
        return self.model_dump(mode="json", exclude={"prompts"})

    def gain_points(self) -> float:
        return 100 * (self.tuned.accuracy - self.base.accuracy)


class StoredEval(BaseModel):
    """A stored comparison in a list (its prompts not loaded into the entry)."""

    path: str
    name: str
    created: float
    tuned_label: str
    n: int
    base_accuracy: float
    tuned_accuracy: float


# ---- which adapter -------------------------------------------------------------------------------


def adapter_choices(run_dir: str | Path) -> list[tuple[str, Path]]:
    """What a run folder offers to evaluate: its final adapter, then its checkpoints, newest first."""
    folder = RunFolder(run_dir)
    choices = []
    if (folder.adapter / "adapter_config.json").is_file():
        choices.append(("adapter", folder.adapter))
    for _, path in reversed(folder.complete_checkpoints()):
        if (path / "adapter_config.json").is_file():
            choices.append((path.name, path))
    return choices


def resolve_adapter(run_dir: str | Path, choice: str | Path | None) -> tuple[str, Path]:
    """(label, folder) for an adapter given as None (the run's newest), a name ('adapter',
    'checkpoint-20') or a folder; a damaged one is an EvalError here, before any model loads."""
    from grpo_studio.engine.export import ExportError, adapter_source

    folder = RunFolder(run_dir)
    if choice is None:
        try:
            path = adapter_source(folder)
        except ExportError as exc:
            raise EvalError(str(exc)) from None
        return adapter_label(folder, path), path
    named = dict(adapter_choices(folder))
    if str(choice) in named:
        label, path = str(choice), named[str(choice)]
    else:
        path = Path(choice).expanduser()
        if not path.is_dir():
            known = ", ".join(named) or "none yet"
            raise EvalError(f"--adapter {choice}: neither a folder nor one of this run's adapters ({known})")
        label = adapter_label(folder, path)
    check_adapter(path)
    return label, path


def adapter_label(folder: RunFolder, path: Path) -> str:
    path = path.resolve()
    if path == folder.adapter.resolve():
        return "adapter"
    if path.parent == folder.checkpoints.resolve():
        return path.name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", path.name).strip("-.") or "adapter"


# ---- comparing ------------------------------------------------------------------------------------


def compare_with_base(run: LoadedRun, adapter: str | Path, *, label: str = "adapter", limit: int = 0,
                      progress: Progress | None = None, cancelled: Callable[[], bool] | None = None,
                      run_dir: str | Path | None = None) -> Comparison:
    """Score the base model, then base + adapter, on the same held-out prompts.

    The base model is loaded once; the adapter is applied to it after its own pass."""
    adapter = Path(adapter)
    if not (adapter / "adapter_config.json").is_file():
        raise EvalError(f"{adapter}: not a PEFT adapter folder (no adapter_config.json)")
    check = cancelled or (lambda: False)

    def stop_if_asked() -> None:
        if check():
            raise EvalCancelled()

    with HeldOut(run, limit) as held_out:
        n = len(held_out.prompts)
        if progress:
            progress(0, 2 * n)
        stop_if_asked()
        model = load_eval_model(held_out.run)

        def pass_progress(offset: int) -> Progress:
            def report(done: int, total: int) -> None:
                if progress:
                    progress(offset + done, 2 * n)
                stop_if_asked()
            return report

        stop_if_asked()
        base = held_out.score(model, None, pass_progress(0))
        model = apply_adapter(model, adapter)
        tuned = held_out.score(model, adapter, pass_progress(n))
        rule = f"{held_out.judge} >= {held_out.cfg.eval.threshold:g}"
        return build_comparison(base, tuned, label=label, limit=limit, correctness=rule,
                                format_rule=held_out.format_rule, run_dir=run_dir)


def build_comparison(base: EvalResult, tuned: EvalResult, *, label: str, limit: int, correctness: str,
                     format_rule: str | None, run_dir: str | Path | None) -> Comparison:
    prompts = []
    for i, (b, t) in enumerate(zip(base.examples, tuned.examples, strict=True)):
        prompts.append(PromptComparison(index=i, prompt=b["prompt"], answer=_text_or_none(b["answer"]),
                                        base=_answer(b), tuned=_answer(t), change=change_of(b["correct"],
                                                                                              t["correct"])))
    counts = {c: 0 for c in ("fixed", "broken", "both_right", "both_wrong")}
    for p in prompts:
        counts[p.change] += 1
    return Comparison(
        name=eval_name(label, limit), run_dir=str(run_dir) if run_dir else None, created=time.time(), limit=limit,
        correctness=correctness, format_rule=format_rule, base=_score("base", base), tuned=_score(label, tuned),
        counts=counts, prompts=prompts,
    )


def change_of(base_correct: bool, tuned_correct: bool) -> Change:
    if base_correct == tuned_correct:
        return "both_right" if base_correct else "both_wrong"
    return "fixed" if tuned_correct else "broken"


def eval_name(label: str, limit: int = 0) -> str:
    return f"base-vs-{label}" + (f"-first{limit}" if limit else "")


def compare_run(run_dir: str | Path, adapter: str | Path | None = None, *, limit: int = 0,
                overrides: list[str] | None = None, progress: Progress | None = None,
                cancelled: Callable[[], bool] | None = None, store: bool = True) -> Comparison:
    """`compare_with_base` for a run folder: its frozen run file, its adapter (or the one named),
    and the result stored in RUN_DIR/evals/."""
    from grpo_studio.config import load_run

    folder = RunFolder(run_dir)
    if not folder.is_run():
        raise EvalError(f"{run_dir}: not a run folder (no config.toml)")
    label, path = resolve_adapter(folder, adapter)
    run = load_run(folder.config, overrides)
    result = compare_with_base(run, path, label=label, limit=limit, progress=progress, cancelled=cancelled,
                               run_dir=folder.path)
    if store:
        save_eval(folder.path, result)
    return result


# ---- stored results --------------------------------------------------------------------------------


def evals_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / EVALS_DIR


def save_eval(run_dir: str | Path, comparison: Comparison) -> Path:
    """Write RUN_DIR/evals/NAME.json atomically (a temporary file, then a rename)."""
    folder = evals_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"{comparison.name}.json"
    tmp = folder / f".{comparison.name}.json.{os.getpid()}.tmp"
    try:
        with tmp.open("w", encoding="utf-8") as f:
            f.write(comparison.model_dump_json(indent=1))
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def load_eval(path: str | Path) -> Comparison:
    path = Path(path)
    try:
        return Comparison.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvalError(f"{path}: no such stored evaluation") from None
    except (OSError, ValueError, ValidationError) as exc:
        raise EvalError(f"{path}: not a readable evaluation ({first_line(exc)})") from None


def list_evals(run_dir: str | Path) -> list[StoredEval]:
    """The comparisons stored with a run, newest first; unreadable files are left out."""
    found = []
    for path in sorted(evals_dir(run_dir).glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            found.append(StoredEval(path=str(path), name=data["name"], created=data["created"],
                                    tuned_label=data["tuned"]["label"], n=data["tuned"]["n"],
                                    base_accuracy=data["base"]["accuracy"],
                                    tuned_accuracy=data["tuned"]["accuracy"]))
        except (OSError, ValueError, KeyError, TypeError, ValidationError):
            continue
    return sorted(found, key=lambda e: e.created, reverse=True)


def latest_eval(run_dir: str | Path, label: str | None = None,
                stored: list[StoredEval] | None = None) -> Comparison | None:
    """The newest stored comparison (of one adapter label, if given), preferring whole-split ones.
    `stored`: list_evals(run_dir) when the caller already has it (each file is parsed whole)."""
    stored = list_evals(run_dir) if stored is None else stored
    entries = [e for e in stored if label is None or e.tuned_label == label]
    entries.sort(key=lambda e: (e.name.find("-first") < 0, e.created), reverse=True)
    for entry in entries:
        try:
            return load_eval(entry.path)
        except EvalError:
            continue
    return None


def _score(label: str, result: EvalResult) -> ModelScore:
    return ModelScore(label=label, model=result.model, adapter=result.adapter, accuracy=result.accuracy,
                      correct=result.correct, n=result.n, format_rate=result.format_rate,
                      mean_length=result.mean_length, truncated_rate=result.truncated_rate,
                      rewards={k: (v if v == v else None) for k, v in result.rewards.items()},  # NaN: none
                      seconds=result.seconds)


def _answer(example: dict[str, Any]) -> Answer:
    return Answer(completion=example["completion"], correct=example["correct"], format_ok=example["format_ok"],
                  length=example["length"], truncated=example["truncated"], rewards=example["rewards"])


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
