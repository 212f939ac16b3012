"""A torch.profiler record of one GRPO step, split into its generation and its training half.

`grpo-studio bench` uses it (GRPO_STUDIO_PROFILE_STEP=N) on either arm. The training half of a step
can be bound by the GPU, by the CPU launching kernels, or by the CPU waiting at synchronization
points that drain the GPU's queue (a `.item()`, a copy from pageable host memory); the summary gives
the numbers that tell these apart. GRPO_STUDIO_PROFILE_PHASE=training starts the record when the
step's generation ends (TRL's generate launches hundreds of thousands of kernels);
GRPO_STUDIO_PROFILE_SHAPES=1 adds the operators by input shape, which says which projection or norm an
`aten::mul` or `aten::copy_` belongs to (the sizes name it: hidden, intermediate, vocabulary).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

GENERATION_RANGE = "grpo_studio.generation"  # the name generation runs under in a profile
LAUNCHES = ("cudaLaunchKernel", "cuLaunchKernelEx", "cudaLaunchKernelExC", "cudaGraphLaunch")
SYNCS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaMemcpyAsync", "cudaEventSynchronize")


_armed: list[StepProfiler] = []  # profilers waiting for a generation's end to start recording


@contextlib.contextmanager
def generation_range() -> Iterator[None]:
    """Marks a generation in a profile (a few microseconds when no profiler runs)."""
    import torch

    with torch.profiler.record_function(GENERATION_RANGE):
        yield
    while _armed:
        _armed.pop()._start()


class StepProfiler:
    """Call `begin(global_step)` at every step's start and `end()` at its end; optimizer step `step`
    (1-based) is profiled and its summary printed (and written to GRPO_STUDIO_PROFILE_OUT)."""

    def __init__(self, step: int) -> None:
        self.step = step
        self._prof: Any = None
        self._t = 0.0
        self._unrecorded = 0.0  # seconds of the step before the record started
        self._syncs: Any = None  # SyncCallers while recording, with GRPO_STUDIO_PROFILE_SYNCS=1

    @classmethod
    def from_env(cls) -> StepProfiler | None:
        step = int(os.environ.get("GRPO_STUDIO_PROFILE_STEP", "0") or 0)
        return cls(step) if step > 0 else None

    def begin(self, global_step: int) -> None:
        if global_step + 1 != self.step:
            return
        self._t = time.perf_counter()
        if os.environ.get("GRPO_STUDIO_PROFILE_PHASE", "") == "training":
            _armed.append(self)
        else:
            self._start()

    def _start(self) -> None:
        from torch.profiler import ProfilerActivity, profile

        self._unrecorded = time.perf_counter() - self._t
        shapes = os.environ.get("GRPO_STUDIO_PROFILE_SHAPES", "") == "1"
        self._prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=shapes)
        self._prof.__enter__()
        if os.environ.get("GRPO_STUDIO_PROFILE_SYNCS", "") == "1":
            from grpo_studio.engine.sync_callers import SyncCallers

            self._syncs = SyncCallers()
            self._syncs.start()

    def end(self) -> None:
        if self in _armed:  # a step without a generation: nothing was recorded, and nothing will be
            _armed.remove(self)
        if self._prof is None:
            return
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
        wall = time.perf_counter() - self._t
        prof, self._prof = self._prof, None
        callers = self._syncs.stop() if self._syncs is not None else []
        self._syncs = None
        prof.__exit__(None, None, None)
        text = "\n".join([summarize(prof, wall, self.step, self._unrecorded), *callers])
        out = os.environ.get("GRPO_STUDIO_PROFILE_OUT")
        if out:
            Path(out).write_text(text)
        print("\n".join([line for line in text.splitlines() if line.startswith(("PROFILE", "  gen", "  tra"))][:3]),
              flush=True)


def summarize(prof: Any, wall: float, step: int, unrecorded: float = 0.0) -> str:
    events = list(prof.events())
    # The range's CPU events only: the profiler also records a GPU-side copy of a named range, whose
    # span (first to last kernel inside it) would count the same generation twice.
    ranges = [(e.time_range.start, e.time_range.end) for e in events
              if e.name == GENERATION_RANGE and e.device_type.name == "CPU"]
    gen_wall = sum(b - a for a, b in ranges) / 1e6

    def in_generation(e: Any) -> bool:
        t = e.time_range.start
        return any(a <= t <= b for a, b in ranges)

    # The range's GPU-side copy is no kernel: counted, it made the generation's GPU "busy" 190% of its time.
    kernels = [e for e in events if e.device_type.name == "CUDA" and e.name != GENERATION_RANGE]
    cpu = [e for e in events if e.device_type.name == "CPU"]
    if not ranges:  # recorded from the generation's end (GRPO_STUDIO_PROFILE_PHASE=training)
        gen_wall = unrecorded
    head = f"PROFILE step {step}: wall {wall:.3f} s, generation {gen_wall:.3f} s, training half {wall - gen_wall:.3f} s"
    lines = [head]
    for phase, inside in (("generation", True), ("training half", False)):
        ks = [e for e in kernels if in_generation(e) == inside]
        busy = sum(e.device_time for e in ks) / 1e6
        launches = sum(1 for e in cpu if e.name in LAUNCHES and in_generation(e) == inside)
        syncs = {name: [e for e in cpu if e.name == name and in_generation(e) == inside] for name in SYNCS}
        span = gen_wall if inside else wall - gen_wall
        sync_text = ", ".join(f"{name} {len(es)} x ({sum(e.cpu_time for e in es) / 1e3:.0f} ms)"
                              for name, es in syncs.items() if es)
        lines.append(f"  {phase}: GPU busy {busy:.3f} s of {span:.3f} s ({busy / max(span, 1e-9):.0%}), "
                     f"{len(ks)} kernels, {launches} launches; waits: {sync_text or 'none'}")
        lines += kernel_table(ks, busy)
    averages = prof.key_averages()
    lines += [averages.table(sort_by="self_cuda_time_total", row_limit=30, max_name_column_width=70),
              averages.table(sort_by="self_cpu_time_total", row_limit=30, max_name_column_width=70)]
    if os.environ.get("GRPO_STUDIO_PROFILE_SHAPES", "") == "1":
        by_shape = prof.key_averages(group_by_input_shape=True)
        lines.append(by_shape.table(sort_by="self_cuda_time_total", row_limit=60, max_name_column_width=40,
                                    max_shapes_column_width=90))
    return "\n".join(lines)


def kernel_table(kernels: list[Any], busy: float, top: int = 25) -> list[str]:
    """One phase's kernels by GPU time, grouped by name. The profiler's own table mixes the two
    halves of the step (a generation's projections and the training forward share kernel names)."""
    totals: dict[str, list[float]] = {}
    for e in kernels:
        entry = totals.setdefault(e.name, [0.0, 0])
        entry[0] += e.device_time / 1e6
        entry[1] += 1
    rows = sorted(totals.items(), key=lambda kv: -kv[1][0])[:top]
    return [f"    {seconds * 1e3:9.1f} ms {seconds / max(busy, 1e-9):6.1%} {count:7d} x  {name[:90]}"
            for name, (seconds, count) in rows]
