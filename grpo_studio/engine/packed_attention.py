"""Attention over a packed row, one sequence at a time: what makes the padding-free forward pay.

Packed (packed_logps.py), a micro-batch's sequences sit end to end in one row. Given only position ids,
transformers' SDPA path masks that row with a block-diagonal [L, L] mask: attention over the whole row,
quadratic in L rather than in each sequence, and through SDPA's masked kernels. Measured on an H200
(Qwen2.5-7B shape, 4-bit, 16 sequences of ~220 tokens a micro-batch) that made the training half 2.4x
slower than the padded grid it was meant to shrink (3.23 s against 1.33 s).

So the packed forward passes its sequence boundaries (`PackedSegments`) down to the attention layers,
through the model's keyword arguments as transformers forwards them (and gradient checkpointing's
recompute with them), and `install()` puts a function in front of transformers' "sdpa" attention that,
when they are there, attends within each sequence only, causally:
- on CUDA, where PyTorch has it, `torch.nn.attention.varlen.varlen_attn`: one FlashAttention kernel for
  all sequences (with its backward);
- elsewhere, SDPA with `is_causal` on each sequence's slice in turn (the CPU tests run this).
Without the keyword, the function is transformers' own SDPA attention, untouched.

A segment may also attend to a shared prefix (packed_layout.py packs a prompt once for all the completions
of it in a micro-batch): all of the prefix, then itself causally, as if the prefix stood in front of it.
The variable-length kernel takes each segment's keys gathered (the prefix's, then its own) and aligns its
causal mask to the bottom right, where the segment's queries are; the loop masks the same explicitly.
"""

from __future__ import annotations

import inspect
import itertools
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

KWARG = "studio_packed_segments"  # the keyword the packed forward passes down to the attention layers


@dataclass(frozen=True)
class PackedSegments:
    """Where each sequence of a packed row starts and ends: host ints (the per-sequence loop) and the
    same boundaries on the device as int32 cumulative lengths (the variable-length kernel). With shared
    prefixes, also which segment each one attends to in front of itself, and the keys that makes."""

    bounds: tuple[int, ...]  # 0, end of sequence 1, end of sequence 2, ..., total tokens
    cu_seqlens: torch.Tensor
    max_len: int
    prefix_of: tuple[int, ...] = ()  # per segment: the segment it sees whole in front of itself, or -1
    key_index: torch.Tensor | None = None  # the row's keys, gathered segment by segment (prefix, then own)
    cu_seqlens_k: torch.Tensor | None = None
    max_len_k: int = 0  # the longest a segment's keys reach: its own length plus its prefix's

    @classmethod
    def from_lengths(cls, lengths: list[int], device: torch.device,
                     prefix_of: list[int] | None = None) -> PackedSegments:
        bounds = tuple(itertools.accumulate(lengths, initial=0))
        longest = max(lengths, default=0)
        if not prefix_of or all(p < 0 for p in prefix_of):
            return cls(bounds, torch.tensor(bounds, dtype=torch.int32, device=device), longest, max_len_k=longest)
        keys = []
        for i, p in enumerate(prefix_of):
            own = range(bounds[i], bounds[i + 1])
            keys.append([*range(bounds[p], bounds[p + 1]), *own] if p >= 0 else list(own))
        key_bounds = list(itertools.accumulate((len(k) for k in keys), initial=0))
        return cls(bounds, torch.tensor(bounds, dtype=torch.int32, device=device), longest, tuple(prefix_of),
                   torch.tensor([i for k in keys for i in k], dtype=torch.long, device=device),
                   torch.tensor(key_bounds, dtype=torch.int32, device=device), max(len(k) for k in keys))

    @property
    def shares_prefixes(self) -> bool:
        return self.key_index is not None

    def keys_of(self, i: int) -> tuple[int, int, int, int]:
        """Segment i's keys as two ranges of the row: its prefix (empty without one), then itself."""
        p = self.prefix_of[i] if self.prefix_of else -1
        start, end = (self.bounds[p], self.bounds[p + 1]) if p >= 0 else (0, 0)
        return start, end, self.bounds[i], self.bounds[i + 1]


def packed_sdpa(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: query [1, H, L, D], key/value [1, KV, L, D]; returns
    [1, L, H, D]. The packed row's mask is not needed: each sequence attends causally to itself."""
    segments = kwargs.pop(KWARG, None)
    window = kwargs.get("sliding_window")
    if segments is not None and ((window and segments.max_len_k > window) or dropout):
        if segments.shares_prefixes:  # transformers' mask can't say "this prefix too": packed_layout.py must not share
            raise RuntimeError("packed attention: a shared prompt prefix under a sliding window or attention dropout")
        segments = None  # a sliding window a sequence outgrows, or attention dropout: the masked row computes it
    if segments is None:
        return _sdpa(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    global varlen_failure
    out = None
    if query.is_cuda and _varlen is not None and varlen_failure is None:
        try:
            out = _varlen_attention(query, key, value, segments, scaling)
        except (RuntimeError, NotImplementedError, TypeError) as exc:  # this GPU or shape: the loop serves it
            varlen_failure = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    if out is None:
        out = _per_sequence_attention(query, key, value, segments, scaling)
    return out, None


def _per_sequence_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            segments: PackedSegments, scaling: float | None) -> torch.Tensor:
    gqa = key.shape[1] != query.shape[1]
    parts = []
    for i in range(len(segments.bounds) - 1):
        p_start, p_end, start, end = segments.keys_of(i)
        if end == start:
            continue
        q = query[:, :, start:end]
        if p_end == p_start:
            parts.append(F.scaled_dot_product_attention(q, key[:, :, start:end], value[:, :, start:end],
                                                        is_causal=True, scale=scaling, enable_gqa=gqa))
            continue
        k = torch.cat([key[:, :, p_start:p_end], key[:, :, start:end]], dim=2)
        v = torch.cat([value[:, :, p_start:p_end], value[:, :, start:end]], dim=2)
        # The whole prefix, then the segment causally: the causal mask aligned to the bottom right.
        mask = torch.ones(end - start, k.shape[2], dtype=torch.bool, device=q.device).tril(p_end - p_start)
        parts.append(F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scaling, enable_gqa=gqa))
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous()


def _varlen_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, segments: PackedSegments,
                      scaling: float | None) -> torch.Tensor | None:
    """One variable-length FlashAttention call, or None where this torch's kernel can't serve the call."""
    if query.dtype not in (torch.float16, torch.bfloat16):
        return None
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # [L, heads, D]
    if segments.key_index is not None:  # each segment's keys: its shared prefix's, then its own
        k, v = k.index_select(0, segments.key_index), v.index_select(0, segments.key_index)
    options: dict[str, Any] = {"scale": scaling}
    if "window_size" in _VARLEN_PARAMS:
        options["window_size"] = (-1, 0)  # causal (FlashAttention aligns it to the bottom right: past the prefix)
    elif "is_causal" in _VARLEN_PARAMS:
        options["is_causal"] = True
    else:
        return None
    if k.shape[1] != q.shape[1]:
        if "enable_gqa" in _VARLEN_PARAMS:
            options["enable_gqa"] = True
        else:
            groups = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    cu_k = segments.cu_seqlens if segments.cu_seqlens_k is None else segments.cu_seqlens_k
    out = _varlen(q, k, v, segments.cu_seqlens, cu_k, segments.max_len, segments.max_len_k, **options)
    return out.unsqueeze(0)  # [1, L, H, D]


def _find_varlen() -> tuple[Any, frozenset[str]]:
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None, frozenset()
    return varlen_attn, frozenset(inspect.signature(varlen_attn).parameters)


_varlen, _VARLEN_PARAMS = _find_varlen()
varlen_failure: str | None = None  # why the variable-length kernel failed once (then the loop serves every call)
_sdpa: Any = None


def install() -> None:
    """Put `packed_sdpa` in front of transformers' "sdpa" attention, for every model in this process
    (idempotent). Calls without the packed keyword reach transformers' function as before."""
    global _sdpa
    if _sdpa is not None:
        return
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    _sdpa = sdpa_attention_forward
    AttentionInterface.register("sdpa", packed_sdpa)
