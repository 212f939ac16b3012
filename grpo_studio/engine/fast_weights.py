"""The projection weights a FastGenerator computes with, in one of two modes.

A layer's projections come in four groups that share an input: q/k/v, gate/up, o, down. Each
group is one of:
- `MergedProjection` ("merged" mode): a 16-bit copy of the stacked weights with every active LoRA
  update merged in (W + s B A; a quantized base is dequantized first), one dense matmul per group.
  A lone 16-bit layer without adapters is used as it is (no copy).
- `QuantProjection` ("quantized" mode, 4-bit or 8-bit bitsandbytes base): the quantized weights
  read in place by `quant_matmul`'s kernel, no 16-bit copy at all. The LoRA update stays low-rank:
  the group's A matrices stacked ([R, K], R = rank x adapted layers) give x A^T in one small matmul,
  and a block-diagonal stack of s * B ([N, R]) is applied in the kernel's epilogue. Both stacks are
  small copies refreshed in place by `refresh()` (after each optimizer step: a few MB at 7B).
  A prefill (many tokens) dequantizes one weight at a time with bitsandbytes' own kernel and
  multiplies densely: transient memory of one 16-bit weight, freed before the next.

`planned_bytes` of each class predicts, without allocating anything, what its constructor will
allocate; `FastGenerator.planned_extra_bytes` sums it over a model (vram.generation_weight_bytes
computes the same from a config.json's sizes alone, for the estimate before loading).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

QUANT_PARAMS = ("Params4bit", "Int8Params")


class Unsupported(Exception):
    """This model or setting can't use the fast path (the reason says why)."""


# ---- reading weights out of a (PEFT, bitsandbytes) model -------------------------------------


def causal_lm(model: Any) -> Any:
    """The transformers CausalLM inside DDP / PeftModel wrappers."""
    while hasattr(model, "module") and not hasattr(model, "config"):
        model = model.module  # DistributedDataParallel
    base = getattr(model, "base_model", None)
    if base is not None and hasattr(base, "model") and hasattr(model, "peft_config"):
        model = base.model  # PeftModel -> LoraModel -> CausalLM (with LoRA layers inside)
    return model


def base_linear(module: Any) -> Any:
    return getattr(module, "base_layer", None) or module


def is_quantized(module: Any) -> bool:
    return type(base_linear(module).weight).__name__ in QUANT_PARAMS


def _active_adapters(module: Any) -> list[str]:
    """The LoRA adapters of a PEFT layer that act in its forward now (none when merged or disabled)."""
    if getattr(module, "base_layer", None) is None or getattr(module, "disable_adapters", False) \
            or getattr(module, "merged", False):
        return []
    names = [name for name in module.active_adapters if name in module.lora_A]
    magnitude = getattr(module, "lora_magnitude_vector", None) or {}
    if any(name in magnitude for name in names):
        raise Unsupported("DoRA adapters")
    return names


def _lora_deltas(module: Any) -> list[torch.Tensor]:
    """The active LoRA updates (scale * B @ A) of a PEFT layer, not yet merged into its base."""
    return [module.get_delta_weight(name) for name in _active_adapters(module)]


def lora_factors(module: Any) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
    """(A [r, in], B [out, r], scale) of each active plain-LoRA adapter of a PEFT layer."""
    out = []
    for name in _active_adapters(module):
        if name in getattr(module, "lora_variant", {}):
            raise Unsupported(f"LoRA variant {type(module.lora_variant[name]).__name__} (only plain LoRA "
                              "can stay low-rank; use weights='merged')")
        if getattr(module, "lora_bias", {}).get(name) or getattr(module, "fan_in_fan_out", False):
            raise Unsupported("LoRA with a bias or fan_in_fan_out (use weights='merged')")
        out.append((module.lora_A[name].weight, module.lora_B[name].weight, float(module.scaling[name])))
    return out


def _dense(module: Any, dtype: torch.dtype) -> torch.Tensor:
    """A plain tensor for a linear layer's (possibly bitsandbytes-quantized) weight."""
    weight = module.weight
    name = type(weight).__name__
    if name == "Params4bit":
        import bitsandbytes.functional as bnbf

        return bnbf.dequantize_4bit(weight.data, weight.quant_state).to(dtype)
    if name == "Int8Params":
        from grpo_studio.engine.quant_matmul import dequantize

        return dequantize(_quant_weight(module), dtype)
    return weight.data


def _quant_weight(module: Any) -> Any:
    from grpo_studio.engine.quant_matmul import QuantFormatError, QuantWeight

    try:
        return QuantWeight.from_param(module.weight, module)
    except QuantFormatError as exc:
        raise Unsupported(str(exc)) from exc


def write_projection(module: Any, dest: torch.Tensor) -> None:
    """dest <- the layer's weight as the policy computes it now: base + merged LoRA updates."""
    dest.copy_(_dense(base_linear(module), dest.dtype))
    for delta in _lora_deltas(module):
        dest.add_(delta.to(dest.dtype))


def is_shared(module: Any, dtype: torch.dtype) -> bool:
    """A plain 16-bit layer without adapters: the generator can use its weight as it is."""
    weight = base_linear(module).weight
    return not _active_adapters(module) and type(weight).__name__ not in QUANT_PARAMS and weight.dtype == dtype


def module_weight(module: Any) -> torch.Tensor:
    """Embeddings and norms: PEFT's modules_to_save copies win over the frozen originals."""
    saved = getattr(module, "modules_to_save", None)
    if saved is not None:
        active = module.active_adapter
        module = saved[active if isinstance(active, str) else active[0]]
    return module.weight


def _stacked_bias(modules: Sequence[Any], dtype: torch.dtype) -> torch.Tensor | None:
    biases = [base_linear(m).bias for m in modules]
    if all(b is None for b in biases):
        return None
    device = base_linear(modules[0]).weight.device
    return torch.cat([b.data.to(dtype) if b is not None else
                      torch.zeros(base_linear(m).out_features, dtype=dtype, device=device)
                      for m, b in zip(modules, biases)])


def _bias_bytes(modules: Sequence[Any], dtype: torch.dtype) -> int:
    if all(base_linear(m).bias is None for m in modules):
        return 0
    return sum(base_linear(m).out_features for m in modules) * _itemsize(dtype)


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


# ---- the two kinds of projection group ---------------------------------------------------------


class MergedProjection:
    """Stacked layers as one 16-bit weight with LoRA merged in (or a lone layer's own weight)."""

    def __init__(self, modules: Sequence[Any], dtype: torch.dtype):
        self.modules = list(modules)
        lin = [base_linear(m) for m in self.modules]
        self.rows = [m.out_features for m in lin]
        self.dtype = dtype
        self.shared = len(self.modules) == 1 and is_shared(self.modules[0], dtype)
        if self.shared:
            self.weight = lin[0].weight  # e.g. an lm_head tied to the embeddings: no copy
        else:
            self.weight = torch.empty(sum(self.rows), lin[0].in_features, dtype=dtype, device=lin[0].weight.device)
        self.bias = _stacked_bias(self.modules, dtype)

    @staticmethod
    def planned_bytes(modules: Sequence[Any], dtype: torch.dtype) -> int:
        lin = [base_linear(m) for m in modules]
        copy = 0 if len(modules) == 1 and is_shared(modules[0], dtype) else \
            sum(m.out_features for m in lin) * lin[0].in_features * _itemsize(dtype)
        return copy + _bias_bytes(modules, dtype)

    def refresh(self) -> None:
        """Re-merge in place: CUDA graphs captured earlier keep pointing at these tensors."""
        if self.shared:
            return
        if self.weight is None:  # released after the last generation: allocate again
            lin = [base_linear(m) for m in self.modules]
            self.weight = torch.empty(sum(self.rows), lin[0].in_features, dtype=self.dtype, device=lin[0].weight.device)
        offset = 0
        for module, rows in zip(self.modules, self.rows):
            write_projection(module, self.weight[offset:offset + rows])
            offset += rows

    def release(self) -> bool:
        """Give the copy back between generations: the training half reuses the memory (PyTorch's
        allocator keeps it cached), and the next `refresh` re-merges into a new one anyway.
        True when something was given back (then a `refresh` must come before the next use)."""
        if self.shared:
            return False
        self.weight = None
        return True

    def nbytes(self) -> int:
        lin = [base_linear(m) for m in self.modules]
        own = 0 if self.shared else sum(self.rows) * lin[0].in_features * _itemsize(self.dtype)
        return own + (0 if self.bias is None else self.bias.numel() * self.bias.element_size())

    def scratch_bytes(self) -> int:
        return 0

    def __call__(self, h: torch.Tensor, prefill: bool = False) -> torch.Tensor:
        return F.linear(h, self.weight, self.bias)


class QuantProjection:
    """Stacked bitsandbytes-quantized layers read in place; LoRA applied as its low-rank product."""

    def __init__(self, modules: Sequence[Any], dtype: torch.dtype):
        from grpo_studio.engine.quant_matmul import QuantFormatError, check_group, missing_kernel

        missing = missing_kernel(base_linear(modules[0]).weight.device)
        if missing:
            raise Unsupported(missing)
        if dtype not in (torch.bfloat16, torch.float16):
            raise Unsupported(f"quantized generation computes in bf16 or fp16, not {dtype}")
        self.modules = list(modules)
        self.dtype = dtype
        self.parts = [_quant_weight(base_linear(m)) for m in self.modules]
        try:
            check_group(self.parts)
        except QuantFormatError as exc:
            raise Unsupported(str(exc)) from exc
        self.cols = self.parts[0].cols
        self.n_total = sum(p.rows for p in self.parts)
        self.bias = _stacked_bias(self.modules, dtype)
        self.factors = [lora_factors(m) for m in self.modules]
        self.rank = sum(a.shape[0] for per_module in self.factors for a, _, _ in per_module)
        device = self.parts[0].data.device
        self.lora_a = torch.empty(self.rank, self.cols, dtype=dtype, device=device) if self.rank else None
        # Block-diagonal: layer i's rows only see its own adapters' rank columns.
        self.lora_b = torch.zeros(self.n_total, self.rank, dtype=dtype, device=device) if self.rank else None

    @staticmethod
    def planned_bytes(modules: Sequence[Any], dtype: torch.dtype) -> int:
        lin = [base_linear(m) for m in modules]
        rank = sum(a.shape[0] for m in modules for a, _, _ in lora_factors(m))
        n_total = sum(m.out_features for m in lin)
        return rank * (lin[0].in_features + n_total) * _itemsize(dtype) + _bias_bytes(modules, dtype)

    def refresh(self) -> None:
        """Copy the live LoRA factors into the stacks, in place (cheap: they are low-rank)."""
        r = row = 0
        for part, per_module in zip(self.parts, self.factors):
            for a, b, scale in per_module:
                self.lora_a[r:r + a.shape[0]].copy_(a)
                self.lora_b[row:row + part.rows, r:r + a.shape[0]].copy_(b * scale)  # one rounding
                r += a.shape[0]
            row += part.rows

    def release(self) -> bool:
        """Nothing to give back between generations: the stacks are small and refreshed in place."""
        return False

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.lora_a, self.lora_b, self.bias) if t is not None)

    def scratch_bytes(self) -> int:
        """Transient bytes of a prefill: the largest weight of the group, dequantized."""
        return max(p.rows * p.cols for p in self.parts) * _itemsize(self.dtype)

    def __call__(self, h: torch.Tensor, prefill: bool = False) -> torch.Tensor:
        from grpo_studio.engine.quant_matmul import quant_linear

        x = h.reshape(-1, self.cols)
        xa = F.linear(x, self.lora_a) if self.rank else None
        if prefill:
            y = torch.cat([F.linear(x, _dequantized(part, self.dtype)) for part in self.parts], dim=-1)
            if self.rank:
                y += F.linear(xa, self.lora_b)
            if self.bias is not None:
                y += self.bias
        else:
            y = quant_linear(x, self.parts, bias=self.bias, lora_xa=xa, lora_b=self.lora_b)
        return y.view(*h.shape[:-1], self.n_total)


def _dequantized(part: Any, dtype: torch.dtype) -> torch.Tensor:
    """One weight in 16 bits for a prefill, by bitsandbytes' own dequantization when 4-bit."""
    if part.kind == "int8":
        from grpo_studio.engine.quant_matmul import dequantize

        return dequantize(part, dtype)
    import bitsandbytes.functional as bnbf

    return bnbf.dequantize_4bit(part.param.data, part.param.quant_state).to(dtype)


def projection(modules: Sequence[Any], dtype: torch.dtype, weights: str) -> MergedProjection | QuantProjection:
    """The group as `weights` mode computes it: quantized only where every layer of it is."""
    if weights == "quantized" and all(is_quantized(m) for m in modules):
        return QuantProjection(modules, dtype)
    return MergedProjection(modules, dtype)


def planned_projection_bytes(modules: Sequence[Any], dtype: torch.dtype, weights: str) -> int:
    if weights == "quantized" and all(is_quantized(m) for m in modules):
        return QuantProjection.planned_bytes(modules, dtype)
    return MergedProjection.planned_bytes(modules, dtype)


def layer_groups(layer: Any) -> dict[str, list[Any]]:
    """A Llama-family decoder layer's projections, grouped by shared input."""
    attn, mlp = layer.self_attn, layer.mlp
    return {"qkv": [attn.q_proj, attn.k_proj, attn.v_proj], "gate_up": [mlp.gate_proj, mlp.up_proj],
            "o": [attn.o_proj], "down": [mlp.down_proj]}
