"""The adapter picker of the Evaluate and Playground pages: a run's final adapter, then its checkpoints."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QComboBox


def fill_adapter_combo(combo: QComboBox, run_dir: str | Path | None, keep_current: bool = False) -> None:
    """Put `run_dir`'s adapters in `combo` (empty without a run). `keep_current`: the same run was
    re-read (e.g. after training added checkpoints), so the user's choice stays where it still exists."""
    from grpo_studio.engine.eval_compare import adapter_choices

    current = combo.currentText()
    combo.clear()
    if run_dir is None:
        return
    combo.addItems([label for label, _ in adapter_choices(run_dir)])
    if keep_current and combo.findText(current) >= 0:
        combo.setCurrentText(current)
