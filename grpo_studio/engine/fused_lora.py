"""LoRA's update in three matrix products forward and five backward, instead of PEFT's op-by-op graph.

Why: the training half of a GRPO step on a GPU is bound by kernel launches, not arithmetic (measured
on an H200 at the Qwen2.5-1.5B shape: ~10,600 launches per micro-step, the GPU idle more than half of
the step). Over a 16-bit base PEFT keeps the adapters in float32, so under bf16 autocast every LoRA
call casts its input to float32 and back, casts both adapter weights, multiplies by the scale and adds:
about ten kernels forward and fifteen backward per projection, with an autograd node for each. This
module computes the same update, result + scale * (x A^T) B^T, as one autograd function:
    forward   xA = x A^T;  out = result + scale * xA B^T  (lora_add.py: one pass over the output on CUDA)
    backward  gB = scale * g B;  grad_x = gB A;  grad_A = gB^T x;  grad_B = scale * g^T xA
in the compute dtype (the autocast dtype, else the input's), with float32 gradients for float32
adapters. The numbers are those of PEFT's computation up to rounding order (tests check it).

Used on CUDA only: a CPU run keeps PEFT's own forward, and with it bit-identity with plain TRL.
Layers it can't serve exactly (dropout > 0, DoRA and other variants, several active adapters, mixed
adapter batches, merged or disabled adapters) call PEFT's forward as before, decided at every call.
"""

from __future__ import annotations

import types
from typing import Any

import torch

from grpo_studio.engine.lora_add import add_low_rank


class _LoraUpdate(torch.autograd.Function):
    """out = result + scale * (x A^T) B^T over the last dimension; result passes its gradient through."""

    @staticmethod
    def forward(ctx: Any, result: torch.Tensor, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                scale: float) -> torch.Tensor:
        dtype = result.dtype
        a_c, b_c = a.to(dtype), b.to(dtype)
        x2 = x.reshape(-1, x.shape[-1]).to(dtype)
        xa = x2 @ a_c.t()
        out = add_low_rank(result.reshape(-1, result.shape[-1]), xa, b_c, scale)  # one pass over the output
        ctx.save_for_backward(x2, xa, a_c, b_c)
        ctx.scale, ctx.x_shape, ctx.x_dtype = scale, x.shape, x.dtype
        ctx.a_dtype, ctx.b_dtype = a.dtype, b.dtype
        return out.view(result.shape)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        x2, xa, a_c, b_c = ctx.saved_tensors
        g2 = grad.reshape(-1, grad.shape[-1]).to(xa.dtype)
        gb = (g2 @ b_c).mul_(ctx.scale)  # (tokens, r)
        grad_x = grad_a = grad_b = None
        if ctx.needs_input_grad[1]:
            grad_x = (gb @ a_c).view(ctx.x_shape).to(ctx.x_dtype)
        if ctx.needs_input_grad[2]:
            grad_a = (gb.t() @ x2).to(ctx.a_dtype)
        if ctx.needs_input_grad[3]:
            grad_b = (g2.t() @ xa).to(ctx.b_dtype).mul_(ctx.scale)
        return grad, grad_x, grad_a, grad_b, None


def _fused_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """A PEFT LoRA layer's forward through `_LoraUpdate` where that is exact, else PEFT's own."""
    adapter = _plain_adapter(self, kwargs)
    if adapter is None:
        return type(self).forward(self, x, *args, **kwargs)
    # The base layer's output dtype is the compute dtype (autocast's, or the model's): the update runs in it.
    result = self.base_layer(x, *args, **kwargs)
    return _LoraUpdate.apply(result, x, self.lora_A[adapter].weight, self.lora_B[adapter].weight,
                             float(self.scaling[adapter]))


def _plain_adapter(layer: Any, kwargs: dict[str, Any]) -> str | None:
    """The one active vanilla LoRA adapter without dropout, or None when PEFT's forward must run."""
    if layer.disable_adapters or layer.merged or kwargs.get("adapter_names") is not None:
        return None
    active = [a for a in layer.active_adapters if a in layer.lora_A]
    if len(active) != 1:
        return None
    name = active[0]
    if name in getattr(layer, "lora_variant", {}) or not isinstance(layer.lora_dropout[name], torch.nn.Identity):
        return None
    return name


def install(model: Any) -> int:
    """Route the model's LoRA linear layers through the fused update; returns how many were."""
    from peft.tuners.lora import LoraLayer

    count = 0
    for module in model.modules():
        if isinstance(module, LoraLayer) and hasattr(module, "base_layer") and \
                isinstance(getattr(module, "lora_A", None), torch.nn.ModuleDict) and \
                isinstance(_base_linear(module), torch.nn.Linear):
            module.forward = types.MethodType(_fused_forward, module)
            count += 1
    return count


def _base_linear(module: Any) -> Any:
    base = module.base_layer
    while hasattr(base, "base_layer"):
        base = base.base_layer
    return base
