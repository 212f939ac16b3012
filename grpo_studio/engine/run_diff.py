"""What differs between runs: their frozen run files (RUN_DIR/config.toml) setting by setting, and
their frozen reward files.

Each run file is read through the settings tree, so a setting left at its default in one file and
written out in the other is not a difference. Tables (the reward functions) are compared entry by
entry (`rewards.functions[1].weight`).
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Any

from grpo_studio.engine.store import RunFolder

MISSING = object()
# Where the run folders lie says nothing about how the model was trained.
NOT_COMPARED = {"run.output_dir"}


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{"grpo.learning_rate": 0.001, "rewards.functions[0].name": "correctness_reward", ...}

    >>> flatten({"a": {"b": 1, "c": [{"d": 2}], "e": [1, 2]}})
    {'a.b': 1, 'a.c[0].d': 2, 'a.e': [1, 2]}
    """
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = {}
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def run_settings(run_dir: str | Path) -> dict[str, Any]:
    """A run's settings, flat, with defaults filled in (the raw file when it no longer validates)."""
    from grpo_studio.config import ConfigError, load_run

    path = RunFolder(run_dir).config
    try:
        data = load_run(path).config.model_dump(mode="json")
    except ConfigError:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    return flatten(data)


def show_value(value: Any) -> str:
    if value is MISSING:
        return "(not set)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def config_differences(run_dirs: list[str | Path]) -> list[tuple[str, list[str]]]:
    """(setting path, each run's value as text) for every setting whose values are not all equal, in
    the order of the settings tree; then `rewards.py` when the reward files differ."""
    settings = [run_settings(d) for d in run_dirs]
    paths: list[str] = []
    for flat in settings:
        paths += [p for p in flat if p not in paths]
    out = []
    for path in paths:
        if path in NOT_COMPARED:
            continue
        values = [flat.get(path, MISSING) for flat in settings]
        if any(v != values[0] for v in values[1:]):
            out.append((path, [show_value(v) for v in values]))
    reward_note = reward_file_differences(run_dirs)
    if reward_note:
        out.append(("rewards.py", reward_note))
    return out


def reward_file_differences(run_dirs: list[str | Path]) -> list[str] | None:
    """Per run, how its frozen reward file differs from the first run's; None when all are the same."""
    texts = []
    for d in run_dirs:
        path = RunFolder(d).rewards
        texts.append(path.read_text(encoding="utf-8") if path.is_file() else None)
    if all(t == texts[0] for t in texts[1:]):
        return None
    notes = []
    for i, text in enumerate(texts):
        if text is None:
            notes.append("(no reward file)")
        elif i == 0:
            notes.append(f"{len(text.splitlines())} lines")
        elif text == texts[0]:
            notes.append("same as the first")
        else:
            first = (texts[0] or "").splitlines()
            changed = sum(1 for line in difflib.unified_diff(first, text.splitlines(), lineterm="", n=0)
                          if line[:1] in "+-" and not line.startswith(("+++", "---")))
            notes.append(f"{changed} line{'s' if changed != 1 else ''} differ")
    return notes
