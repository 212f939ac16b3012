"""The bench's step profile (GRPO_STUDIO_PROFILE_STEP): one optimizer step recorded, and split into the
step's generation and its training half."""

from __future__ import annotations

import time

import torch

from grpo_studio.engine.step_profile import StepProfiler, generation_range


def fake_step(profiler: StepProfiler, global_step: int, generate_s: float = 0.05) -> None:
    profiler.begin(global_step)
    x = torch.randn(64, 64)
    with generation_range():
        time.sleep(generate_s)
        x = x @ x
    (x @ x).sum().item()  # the "training half"
    profiler.end()


def seconds(line: str, label: str) -> float:
    return float(line.split(label + " ")[1].split(" s")[0])


def test_only_the_asked_step_is_profiled_and_split_into_its_phases(tmp_path, monkeypatch, capsys):
    out = tmp_path / "profile.txt"
    monkeypatch.setenv("GRPO_STUDIO_PROFILE_OUT", str(out))
    profiler = StepProfiler(2)
    fake_step(profiler, global_step=0)
    assert not out.exists()  # step 1 is not the one asked for
    fake_step(profiler, global_step=1)
    head = out.read_text().splitlines()[0]
    assert head.startswith("PROFILE step 2:") and head in capsys.readouterr().out
    assert seconds(head, "generation") >= 0.05
    assert "aten::mm" in out.read_text()  # the operator tables follow


def test_the_training_phase_alone_is_recorded_from_the_generations_end(tmp_path, monkeypatch):
    out = tmp_path / "profile.txt"
    monkeypatch.setenv("GRPO_STUDIO_PROFILE_OUT", str(out))
    monkeypatch.setenv("GRPO_STUDIO_PROFILE_PHASE", "training")
    fake_step(StepProfiler(1), global_step=0, generate_s=0.1)
    text = out.read_text()
    assert seconds(text.splitlines()[0], "generation") >= 0.1  # the unrecorded part of the step
    assert "aten::mm" in text  # the training half's matmul was recorded


def test_a_step_without_generation_leaves_no_record_armed(tmp_path, monkeypatch):
    """With GRPO_STUDIO_PROFILE_PHASE=training, a profiled step that generates nothing (TRL reuses a
    generation for several steps) records nothing, and a later generation does not start a record."""
    out = tmp_path / "profile.txt"
    monkeypatch.setenv("GRPO_STUDIO_PROFILE_OUT", str(out))
    monkeypatch.setenv("GRPO_STUDIO_PROFILE_PHASE", "training")
    profiler = StepProfiler(1)
    profiler.begin(0)
    profiler.end()
    with generation_range():
        pass
    profiler.end()
    assert not out.exists()


def test_a_ranges_gpu_side_copy_is_not_counted_as_a_second_generation():
    """On a GPU the profiler records a named range twice: on the CPU, and as the span of its kernels.
    The generation is the CPU range (counting both once gave a generation longer than the step)."""
    from types import SimpleNamespace

    from grpo_studio.engine.step_profile import GENERATION_RANGE, summarize

    def event(name, device, start, end, device_time=0.0):
        return SimpleNamespace(name=name, device_type=SimpleNamespace(name=device), device_time=device_time,
                               cpu_time=0.0, time_range=SimpleNamespace(start=start, end=end))

    events = [event(GENERATION_RANGE, "CPU", 0, 2_000_000), event(GENERATION_RANGE, "CUDA", 10_000, 2_010_000),
              event("kernel", "CUDA", 100, 200, device_time=1_500_000)]
    prof = SimpleNamespace(events=lambda: events,
                           key_averages=lambda: SimpleNamespace(table=lambda **_: ""))
    lines = summarize(prof, wall=3.0, step=2).splitlines()
    assert seconds(lines[0], "generation") == 2.0 and seconds(lines[0], "training half") == 1.0
    # Nor is it a kernel: the generation's GPU was busy with the one kernel only.
    assert lines[1].startswith("  generation: GPU busy 1.500 s of 2.000 s (75%), 1 kernels")
    assert GENERATION_RANGE not in "\n".join(lines[2:])


def test_each_half_lists_its_own_kernels_by_gpu_time():
    """The profiler's table mixes both halves (generation and training share kernel names); the summary
    lists each half's kernels under it, largest first."""
    from types import SimpleNamespace

    from grpo_studio.engine.step_profile import GENERATION_RANGE, summarize

    def event(name, device, start, end, device_time=0.0):
        return SimpleNamespace(name=name, device_type=SimpleNamespace(name=device), device_time=device_time,
                               cpu_time=0.0, time_range=SimpleNamespace(start=start, end=end))

    events = [event(GENERATION_RANGE, "CPU", 0, 2_000_000),
              event("qmm", "CUDA", 100, 200, device_time=300_000), event("qmm", "CUDA", 300, 400, device_time=300_000),
              event("gemm", "CUDA", 500, 600, device_time=100_000),
              event("gemm", "CUDA", 2_500_000, 2_600_000, device_time=700_000)]
    prof = SimpleNamespace(events=lambda: events, key_averages=lambda: SimpleNamespace(table=lambda **_: ""))
    lines = summarize(prof, wall=3.0, step=2).splitlines()
    gen, train = lines.index(next(l for l in lines if l.startswith("  generation"))), \
        lines.index(next(l for l in lines if l.startswith("  training half")))
    assert "600.0 ms" in lines[gen + 1] and "2 x  qmm" in lines[gen + 1] and "85.7%" in lines[gen + 1]
    assert "1 x  gemm" in lines[gen + 2] and gen + 3 == train
    assert "700.0 ms" in lines[train + 1] and "gemm" in lines[train + 1]


def test_shapes_add_the_operators_by_input_shape(tmp_path, monkeypatch):
    out = tmp_path / "profile.txt"
    monkeypatch.setenv("GRPO_STUDIO_PROFILE_OUT", str(out))
    monkeypatch.setenv("GRPO_STUDIO_PROFILE_SHAPES", "1")
    fake_step(StepProfiler(1), global_step=0)
    assert "[[64, 64], [64, 64]]" in out.read_text()  # the matmul's input shapes name it
