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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from grpo_studio.engine.events import EventBus, Finished, Log
from grpo_studio.engine.faults import fault_point
from grpo_studio.engine.integrity import adapter_problem, loadable_checkpoint
from grpo_studio.engine.safe_files import prepare_staging, publish
from grpo_studio.engine.store import RunFolder, RunStore

# Checkpoint files that only matter for resuming training, never for using the adapter.
TRAINING_STATE = {"optimizer.pt", "scheduler.pt", "scaler.pt", "trainer_state.json", "entropy_ctrl_state.json",
                  "training_args.bin"}


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


def nothing_to_do(folder: RunFolder, plan: ResumePlan, max_steps: int, bus: EventBus) -> Finished:
    """A finished run resumed: say so, write nothing."""
    bus(Log(message=f"{folder.path} already finished at step {plan.step} of {max_steps}: nothing to do (to "
                    f"train further, raise grpo.max_steps, e.g. --set grpo.max_steps={plan.step * 2})"))
    finished = Finished(step=plan.step, adapter_dir=str(folder.adapter))
    bus(finished)
    return finished


def complete_final_save(folder: RunFolder, plan: ResumePlan, store: RunStore | None, bus: EventBus,
                        started: float) -> Finished:
    """The run trained all its steps but was killed while writing its final adapter: write it from the
    last checkpoint (the same weights), with no training step. Only the main process writes."""
    from grpo_studio.engine.run_endings import clear_staging

    assert plan.checkpoint is not None
    for line in plan.skipped_lines():
        bus(Log(level="warning", message=line))
    bus(Log(message=f"training had finished at step {plan.step}; completing the final adapter from "
                    f"{plan.checkpoint.name} (no training)"))
    if store is not None:
        store.truncate_after(plan.step)
        clear_staging(folder)
        adapter_from_checkpoint(plan.checkpoint, folder.adapter)
    fault_point("finished", folder.path)
    finished = Finished(step=plan.step, adapter_dir=str(folder.adapter), seconds=time.time() - started)
    bus(finished)
    return finished


def resume_point(plan: ResumePlan, store: RunStore | None, bus: EventBus) -> Path | None:
    """The newest loadable checkpoint; the store forgets what was logged after it (those steps rerun)."""
    for line in plan.skipped_lines():
        bus(Log(level="warning", message=f"{line}; resuming from an older checkpoint"))
    if store is not None:
        store.truncate_after(plan.step)
    if plan.checkpoint is None:
        bus(Log(level="warning", message="no loadable checkpoint yet: starting this run from step 0"))
        return None
    bus(Log(message=f"resuming from {plan.checkpoint.name} (step {plan.step})"))
    return plan.checkpoint


def say_if_rewards_changed(store: RunStore, bus: EventBus, now: str, checkpoint: Path | None) -> None:
    """The run folder's rewards.py is meant to be edited between segments (to fix a reward), but a
    changed reward changes what the curves mean: say so in the log, which the store keeps. Each
    segment's Started event records the hash it trained with."""
    before = next((e.rewards_sha256 for e in reversed(store.events(["started"])) if e.rewards_sha256), "")
    if before and now != before:
        at = int(checkpoint.name.split("-")[1]) if checkpoint else 0
        bus(Log(level="warning", message=f"rewards.py changed since the previous segment (sha256 {before[:12]} -> "
                f"{now[:12]}): reward curves after step {at} are scored by the new file"))
