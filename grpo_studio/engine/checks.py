"""`grpo-studio validate`: every check that needs no model weights, in seconds.

Reads the run file, the dataset (columns, ground truths) and the reward file (syntax, functions,
signatures); reads a local model's config.json for its context length. Hub ids are looked up only
when the hub answers a short probe (engine/hub.py); a hub model or dataset that is neither cached
nor reachable is a warning, not an error, since the same run file is meant to be validated on a
laptop and trained on a GPU box. The window's dataset preview says the same.

Problems come back as one line each: `section.key: reason` for settings, `FILE:LINE: reason` for
dataset and reward files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from grpo_studio.config import ConfigError, ConfigProblem, LoadedRun
from grpo_studio.engine import hub
from grpo_studio.engine.data import DataError, HubUnreachable, load_prompts, resolve_source
from grpo_studio.engine.model import ModelError, context_length, model_path, read_model_config
from grpo_studio.engine.rewards import RewardError, load_rewards


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)  # what was found, for `--json` and the GUI

    @property
    def ok(self) -> bool:
        return not self.problems


def check_model(run: LoadedRun, report: Report) -> None:
    cfg = run.config
    try:
        name = model_path(run)
        model_cfg = read_model_config(name, cfg.model.revision)
    except ModelError as exc:
        report.problems.append(str(exc))
        return
    if model_cfg is None:
        if hub.ensure().online:
            report.warnings.append(f"model.name: {name!r} is a hub id that is not downloaded yet; it will be "
                                   "fetched when training starts")
        else:
            report.warnings.append(f"model.name: {hub.not_on_this_machine('model', name, 'model.name')}")
        return
    n_ctx = context_length(model_cfg)
    report.facts["model_context"] = n_ctx
    try:
        from grpo_studio.engine.generation_mode import gpu_free_bytes_without_torch
        from grpo_studio.engine.vram import estimate_for_config

        # For the GPU the run will train on: this machine's when it has one (nvidia-smi), else unknown.
        est = estimate_for_config(model_cfg, cfg, capacity_bytes=gpu_free_bytes_without_torch(),
                                  on_gpu=cfg.model.device != "cpu")
        report.facts["vram_estimate_gib"] = round(est.gib(), 2)
        report.facts["generation_mode"] = est.generation_mode
        report.facts["generation_mode_reason"] = est.mode_reason
        report.facts["vram_estimate_parts_gib"] = {k: round(v / 2**30, 3) for k, v in est.parts.items()}
    except (KeyError, TypeError, ValueError):
        pass  # a config.json without the usual decoder fields: no estimate, not a problem
    if n_ctx and cfg.model.max_seq_length > n_ctx:
        report.problems.append(f"model.max_seq_length: {cfg.model.max_seq_length} exceeds the model's context "
                               f"of {n_ctx} tokens")
    if cfg.model.trust_remote_code is False and "auto_map" in model_cfg:
        report.warnings.append("model.trust_remote_code: the model ships its own code (auto_map in "
                               "config.json); loading may need trust_remote_code = true")


def check_data_and_rewards(run: LoadedRun, report: Report, load_data: bool = True) -> None:
    cfg = run.config
    columns: list[str] | None = None
    try:
        # Without load_data the source itself is already reported as a problem: check the rewards alone.
        if load_data:
            resolve_source(run, cfg.data.source, cfg.data.subset, cfg.data.split)
            prompts = load_prompts(run, tokenizer=None, check_length=False)
            columns = list(prompts.dataset.column_names)
            report.facts["rows"] = len(prompts.dataset)
            report.facts["columns"] = columns
            too_few = rows_problem(run, len(prompts.dataset))
            if too_few:
                report.problems.append(too_few)
            if prompts.missing_answers:
                report.warnings.append(f"data.answer_pattern: {prompts.missing_answers} of "
                                       f"{len(prompts.dataset)} rows have no ground truth")
    except HubUnreachable as exc:
        # A warning, here and in the window's preview: the run file may be checked on a laptop
        # offline and trained on a machine that reaches the hub. Training itself stops on it.
        report.warnings.append(str(exc))
    except DataError as exc:
        report.problems.append(str(exc))
    try:
        specs = load_rewards(run, columns=columns)
        report.facts["rewards"] = [s.label for s in specs]
    except RewardError as exc:
        report.problems.append(str(exc))
        return
    check_eval(run, report, [s.label for s in specs])


def correctness_function(run: LoadedRun, labels: list[str]) -> str | None:
    """The reward that `eval` counts as 'correct'."""
    wanted = run.config.eval.correctness
    if wanted:
        return wanted if wanted in labels else None
    return next((label for label in labels if "correct" in label.lower()), None)


def format_function(run: LoadedRun, labels: list[str]) -> str | None:
    """The reward that `eval` counts as 'well formatted' (None: the format rate falls back to
    data.answer_pattern, or is not measured)."""
    wanted = run.config.eval.format
    if wanted:
        return wanted if wanted in labels else None
    return next((label for label in labels if "format" in label.lower()), None)


def check_eval(run: LoadedRun, report: Report, labels: list[str]) -> None:
    cfg = run.config
    if cfg.eval.correctness and cfg.eval.correctness not in labels:
        report.problems.append(f"eval.correctness: {cfg.eval.correctness!r} is not one of the reward functions "
                               f"({', '.join(labels)})")
    elif correctness_function(run, labels) is None:
        report.warnings.append("eval.correctness: no reward function has 'correct' in its name; set "
                               "eval.correctness for `grpo-studio eval`")
    if cfg.eval.format and cfg.eval.format not in labels:
        report.problems.append(f"eval.format: {cfg.eval.format!r} is not one of the reward functions "
                               f"({', '.join(labels)})")
    # (eval.source is found or refused by check_before_loading, with data.source)


def prompts_per_step(run: LoadedRun, world_size: int = 1) -> int:
    """Distinct prompts one optimizer step needs (TRL samples whole generation batches only)."""
    cfg = run.config
    return max(1, cfg.generation_batch(world_size) // cfg.grpo.num_generations)


def rows_problem(run: LoadedRun, rows: int, world_size: int = 1, dropped: int = 0) -> str | None:
    """A dataset smaller than one step trains nothing (TRL would 'finish' 0 steps): say so up front."""
    need = prompts_per_step(run, world_size)
    if rows >= need:
        return None
    g = run.config.grpo
    left = f" ({dropped} longer than data.max_prompt_length were left out)" if dropped else ""
    return (f"data.source: {rows} usable rows{left}, but one step needs {need} prompts (generation batch "
            f"{run.config.generation_batch(world_size)} / grpo.num_generations {g.num_generations}): add rows, or lower "
            "grpo.per_device_train_batch_size or grpo.gradient_accumulation_steps")


def check_before_loading(run: LoadedRun, report: Report | None = None, world_size: int = 1) -> Report:
    """The checks that need no dataset rows, reward process or model weights: the settings' own
    cross-field checks, grpo.extra, the model's context length (local config.json) and where the
    data files are. `train` runs them before it makes a run folder; `validate` runs them first."""
    report = report or Report()
    report.problems += [str(p) for p in run.config.problems(world_size)]
    if run.config.grpo.extra:
        from grpo_studio.engine.library_configs import check_extra

        report.problems += [str(p) for p in check_extra(run.config)]
    if run.config.run.report_to:
        from grpo_studio.engine.library_configs import check_trackers

        report.problems += [str(p) for p in check_trackers(run.config)]
    if run.config.model.name.strip():
        check_model(run, report)
    cfg = run.config
    for setting, spec, split in (("data.source", cfg.data.source, cfg.data.split),
                                 ("eval.source", cfg.eval.source, cfg.eval.split)):
        if spec.strip():
            try:
                resolve_source(run, spec, cfg.data.subset, split, field=setting)
            except DataError as exc:
                report.problems.append(str(exc))
    return report


def validate(run: LoadedRun) -> Report:
    report = check_before_loading(run)
    if run.config.data.source.strip():
        check_data_and_rewards(run, report, load_data=not any(p.startswith("data.source:") for p in report.problems))
    return report


def require_before_loading(run: LoadedRun, world_size: int = 1) -> None:
    """ConfigError with every problem `check_before_loading` finds: what `train` runs before it makes
    a run folder. The rest of validate's checks (rows, reward file, eval.correctness) run in train as
    soon as what they need is loaded, still before the model is."""
    problems = check_before_loading(run, world_size=world_size).problems
    if problems:
        raise ConfigError([as_problem(p) for p in problems], source=str(run.path) if run.path else None)


def require_eval_correctness(run: LoadedRun, labels: list[str]) -> None:
    """validate's check of eval.correctness, as a ConfigError, once the reward functions are known."""
    report = Report()
    check_eval(run, report, labels)
    if report.problems:
        raise ConfigError([as_problem(p) for p in report.problems])


def as_problem(line: str) -> ConfigProblem:
    """A `field: reason` line as a ConfigProblem."""
    field, _, message = line.partition(": ")
    return ConfigProblem(field, message) if message else ConfigProblem("run file", line)
