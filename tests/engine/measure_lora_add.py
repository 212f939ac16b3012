"""Micro-benchmark of LoRA's low-rank add: torch.addmm against lora_add's Triton kernel.

Run on a GPU, from the repository root (under a minute on an H200):

    python tests/engine/measure_lora_add.py

The shapes are the 7B training half's (a packed micro-batch of 8,732 tokens, fixed lengths, as profiled
on an H200): the gate/up outputs [T, 18944], q/o/down [T, 3584], k/v [T, 512], rank 16, bf16. Each
launch is timed with CUDA events (median of 30 after 5 warm-ups); GB/s counts the output read and
written once (the least a sum can move). The kernel's launch shapes are swept; "shipped" is lora_add's.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from grpo_studio.engine import lora_add  # noqa: E402

TOKENS, RANK = 8732, 16
WIDTHS = {"gate/up": 18944, "q/o/down": 3584, "k/v": 512}
SWEEP = [(64, 128, 8), (64, 128, 4), (128, 128, 8), (64, 256, 8), (32, 128, 4), (128, 64, 8)]


def timed(fn, reps: int = 30) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3)
    return statistics.median(times)


def launch(out, base, xa, b, block_t, block_n, warps):
    import triton

    T, N = base.shape
    grid = (triton.cdiv(T, block_t), triton.cdiv(N, block_n))
    lora_add._JIT[grid](out, base, xa, b, T, N, xa.shape[1], 2.0, BLOCK_T=block_t, BLOCK_N=block_n,
                        BLOCK_R=max(16, triton.next_power_of_2(xa.shape[1])), num_warps=warps)


def main() -> None:
    print(f"device: {torch.cuda.get_device_name()}")
    rows = []
    for name, width in WIDTHS.items():
        g = torch.Generator("cuda").manual_seed(0)
        base = torch.randn(TOKENS, width, device="cuda", generator=g).bfloat16()
        xa = torch.randn(TOKENS, RANK, device="cuda", generator=g).bfloat16()
        b = torch.randn(width, RANK, device="cuda", generator=g).bfloat16()
        out = torch.empty_like(base)
        ref = torch.addmm(base, xa, b.t(), alpha=2.0)
        launch(out, base, xa, b, lora_add.BLOCK_T, lora_add.BLOCK_N, lora_add.NUM_WARPS)
        differ = (out != ref).float().mean().item()
        nbytes = 2 * base.numel() * base.element_size()
        results = {"addmm": timed(lambda: torch.addmm(base, xa, b.t(), alpha=2.0)),
                   "shipped": timed(lambda: lora_add.add_low_rank(base, xa, b, 2.0))}
        for bt, bn, w in SWEEP:
            results[f"{bt}x{bn} w{w}"] = timed(lambda: launch(out, base, xa, b, bt, bn, w))
        for label, us in results.items():
            rows.append((name, label, us, nbytes / us / 1e3))
        print(f"{name}: outputs differing from addmm's: {differ:.2e}")
    print(f"{'output':10} {'launch':14} {'us':>9} {'GB/s':>8}")
    for name, label, us, gbs in rows:
        print(f"{name:10} {label:14} {us:9.1f} {gbs:8.0f}")


if __name__ == "__main__":
    main()
