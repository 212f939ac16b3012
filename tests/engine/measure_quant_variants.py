"""Variants of the 4-bit decode kernel's fast path, timed side by side on a GPU: how the code-table
lookup and the loop are written. These all keep bitsandbytes' rounding (code * scale in float32, rounded
once). `quant_matmul` shipped the "four bytes a PTX block, activations split" variant in the ninth
session ("asm pair" before it), and still runs it with GRPO_STUDIO_QMM_LOOKUP=bitsandbytes; since the
tenth it looks the codes up in a table held in registers (quant_matmul.register_table_ptx; compared
with the four-byte lookup by measure_quant_decode.py). The others are what was tried and dropped
(README, "The quantized kernel"), kept here so that the comparison can be run again on another GPU or
Triton version.

    python3 tests/engine/measure_quant_variants.py                # GPU: 7B gate/up, down and o, batch 32
    python3 tests/engine/measure_quant_variants.py --compile-only # any machine with Triton: registers,
                                                                   # barriers, async copies for sm_90

The kernel below is quant_matmul's aligned NF4 + double-quantization path only (one or two stacked
weights, LoRA, split K; no bias), with constexpr switches:
- LOOKUP 0: two tl.load gathers per byte (64-bit pointer tensors); 1: the same through a one-line
  PTX load (the pipeliner can't see it); 2: both nibbles in one PTX block with 32-bit index arithmetic
  ("asm pair", shipped from the seventh session to the ninth); 3: the scale and the rounding to bf16
  inside that block too; 5: four bytes a PTX block (one 32-bit register, no unpacking of bytes), table
  addresses as low bits | nibble * 4 (shipped).
- XSPLIT: the activations loaded as contiguous rows and split into even and odd columns in registers
  (shipped); before, two strided 2-byte loads and shared-memory stores an element. With LOOKUP 5:
  256 instructions in the K loop against 307, 56 registers against 64 (sm_90, --compile-only); on an
  H200 gate/up 95.0 against 104.0 µs at the same launch (the ninth session's call AB).
- PREFETCH: the next tile's packed bytes loaded into registers before this tile is used.
- UNROLL 2: two tiles a loop iteration, both loads first.
- num_stages 2-3: Triton's software pipeline (with a PTX lookup it pipelines the packed bytes).
- Where the activations' two half tiles are loaded: after the scales, before the lookup (shipped since
  the seventh session: both tiles reach shared memory before one barrier); XFIRST: at the top of the
  iteration, before the packed bytes (0-14% slower by launch shape, H200).
- NEXT_SCALE: the next tile's double-quantized scale index loaded an iteration ahead (slower at all
  five launch shapes).
- SCALE_AFTER: code values rounded to bf16, the row's scale applied to the tile's sum instead of to
  each weight (other rounding than bitsandbytes'; 0-40% slower: 93 registers against 64).
- L2PF: the packed bytes asked of L2 ahead of their loads: 1 the split's bytes of each row at the
  program's start (one bulk prefetch a row), 2 `prefetch.global.L2` DIST tiles ahead, 3 a 32-byte bulk
  prefetch DIST tiles ahead; EVICT 1 loads them evict-first. None was faster (ninth session, call Y:
  gate/up 108.7-213.2 µs against 104.2 at the same launches): memory latency is not what holds it back.
`--variants "a;b"` runs some of them (`--compile-only` too: registers and the K loop's length in SASS).
Each launch is timed inside a CUDA graph cycling through copies of the weights that exceed the L2
cache 3x (as measure_quant_decode.py does), reduced by quant_matmul's own split-K kernel; the output
is compared with the shipped kernel's ("equal", else the largest difference: split K sums in another
order when the split count differs).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import triton
import triton.language as tl

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from grpo_studio.engine import quant_matmul as qm

# 7B groups (K, rows of each stacked weight); q/k/v (three weights and a bias) is left out.
GROUPS = {"gate_up": (3584, [18944, 18944]), "down": (18944, [3584]), "o": (3584, [3584])}
VARIANTS = {  # name -> (LOOKUP, PREFETCH, UNROLL, num_stages[, XFIRST, NEXT_SCALE, SCALE_AFTER, L2PF, DIST,
             #          EVICT, XSPLIT]): missing trailing switches are 0
    "tl.load gathers": (0, 0, 1, 1),
    "asm one value": (1, 0, 1, 1),
    "asm pair": (2, 0, 1, 1),
    "asm pair + scale": (3, 0, 1, 1),
    "asm pair, prefetch": (2, 1, 1, 1),
    "asm pair, 2 tiles an iteration": (2, 0, 2, 1),
    "asm one value, 2 stages": (1, 0, 1, 2),
    "asm one value, 3 stages": (1, 0, 1, 3),
    "x first": (2, 0, 1, 1, 1, 0, 0),
    "x first, next scales": (2, 0, 1, 1, 1, 1, 0),
    "x first, next scales, scale after the dot": (2, 0, 1, 1, 1, 1, 1),
    "x first, scale after the dot": (2, 0, 1, 1, 1, 0, 1),
    "x first, next scales, prefetch": (2, 1, 1, 1, 1, 1, 0),
    # L2PF 1: at the program's start, one bulk prefetch into L2 per row of the split's packed bytes
    # (cp.async.bulk.prefetch.L2, sm_90); 2: each iteration, `prefetch.global.L2` of the tile DIST
    # iterations ahead; 3: each iteration, a 32-byte bulk prefetch DIST iterations ahead.
    "L2 prefetch, whole split": (2, 0, 1, 1, 0, 0, 0, 1, 0),
    "L2 prefetch, 4 ahead": (2, 0, 1, 1, 0, 0, 0, 2, 4),
    "L2 prefetch, 8 ahead": (2, 0, 1, 1, 0, 0, 0, 2, 8),
    "L2 bulk prefetch, 8 ahead": (2, 0, 1, 1, 0, 0, 0, 3, 8),
    "L2 prefetch, whole split, evict first": (2, 0, 1, 1, 0, 0, 0, 1, 0, 1),  # EVICT: streamed bytes leave L2 first
    # LOOKUP 5: four bytes a PTX block (no byte unpacking), table addresses built in 32 bits.
    "four bytes a PTX block": (5, 0, 1, 1),
    # XSPLIT: the activations loaded as contiguous rows, split into even/odd columns in registers
    # (instead of two strided 2-byte loads an element).
    "activations split in registers": (2, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1),
    "four bytes a PTX block, activations split (the ninth session's)": (5, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1),
}
SHAPES = ((128, 8, 8.0), (128, 8, 4.0), (128, 4, 4.0), (64, 4, 4.0), (256, 8, 4.0))  # block_n, warps, waves
BATCH = 32


QUAD_PTX = tl.constexpr(qm.CODE_QUAD_PTX)  # the shipped four-byte lookup (quant_matmul)


@triton.jit
def _codes(pairs, Code, LOOKUP: tl.constexpr):
    """float32 code values of the high and the low nibbles of `pairs` (uint8)."""
    if LOOKUP == 0:
        hi = tl.load(Code + (pairs >> 4).to(tl.int32))
        lo = tl.load(Code + (pairs & 0xF).to(tl.int32))
    elif LOOKUP == 1:
        hi = tl.inline_asm_elementwise("ld.global.nc.f32 $0, [$1];", "=r,l", [Code + (pairs >> 4).to(tl.int32)],
                                       dtype=tl.float32, is_pure=True, pack=1)
        lo = tl.inline_asm_elementwise("ld.global.nc.f32 $0, [$1];", "=r,l", [Code + (pairs & 0xF).to(tl.int32)],
                                       dtype=tl.float32, is_pure=True, pack=1)
    elif LOOKUP == 5:  # four bytes a PTX block, 32-bit table addresses (a 64-byte aligned table)
        base = Code.to(tl.int64, bitcast=True)
        lo32 = (base & 0xFFFFFFFF).to(tl.int32) + (pairs & 0).to(tl.int32)
        hi32 = (base >> 32).to(tl.int32) + (pairs & 0).to(tl.int32)
        hi, lo = tl.inline_asm_elementwise(QUAD_PTX, "=r,=r,=r,=r,=r,=r,=r,=r,r,r,r,r,r,r,r,r,r",
                                           [pairs, lo32, hi32], dtype=(tl.float32, tl.float32), is_pure=True,
                                           pack=4)
    else:
        b = pairs.to(tl.int32)
        hi, lo = tl.inline_asm_elementwise(qm.CODE_PAIR_PTX, "=r,=r,r,l", [b, Code + (b & 0)],
                                           dtype=(tl.float32, tl.float32), is_pure=True, pack=1)
    return hi, lo


@triton.jit
def _tile(pairs, scale, Code, LOOKUP: tl.constexpr):
    """bf16 [rows, BLOCK_K / 2] weights of the high and the low nibbles: code * scale, rounded once."""
    if LOOKUP == 3:
        b = pairs.to(tl.int32)
        hi, lo = tl.inline_asm_elementwise(
            "{ .reg .b32 i0, i1; .reg .b64 a0, a1; .reg .f32 c0, c1; shr.u32 i0, $2, 4; and.b32 i1, $2, 15; "
            "mad.wide.u32 a0, i0, 4, $3; mad.wide.u32 a1, i1, 4, $3; "
            "ld.global.nc.f32 c0, [a0]; ld.global.nc.f32 c1, [a1]; mul.f32 c0, c0, $4; mul.f32 c1, c1, $4; "
            "cvt.rn.bf16.f32 $0, c0; cvt.rn.bf16.f32 $1, c1; }",
            "=h,=h,r,l,r", [b, Code + (b & 0), scale[:, None] + (b & 0).to(tl.float32)],
            dtype=(tl.bfloat16, tl.bfloat16), is_pure=True, pack=1)
    else:
        code_hi, code_lo = _codes(pairs, Code, LOOKUP)
        hi = (code_hi * scale[:, None]).to(tl.bfloat16)
        lo = (code_lo * scale[:, None]).to(tl.bfloat16)
    return hi, lo


@triton.jit
def _scales(s_ptr, t_ptr, Code2, offset, sidx, QB2: tl.constexpr):
    return tl.load(Code2 + tl.load(s_ptr + sidx).to(tl.int32)) * tl.load(t_ptr + sidx // QB2) + offset


@triton.jit
def variant_kernel(X, stride_xm, Ws, M, K, k_per_split, n_total, stride_wn,
                   W0, S0, T0, N0, off0, W1, S1, T1, N1, off1, Code, Code2, XA, stride_xam, LB, R,
                   QB: tl.constexpr, QB2: tl.constexpr, NPARTS: tl.constexpr, R_PAD: tl.constexpr,
                   LOOKUP: tl.constexpr, PREFETCH: tl.constexpr, UNROLL: tl.constexpr,
                   XFIRST: tl.constexpr, NEXT_SCALE: tl.constexpr, SCALE_AFTER: tl.constexpr,
                   L2PF: tl.constexpr, DIST: tl.constexpr, EVICT: tl.constexpr, XSPLIT: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pid_n = tl.program_id(1)
    pid_k = tl.program_id(2)
    w_ptr, s_ptr, t_ptr, n_rows, offset, col0, tile = W0, S0, T0, N0, off0, pid_n * 0, pid_n
    if NPARTS > 1:
        tiles0 = (N0 + BLOCK_N - 1) // BLOCK_N
        if tile >= tiles0:
            w_ptr, s_ptr, t_ptr, n_rows, offset = W1, S1, T1, N1, off1
            col0 = col0 + N0
            tile = tile - tiles0
    offs_n = tile * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = offs_n < n_rows
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    m_ok = offs_m < M
    k_lo = pid_k * k_per_split
    k_hi = tl.minimum(K, k_lo + k_per_split)
    HALF: tl.constexpr = BLOCK_K // 2
    jj = tl.arange(0, HALF)
    acc = tl.full((BLOCK_N, BLOCK_M), 0.0, tl.float32)
    rows = tl.where(n_ok, offs_n, 0)
    row_ptr = w_ptr + rows * stride_wn
    if L2PF == 1:
        _ = tl.inline_asm_elementwise("cp.async.bulk.prefetch.L2.global [$1], $2; mov.u32 $0, 0;", "=r,l,r",
                                      [row_ptr + k_lo // 2, (k_hi - k_lo) // 2 + rows * 0], dtype=tl.int32,
                                      is_pure=False, pack=1)
    w_ptrs = w_ptr + rows[:, None] * stride_wn + (k_lo // 2 + jj)[None, :]
    xe_ptrs = X + tl.where(m_ok, offs_m, 0)[None, :] * stride_xm + (k_lo + 2 * jj)[:, None]
    srow = rows * (K // QB)
    x_rows = X + tl.where(m_ok, offs_m, 0)[:, None] * stride_xm + (k_lo + tl.arange(0, BLOCK_K))[None, :]
    nxt = tl.load(w_ptrs)
    if NEXT_SCALE:
        last_block = K // QB - 1
        q_next = tl.load(s_ptr + srow + k_lo // QB)
    for k0 in range(k_lo, k_hi, BLOCK_K * UNROLL):
        if L2PF == 2:
            ahead = row_ptr + tl.minimum(k0 + DIST * BLOCK_K, k_hi - BLOCK_K) // 2
            _ = tl.inline_asm_elementwise("prefetch.global.L2 [$1]; mov.u32 $0, 0;", "=r,l", [ahead],
                                          dtype=tl.int32, is_pure=False, pack=1)
        if L2PF == 3:
            ahead = row_ptr + tl.minimum(k0 + DIST * BLOCK_K, k_hi - BLOCK_K) // 2
            _ = tl.inline_asm_elementwise("cp.async.bulk.prefetch.L2.global [$1], 32; mov.u32 $0, 0;", "=r,l",
                                          [ahead], dtype=tl.int32, is_pure=False, pack=1)
        if XFIRST:  # the activations' loads first: their latency overlaps the weights'
            xe = tl.load(xe_ptrs)
            xo = tl.load(xe_ptrs + 1)
        if PREFETCH:
            pairs = nxt
            nxt = tl.load(w_ptrs + HALF, mask=(rows >= 0)[:, None] & (k0 + BLOCK_K < k_hi))
        elif EVICT:
            pairs = tl.load(w_ptrs, eviction_policy="evict_first")
        else:
            pairs = tl.load(w_ptrs)
        if UNROLL == 2:
            pairs2 = tl.load(w_ptrs + HALF)
        if NEXT_SCALE:  # this tile's scale index was loaded an iteration ago; the next one's now
            q = q_next
            q_next = tl.load(s_ptr + srow + tl.minimum((k0 + BLOCK_K) // QB, last_block))
            scale = tl.load(Code2 + q.to(tl.int32)) * tl.load(t_ptr + (srow + k0 // QB) // QB2) + offset
        else:
            scale = _scales(s_ptr, t_ptr, Code2, offset, srow + k0 // QB, QB2)
        if XSPLIT:
            xt = tl.load(x_rows)  # [BLOCK_M, BLOCK_K]
            xe_t, xo_t = tl.split(tl.reshape(xt, (BLOCK_M, HALF, 2)))
            xe = tl.trans(xe_t)
            xo = tl.trans(xo_t)
            x_rows += BLOCK_K
        elif not XFIRST:
            xe = tl.load(xe_ptrs)
            xo = tl.load(xe_ptrs + 1)
        if SCALE_AFTER:  # code values rounded to bf16, the row's scale applied to the tile's sum
            code_hi, code_lo = _codes(pairs, Code, LOOKUP)
            part = tl.dot(code_hi.to(tl.bfloat16), xe)
            part = tl.dot(code_lo.to(tl.bfloat16), xo, part)
            acc += part * scale[:, None]
        else:
            hi, lo = _tile(pairs, scale, Code, LOOKUP)
            acc += tl.dot(hi, xe)
            acc += tl.dot(lo, xo)
        if UNROLL == 2:
            hi2, lo2 = _tile(pairs2, _scales(s_ptr, t_ptr, Code2, offset, srow + (k0 + BLOCK_K) // QB, QB2),
                             Code, LOOKUP)
            acc += tl.dot(hi2, tl.load(xe_ptrs + BLOCK_K))
            acc += tl.dot(lo2, tl.load(xe_ptrs + BLOCK_K + 1))
        w_ptrs += HALF * UNROLL
        xe_ptrs += BLOCK_K * UNROLL
    cols = col0 + offs_n
    if pid_k == 0:
        rr = tl.arange(0, R_PAD)
        b_t = tl.load(LB + cols[:, None] * R + rr[None, :], mask=n_ok[:, None] & (rr < R)[None, :], other=0.0)
        xa_t = tl.load(XA + offs_m[None, :] * stride_xam + rr[:, None], mask=m_ok[None, :] & (rr < R)[:, None],
                       other=0.0)
        acc += tl.dot(b_t, xa_t)
    tl.store(Ws + pid_k * M * n_total + offs_m[None, :] * n_total + cols[:, None], acc,
             mask=n_ok[:, None] & m_ok[None, :])


def switches(variant: str) -> tuple[dict, int]:
    """The variant's constexprs (LOOKUP ... XSPLIT) and its pipeline stages."""
    lookup, prefetch, unroll, stages, *more = VARIANTS[variant]
    xfirst, next_scale, scale_after, l2pf, dist, evict, xsplit = (list(more) + [0] * 7)[:7]
    return dict(LOOKUP=lookup, PREFETCH=prefetch, UNROLL=unroll, XFIRST=xfirst, NEXT_SCALE=next_scale,
                SCALE_AFTER=scale_after, L2PF=l2pf, DIST=dist, EVICT=evict, XSPLIT=xsplit), stages


def variant_linear(x, parts, lora_xa, lora_b, variant, block_n, warps, waves):
    """x [M, K] times the stacked NF4 `parts` (+ LoRA), through one variant and quant_matmul's split-K sum."""
    const, stages = switches(variant)
    unroll = const["UNROLL"]
    M, K = x.shape
    n_total = sum(p.rows for p in parts)
    n_tiles = sum(-(-p.rows // block_n) for p in parts)
    k_iters = K // 64
    per = -(-k_iters // min(k_iters, max(1, round(waves * qm._sm_count(x.device) / n_tiles))))
    per = -(-per // unroll) * unroll
    while k_iters % per:  # whole tiles in every split, a multiple of the unroll
        per += unroll
    splits = k_iters // per
    ws = torch.empty(splits, M, n_total, dtype=torch.float32, device=x.device)
    args = []
    for p in list(parts) + [parts[0]] * (2 - len(parts)):
        args += [p.data, p.scales, p.absmax2, p.rows, p.offset]
    variant_kernel[(1, n_tiles, splits)](
        x, x.stride(0), ws, M, K, per * 64, n_total, K // 2, *args, parts[0].code, parts[0].code2,
        lora_xa, lora_xa.stride(0), lora_b, lora_b.shape[1], QB=parts[0].blocksize, QB2=parts[0].blocksize2,
        NPARTS=len(parts), R_PAD=max(16, qm._pow2(lora_b.shape[1])), **const,
        BLOCK_M=min(64, max(16, qm._pow2(M))), BLOCK_N=block_n, BLOCK_K=64,
        num_warps=warps, num_stages=stages)
    out = torch.empty(M, n_total, dtype=x.dtype, device=x.device)
    qm._JIT[1][(-(-M * n_total // 1024),)](ws, out, out.stride(0), M, n_total, splits, BLOCK=1024, num_warps=4)
    return out


def compile_report(chosen: list[str]) -> None:
    """Registers, barriers, shared-memory stores and async copies of each variant, compiled for sm_90."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    names = variant_kernel.arg_names
    types = {"X": "*bf16", "Ws": "*fp32", "Code": "*fp32", "Code2": "*fp32", "XA": "*bf16", "LB": "*bf16",
             "W0": "*u8", "W1": "*u8", "S0": "*u8", "S1": "*u8", "T0": "*fp32", "T1": "*fp32",
             "off0": "fp32", "off1": "fp32"}
    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    for name in chosen:
        chosen_const, stages = switches(name)
        const = {"QB": 64, "QB2": 256, "NPARTS": 2, "R_PAD": 32, **chosen_const,
                 "BLOCK_M": 32, "BLOCK_N": 128, "BLOCK_K": 64}
        signature = {n: "constexpr" if n in const else types.get(n, "i32") for n in names}
        aligned = [(i,) for i, n in enumerate(names) if signature[n].startswith("*")
                   or n in ("stride_xm", "K", "k_per_split", "stride_wn", "n_total")]
        kernel = triton.compile(ASTSource(variant_kernel, signature, constexprs=const,
                                          attrs={k: [["tt.divisibility", 16]] for k in aligned}),
                                target=GPUTarget("cuda", 90, 32), options={"num_warps": 8, "num_stages": stages})
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(kernel.asm["cubin"])
            f.flush()
            usage = subprocess.run([cuobjdump, "--dump-resource-usage", f.name], capture_output=True, text=True,
                                   check=True).stdout
            sass = subprocess.run([cuobjdump, "-sass", f.name], capture_output=True, text=True, check=True).stdout
        registers = re.search(r"REG:(\d+)", usage).group(1)
        print(f"{name:42s} registers {registers:>4s}  barriers {sass.count('BAR.SYNC'):3d}"
              f"  shared stores {sass.count(' STS'):3d}  async copies {sass.count('LDGSTS'):3d}"
              f"  main loop {loop_instructions(sass):4d} instructions")


def loop_instructions(sass: str) -> int:
    """Instructions in the longest backward branch's span of the SASS (the K loop)."""
    addresses = [int(a, 16) for a in re.findall(r"^\s+/\*([0-9a-f]{4,})\*/", sass, re.M)]
    spans = [(int(target, 16), int(at, 16)) for at, target in
             re.findall(r"^\s+/\*([0-9a-f]{4,})\*/[^\n]*?BRA\s+0x([0-9a-f]+)", sass, re.M)]
    spans = [(a, b) for a, b in spans if a < b]
    if not spans:
        return 0
    lo, hi = max(spans, key=lambda span: span[1] - span[0])
    return sum(lo <= a <= hi for a in addresses)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile-only", action="store_true", help="compile for sm_90 and report, no GPU needed")
    parser.add_argument("--variants", help="names to run, separated by ';' (default: all)")
    args = parser.parse_args(argv)
    chosen = [v.strip() for v in args.variants.split(";")] if args.variants else list(VARIANTS)
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {list(VARIANTS)}")
    if args.compile_only:
        compile_report(chosen)
        return 0
    from measure_quant_decode import graph_seconds, measure_bandwidth, random_group

    qm.LOOKUP = "bitsandbytes"  # "shipped" below: quant_linear with the rounding these variants keep

    props = torch.cuda.get_device_properties(0)
    l2 = getattr(props, "L2_cache_size", 60 * 2**20)
    bandwidth = measure_bandwidth("cuda")
    print(f"{props.name}, Triton {triton.__version__}, copy bandwidth {bandwidth / 1e12:.2f} TB/s", flush=True)
    print("| group | variant | block_n / warps / waves | µs | share of bandwidth bound | equal to shipped |")
    print("|---|---|---|---|---|---|")
    for group, (K, rows) in GROUPS.items():
        one, inputs = random_group(K, rows, False, BATCH, "cuda", seed=0)
        per_copy = sum(p.decode_bytes() for p in one)
        copies = [one] + [random_group(K, rows, False, BATCH, "cuda", seed=s)[0]
                          for s in range(1, max(1, math.ceil(3 * l2 / per_copy)))]
        x = torch.randn(BATCH, K, device="cuda", dtype=torch.bfloat16)
        xa, lb = inputs["lora_xa"], inputs["lora_b"]
        want = qm.quant_linear(x, one, lora_xa=xa, lora_b=lb)
        sec = graph_seconds(lambda i, x=x, c=copies, xa=xa, lb=lb:
                            qm.quant_linear(x, c[i % len(c)], lora_xa=xa, lora_b=lb), len(copies))
        print(f"| {group} | quant_linear as shipped | TUNED | {sec * 1e6:.1f} | {per_copy / bandwidth / sec:.0%} | |",
              flush=True)
        for variant in chosen:
            for block_n, warps, waves in SHAPES:
                shape = (block_n, warps, waves)
                try:
                    got = variant_linear(x, one, xa, lb, variant, *shape)
                    sec = graph_seconds(lambda i, x=x, c=copies, xa=xa, lb=lb, v=variant, sh=shape:
                                        variant_linear(x, c[i % len(c)], xa, lb, v, *sh), len(copies))
                except Exception as exc:  # noqa: BLE001 - a variant that fails to compile is a result too
                    print(f"| {group} | {variant} | {block_n} / {warps} / {waves:g} | "
                          f"failed: {type(exc).__name__} | | |")
                    continue
                diff = float((got.float() - want.float()).abs().max())
                equal = "yes" if diff == 0 else f"max diff {diff:.3g}"
                print(f"| {group} | {variant} | {block_n} / {warps} / {waves:g} | {sec * 1e6:.1f} | "
                      f"{per_copy / bandwidth / sec:.0%} | {equal} |", flush=True)
        copies.clear()  # before the next group's copies are made
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
