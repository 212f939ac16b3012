"""The fused dequantize-matmul kernel against bitsandbytes, on real quantized weights.

The chain: bitsandbytes' own `dequantize_4bit` == our PyTorch reference `dequantize` (bit for bit),
and the Triton kernel == `reference_linear` (up to float32 summation order). The kernel runs here
through Triton's CPU interpreter (the same source the GPU compiles), and is compiled for sm_90
with Triton's own ptxas to catch what the interpreter forgives (no GPU needed for either). The GPU's
register-table lookup is PTX the interpreter can't run: ptx_emulator.py executes it here.
"""

from __future__ import annotations

import pytest
import torch

bnbf = pytest.importorskip("bitsandbytes.functional")

from bnb_cpu import use_portable_dequantize  # noqa: E402
from hopper_compile import resource_usage  # noqa: E402

from grpo_studio.engine import quant_matmul as qm  # noqa: E402

use_portable_dequantize()  # bitsandbytes' reference as a GPU computes it, on any CPU (bnb_cpu.py)

needs_triton = pytest.mark.skipif(qm.tl is None, reason="Triton is not installed")


def quantized(rows, cols, kind="nf4", nested=True, blocksize=64, dtype=torch.bfloat16, seed=0):
    """A real bitsandbytes 4-bit weight (quantized on the CPU by bitsandbytes itself)."""
    from bitsandbytes.nn import Params4bit

    g = torch.Generator().manual_seed(seed)
    w = (torch.randn(rows, cols, generator=g) * 0.05).to(dtype)
    w[:, : max(1, cols // 7)] *= 4  # some larger columns: the block scales differ
    return Params4bit(w, requires_grad=False, quant_type=kind, compress_statistics=nested,
                      blocksize=blocksize).to("cpu")


def int8_weight(rows, cols, seed=0):
    from bitsandbytes.nn import Int8Params

    g = torch.Generator().manual_seed(seed)
    return Int8Params((torch.randn(rows, cols, generator=g) * 0.05).half(), requires_grad=False,
                      has_fp16_weights=False).to("cpu")


FORMATS = [  # (kind, nested, blocksize, dtype)
    ("nf4", True, 64, torch.bfloat16),
    ("nf4", False, 64, torch.bfloat16),
    ("fp4", True, 64, torch.float16),
    ("fp4", False, 128, torch.bfloat16),
    ("nf4", True, 32, torch.float16),
    ("nf4", False, 256, torch.bfloat16),
]
SHAPES = [(48, 64), (40, 96), (33, 75), (64, 512), (7, 130)]  # blocks straddling rows, odd sizes


@pytest.mark.parametrize("kind,nested,blocksize,dtype", FORMATS)
@pytest.mark.parametrize("rows,cols", SHAPES)
def test_reference_dequantizes_exactly_like_bitsandbytes(kind, nested, blocksize, dtype, rows, cols):
    p = quantized(rows, cols, kind, nested, blocksize, dtype)
    qw = qm.QuantWeight.from_param(p)
    assert (qw.kind, qw.nested, qw.blocksize, qw.dtype) == (kind, nested, blocksize, dtype)
    assert torch.equal(qm.dequantize(qw), bnbf.dequantize_4bit(p.data, p.quant_state))


def test_int8_reference_dequantizes_like_bitsandbytes():
    p = int8_weight(40, 96)
    qw = qm.QuantWeight.from_param(p)
    expected = bnbf.int8_vectorwise_dequant(p.data, p.SCB)
    assert torch.equal(qm.dequantize(qw, torch.float32), expected.half().float())


def test_reference_linear_is_bitsandbytes_dequantize_then_matmul():
    parts = [quantized(48, 64, seed=1), quantized(16, 64, seed=2)]
    qws = [qm.QuantWeight.from_param(p) for p in parts]
    x = torch.randn(5, 64, dtype=torch.bfloat16)
    bias = torch.randn(64, dtype=torch.bfloat16)
    dense = torch.cat([bnbf.dequantize_4bit(p.data, p.quant_state) for p in parts]).float()
    expected = (x.float() @ dense.T + bias.float()).bfloat16()
    assert torch.equal(qm.reference_linear(x, qws, bias), expected)


def _lora(M, n_total, rank, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(M, rank, generator=g).to(dtype), (torch.randn(n_total, rank, generator=g) * 0.1).to(dtype))


def _close(out, ref):
    """Same function up to float32 summation order, then one rounding to the output dtype."""
    assert out.dtype == ref.dtype and out.shape == ref.shape
    err = ((out.float() - ref.float()).norm() / ref.float().norm()).item()
    assert err < 2e-3, err
    assert not torch.isnan(out).any()


@pytest.mark.parametrize("kind,nested,blocksize,dtype", FORMATS)
@pytest.mark.parametrize("rows,cols", [(48, 64), (64, 512)])
def test_register_rounding_is_within_an_ulp_of_bitsandbytes(kind, nested, blocksize, dtype, rows, cols):
    """The register table rounds code and scale to x's dtype, then their product: each weight within
    about a unit in the last place of bitsandbytes' value (3 roundings against 1)."""
    p = quantized(rows, cols, kind, nested, blocksize, dtype)
    qw = qm.QuantWeight.from_param(p)
    ours = qm.register_dequantize(qw, dtype).float()
    theirs = bnbf.dequantize_4bit(p.data, p.quant_state).float()
    ulp = 2.0 ** (-7 if dtype == torch.bfloat16 else -10)  # relative spacing of the dtype's values, at most
    rel = (ours - theirs).abs() / theirs.abs().clamp_min(1e-30)
    assert rel.max().item() <= 1.5 * ulp
    assert torch.equal(ours == 0, theirs == 0)
    # Each code value's own rounding is one fixed error per level (at most half a unit), so the sum
    # drifts a little; truncating instead of rounding would drift by about half a unit or more.
    assert abs(((ours - theirs).sum() / theirs.abs().sum()).item()) < ulp / 8


@needs_triton
@pytest.mark.parametrize("lookup", ["register", "bitsandbytes"])
@pytest.mark.parametrize("kind,nested,blocksize,dtype", FORMATS)
@pytest.mark.parametrize("rows,cols", [(48, 64), (33, 75), (40, 96)])
def test_kernel_matches_the_reference(kind, nested, blocksize, dtype, rows, cols, lookup, monkeypatch):
    monkeypatch.setattr(qm, "LOOKUP", lookup)
    qw = qm.QuantWeight.from_param(quantized(rows, cols, kind, nested, blocksize, dtype))
    x = torch.randn(5, cols, dtype=dtype)
    out = qm.quant_linear(x, [qw], backend="interpret")
    rounding = qm.kernel_rounding(x, [qw], backend="interpret")
    if (cols, blocksize) == (64, 64):  # whole tiles of one scale: the fast path, which has the lookup
        assert (rounding == "register") == (lookup == "register")
    _close(out, qm.reference_linear(x, [qw], rounding=rounding))


@needs_triton
@pytest.mark.parametrize("config", [qm.Config(), qm.Config(block_n=32, block_m=16, split_k=3)],
                         ids=["default", "split-k, 3 batch tiles"])
def test_kernel_stacks_three_weights_with_lora_and_bias(config):
    """A q/k/v-like group in one launch: rows of three weights, the low-rank update, biases."""
    parts = [qm.QuantWeight.from_param(quantized(rows, 128, seed=i)) for i, rows in enumerate((64, 32, 40))]
    M, n_total = 40, 136
    x = torch.randn(M, 128, dtype=torch.bfloat16)
    xa, lb = _lora(M, n_total, 12, torch.bfloat16)
    bias = torch.randn(n_total, dtype=torch.bfloat16)
    out = qm.quant_linear(x, parts, bias=bias, lora_xa=xa, lora_b=lb, config=config, backend="interpret")
    _close(out, qm.reference_linear(x, parts, bias, xa, lb, rounding=qm.kernel_rounding(x, parts, config, "interpret")))


@needs_triton
def test_kernel_reads_int8_rows():
    parts = [qm.QuantWeight.from_param(int8_weight(rows, 96, seed=i)) for i, rows in enumerate((40, 24))]
    x = torch.randn(6, 96, dtype=torch.float16)
    for config in (qm.Config(), qm.Config(block_k=32, split_k=2)):
        _close(qm.quant_linear(x, parts, config=config, backend="interpret"), qm.reference_linear(x, parts))


def test_launch_plan_splits_k_without_empty_splits():
    parts = [qm.QuantWeight.from_param(quantized(64, 640))]
    run = qm.plan(32, parts, qm.Config(block_n=32, split_k=4), sm_count=132)
    assert run.grid == (1, 2, run.splits) and run.splits * run.k_per_split >= 640
    assert (run.splits - 1) * run.k_per_split < 640  # the last split has work
    assert run.block_k == 64 and run.aligned  # one scale per row and tile
    odd = qm.plan(5, [qm.QuantWeight.from_param(quantized(33, 75, blocksize=32))], qm.Config(), sm_count=8)
    assert not odd.aligned and odd.block_m == 16


def test_group_of_differently_quantized_weights_is_refused():
    parts = [qm.QuantWeight.from_param(quantized(16, 64)), qm.QuantWeight.from_param(quantized(16, 64, "fp4"))]
    with pytest.raises(qm.QuantFormatError, match="quantized differently"):
        qm.check_group(parts)


def test_decode_bytes_are_about_a_quarter_of_bf16():
    qw = qm.QuantWeight.from_param(quantized(512, 1024))  # NF4, double quantization, 64-blocks
    read = qm.decode_bytes([qw], M=32, rank=16)
    assert read["weights"] / (512 * 1024 * 2) == pytest.approx(0.25 * (1 + 1 / 32) + 4 / (64 * 256 * 2), rel=1e-3)


# ---- the kernel as the GPU compiles it (Triton's ptxas, no GPU needed) -------------------------


NF4_TABLE_PTX = qm.register_table_ptx(tuple(bnbf.get_4bit_type("nf4", device="cpu").tolist()), torch.bfloat16)


def compile_for_hopper(num_warps=qm.Config.num_warps, num_stages=qm.Config.num_stages, **constexprs):
    """PTX and cuobjdump's resource report of the kernel compiled for sm_90 (Triton's own ptxas)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    tl = qm.tl
    fn = qm._JIT[0]
    const = dict(FMT=4, QB=64, QB2=256, NESTED=True, ALIGNED=True, NPARTS=3, HAS_BIAS=True, R_PAD=64, SPLIT=2,
                 W_DTYPE=tl.bfloat16, LOOKUP=3, TABLE_PTX=NF4_TABLE_PTX, BLOCK_M=32, BLOCK_N=128,
                 BLOCK_K=64) | constexprs
    fmt = "u8" if const["FMT"] == 4 else "i8"
    types = {"X": "*bf16", "Out": "*bf16", "Ws": "*fp32", "Locks": "*i32", "Code": "*fp32", "Code2": "*fp32",
             "Bias": "*bf16",
             "XA": "*bf16", "LB": "*bf16", "W0": f"*{fmt}", "W1": f"*{fmt}", "W2": f"*{fmt}",
             **{f"S{i}": "*u8" if const["NESTED"] else "*fp32" for i in range(3)},
             **{f"T{i}": "*fp32" for i in range(3)}, **{f"off{i}": "fp32" for i in range(3)}}
    signature = {n: "constexpr" if n in const else types.get(n, "i32") for n in fn.arg_names}
    aligned = [(i,) for i, n in enumerate(fn.arg_names) if signature[n].startswith("*")
               or n in ("stride_xm", "stride_om", "K", "k_per_split", "stride_wn", "n_total")]
    src = ASTSource(fn, signature, constexprs=const, attrs={k: [["tt.divisibility", 16]] for k in aligned})
    kernel = triton.compile(src, target=GPUTarget("cuda", 90, 32),
                            options={"num_warps": num_warps, "num_stages": num_stages})
    usage = resource_usage(kernel)
    return kernel.asm["ptx"], usage


@needs_triton
@pytest.mark.parametrize("constexprs", [{}, {"LOOKUP": 2}, {"LOOKUP": 1}, {"ALIGNED": False, "BLOCK_N": 64},
                                        {"FMT": 8, "NESTED": False, "R_PAD": 0, "HAS_BIAS": False}],
                         ids=["4-bit fast path", "4-bit, bitsandbytes' rounding", "4-bit, unaligned table",
                              "4-bit any shape", "int8"])
def test_kernel_compiles_for_hopper_without_spills(constexprs):
    pytest.importorskip("triton.backends.nvidia")
    ptx, usage = compile_for_hopper(**constexprs)
    assert "wgmma.mma_async" in ptx  # Hopper's matrix instructions, the weights as the 64-row side
    # The fast path looks its codes up in registers (prmt, no loads of the table); bitsandbytes' rounding
    # reads the table through the read-only cache, four bytes a PTX block from a 64-byte aligned table,
    # else one.
    lookup = constexprs.get("LOOKUP", 3) if constexprs.get("ALIGNED", True) and constexprs.get("FMT", 4) == 4 else 0
    assert ("fma.rn.bf16x2" in ptx and "prmt.b32" in ptx) == (lookup == 3), constexprs
    assert ("ld.global.nc.f32" in ptx) == (lookup in (1, 2)), constexprs
    assert (qm.CODE_QUAD_PTX.split(";")[0] in ptx) == (lookup == 2)
    assert (qm.CODE_PAIR_PTX.split(";")[0] in ptx) == (lookup == 1)
    assert usage["REG"] > 0 and usage["STACK"] == 0 and usage["LOCAL"] == 0, usage  # no register spills


def test_tuned_launches_are_read_from_a_sweeps_file(tmp_path):
    """measure_quant_decode.py --write-tuned writes this file; GRPO_STUDIO_QMM_TUNED reads it at import."""
    path = tmp_path / "tuned.json"
    path.write_text('[{"batch": 32, "K": 896, "N": 9728, "config": "block_n=256,num_warps=8,num_stages=1,waves=2"}]')
    assert qm.read_tuned(str(path)) == {(32, 896, 9728): qm.Config(block_n=256, num_warps=8, num_stages=1, waves=2.0)}
    path.write_text('[{"batch": 32, "K": 896}]')
    with pytest.raises(ValueError, match="tuned.json: not a list of tuned launches"):
        qm.read_tuned(str(path))


@needs_triton
def test_split_k_sums_in_the_last_split_like_the_second_kernel(monkeypatch):
    """The tile's last program sums the partials in split order: the same bits as _split_sum_kernel's
    launch, and every tile counter is back at 0 for the next launch (a CUDA graph replays it as is)."""
    parts = [qm.QuantWeight.from_param(quantized(rows, 256, seed=i)) for i, rows in enumerate((64, 40))]
    x = torch.randn(20, 256, dtype=torch.bfloat16)
    config = qm.Config(block_n=32, block_m=16, split_k=4)
    assert qm.plan(20, parts, config, 8).grid == (2, 4, 4)
    outs = {}
    for how in ("kernel", "last split", "last split"):
        monkeypatch.setattr(qm, "SPLIT_SUM", how)
        outs.setdefault(how, []).append(qm.quant_linear(x, parts, config=config, backend="interpret"))
    assert torch.equal(outs["kernel"][0], outs["last split"][0])
    assert torch.equal(outs["last split"][0], outs["last split"][1])
    assert not qm._COUNTERS[x.device].any()


@pytest.mark.parametrize("kind", ["nf4", "fp4"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_register_table_ptx_computes_code_times_scale(kind, dtype):
    """The PTX the GPU runs, executed instruction by instruction (ptx_emulator.py): every byte value in
    each of the four byte positions, against code[nibble] * scale rounded as register_dequantize does."""
    from ptx_emulator import run

    code = bnbf.get_4bit_type(kind, device="cpu")
    ptx = qm.register_table_ptx(tuple(code.tolist()), dtype)
    table = code.to(dtype).float()
    g = torch.Generator().manual_seed(0)
    scales = (torch.rand(256, 4, generator=g) * 0.2 - 0.1).to(dtype)
    bits = scales.view(torch.int16).int() & 0xFFFF
    for j in range(256):
        word = [j, 255 - j, (7 * j) % 256, (13 * j + 5) % 256]  # each position sees every byte value
        s = bits[j].tolist()
        env = run(ptx, {"$4": sum(b << 8 * i for i, b in enumerate(word)), "$5": s[0] | s[1] << 16,
                        "$6": s[2] | s[3] << 16})
        got = torch.tensor([env[r] >> 16 * h & 0xFFFF for r in ("$0", "$1", "$2", "$3") for h in (0, 1)],
                           dtype=torch.int32).to(torch.int16).view(dtype)
        nibbles = [b >> 4 for b in word] + [b & 0xF for b in word]  # $0-$1 the high nibbles, $2-$3 the low
        want = (table[nibbles] * scales[j].float().repeat(2)).to(dtype)
        assert torch.equal(got.view(torch.int16), want.view(torch.int16)), (j, word, got, want)


def test_tile_counters_grow_without_freeing_the_old_ones(monkeypatch):
    """A graph captured before a larger launch keeps pointing at the smaller counter buffer."""
    monkeypatch.setattr(qm, "_COUNTERS", {})
    monkeypatch.setattr(qm, "_RETIRED_COUNTERS", [])
    device = torch.device("cpu")
    small = qm._tile_counters(device, 10)
    assert small.numel() == 4096 and not small.any() and qm._tile_counters(device, 4096) is small
    large = qm._tile_counters(device, 5000)
    assert large.numel() == 5000 and qm._RETIRED_COUNTERS == [small]
