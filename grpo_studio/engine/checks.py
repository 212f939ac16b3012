"""`grpo-studio validate`: every check that needs no model weights, in seconds.

Reads the run file, the dataset (columns, ground truths) and the reward file (syntax, functions,
signatures); reads a local model's config.json for its context length. Hub ids are looked up only
when the hub answers quickly; offline, they are reported as warnings, not errors, since the same
run file is meant to be validated on a laptop and trained on a GPU box.

Problems come back as one line each: `section.key: reason` for settings, `FILE:LINE: reason` for
dataset and reward files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from grpo_studio.config import LoadedRun
from grpo_studio.engine.data import DataError, load_prompts, resolve_source
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


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub answers at all (one quick request), so offline checks don't hang."""
    import os

    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        import httpx

        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        httpx.head(f"{endpoint}/api/models", timeout=timeout)
        return True
    except Exception:  # noqa: BLE001 - any failure means "not reachable now"
        return False


def check_model(run: LoadedRun, report: Report) -> None:
    cfg = run.config
    try:
        name = model_path(run)
        model_cfg = read_model_config(name, cfg.model.revision)
    except ModelError as exc:
        report.problems.append(str(exc))
        return
    if model_cfg is None:
        report.warnings.append(f"model.name: {name!r} is a hub id that is not downloaded yet; it will be "
                               "fetched when training starts")
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


def check_data_and_rewards(run: LoadedRun, report: Report) -> None:
    cfg = run.config
    columns: list[str] | None = None
    try:
        source = resolve_source(run, cfg.data.source, cfg.data.subset, cfg.data.split)
        if source.is_local or hub_reachable():
            prompts = load_prompts(run, tokenizer=None, check_length=False)
            columns = list(prompts.dataset.column_names)
            report.facts["rows"] = len(prompts.dataset)
            report.facts["columns"] = columns
            if prompts.missing_answers:
                report.warnings.append(f"data.answer_pattern: {prompts.missing_answers} of "
                                       f"{len(prompts.dataset)} rows have no ground truth")
        else:
            report.warnings.append(f"data.source: the hub is not reachable, so {cfg.data.source!r} was not "
                                   "checked; it will be downloaded when training starts")
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
    if cfg.eval.source:
        try:
            resolve_source(run, cfg.eval.source, cfg.data.subset, cfg.eval.split, field="eval.source")
        except DataError as exc:
            report.problems.append(str(exc))


def validate(run: LoadedRun) -> Report:
    report = Report()
    report.problems += [str(p) for p in run.config.problems()]
    if run.config.grpo.extra:
        from grpo_studio.engine.library_configs import check_extra

        report.problems += [str(p) for p in check_extra(run.config)]
    if run.config.run.report_to:
        from grpo_studio.engine.library_configs import check_trackers

        report.problems += [str(p) for p in check_trackers(run.config)]
    if run.config.model.name.strip():
        check_model(run, report)
    if run.config.data.source.strip():
        check_data_and_rewards(run, report)
    return report
