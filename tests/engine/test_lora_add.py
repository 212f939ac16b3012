"""The low-rank add (lora_add.py) computes base + scale * xa B^T in float32, rounded once."""

from __future__ import annotations

import pytest
import torch
from hopper_compile import resource_usage

from grpo_studio.engine import lora_add

needs_triton = pytest.mark.skipif(lora_add.tl is None, reason="Triton is not installed")


def operands(T, N, R, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(T, N, generator=g).to(dtype)
    xa = torch.randn(T, R, generator=g).to(dtype)
    b = (torch.randn(N, R, generator=g) * 0.3).to(dtype)
    return base, xa, b


@needs_triton
@pytest.mark.parametrize("T,N,R", [(70, 200, 16), (5, 130, 4), (64, 128, 33), (1, 17, 1)])  # tails, ranks < 16
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_the_kernel_gives_addmms_sum(T, N, R, dtype):
    base, xa, b = operands(T, N, R, dtype)
    out = lora_add.add_low_rank(base, xa, b, 0.5, backend="interpret")
    # addmm on the CPU: the product in float32, scaled and added to the base, rounded once
    ref = (base.float() + 0.5 * (xa.float() @ b.float().t())).to(dtype)
    assert out.dtype == dtype and out.shape == (T, N)
    mismatched = (out != ref).float().mean().item()
    assert mismatched < 0.01  # a value on a rounding boundary may land on the other side (summation order)
    assert (out.float() - ref.float()).abs().max() <= ref.float().abs().max() * 2 ** -7
    assert torch.equal(base, operands(T, N, R, dtype)[0])  # the base is read, not written


def test_calls_the_kernel_is_not_written_for_go_to_addmm():
    base, xa, b = operands(8, 32, 80, torch.bfloat16)  # rank above MAX_RANK
    assert not lora_add.serves(base, xa, b)
    assert torch.equal(lora_add.add_low_rank(base, xa, b, 2.0, backend="interpret"),
                       torch.addmm(base, xa, b.t(), alpha=2.0))
    base, xa, b = operands(8, 32, 16, torch.float32)
    assert not lora_add.serves(base, xa, b)
    assert not lora_add.serves(base.t(), xa, b)  # not contiguous
    assert lora_add.serves(*operands(8, 32, 16, torch.bfloat16))


@needs_triton
@pytest.mark.parametrize("rank_pad", [16, 64])
@pytest.mark.parametrize("aligned", [True, False], ids=["sizes divisible by 16", "any sizes"])
def test_the_kernel_compiles_for_hopper_without_spills(rank_pad, aligned):
    """What the interpreter forgives, the compiler doesn't: sm_90 with Triton's own ptxas, no GPU needed."""
    pytest.importorskip("triton.backends.nvidia")
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = lora_add._JIT
    const = dict(BLOCK_T=lora_add.BLOCK_T, BLOCK_N=lora_add.BLOCK_N, BLOCK_R=rank_pad)
    types = {"out_ptr": "*bf16", "base_ptr": "*bf16", "xa_ptr": "*bf16", "b_ptr": "*bf16", "scale": "fp32"}
    signature = {n: "constexpr" if n in const else types.get(n, "i32") for n in fn.arg_names}
    divisible = ("out_ptr", "base_ptr", "xa_ptr", "b_ptr", "N", "R") if aligned else ()
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(fn.arg_names) if n in divisible}
    src = ASTSource(fn, signature, constexprs=const, attrs=attrs)
    kernel = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": lora_add.NUM_WARPS})
    ptx = kernel.asm["ptx"]
    assert "mma" in ptx  # the rank-r product on the tensor cores
    assert ("st.global.v4" in ptx) == aligned  # rows of 8 values stored at once where Triton knows they align
    usage = resource_usage(kernel)
    assert usage["REG"] > 0 and usage["STACK"] == 0 and usage["LOCAL"] == 0, usage  # no register spills


@pytest.mark.skipif(not torch.cuda.is_available() or lora_add.tl is None, reason="needs a CUDA GPU and Triton")
@pytest.mark.parametrize("T,N,R", [(8732, 3584, 16), (300, 18944, 8), (77, 131, 64)])
def test_on_a_gpu_the_kernel_rounds_the_sum_once_and_is_as_close_as_addmm(T, N, R, monkeypatch):
    base, xa, b = (t.cuda() for t in operands(T, N, R, torch.bfloat16))
    exact = base.double() + 0.5 * (xa.double() @ b.double().t())
    out = lora_add.add_low_rank(base, xa, b, 0.5)
    # rounded once: off only where float32's summation order tips a value over a rounding boundary
    assert (out != exact.to(torch.bfloat16)).float().mean().item() < 0.01
    addmm = torch.addmm(base, xa, b.t(), alpha=0.5)  # cuBLAS rounds twice (call U: a quarter of the values)
    assert (out.double() - exact).abs().mean() <= (addmm.double() - exact).abs().mean()
    monkeypatch.setenv("GRPO_STUDIO_LORA_ADD", "0")
    assert torch.equal(lora_add.add_low_rank(base, xa, b, 0.5), addmm)  # the knob: addmm itself
