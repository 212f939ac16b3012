"""Running a Triton kernel on the CPU, through Triton's interpreter, with the GPU's arithmetic.

For tests on machines without a GPU: the kernel source that runs on the GPU runs here too, one
program at a time in NumPy. Triton's interpreter (3.x) differs from the GPU in three ways that
matter to a bf16 kernel, which `interpreted` mends while it runs (and puts back afterwards):
- NumPy has no bf16, so bf16 values travel as their uint16 bits; `tl.dot` multiplied those bits
  as integers. Here bf16 operands are widened to float32 first (exact, as the tensor cores do).
- float32 -> bf16 truncated; the GPU rounds to nearest even (cvt.rn.bf16.f32). bf16 -> float16
  converted the raw bits. Both go through float32 here, rounded as PyTorch (and the GPU) does.
- A loop bound became a Python int through int(one-element array), which NumPy >= 2.4 refuses.
The interpreter is slow (about a millisecond per program and block operation): tiny shapes only.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import torch


def _bf16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    return (np.asarray(bits).astype(np.uint32) << 16).view(np.float32)


def _f32_to_bf16_bits(values: np.ndarray) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).to(torch.bfloat16)
    return t.view(torch.int16).numpy().view(np.uint16)


@contextmanager
def interpreted() -> Iterator[None]:
    """While inside, InterpretedFunction kernels compute as the GPU would (see the module doc)."""
    import triton.language as tl
    from triton.runtime import interpreter as it

    builder = it.InterpreterBuilder
    saved = (builder.cast_impl, builder.create_dot, it._patch_lang_tensor)
    cast, dot, patch_tensor = saved

    def cast_impl(self: Any, src: Any, dst_type: Any) -> Any:
        s, d = src.dtype.scalar, dst_type.scalar
        if s == tl.bfloat16 and d != tl.bfloat16:
            src = it.TensorHandle(_bf16_bits_to_f32(src.data), tl.float32)
            if d == tl.float32:
                return src
            return cast(self, src, dst_type)
        if d == tl.bfloat16 and s != tl.bfloat16:
            return it.TensorHandle(_f32_to_bf16_bits(np.asarray(src.data, dtype=np.float32)), d)
        return cast(self, src, dst_type)

    def create_dot(self: Any, a: Any, b: Any, acc: Any, input_precision: Any, max_num_imprecise_acc: Any) -> Any:
        def wide(h: Any) -> Any:
            if h.dtype.scalar == tl.bfloat16:
                return it.TensorHandle(_bf16_bits_to_f32(h.data), tl.float32)
            return h
        return dot(self, wide(a), wide(b), acc, input_precision, max_num_imprecise_acc)

    def patch_lang_tensor(tensor: Any, scope: Any) -> None:
        patch_tensor(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(np.asarray(self.handle.data).reshape(-1)[0]))

    builder.cast_impl, builder.create_dot, it._patch_lang_tensor = cast_impl, create_dot, patch_lang_tensor
    try:
        yield
    finally:
        builder.cast_impl, builder.create_dot, it._patch_lang_tensor = saved


def interpreted_kernel(fn: Any) -> Any:
    """The undecorated kernel function `fn` as a launchable `kernel[grid](...)` on CPU tensors."""
    from triton.runtime.interpreter import InterpretedFunction

    kernel = InterpretedFunction(fn)

    class _Launcher:
        def __getitem__(self, grid: Any) -> Any:
            def launch(*args: Any, **kwargs: Any) -> Any:
                kwargs.pop("num_warps", None)
                kwargs.pop("num_stages", None)
                with interpreted():
                    return kernel[grid](*args, **kwargs)
            return launch

    return _Launcher()
