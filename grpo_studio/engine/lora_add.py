"""base + scale * xa B^T in one pass over the output: LoRA's update added to a projection's output.

Why: the fused LoRA update (fused_lora.py) added its low-rank product with `torch.addmm(result, xa, B^T)`.
With a rank of 16 that is a matrix product with one step of K and an output the size of the layer's:
all memory traffic (read the base output, write the sum), which cuBLAS moved at ~1.5 TB/s on an H200.
This kernel reads `base` and writes the sum once, the rank-r product computed in registers on the way:
at the 7B training half's shapes (8,732 tokens, rank 16; `tests/engine/measure_lora_add.py`, H200) the
gate/up outputs [T, 18944] took 195-210 us against addmm's 444, q/o/down [T, 3584] 56-67 against 98.

The sum is rounded once: the product accumulated in float32, scaled, added to the base value in float32,
then rounded to the output dtype. cuBLAS's addmm differs from that by one unit in the last place in about
a quarter of the values at these shapes (it rounds twice, by the look of it); the kernel's is the float32
sum correctly rounded (tests).
"""

from __future__ import annotations

import os
from typing import Any

import torch

try:  # Triton ships with CUDA builds of PyTorch; without it addmm serves every call.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = tl = None

MAX_RANK = 64  # above it the [tokens, rank] tile crowds the registers: addmm serves
# The fastest of six launch shapes at all three output widths (measure_lora_add.py, H200, by 3-5%):
# 54 registers a thread where Triton sees the sizes divisible by 16 (vector loads and stores).
BLOCK_T, BLOCK_N, NUM_WARPS = 32, 128, 4


if tl is not None:
    def _add_low_rank_kernel(out_ptr, base_ptr, xa_ptr, b_ptr, T, N, R, scale,
                             BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_R: tl.constexpr):
        rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
        cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        r = tl.arange(0, BLOCK_R)
        # xa [T, R] and B [N, R], contiguous; the rank padded to BLOCK_R (>= 16, tl.dot's least) with zeros.
        xa = tl.load(xa_ptr + rows[:, None] * R + r[None, :], mask=(rows[:, None] < T) & (r[None, :] < R), other=0.0)
        bt = tl.load(b_ptr + cols[None, :] * R + r[:, None], mask=(cols[None, :] < N) & (r[:, None] < R), other=0.0)
        product = tl.dot(xa, bt)  # float32 [BLOCK_T, BLOCK_N]
        inside = (rows[:, None] < T) & (cols[None, :] < N)
        offsets = rows[:, None].to(tl.int64) * N + cols[None, :]
        base = tl.load(base_ptr + offsets, mask=inside, other=0.0)
        total = base.to(tl.float32) + scale * product
        tl.store(out_ptr + offsets, total.to(out_ptr.dtype.element_ty), mask=inside)

    _JIT = triton.jit(_add_low_rank_kernel)
_INTERPRETED: Any = None


def add_low_rank(base: torch.Tensor, xa: torch.Tensor, b: torch.Tensor, scale: float,
                 backend: str | None = None) -> torch.Tensor:
    """base + scale * xa @ b.T as a new tensor, for 2-D `base` [T, N], `xa` [T, r], `b` [N, r] of one dtype.
    backend: "triton" (CUDA), "interpret" (Triton's CPU interpreter, for tests) or "torch" (addmm);
    default: Triton on CUDA where it can serve the call, else addmm (always with GRPO_STUDIO_LORA_ADD=0,
    a measurement's knob)."""
    if backend is None:
        on = base.is_cuda and tl is not None and os.environ.get("GRPO_STUDIO_LORA_ADD", "1") != "0"
        backend = "triton" if on else "torch"
    if backend != "torch" and not serves(base, xa, b):
        backend = "torch"
    if backend == "torch":
        return torch.addmm(base, xa, b.t(), alpha=scale)
    T, N = base.shape
    R = xa.shape[1]
    out = torch.empty_like(base)
    grid = (triton.cdiv(T, BLOCK_T), triton.cdiv(N, BLOCK_N))
    kernel = _JIT if backend == "triton" else _interpreted()
    kernel[grid](out, base, xa.contiguous(), b.contiguous(), T, N, R, float(scale),
                 BLOCK_T=BLOCK_T, BLOCK_N=BLOCK_N, BLOCK_R=max(16, triton.next_power_of_2(R)), num_warps=NUM_WARPS)
    return out


def serves(base: torch.Tensor, xa: torch.Tensor, b: torch.Tensor) -> bool:
    """What the kernel is written for: a contiguous 16-bit output and operands of its dtype, rank <= MAX_RANK."""
    return (base.dim() == 2 and base.is_contiguous() and base.dtype in (torch.bfloat16, torch.float16)
            and xa.dtype == b.dtype == base.dtype and 0 < xa.shape[1] <= MAX_RANK and base.numel() > 0)


def _interpreted() -> Any:
    global _INTERPRETED
    if _INTERPRETED is None:
        from grpo_studio.engine.triton_cpu import interpreted_kernel

        _INTERPRETED = interpreted_kernel(_add_low_rank_kernel)
    return _INTERPRETED
