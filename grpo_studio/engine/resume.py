"""What `--resume` does with a run folder: train on, finish an interrupted final save, or nothing.

    finished   the store says finished at >= grpo.max_steps and the adapter is whole: nothing changes
    complete   a checkpoint at >= grpo.max_steps exists but the final adapter is missing, damaged or
               not recorded (killed during the final save): the adapter is written from that
               checkpoint, with no training step
    train      continue from the newest *loadable* checkpoint (damaged newer ones are skipped and
               named), or from step 0 when there is none

Decided before any model is loaded, so a finished run never trains step max_steps+1.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from grpo_studio.engine.integrity import adapter_problem, loadable_checkpoint
from grpo_studio.engine.safe_files import prepare_staging, publish
from grpo_studio.engine.store import RunFolder, RunStore

# Checkpoint files that only matter for resuming training, never for using the adapter.
TRAINING_STATE = {"optimizer.pt", "scheduler.pt", "scaler.pt", "trainer_state.json", "entropy_ctrl_state.json"}


def is_training_state(name: str) -> bool:
    return name in TRAINING_STATE or name.startswith("rng_state")


@dataclass
class ResumePlan:
    action: Literal["train", "finished", "complete"]
    step: int = 0  # the step training continues after (train), or the run's final step
    checkpoint: Path | None = None
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # newer checkpoints that are damaged

    def skipped_lines(self) -> list[str]:
        return [f"skipped {path.name}: {problem}" for path, problem in self.skipped]


def plan_resume(folder: RunFolder, max_steps: int) -> ResumePlan:
    """Raises StoreError when run.db cannot be read."""
    meta: dict = {}
    if folder.database.is_file():
        with RunStore(folder.database, readonly=True) as store:
            meta = store.meta()
    newest, skipped = loadable_checkpoint(folder)
    last_step = int(meta.get("last_step", 0) or 0)
    if meta.get("status") == "finished" and last_step >= max_steps and adapter_problem(folder.adapter) is None:
        return ResumePlan("finished", last_step, skipped=skipped)
    if newest is not None and newest[0] >= max_steps:
        return ResumePlan("complete", newest[0], newest[1], skipped)
    if newest is None:
        return ResumePlan("train", 0, None, skipped)
    return ResumePlan("train", newest[0], newest[1], skipped)


def adapter_from_checkpoint(checkpoint: Path, adapter: Path) -> None:
    """Write the final adapter as a copy of a checkpoint's model files (what the final save writes:
    the same weights, config and tokenizer files), staged and renamed into place."""
    staging = prepare_staging(adapter)
    try:
        for f in sorted(checkpoint.iterdir()):
            if f.is_file() and not is_training_state(f.name):
                shutil.copy2(f, staging / f.name)
        publish(staging, adapter, replace=True, point="adapter_written")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, or "" when it is absent (a run with only reward models)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return ""
