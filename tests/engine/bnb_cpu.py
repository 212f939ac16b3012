"""bitsandbytes on the CPU as the tests' reference: computing what a GPU computes, whatever the CPU.

bitsandbytes 0.50 runs a native 4-bit dequantize on CPUs with AVX-512, and that kernel blocks each
row on its own: wrong for blocks that straddle rows, which the tiny test shapes have (on a 40x96 weight
with 64-value blocks, mean error 0.042 against the original weight, where its portable code gives
0.0076), and not what bitsandbytes computes on a GPU. The tests that take bitsandbytes on the CPU as
their reference route that op to bitsandbytes' own portable implementation (`backends.default`), the
one CPUs without AVX-512 run. And on CPUs with AVX-512 BF16 its first inference forward repacks a
4-bit weight in place into a CPU-only layout (failing for tiny shapes); `keep_gpu_layout` turns that
off. Nothing outside the tests is changed.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

_library: Any = None  # the registration lives as long as this library object


def use_portable_dequantize() -> None:
    global _library
    if _library is not None:
        return
    try:
        from bitsandbytes.backends.default.ops import _dequantize_4bit_compute
        from bitsandbytes.backends.utils import _get_4bit_code
    except ImportError:  # another layout of bitsandbytes' internals: leave it as it is
        return

    def portable(A, absmax, blocksize, quant_type, shape, dtype):  # bitsandbytes' op signature
        if A.dtype != torch.uint8:
            A = A.view(torch.uint8)
        return _dequantize_4bit_compute(A.reshape(-1), absmax, _get_4bit_code(quant_type, A.device), blocksize,
                                        shape, dtype)

    # bitsandbytes registered its own CPU kernel from Python; older torch (2.11) refuses a second one unless
    # told to override it (`torch.library.register_kernel` does not say so), newer torch only warns.
    library = torch.library.Library("bitsandbytes", "FRAGMENT")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Overriding a previously registered kernel": that is the point
        try:
            library.impl("bitsandbytes::dequantize_4bit", portable, "CPU", allow_override=True)
        except TypeError:  # a torch from before the flag: it overrides without asking
            library.impl("bitsandbytes::dequantize_4bit", portable, "CPU")
    _library = library


def keep_gpu_layout(model: Any) -> Any:
    """The model's 4-bit layers keep the layout every GPU reads (the one under test) on the CPU too."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
    return model
