"""A few PTX instructions, executed in Python: enough to run quant_matmul's register-table lookup
(`register_table_ptx`) on any machine, so that its byte arithmetic is tested where there is no GPU.

Only what that block uses: .reg declarations, mov/and/shl/shr.b32, prmt.b32 (default mode, with its
sign-replicating selectors), lop3.b32 and fma.rn.bf16x2 / fma.rn.f16x2 (packed pairs, one rounding
to nearest even), following the PTX ISA's definitions."""

from __future__ import annotations

import struct

import numpy as np


def prmt(a: int, b: int, selector: int) -> int:
    """Byte i of the result: byte (selector nibble i & 7) of {b, a}; with the nibble's bit 3 set, that
    byte's sign bit replicated."""
    source = [(a >> 8 * i) & 0xFF for i in range(4)] + [(b >> 8 * i) & 0xFF for i in range(4)]
    out = 0
    for i in range(4):
        nibble = (selector >> 4 * i) & 0xF
        byte = source[nibble & 7]
        if nibble & 8:
            byte = 0xFF if byte & 0x80 else 0
        out |= byte << 8 * i
    return out


def lop3(a: int, b: int, c: int, lut: int) -> int:
    out = 0
    for bit in range(32):
        index = ((a >> bit) & 1) << 2 | ((b >> bit) & 1) << 1 | ((c >> bit) & 1)
        out |= ((lut >> index) & 1) << bit
    return out


def _bf16_to_float(h: int) -> float:
    return struct.unpack("<f", struct.pack("<I", h << 16))[0]


def _float_to_bf16(x: float) -> int:
    """float32 -> bf16 bits, rounded to nearest even (x is a float32 value, not NaN)."""
    bits = struct.unpack("<I", struct.pack("<f", x))[0]
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) & 0xFFFF


def fma_pair(kind: str, a: int, b: int, c: int) -> int:
    """fma.rn.{bf16x2,f16x2}: each 16-bit half a*b + c, rounded once."""
    out = 0
    for half in range(2):
        x, y, z = ((v >> 16 * half) & 0xFFFF for v in (a, b, c))
        if kind == "bf16x2":  # the product of two bf16 values is exact in float32, + (-0) changes nothing
            r = _float_to_bf16(np.float32(_bf16_to_float(x)) * np.float32(_bf16_to_float(y))
                               + np.float32(_bf16_to_float(z)))
        else:
            f = [float(np.frombuffer(struct.pack("<H", v), np.float16)[0]) for v in (x, y, z)]
            r = int(np.array(f[0] * f[1] + f[2], dtype=np.float64).astype(np.float16).view(np.uint16))
        out |= r << 16 * half
    return out


def run(ptx: str, registers: dict[str, int]) -> dict[str, int]:
    """Execute one `{ ... }` inline-asm block; `registers` holds its operands ("$4": value, ...)."""
    env = dict(registers)
    body = ptx.strip()
    assert body.startswith("{") and body.endswith("}"), "one braced block"
    for instruction in filter(None, (part.strip() for part in body[1:-1].split(";"))):
        if instruction.startswith(".reg"):
            continue
        op, rest = instruction.split(None, 1)
        dest, *args = (a.strip() for a in rest.split(","))
        value = [env[a] if a in env else int(a, 0) for a in args]
        if op == "mov.b32":
            env[dest] = value[0]
        elif op == "and.b32":
            env[dest] = value[0] & value[1]
        elif op == "shl.b32":
            env[dest] = (value[0] << value[1]) & 0xFFFFFFFF
        elif op == "shr.b32":
            env[dest] = value[0] >> value[1]
        elif op == "prmt.b32":
            env[dest] = prmt(*value)
        elif op == "lop3.b32":
            env[dest] = lop3(*value)
        elif op in ("fma.rn.bf16x2", "fma.rn.f16x2"):
            env[dest] = fma_pair(op.split(".")[-1], *value)
        else:
            raise NotImplementedError(op)
    return env
