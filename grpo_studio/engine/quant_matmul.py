"""Matrix products straight from bitsandbytes' quantized weights, for decode-sized batches.

`quant_linear(x, parts, ...)` computes y = x W^T (+ bias) (+ xa B^T, a LoRA update given as its
low-rank factors) where W is one or more bitsandbytes-quantized weights stacked by rows (q/k/v or
gate/up of a layer: one launch for the group). One Triton kernel reads the packed weights,
dequantizes them in registers and multiplies on the tensor cores; no 16-bit copy of W exists at
any time, so a decode step reads about a quarter of the bytes a bf16 copy would.

The format it reads (bitsandbytes 0.45-0.50; functional.py `quantize_4bit`/`dequantize_4bit`,
backends/default/ops.py `_dequantize_4bit_compute`, the CUDA kernel `kDequantizeBlockwise`):

- 4-bit (`Params4bit`, NF4 or FP4). `weight.data` holds the row-major [rows, cols] matrix
  (rows = out_features) flattened, two values a byte, as a [(rows*cols + 1) // 2, 1] tensor of
  uint8 (or of another `quant_storage` dtype, read here as its bytes). Flat element i lives in
  byte i // 2: even i in the HIGH nibble (byte >> 4), odd i in the low nibble (byte & 0xF).
  A nibble is an index into the 16-entry `quant_state.code` (float32, already scaled to [-1, 1]):
    NF4 = [-1, -0.6962, -0.5251, -0.3949, -0.2844, -0.1848, -0.0911, 0,
           0.0796, 0.1609, 0.2461, 0.3379, 0.4407, 0.5626, 0.7230, 1]   (quantiles of N(0, 1))
    FP4 = [0, 0.0625, 8, 12, 4, 6, 2, 3, -0, -0.0625, -8, -12, -4, -6, -2, -3] / 12
          (bit-pattern order: 1 sign bit, 2 exponent bits, 1 mantissa bit)
  Runs of `quant_state.blocksize` consecutive flat elements (32...4096, 64 by default; a block
  may straddle rows) share one float32 scale absmax[i // blocksize]:
    value = code[nibble] * absmax   (in float32, rounded once to `quant_state.dtype`).
  With double quantization (`compress_statistics`, transformers' `bnb_4bit_use_double_quant`)
  absmax is itself stored as uint8 indices into a 256-entry dynamic map, in blocks of
  `state2.blocksize` (256), after subtracting its mean `quant_state.offset`:
    absmax[b] = state2.code[q[b]] * state2.absmax[b // state2.blocksize] + offset.
- 8-bit (`Int8Params`, LLM.int8): `weight.data` (== weight.CB) is int8 [rows, cols], row-major,
  and `weight.SCB` float32 [rows]:  value = (q * SCB[row]) * (1 / 127)  (int8_vectorwise_dequant).
  (The training forward also quantizes the activations to int8 and splits off outlier columns;
  this kernel multiplies the 16-bit activations by the dequantized weights, which is closer to
  the weights' own values than the training forward is.)

`dequantize` and `reference_linear` are the same arithmetic in plain PyTorch: the tests hold the
kernel to them, and they to bitsandbytes' own `dequantize_4bit`. On the GPU the kernel's 4-bit fast
path looks the codes up in a table held in registers (`register_table_ptx`), with the code and the
scale rounded to the activations' dtype before their product: within about a unit in the last place
of bitsandbytes' value (`register_dequantize` is that arithmetic; `kernel_rounding` says which a call
uses; GRPO_STUDIO_QMM_LOOKUP=bitsandbytes keeps bitsandbytes' own rounding). Without Triton, or on the CPU,
`quant_linear` runs the reference (backend "torch"); backend "interpret" runs the Triton kernel
through Triton's CPU interpreter (slow: for tests).

Bytes a decode step reads per group (`decode_bytes`): rows*cols/2 for the nibbles, plus 4 bytes
per block of scales (1 byte with double quantization, and 4 per 256 blocks), plus the stacked LoRA
factors (R*(K + N) 16-bit values for the group's total rank R, block-diagonal zeros included). At
7B with NF4 + double quantization, 64-blocks and r = 16 on every projection that is 0.516 + 0.019
bytes per weight, against 2 for a bf16 copy (plus, for both, the KV cache and the LM head).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

try:  # Triton ships with CUDA builds of PyTorch; without it only the reference path runs.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = tl = None

INT8_SCALE = 7.874015718698502e-3  # 1 / 127, the constant bitsandbytes multiplies by
# The kernel's code lookup: byte $2 -> the float32 code values of its high ($0) and low ($1) nibbles,
# from the 16-entry table at $3.
CODE_PAIR_PTX = ("{ .reg .b32 i0, i1; .reg .b64 a0, a1; shr.u32 i0, $2, 4; and.b32 i1, $2, 15; "
                 "mad.wide.u32 a0, i0, 4, $3; mad.wide.u32 a1, i1, 4, $3; "
                 "ld.global.nc.f32 $0, [a0]; ld.global.nc.f32 $1, [a1]; }")
# The same for four bytes at once (one 32-bit register, $8: no unpacking of bytes) from a 64-byte
# aligned table, whose address's low 32 bits are $9 and high 32 bits $13: a nibble's entry is at
# low | nibble * 4 (one shift and one and-or a nibble, no 64-bit arithmetic). $0-$3: the high
# nibbles' values of bytes 0-3, $4-$7 the low nibbles'.
CODE_QUAD_PTX = " ".join(
    ["{ .reg .b32 t<8>; .reg .b64 a<8>;"]
    + [f"{'shr' if shift >= 0 else 'shl'}.b32 t{2 * i + j}, $8, {abs(shift)}; and.b32 t{2 * i + j}, t{2 * i + j}, 60; "
       f"or.b32 t{2 * i + j}, t{2 * i + j}, $9; mov.b64 a{2 * i + j}, {{t{2 * i + j}, $13}};"
       for i in range(4) for j, shift in enumerate((8 * i + 2, 8 * i - 2))]
    + [f"ld.global.nc.f32 ${i}, [a{2 * i}]; ld.global.nc.f32 ${4 + i}, [a{2 * i + 1}];" for i in range(4)]
    + ["}"])


@functools.lru_cache(maxsize=16)
def register_table_ptx(code: tuple[float, ...], dtype: torch.dtype) -> str:
    """The lookup from a table held in registers: four packed bytes ($4) -> the eight weights as
    code[nibble] * scale in `dtype` (bfloat16 or float16), with no memory access.

    The 16 code values, rounded to `dtype`, are split into byte planes (L = their low bytes, H their
    high bytes; 8 entries a register pair) and looked up with `prmt`, which picks bytes of a register
    pair by 3-bit selectors: the selector nibbles are the packed nibbles themselves (bits 0-15 of the
    packed word are byte 0's low, byte 0's high, byte 1's low and high nibble), their bit 3 chooses
    between the table's halves (a mask made by prmt's sign-replicating mode, one lop3 select). The
    bytes are then paired into 16-bit values and multiplied by the row's scale ($5: elements 0-1,
    $6: elements 2-3, as Triton packs 16-bit operands) in one packed fma: one rounding of the exact
    product. Outputs: $0, $1 the high nibbles' values of bytes 0-1 and 2-3, $2, $3 the low nibbles'.
    About 3 instructions a weight, against 5-6 for a lookup through memory (CODE_QUAD_PTX)."""
    bits = [int(b) & 0xFFFF for b in torch.tensor(list(code), dtype=torch.float32).to(dtype).view(torch.int16)]
    if len(bits) != 16:
        raise QuantFormatError(f"a 4-bit code table of {len(bits)} entries")

    def planes(shift: int) -> list[int]:
        return [sum(((bits[4 * w + i] >> shift) & 0xFF) << (8 * i) for i in range(4)) for w in range(4)]

    fma = {torch.bfloat16: "fma.rn.bf16x2", torch.float16: "fma.rn.f16x2"}[dtype]
    lines = ["{ .reg .b32 s, v, m, la, lb, ha, hb, lv, hv, t, z, L<4>, H<4>;"]
    lines += [f"mov.b32 {name}{w}, {value:#010x};" for name, shift in (("L", 0), ("H", 8))
              for w, value in enumerate(planes(shift))]
    lines += ["mov.b32 z, 0x80008000;",  # + (-0): the product unchanged, its sign kept
              "and.b32 s, $4, 0x77777777;",  # the selectors (bit 3 would mean prmt's sign mode)
              "shl.b32 v, $4, 4;"]  # each low nibble's bit 3 at its byte's bit 7, for the masks
    for half, mask_sel, out_hi, out_lo, scale in ((0, 0xD9C8, "$0", "$2", "$5"), (1, 0xFBEA, "$1", "$3", "$6")):
        if half:
            lines.append("shr.b32 s, s, 16;")
        lines += [f"prmt.b32 m, v, $4, {mask_sel:#06x};",  # 0xFF in the bytes whose nibble is 8-15
                  "prmt.b32 la, L0, L1, s;", "prmt.b32 lb, L2, L3, s;",
                  "prmt.b32 ha, H0, H1, s;", "prmt.b32 hb, H2, H3, s;",
                  "lop3.b32 lv, la, lb, m, 0xD8;", "lop3.b32 hv, ha, hb, m, 0xD8;",  # m ? b : a
                  f"prmt.b32 t, lv, hv, 0x7351; {fma} {out_hi}, t, {scale}, z;",  # odd nibbles = high
                  f"prmt.b32 t, lv, hv, 0x6240; {fma} {out_lo}, t, {scale}, z;"]
    return " ".join(lines + ["}"])


class QuantFormatError(ValueError):
    """A weight this module can't read (the message says what is different)."""


@dataclass
class QuantWeight:
    """One quantized [rows, cols] weight as the kernel reads it: views of the parameter's own
    tensors (no copies), plus what bitsandbytes needs to dequantize it for a prefill."""

    kind: str  # "nf4", "fp4" or "int8"
    rows: int
    cols: int
    data: torch.Tensor  # 4-bit: uint8 [(rows*cols + 1) // 2]; int8: int8 [rows, cols]
    scales: torch.Tensor  # float32 absmax [blocks] | uint8 nested codes [blocks] | float32 SCB [rows]
    dtype: torch.dtype  # the dtype bitsandbytes dequantizes to (quant_state.dtype; float16 for int8)
    blocksize: int = 0
    code: torch.Tensor | None = None  # float32 [16] (4-bit)
    absmax2: torch.Tensor | None = None  # double quantization: float32 [ceil(blocks / blocksize2)]
    code2: torch.Tensor | None = None  # float32 [256]
    blocksize2: int = 0
    offset: float = 0.0
    code_values: tuple[float, ...] | None = None  # `code` on the host (the register table's PTX holds it)
    param: Any = field(default=None, repr=False)  # the bitsandbytes parameter itself

    @property
    def nested(self) -> bool:
        return self.absmax2 is not None

    def aligned(self, block_k: int) -> bool:
        """Tiles of `block_k` columns never straddle rows or scale blocks: the kernel's fast path."""
        if self.kind == "int8":
            return self.cols % block_k == 0
        return self.cols % self.blocksize == 0 and self.blocksize % block_k == 0

    @classmethod
    def from_param(cls, weight: Any, module: Any = None) -> "QuantWeight":
        """The layout of a bitsandbytes `Params4bit` or `Int8Params` (QuantFormatError otherwise).

        `module`: the Linear8bitLt owning an 8-bit weight, whose first forward moves the row
        scales from the weight to `module.state.SCB`."""
        name = type(weight).__name__
        if name == "Int8Params":
            scb = getattr(weight, "SCB", None)
            if scb is None and module is not None:
                scb = getattr(getattr(module, "state", None), "SCB", None)
            if weight.data.dtype != torch.int8 or scb is None:
                raise QuantFormatError("an 8-bit weight that is not quantized yet (no SCB)")
            rows, cols = weight.data.shape
            if not weight.data.is_contiguous():
                raise QuantFormatError("a non-contiguous 8-bit weight")
            return cls("int8", rows, cols, weight.data, scb.float(), torch.float16, param=weight)
        if name != "Params4bit":
            raise QuantFormatError(f"{name} is not a bitsandbytes quantized weight")
        state = weight.quant_state
        if state is None:
            raise QuantFormatError("a 4-bit weight without its quantization state")
        if getattr(state, "packing_format_for_cpu", False):
            raise QuantFormatError("bitsandbytes' CPU (AVX512) repacked 4-bit layout")
        if state.quant_type not in ("nf4", "fp4"):
            raise QuantFormatError(f"4-bit type {state.quant_type!r}")
        rows, cols = int(state.shape[0]), int(state.shape[1])
        data = weight.data.reshape(-1).view(torch.uint8)
        if data.numel() < (rows * cols + 1) // 2:
            raise QuantFormatError(f"packed 4-bit data of {data.numel()} bytes for a [{rows}, {cols}] weight")
        code = state.code.float()
        qw = cls(state.quant_type, rows, cols, data, state.absmax, state.dtype, blocksize=int(state.blocksize),
                 code=code, code_values=tuple(code.tolist()), param=weight)  # 16 values read once, here
        if state.nested:
            s2 = state.state2
            qw.absmax2, qw.code2, qw.blocksize2 = s2.absmax.float(), s2.code.float(), int(s2.blocksize)
            qw.offset = float(state.offset)  # one host read per weight, at construction
        elif state.absmax.dtype != torch.float32:
            qw.scales = state.absmax.float()
        return qw

    def decode_bytes(self) -> int:
        """Bytes one full pass over this weight reads: the packed values and their scales."""
        if self.kind == "int8":
            return self.rows * self.cols + 4 * self.rows
        blocks = -(-self.rows * self.cols // self.blocksize)
        scales = blocks * (1 if self.nested else 4) + (4 * self.absmax2.numel() if self.nested else 0)
        return (self.rows * self.cols + 1) // 2 + scales


# ---- the reference: the same arithmetic in plain PyTorch ---------------------------------------


def block_scales(qw: QuantWeight) -> torch.Tensor:
    """float32 scale of every block (4-bit), undoing double quantization."""
    if not qw.nested:
        return qw.scales
    q = qw.scales.long()
    return qw.code2[q] * qw.absmax2[torch.arange(q.numel(), device=q.device) // qw.blocksize2] + qw.offset


def dequantize(qw: QuantWeight, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The [rows, cols] weight, as bitsandbytes dequantizes it (rounded to qw.dtype), in `dtype`."""
    if qw.kind == "int8":  # in slices of rows: the float32 intermediate stays small
        out = torch.empty(qw.rows, qw.cols, dtype=dtype or qw.dtype, device=qw.data.device)
        step = max(1, 2**22 // max(1, qw.cols))
        for r in range(0, qw.rows, step):
            w = (qw.data[r:r + step].float() * qw.scales[r:r + step, None]) * INT8_SCALE
            out[r:r + step] = w.to(qw.dtype)
        return out
    nibbles, scale = _nibbles_and_scales(qw)
    w = (qw.code[nibbles] * scale).reshape(qw.rows, qw.cols)
    return w.to(qw.dtype).to(dtype or qw.dtype)


def _nibbles_and_scales(qw: QuantWeight) -> tuple[torch.Tensor, torch.Tensor]:
    """A 4-bit weight's flat code indices and each element's float32 block scale."""
    n = qw.rows * qw.cols
    data = qw.data[: (n + 1) // 2]
    nibbles = torch.stack([data >> 4, data & 0xF], dim=1).reshape(-1)[:n].long()
    return nibbles, block_scales(qw)[torch.arange(n, device=data.device) // qw.blocksize]


def register_dequantize(qw: QuantWeight, dtype: torch.dtype) -> torch.Tensor:
    """The 4-bit weight as the register-table lookup computes it (register_table_ptx): code and block
    scale each rounded to `dtype`, their product rounded once (bitsandbytes rounds code * scale
    computed in float32; the two differ by about a unit in the last place)."""
    nibbles, scale = _nibbles_and_scales(qw)
    scale = scale.to(dtype).float()
    return (qw.code.to(dtype).float()[nibbles] * scale).to(dtype).reshape(qw.rows, qw.cols)


def reference_linear(x: torch.Tensor, parts: Sequence[QuantWeight], bias: torch.Tensor | None = None,
                     lora_xa: torch.Tensor | None = None, lora_b: torch.Tensor | None = None,
                     out_dtype: torch.dtype | None = None, rounding: str = "bitsandbytes") -> torch.Tensor:
    """x [M, K] -> [M, sum(rows)]: x W^T + bias + lora_xa lora_b^T, accumulated in float32.

    rounding "register": the 4-bit weights as the register-table lookup rounds them."""
    register = rounding == "register" and parts[0].kind != "int8"
    w = torch.cat([register_dequantize(p, x.dtype) if register else dequantize(p, x.dtype) for p in parts]).float()
    y = x.float() @ w.T
    if lora_b is not None:
        y += lora_xa.float() @ lora_b.float().T
    if bias is not None:
        y += bias.float()
    return y.to(out_dtype or x.dtype)


# ---- the Triton kernel -----------------------------------------------------------------------------

if tl is not None:

    _CODE_PAIR_PTX = tl.constexpr(CODE_PAIR_PTX)  # a kernel reads module globals only as constexprs
    _CODE_QUAD_PTX = tl.constexpr(CODE_QUAD_PTX)

    # Only Triton builtins inside (no tl.zeros / tl.cdiv / tl.interleave, which are themselves
    # jit functions): then the same source also runs in Triton's CPU interpreter without
    # TRITON_INTERPRET having been set before Triton was imported.
    def _qmm_kernel(X, stride_xm, Out, stride_om, Ws, Locks, M, K, k_per_split, n_total, stride_wn,
                    W0, S0, T0, N0, off0, W1, S1, T1, N1, off1, W2, S2, T2, N2, off2,
                    Code, Code2, Bias, XA, stride_xam, LB, R,
                    FMT: tl.constexpr, QB: tl.constexpr, QB2: tl.constexpr, NESTED: tl.constexpr,
                    ALIGNED: tl.constexpr, NPARTS: tl.constexpr, HAS_BIAS: tl.constexpr, R_PAD: tl.constexpr,
                    SPLIT: tl.constexpr, W_DTYPE: tl.constexpr, LOOKUP: tl.constexpr, TABLE_PTX: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
        """One [BLOCK_N rows of W] x [BLOCK_M rows of x] tile over one K range (a split).

        Computes the transposed tile acc[n, m] = sum_k W[n, k] x[m, k], so that the large weight
        dimension is the matrix unit's M side and a small batch its N side ("swap AB").

        LOOKUP (the aligned 4-bit path's code lookup, see `lookup_for`): 0 loads (bitsandbytes'
        rounding), 1 CODE_PAIR_PTX, 2 CODE_QUAD_PTX (both bitsandbytes' rounding), 3 TABLE_PTX (a table
        in registers, code and scale in x's dtype), 4 loads with LOOKUP 3's rounding (the interpreter's
        stand-in for 3).

        SPLIT (more than one program a tile's K range): 0 no; 1 the partial tiles summed by
        _split_sum_kernel; 2 summed by the tile's last program (`Locks`: a zeroed int32 a tile)."""
        pid_m = tl.program_id(0)
        pid_n = tl.program_id(1)
        pid_k = tl.program_id(2)
        # Which of the (up to 3) stacked weights this column tile belongs to.
        w_ptr = W0
        s_ptr = S0
        t_ptr = T0
        # `+ col0` keeps n_rows a runtime value when Triton made a one-row weight's N0 a constant 1
        # (the branches below must assign the same type).
        col0 = pid_n * 0
        n_rows = N0 + col0
        offset = off0
        tile = pid_n
        if NPARTS > 1:
            tiles0 = (N0 + BLOCK_N - 1) // BLOCK_N
            if tile >= tiles0:
                w_ptr = W1
                s_ptr = S1
                t_ptr = T1
                n_rows = N1 + col0 * 0
                offset = off1
                col0 = col0 + N0
                tile = tile - tiles0
                if NPARTS > 2:
                    tiles1 = (N1 + BLOCK_N - 1) // BLOCK_N
                    if tile >= tiles1:
                        w_ptr = W2
                        s_ptr = S2
                        t_ptr = T2
                        n_rows = N2 + col0 * 0
                        offset = off2
                        col0 = col0 + N1
                        tile = tile - tiles1

        offs_n = tile * BLOCK_N + tl.arange(0, BLOCK_N)
        n_ok = offs_n < n_rows
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        m_ok = offs_m < M
        k_lo = pid_k * k_per_split
        k_hi = tl.minimum(K, k_lo + k_per_split)
        kk = tl.arange(0, BLOCK_K)
        HALF: tl.constexpr = BLOCK_K // 2
        jj = tl.arange(0, HALF)
        acc = tl.full((BLOCK_N, BLOCK_M), 0.0, tl.float32)
        if ALIGNED and FMT == 4:
            # The two nibbles of a byte are columns 2j (high) and 2j+1 (low). A dot product may take
            # its K terms in any order, so the high nibbles and the low nibbles go into two products
            # of BLOCK_K / 2 each, against the even and the odd columns of x: no interleaving of the
            # two halves in registers (a join + reshape, a layout change through shared memory).
            # Rows past the end read row 0 instead (their results are never stored) and every K
            # range is whole tiles: loads without masks, which the compiler can vectorize.
            rows = tl.where(n_ok, offs_n, 0)
            w_ptrs = w_ptr + rows[:, None] * stride_wn + (k_lo // 2 + jj)[None, :]
            # The activations as contiguous rows (vector loads), split into their even and odd columns
            # in registers: two strided 2-byte loads and shared-memory stores an element before. With
            # the four-byte lookup below: 256 instructions in the K loop instead of 307 (sm_90), and on
            # an H200 gate/up 104.0 -> 93.8 µs, down 54.1 -> 51.8, o 16.7 -> 15.7, a 7B quantized decode
            # step 7.67 -> 7.39 ms (the ninth session's calls Y and AB, measure_quant_variants.py and
            # measure_quant_decode.py; the output bit for bit the same at the same split).
            x_ptrs = X + tl.where(m_ok, offs_m, 0)[:, None] * stride_xm + (k_lo + kk)[None, :]
            for k0 in range(k_lo, k_hi, BLOCK_K):
                pairs = tl.load(w_ptrs)
                sidx = rows * (K // QB) + k0 // QB  # BLOCK_K divides the block: one scale a row
                if NESTED:
                    q = tl.load(s_ptr + sidx).to(tl.int32)
                    scale = tl.load(Code2 + q) * tl.load(t_ptr + sidx // QB2) + offset
                else:
                    scale = tl.load(s_ptr + sidx)
                # Both halves of the activations are loaded before the weights are looked up: their
                # latency (L2) then overlaps the lookups, and both tiles go through shared memory
                # before one barrier. Loaded at the first product instead, the second half's loads
                # waited behind it, with a barrier more a tile: 116.6 -> 104.2 µs for the 7B gate/up,
                # 72.9 -> 64.4 down, 21.7 -> 19.0 o (H200, calls P and Q, measure_quant_variants.py).
                x_even, x_odd = tl.split(tl.reshape(tl.load(x_ptrs), (BLOCK_M, HALF, 2)))
                xe = tl.trans(x_even)
                xo = tl.trans(x_odd)
                xdt = X.dtype.element_ty
                if LOOKUP == 3:
                    # A table in registers (register_table_ptx): code[nibble] and the scale in x's dtype,
                    # their product rounded once; bitsandbytes rounds the float32 product instead (the two
                    # differ by about a unit in the last place).
                    row_scale = tl.broadcast_to(scale.to(xdt)[:, None], (BLOCK_N, HALF))
                    hi, lo = tl.inline_asm_elementwise(TABLE_PTX, "=r,=r,=r,=r,r,r,r", [pairs, row_scale],
                                                       dtype=(xdt, xdt), is_pure=True, pack=4)
                elif LOOKUP == 4:  # LOOKUP 3's arithmetic through loads (Triton's CPU interpreter has no PTX)
                    s16 = scale.to(xdt).to(tl.float32)[:, None]
                    hi = (tl.load(Code + (pairs >> 4).to(tl.int32)).to(xdt).to(tl.float32) * s16).to(xdt)
                    lo = (tl.load(Code + (pairs & 0xF).to(tl.int32)).to(xdt).to(tl.float32) * s16).to(xdt)
                else:
                    if LOOKUP == 2:
                        # Four bytes a PTX block, 32-bit table addresses (see CODE_QUAD_PTX).
                        base = Code.to(tl.int64, bitcast=True)
                        low = (base & 0xFFFFFFFF).to(tl.int32) + (pairs & 0).to(tl.int32)
                        high = (base >> 32).to(tl.int32) + (pairs & 0).to(tl.int32)
                        code_hi, code_lo = tl.inline_asm_elementwise(
                            _CODE_QUAD_PTX, "=r,=r,=r,=r,=r,=r,=r,=r,r,r,r,r,r,r,r,r,r", [pairs, low, high],
                            dtype=(tl.float32, tl.float32), is_pure=True, pack=4)
                    elif LOOKUP == 1:
                        # Both nibbles' code values in one PTX block: 32-bit index arithmetic, and loads
                        # through the read-only data cache. Two tl.load gathers need 64-bit pointer
                        # tensors: 120 registers a thread against 66, two blocks a multiprocessor against
                        # three; 10-25% slower per launch on an H200 (tests/engine/measure_quant_variants.py).
                        b = pairs.to(tl.int32)
                        code_hi, code_lo = tl.inline_asm_elementwise(
                            _CODE_PAIR_PTX, "=r,=r,r,l", [b, Code + (b & 0)], dtype=(tl.float32, tl.float32),
                            is_pure=True, pack=1)
                    else:  # Triton's CPU interpreter has no PTX
                        code_hi = tl.load(Code + (pairs >> 4).to(tl.int32))
                        code_lo = tl.load(Code + (pairs & 0xF).to(tl.int32))
                    # bitsandbytes' arithmetic: code * scale in float32, rounded once to its dtype.
                    hi = (code_hi * scale[:, None]).to(W_DTYPE).to(xdt)
                    lo = (code_lo * scale[:, None]).to(W_DTYPE).to(xdt)
                acc += tl.dot(hi, xe)
                acc += tl.dot(lo, xo)
                w_ptrs += HALF
                x_ptrs += BLOCK_K
        elif ALIGNED:  # 8-bit rows: one scale a row
            rows = tl.where(n_ok, offs_n, 0)
            x_ptrs = X + tl.where(m_ok, offs_m, 0)[None, :] * stride_xm + (k_lo + kk)[:, None]
            w_ptrs = w_ptr + rows[:, None] * stride_wn + (k_lo + kk)[None, :]
            scale = tl.load(s_ptr + rows)
            for k0 in range(k_lo, k_hi, BLOCK_K):
                w = (tl.load(w_ptrs).to(tl.float32) * scale[:, None]) * 7.874015718698502e-3
                acc += tl.dot(w.to(W_DTYPE).to(X.dtype.element_ty), tl.load(x_ptrs))
                w_ptrs += BLOCK_K
                x_ptrs += BLOCK_K
        else:
            for k0 in range(k_lo, k_hi, BLOCK_K):
                k_ok = (k0 + kk) < k_hi
                ok = n_ok[:, None] & k_ok[None, :]
                if FMT == 4:
                    # Any shape: flat element index, its byte and nibble, its block's scale.
                    flat = offs_n[:, None] * K + (k0 + kk)[None, :]
                    byte = tl.load(w_ptr + flat // 2, mask=ok, other=0)
                    nib = tl.where((flat % 2) == 0, byte >> 4, byte & 0xF).to(tl.int32)
                    sidx = flat // QB
                    if NESTED:
                        q = tl.load(s_ptr + sidx, mask=ok, other=0).to(tl.int32)
                        scale = tl.load(Code2 + q) * tl.load(t_ptr + sidx // QB2, mask=ok, other=0.0) + offset
                    else:
                        scale = tl.load(s_ptr + sidx, mask=ok, other=0.0)
                    w = tl.load(Code + nib) * scale
                else:
                    q8 = tl.load(w_ptr + offs_n[:, None] * stride_wn + (k0 + kk)[None, :], mask=ok, other=0)
                    scale = tl.load(s_ptr + offs_n, mask=n_ok, other=0.0)
                    w = (q8.to(tl.float32) * scale[:, None]) * 7.874015718698502e-3
                w = w.to(W_DTYPE).to(X.dtype.element_ty)
                xt = tl.load(X + offs_m[None, :] * stride_xm + (k0 + kk)[:, None],
                             mask=m_ok[None, :] & k_ok[:, None], other=0.0)  # [BLOCK_K, BLOCK_M]
                acc += tl.dot(w, xt)

        cols = col0 + offs_n
        if R_PAD > 0:
            if pid_k == 0:  # the low-rank update and the bias once, in the first split
                rr = tl.arange(0, R_PAD)
                r_ok = rr < R
                b_t = tl.load(LB + cols[:, None] * R + rr[None, :], mask=n_ok[:, None] & r_ok[None, :], other=0.0)
                xa_t = tl.load(XA + offs_m[None, :] * stride_xam + rr[:, None], mask=m_ok[None, :] & r_ok[:, None],
                               other=0.0)
                acc += tl.dot(b_t, xa_t)
        if HAS_BIAS:
            if pid_k == 0:
                acc += tl.load(Bias + cols, mask=n_ok, other=0.0).to(tl.float32)[:, None]
        ok = n_ok[:, None] & m_ok[None, :]
        if SPLIT:
            tl.store(Ws + pid_k * M * n_total + offs_m[None, :] * n_total + cols[:, None], acc, mask=ok)
            if SPLIT == 2:
                # The tile's last split to finish sums all of them, in split order (deterministic), and
                # sets the tile's counter back to 0 for the next launch: no second kernel a group (one
                # launch and its gap less in a CUDA graph). The barrier orders every thread's partial
                # before the release of the count; the acquire orders the loads after the others' releases
                # (a semaphore as CUTLASS writes it); .cg loads read L2, not a stale L1 line.
                tl.debug_barrier()
                lock = Locks + pid_m * tl.num_programs(1) + pid_n
                if tl.atomic_add(lock, 1, sem="acq_rel") == tl.num_programs(2) - 1:
                    partials = Ws + offs_m[None, :] * n_total + cols[:, None]
                    total = tl.load(partials, mask=ok, other=0.0, cache_modifier=".cg")
                    for s in range(1, tl.num_programs(2)):
                        total += tl.load(partials + s * M * n_total, mask=ok, other=0.0, cache_modifier=".cg")
                    tl.store(Out + offs_m[None, :] * stride_om + cols[:, None], total.to(Out.dtype.element_ty), mask=ok)
                    tl.atomic_xchg(lock, 0)
        else:
            tl.store(Out + offs_m[None, :] * stride_om + cols[:, None], acc.to(Out.dtype.element_ty), mask=ok)

    def _split_sum_kernel(Ws, Out, stride_om, M, n_total, splits, BLOCK: tl.constexpr):
        """Out = the sum of the splits' float32 partial tiles, in a fixed order (deterministic)."""
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        ok = offs < M * n_total
        acc = tl.load(Ws + offs, mask=ok, other=0.0)
        for s in range(1, splits):
            acc += tl.load(Ws + s * M * n_total + offs, mask=ok, other=0.0)
        tl.store(Out + (offs // n_total) * stride_om + offs % n_total, acc.to(Out.dtype.element_ty), mask=ok)

    # The row counts stay specialized (Triton notes which are multiples of 16, and stores the output
    # tile with vector stores): unspecialized, the 7B gate/up launch took 128.6 µs, specialized 116.6
    # (H200, the seventh session's calls O and P, measure_quant_variants.py's "quant_linear as shipped" rows).
    _JIT = (triton.jit(_qmm_kernel), triton.jit(_split_sum_kernel))

_INTERPRETED: tuple[Any, Any] | None = None


def _kernels(backend: str) -> tuple[Any, Any]:
    global _INTERPRETED
    if backend == "triton":
        return _JIT
    if _INTERPRETED is None:
        from grpo_studio.engine.triton_cpu import interpreted_kernel

        _INTERPRETED = (interpreted_kernel(_qmm_kernel), interpreted_kernel(_split_sum_kernel))
    return _INTERPRETED


# ---- choosing the launch ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """One launch shape. `split_k` = how many programs share one output tile's K range."""

    block_n: int = 128
    block_k: int = 64  # at most the quantization block (one scale per row and tile)
    block_m: int = 0  # 0: the batch rounded up to a power of two, 16...64
    split_k: int = 0  # 0: enough splits to give every multiprocessor `waves` programs
    num_warps: int = 8
    # One stage. With 2 or 3, Triton (3.6, sm_90) turned tl.load code lookups into async copies
    # through shared memory, 5-8x slower on an H200 (tests/engine/measure_quant_decode.py); with the
    # PTX lookup it pipelines only the packed bytes, and was still 20-30% slower than one stage.
    num_stages: int = 1
    waves: float = 8.0

    @classmethod
    def parse(cls, text: str) -> "Config":
        """"block_n=128,num_warps=8" -> Config (the format `measure_quant_decode.py` prints)."""
        fields = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, _, value = item.partition("=")
            fields[key.strip()] = float(value) if key.strip() == "waves" else int(value)
        return cls(**fields)


# Launch shapes measured best per (batch bucket, K, N) on a GPU (see tests/engine/measure_quant_decode.py);
# everything else uses DEFAULT_CONFIG. GRPO_STUDIO_QMM_CONFIG="block_n=..,num_warps=.." overrides all.
TUNED: dict[tuple[int, int, int], Config] = {  # measured on an H200, batch 32
    # The tenth session's sweep of the register-table kernel (call AC, measure_quant_decode.py): q/k/v 14.8 µs,
    # gate/up 75.5, o 14.5, down 41.9 (the ninth session's launches: 15.9, 85.1, 14.0, 44.3 with this kernel);
    # call AD's sweep, split-K summed in the launch, chose the same (15.4, 75.4, 14.2, 45.3).
    (32, 3584, 4608): Config(block_n=64, num_warps=4, waves=4.0),  # Qwen2.5-7B q/k/v
    (32, 3584, 37888): Config(block_n=64, num_warps=4, waves=4.0),  # 7B gate/up
    (32, 3584, 3584): Config(block_n=64, num_warps=4, waves=4.0),  # 7B o
    (32, 18944, 3584): Config(block_n=128, num_warps=4, waves=4.0),  # 7B down
    # Qwen2.5-0.5B in 4-bit (call AD, the same kernel with split-K summed in the launch): 6.8, 10.6, 6.5, 12.5 µs.
    (32, 896, 1152): Config(block_n=64, num_warps=4, waves=1.0),  # 0.5B q/k/v
    (32, 896, 9728): Config(block_n=64, num_warps=4, waves=4.0),  # 0.5B gate/up
    (32, 896, 896): Config(block_n=64, num_warps=4, waves=1.0),  # 0.5B o
    (32, 4864, 896): Config(block_n=64, num_warps=4, waves=2.0),  # 0.5B down
}
DEFAULT_CONFIG = Config.parse(os.environ["GRPO_STUDIO_QMM_CONFIG"]) if os.environ.get("GRPO_STUDIO_QMM_CONFIG") \
    else Config()


def read_tuned(path: str) -> dict[tuple[int, int, int], Config]:
    """Launch shapes measured on this GPU, as `measure_quant_decode.py --write-tuned PATH` writes them:
    a JSON list of {"batch": .., "K": .., "N": .., "config": "block_n=..,num_warps=.."}."""
    import json

    with open(path, encoding="utf-8") as f:
        entries = json.load(f)
    try:
        return {(int(e["batch"]), int(e["K"]), int(e["N"])): Config.parse(e["config"]) for e in entries}
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not a list of tuned launches ({exc})") from exc


# GRPO_STUDIO_QMM_TUNED=PATH adds (or replaces) entries of TUNED with a sweep's results for this GPU.
if os.environ.get("GRPO_STUDIO_QMM_TUNED"):
    TUNED.update(read_tuned(os.environ["GRPO_STUDIO_QMM_TUNED"]))


def config_for(M: int, K: int, N: int) -> Config:
    if os.environ.get("GRPO_STUDIO_QMM_CONFIG"):
        return DEFAULT_CONFIG
    return TUNED.get((min(64, max(16, _pow2(M))), K, N), DEFAULT_CONFIG)


# The aligned 4-bit path's code lookup: "register" (a table held in registers, code and scale in x's
# dtype; since the tenth session) or "bitsandbytes" (the float32 code read through the cache, scaled and
# rounded as bitsandbytes does). GRPO_STUDIO_QMM_LOOKUP=bitsandbytes chooses the latter (troubleshooting,
# benchmarks set the attribute).
LOOKUP = os.environ.get("GRPO_STUDIO_QMM_LOOKUP", "register")


def lookup_for(backend: str, first: QuantWeight, x_dtype: torch.dtype) -> int:
    """The kernel's LOOKUP constexpr for this group and backend (see _qmm_kernel)."""
    if first.kind == "int8":
        return 0
    register = LOOKUP == "register" and first.code_values is not None and x_dtype in (torch.bfloat16, torch.float16)
    if backend == "triton":
        if register:
            return 3
        return 2 if first.code.data_ptr() % 64 == 0 else 1  # the four-byte lookup needs an aligned table
    return 4 if register else 0


# How split-K partial tiles are summed: "last split" (the tile's last program to finish, in the same
# launch; since the tenth session) or "kernel" (a second launch, _split_sum_kernel). Both sum in split
# order: the same output bit for bit.
SPLIT_SUM = os.environ.get("GRPO_STUDIO_QMM_SPLIT_SUM", "last split")
_COUNTERS: dict[torch.device, torch.Tensor] = {}
_RETIRED_COUNTERS: list[torch.Tensor] = []


def _tile_counters(device: torch.device, tiles: int) -> torch.Tensor:
    """Zeroed int32 counters, one a tile, that each launch leaves zeroed again. Shared by all launches
    on the device: they run one after another on one stream (the generator's, or its CUDA graph).
    Made on the first (eager, warm-up) call, outside any graph capture."""
    counters = _COUNTERS.get(device)
    if counters is None or counters.numel() < tiles:
        if counters is not None:  # a CUDA graph captured before may still point at it: never freed
            _RETIRED_COUNTERS.append(counters)
        counters = torch.zeros(max(tiles, 4096), dtype=torch.int32, device=device)
        _COUNTERS[device] = counters
    return counters


_SM_COUNT: dict[int, int] = {}


def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 8
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _SM_COUNT:
        _SM_COUNT[index] = torch.cuda.get_device_properties(index).multi_processor_count
    return _SM_COUNT[index]


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


@dataclass(frozen=True)
class Launch:
    block_m: int
    block_n: int
    block_k: int
    splits: int
    k_per_split: int
    num_warps: int
    num_stages: int
    grid: tuple[int, int, int]
    aligned: bool  # no masks along K (see the kernel)


def plan(M: int, parts: Sequence[QuantWeight], config: Config, sm_count: int) -> Launch:
    """Tile sizes, splits and grid for x [M, K] times the stacked `parts` (no device work)."""
    K = parts[0].cols
    block_m = config.block_m or min(64, max(16, _pow2(M)))
    block_k = max(32, min(config.block_k, _pow2(K)))
    if parts[0].kind != "int8" and parts[0].aligned(min(block_k, parts[0].blocksize)):
        block_k = max(32, min(block_k, parts[0].blocksize))  # one scale per row and tile
    aligned = parts[0].aligned(block_k)
    # The any-shape path keeps an index per element: smaller tiles keep it in registers.
    block_n = config.block_n if aligned else min(config.block_n, 64)
    n_tiles = sum(-(-p.rows // block_n) for p in parts)
    m_tiles = -(-M // block_m)
    k_iters = -(-K // block_k)
    splits = config.split_k or max(1, round(config.waves * sm_count / (n_tiles * m_tiles)))
    per_split = -(-k_iters // max(1, min(splits, k_iters)))
    splits = -(-k_iters // per_split)  # no empty split
    return Launch(block_m, block_n, block_k, splits, per_split * block_k, config.num_warps,
                  config.num_stages, (m_tiles, n_tiles, splits), aligned)


def default_backend(device: torch.device) -> str:
    """"triton" on a CUDA device with Triton installed, else "torch" (the reference);
    GRPO_STUDIO_QUANT_BACKEND=interpret|torch|triton overrides (tests, troubleshooting)."""
    chosen = os.environ.get("GRPO_STUDIO_QUANT_BACKEND")
    if chosen:
        return chosen
    return "triton" if device.type == "cuda" and tl is not None else "torch"


def missing_kernel(device: torch.device) -> str | None:
    """Why decoding on `device` would run the (slow) reference instead of the kernel, or None."""
    if device.type == "cuda" and tl is None and not os.environ.get("GRPO_STUDIO_QUANT_BACKEND"):
        return "quantized generation on a GPU needs Triton (it ships with CUDA builds of PyTorch)"
    return None


def check_group(parts: Sequence[QuantWeight]) -> None:
    """One launch reads up to 3 weights that share their input size and format."""
    first = parts[0]
    if not 1 <= len(parts) <= 3:
        raise QuantFormatError(f"{len(parts)} weights in one group (1 to 3)")
    for p in parts:
        if (p.kind, p.cols, p.blocksize, p.nested, p.blocksize2, p.dtype) != \
                (first.kind, first.cols, first.blocksize, first.nested, first.blocksize2, first.dtype):
            raise QuantFormatError("weights of one group quantized differently")
        if p.rows * max(p.cols, 2) >= 2**31:
            raise QuantFormatError(f"a [{p.rows}, {p.cols}] weight: too large for 32-bit indexing")
        if p.nested and not torch.equal(p.code2, first.code2):
            raise QuantFormatError("weights of one group with different double-quantization maps")


def quant_linear(x: torch.Tensor, parts: Sequence[QuantWeight], *, bias: torch.Tensor | None = None,
                 lora_xa: torch.Tensor | None = None, lora_b: torch.Tensor | None = None,
                 config: Config | None = None, backend: str | None = None) -> torch.Tensor:
    """x [M, K] (bf16/fp16, rows contiguous) -> [M, sum(rows)] in x's dtype.

    lora_xa [M, R] = x A^T and lora_b [sum(rows), R] (scale folded in) add the LoRA update;
    bias [sum(rows)]. Allocates only its output (and, with split K, a float32 scratch), launches
    with static shapes and never reads device values on the host: safe inside a CUDA graph."""
    backend = backend or default_backend(x.device)
    if backend == "torch":
        return reference_linear(x, parts, bias, lora_xa, lora_b)
    first = parts[0]
    M, K = x.shape
    n_total = sum(p.rows for p in parts)
    if x.stride(1) != 1:
        raise ValueError("quant_linear needs x with contiguous rows")
    run = plan(M, parts, config or config_for(M, K, n_total), _sm_count(x.device))
    out = torch.empty(M, n_total, dtype=x.dtype, device=x.device)
    ws = torch.empty(run.splits, M, n_total, dtype=torch.float32, device=x.device) if run.splits > 1 else out
    padded = list(parts) + [first] * (3 - len(parts))
    per_part = []
    for p in padded:
        nested = p.absmax2 if p.nested else p.scales  # unused without double quantization
        per_part += [p.data, p.scales, nested, p.rows, p.offset]
    rank = 0 if lora_b is None else lora_b.shape[1]
    four = first.kind != "int8"
    main, split_sum = _kernels(backend)
    lookup = lookup_for(backend, first, x.dtype)
    split = 0 if run.splits == 1 else 2 if SPLIT_SUM == "last split" else 1
    locks = _tile_counters(x.device, run.grid[0] * run.grid[1]) if split == 2 else ws
    w_dtype = {torch.bfloat16: tl.bfloat16, torch.float16: tl.float16, torch.float32: tl.float32}[first.dtype]
    main[run.grid](
        x, x.stride(0), out, out.stride(0), ws, locks, M, K, run.k_per_split, n_total,
        K // 2 if four else K, *per_part,
        first.code if four else first.scales, first.code2 if first.nested else first.scales,
        bias if bias is not None else out, lora_xa if rank else x, lora_xa.stride(0) if rank else 0,
        lora_b if rank else x, rank,
        FMT=4 if four else 8, QB=first.blocksize or 1, QB2=first.blocksize2 or 1, NESTED=first.nested,
        ALIGNED=run.aligned, NPARTS=len(parts), HAS_BIAS=bias is not None,
        R_PAD=0 if not rank else max(16, _pow2(rank)), SPLIT=split, W_DTYPE=w_dtype,
        LOOKUP=lookup, TABLE_PTX=register_table_ptx(first.code_values, x.dtype) if lookup == 3 else "",
        BLOCK_M=run.block_m, BLOCK_N=run.block_n, BLOCK_K=run.block_k,
        num_warps=run.num_warps, num_stages=run.num_stages)
    if split == 1:
        block = 1024
        split_sum[(-(-M * n_total // block),)](ws, out, out.stride(0), M, n_total, run.splits, BLOCK=block,
                                                num_warps=4)
    return out


def kernel_rounding(x: torch.Tensor, parts: Sequence[QuantWeight], config: Config | None = None,
                    backend: str | None = None) -> str:
    """How `quant_linear(x, parts, ...)` rounds the weights: "register" where its aligned 4-bit path
    looks the codes up in registers (register_dequantize), else "bitsandbytes" (dequantize)."""
    backend = backend or default_backend(x.device)
    if backend == "torch" or parts[0].kind == "int8":
        return "bitsandbytes"
    n_total = sum(p.rows for p in parts)
    run = plan(x.shape[0], parts, config or config_for(x.shape[0], x.shape[1], n_total), _sm_count(x.device))
    return "register" if run.aligned and lookup_for(backend, parts[0], x.dtype) in (3, 4) else "bitsandbytes"


def decode_bytes(parts: Sequence[QuantWeight], M: int, rank: int = 0, dtype_bytes: int = 2) -> dict[str, int]:
    """Bytes one `quant_linear` call reads from memory: weights (+ scales), LoRA factors, activations."""
    K, N = parts[0].cols, sum(p.rows for p in parts)
    return {"weights": sum(p.decode_bytes() for p in parts),
            "lora": rank * (K + N) * dtype_bytes,
            "activations": (M * K + M * rank + M * N) * dtype_bytes}
