"""What "nothing was lost" means for a run folder, checked the same way after every injected fault."""

from __future__ import annotations

from pathlib import Path

import tiny

from grpo_studio.engine.integrity import adapter_problem
from grpo_studio.engine.run_lock import lock_holder
from grpo_studio.engine.store import RunFolder, RunStore

STEPS = 4  # every fault run: 4 steps, checkpoints at 2 and 4
PER_STEP = 8  # completions per step: 2 prompts x 4 generations
RUN_SETTINGS = ["--set", f"grpo.max_steps={STEPS}", "--set", "run.save_steps=2"]


def write_fault_project(folder: Path, model: Path, extra: str = "") -> Path:
    """The tiny run file of the fault tests: rewards in-process (cheaper; the reward tests isolate them)."""
    return tiny.write_run(folder, model, extra="\n[rewards]\nisolate = false\n" + extra)


def leftovers(folder: RunFolder) -> list[str]:
    """Staging folders that a finished run must not leave behind."""
    names = [folder.checkpoints / ".staging", folder.path / ".adapter.partial", folder.path / ".adapter.old",
             folder.path / ".space-reserve"]
    return [str(p) for p in names if p.exists()]


def assert_whole_run(path: Path, steps: int = STEPS, per_step: int = PER_STEP) -> None:
    """Finished at `steps`, every step stored exactly once with all its samples, the adapter whole and
    equal to the last checkpoint's, no staging left, no lock held."""
    folder = RunFolder(path)
    with RunStore(folder.database, readonly=True) as store:
        meta = store.meta()
        assert meta["status"] == "finished", meta
        assert meta["last_step"] == steps
        assert store.metrics(["reward"])["reward"][0] == list(range(1, steps + 1))
        for step in range(1, steps + 1):
            assert store.count_samples(step=step) == per_step, f"step {step}: {store.count_samples(step=step)}"
    assert adapter_problem(folder.adapter) is None
    newest = folder.newest_checkpoint()
    assert newest is not None and newest[0] == steps
    assert (folder.adapter / "adapter_model.safetensors").read_bytes() == (
        newest[1] / "adapter_model.safetensors").read_bytes()
    assert leftovers(folder) == []
    assert lock_holder(path) is None
