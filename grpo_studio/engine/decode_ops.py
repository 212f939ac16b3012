"""The small element-wise steps of a decode step, and their fused (torch.compile) versions.

Why: a decode step of a 28-layer model launches about a thousand kernels, and between the
projections most of them are tiny element-wise ones (RMSNorm as float-cast, norm, cast back and
scale; RoPE as multiply, roll and multiply-add; residual adds; SiLU and multiply). Profiled at
the Qwen2.5-7B shape in 4-bit on an H200 (`GRPO_STUDIO_PROFILE_STEP`, call G of 2026-12-02),
such kernels took ~1.4 ms of an 8.7 ms step, and the gaps between kernels more. Compiled, each
group below becomes one kernel: the residual add with the norm that follows it, RoPE of queries
and keys (with Qwen3's per-head norms), the gated activation.

The functions are the generator's arithmetic as it was (`FusedOps(compiled=False)` runs them as
they are); compiled, Inductor keeps intermediates in float32 instead of rounding them to bf16
between kernels, so the fused step differs from the eager one by about one bf16 rounding.

A compilation that fails (no C compiler, an old Triton) is said once, through `on_failure`, and
the eager functions serve from then on. GRPO_STUDIO_FUSED_DECODE=0 turns fusion off, =1 turns it
on where it is off by default (the CPU, for tests).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F


def rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """The Llama-family RMSNorm (normalize in float32, scale in the input dtype)."""
    return weight * F.rms_norm(x.float(), (x.shape[-1],), eps=eps).to(x.dtype)


def add_rms(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The residual stream after adding `y`, and its norm (the next projection's input)."""
    x = x + y
    return x, rms(x, weight, eps)


def rope_qk(qkv: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor, heads: int, kv_heads: int,
            q_norm: tuple[torch.Tensor, float] | None,
            k_norm: tuple[torch.Tensor, float] | None) -> torch.Tensor:
    """Queries and keys of one token per row, rotated: (B, 1, heads + kv_heads, D) from the fused q/k/v
    output (B, 1, (heads + 2 kv_heads) D). rotate_half(x) * sin == roll(x, D/2) * sin_signed."""
    B, D = qkv.shape[0], cos.shape[-1]
    qk = qkv[..., :(heads + kv_heads) * D].view(B, 1, heads + kv_heads, D)
    if q_norm is not None:  # Qwen3: per-head norms before the rotation
        qk = torch.cat([rms(qk[:, :, :heads], *q_norm), rms(qk[:, :, heads:], *k_norm)], dim=2)
    return torch.addcmul(qk * cos, qk.roll(D // 2, dims=-1), sin_signed)


def gated(gate_up: torch.Tensor, inter: int, act: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """act(gate) * up, from the fused gate/up output."""
    gate, up = gate_up.split(inter, dim=-1)
    return act(gate) * up


EAGER = {"rms": rms, "add_rms": add_rms, "rope_qk": rope_qk, "gated": gated}


def plain_activation(module: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function an activation module computes, when it is one the compiler may treat as a constant:
    every layer has its own activation module, and a compiled function guards on the identity of a module
    it is given (a compilation per layer). Anything else is returned as it is (and runs eagerly)."""
    if type(module).__name__ in ("SiLU", "SiLUActivation"):
        return F.silu
    return module


def fusion_wanted(device: torch.device) -> bool:
    """On by default on CUDA with Triton (Inductor's GPU code is Triton; without it, as on most Windows
    installs, nothing is tried and nothing is said); see the module doc."""
    chosen = os.environ.get("GRPO_STUDIO_FUSED_DECODE", "")
    if chosen in ("0", "1"):
        return chosen == "1"
    from torch.utils._triton import has_triton_package

    return device.type == "cuda" and has_triton_package()


class FusedOps:
    """`ops.add_rms(...)` etc.: the compiled function while compilation works, else the eager one."""

    def __init__(self, compiled: bool, on_failure: Callable[[str], None] | None = None):
        self.on_failure = on_failure
        self.failure: str | None = None
        self.compile_seconds = 0.0  # the first calls' time: compilation, so the first step is slower
        self._unsaid = False  # a failure not yet told to on_failure (it may be set after construction)
        self._called: set[str] = set()
        self._compiled: dict[str, Any] = {}
        if compiled:
            try:  # torch.compile itself refuses some setups (a Python version Dynamo doesn't support yet)
                # dynamic=False: a decode step's shapes are fixed for a generation; a new batch size compiles anew.
                self._compiled = {name: torch.compile(fn, dynamic=False) for name, fn in EAGER.items()}
            except Exception as exc:  # noqa: BLE001 - then the eager arithmetic, said at the first use
                self._failed(exc)

    @property
    def fused(self) -> bool:
        return bool(self._compiled)

    def _failed(self, exc: Exception) -> None:
        self._compiled.clear()
        first_line = (str(exc).strip().splitlines() or [""])[0]  # compiler errors run to pages
        self.failure = f"{type(exc).__name__}: {first_line}"
        self._unsaid = True

    def _call(self, name: str, *args: Any) -> Any:
        fn = self._compiled.get(name)
        if fn is not None:
            first = name not in self._called
            started = time.perf_counter() if first else 0.0
            try:
                out = fn(*args)
                if first:
                    self._called.add(name)
                    self.compile_seconds += time.perf_counter() - started
                return out
            except Exception as exc:  # noqa: BLE001 - any compiler failure: the eager arithmetic is the same
                self._failed(exc)
        if self._unsaid and self.on_failure is not None:
            self._unsaid = False
            self.on_failure(self.failure)
        return EAGER[name](*args)

    def rms(self, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        return self._call("rms", x, weight, eps)

    def add_rms(self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor,
                eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        return self._call("add_rms", x, y, weight, eps)

    def rope_qk(self, qkv: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor, heads: int, kv_heads: int,
                q_norm: Any, k_norm: Any) -> torch.Tensor:
        return self._call("rope_qk", qkv, cos, sin_signed, heads, kv_heads, q_norm, k_norm)

    def gated(self, gate_up: torch.Tensor, inter: int, act: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        if isinstance(act, torch.nn.Module):  # not a plain_activation: see there
            return gated(gate_up, inter, act)
        return self._call("gated", gate_up, inter, act)
