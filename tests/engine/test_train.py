"""Real GRPO runs (TRL's GRPOTrainer, PEFT LoRA) on a tiny CPU model: store, checkpoints, resume."""

from __future__ import annotations

import json

import pytest

from grpo_studio.engine.events import Failed, Finished
from grpo_studio.engine.run import train
from grpo_studio.engine.store import RunFolder, RunStore


def collect():
    events = []
    return events, events.append


def test_short_run_writes_metrics_samples_checkpoint_and_adapter(run_file, tiny_model):
    events, listener = collect()
    result = train(run_file, listener=listener)
    assert isinstance(result, Finished), getattr(result, "details", result)
    assert result.step == 3 and not result.stopped
    kinds = [e.kind for e in events]
    assert kinds.index("started") < kinds.index("metrics") < kinds.index("finished")
    assert kinds.count("metrics") == 3 and kinds.count("samples") == 3
    assert [e.step for e in events if e.kind == "checkpoint"] == [2, 3]

    folder = RunFolder(result.adapter_dir).path.parent
    folder = RunFolder(folder)
    assert folder.config.is_file() and folder.rewards.is_file()
    with RunStore(folder.database, readonly=True) as store:
        assert store.meta()["status"] == "finished"
        curves = store.metrics(["reward", "loss", "rewards/correctness_reward/mean"])
        assert curves["reward"][0] == [1, 2, 3]
        assert store.sample_steps() == [1, 2, 3]
        rows = store.samples(step=2)
        assert len(rows) == 8  # 8 completions per step: 2 prompts x 4 generations
        assert {r.group for r in rows} == {0, 1}
        row = rows[0]
        assert set(row.rewards) == {"correctness_reward", "length_reward"}
        assert row.prompt.endswith("=") and row.answer.isdigit()
        assert row.total == pytest.approx(sum(v for v in row.rewards.values()))
        assert row.advantage is not None and row.length is not None
    assert [s for s, _ in folder.complete_checkpoints()] == [2, 3]

    # The adapter loads back with PEFT onto the base model.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    model = PeftModel.from_pretrained(base, result.adapter_dir)
    assert any("lora_A" in n for n, _ in model.named_parameters())
    saved = json.loads((folder.adapter / "adapter_config.json").read_text())
    assert saved["r"] == 4


def test_stop_then_resume_continues_the_step_count(run_file):
    steps_seen = []

    def listener(event):
        if event.kind == "metrics":
            steps_seen.append(event.step)

    # Asked to stop once step 2 is logged: the step in flight (3) finishes, is saved, and the run ends.
    result = train(run_file, listener=listener, stop_requested=lambda: len(steps_seen) >= 2,
                   overrides=["grpo.max_steps=6", "run.save_steps=100"])
    assert isinstance(result, Finished) and result.stopped and result.step == 3
    folder = RunFolder(result.adapter_dir).path.parent
    assert [s for s, _ in RunFolder(folder).complete_checkpoints()] == [3]  # saved on stop

    events = []
    resumed = train(folder, resume=True, listener=events.append)
    assert isinstance(resumed, Finished), getattr(resumed, "details", resumed)
    assert resumed.step == 6 and not resumed.stopped
    started = next(e for e in events if e.kind == "started")
    assert started.resumed_from_step == 3
    assert [e.step for e in events if e.kind == "metrics"] == [4, 5, 6]
    with RunStore(folder, readonly=True) as store:
        assert store.metrics(["reward"])["reward"][0] == [1, 2, 3, 4, 5, 6]
        assert store.sample_steps() == [1, 2, 3, 4, 5, 6]


def test_resume_after_a_crash_drops_the_steps_after_the_checkpoint(run_file):
    result = train(run_file, overrides=["grpo.max_steps=3", "run.save_steps=2", "run.save_total_limit=0"])
    folder = RunFolder(RunFolder(result.adapter_dir).path.parent)
    # Pretend the process died while writing checkpoint-3: it has no trainer_state.json.
    (folder.checkpoints / "checkpoint-3" / "trainer_state.json").unlink()
    assert folder.newest_checkpoint()[0] == 2
    events = []
    resumed = train(folder.path, resume=True, listener=events.append, overrides=["grpo.max_steps=4"])
    assert resumed.step == 4
    with RunStore(folder, readonly=True) as store:
        assert store.metrics(["reward"])["reward"][0] == [1, 2, 3, 4]  # step 3 replayed once, not twice


def test_reward_exception_fails_readably_and_keeps_a_checkpoint(tmp_path, tiny_model):
    import tiny

    rewards = tiny.REWARDS + (
        "\n\ndef flaky_reward(completions, trainer_state, **kwargs):\n"
        "    if trainer_state.global_step >= 1:\n"
        "        raise RuntimeError('verifier crashed')\n"
        "    return [0.0] * len(completions)\n"
    )
    run = tiny.write_run(tmp_path / "p", tiny_model, rewards=rewards)
    result = train(run, overrides=["run.save_steps=100"])
    assert isinstance(result, Failed)
    assert result.reason.endswith("rewards.py:20: flaky_reward raised RuntimeError: verifier crashed")
    assert not result.input_error
    folder = RunFolder(next((tmp_path / "p" / "runs").iterdir()))
    assert folder.newest_checkpoint()[0] == 1  # step 1 completed before the failure: kept
    with RunStore(folder, readonly=True) as store:
        assert store.meta()["status"] == "failed"


def test_bad_inputs_fail_before_training(tmp_path, tiny_model):
    import tiny

    run = tiny.write_run(tmp_path / "p", tiny_model)
    result = train(run, overrides=["lora.target_modules=[\"qkv\"]"])
    assert isinstance(result, Failed) and result.input_error
    assert result.reason.startswith("lora.target_modules: 'qkv' not found in this model; its linear layers are:")
    result = train(run, overrides=["model.name=./no-such-model"])
    assert result.reason.startswith("model.name: folder not found:")
    result = train(run, overrides=["data.prompt_column=prompt_text"])
    assert "no column 'prompt_text'" in result.reason


def test_a_cpu_run_without_quantization_leaves_bitsandbytes_out(run_file):
    """peft imports bitsandbytes whenever it is installed: several CPU-seconds of torch.compile set-up
    (and a kernels-community notice on some CPUs) for a run that has no use for it."""
    import subprocess
    import sys

    from grpo_studio.config import load_run
    from grpo_studio.engine.model import Placement, skip_unused_bitsandbytes

    saved = sys.modules.get("bitsandbytes", "absent")
    try:
        sys.modules.pop("bitsandbytes", None)
        cpu, gpu = Placement("cpu", "float32"), Placement("cuda", "bfloat16")
        assert not skip_unused_bitsandbytes(load_run(run_file), gpu)
        assert not skip_unused_bitsandbytes(load_run(run_file, ["grpo.optimizer=adamw_8bit"]), cpu)
        assert "bitsandbytes" not in sys.modules
    finally:
        if saved != "absent":
            sys.modules["bitsandbytes"] = saved
    code = ("import sys; from grpo_studio.engine.run import train; "
            f"r = train({str(run_file)!r}, overrides=['grpo.max_steps=1']); "
            "print(r.kind, sys.modules.get('bitsandbytes', 'absent'))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.stdout.split()[-2:] == ["finished", "None"], proc.stderr[-3000:]  # trained, bitsandbytes never loaded
