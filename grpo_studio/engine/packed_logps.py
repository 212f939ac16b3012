"""The training forward without padding: a micro-batch's sequences packed into one row.

TRL scores a micro-batch as a [batch, prompt + completion] grid: prompts padded on the left to the
longest prompt, completions on the right to the longest completion. When completions end at EOS, as
real GRPO completions do, much of that grid is padding that every projection still multiplies. Packed,
the real tokens of all sequences form one row whose position ids restart at 0 for each sequence;
transformers builds a block-diagonal causal mask from those restarts
(`masking_utils.find_packed_sequence_indices`), so every token attends to exactly what it attended to
in the grid. Rotary embeddings depend only on distances, which packing keeps. The log-probs (and
entropies) come back in TRL's [batch, logits_to_keep] layout, zero at padding, as TRL's own
`_get_per_token_logps_and_entropies` returns them.

Attention must then stay within each sequence without a dense [L, L] mask: the sequences' boundaries go
down to the attention layers (packed_attention.py, which the first packed call installs), which
attend sequence by sequence. `packing_pays` packs only when the padding saved is large (MIN_PADDING_SAVED).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch

# Pack only when at least this share of the grid is padding (the packing itself costs a copy, and the
# attention a loop or a variable-length kernel).
MIN_PADDING_SAVED = 0.25


def padding_free_blocker(model: Any) -> str | None:
    """Why this model's micro-batches can't be packed (None: they can). The Llama family, as the fast
    generator serves it: its SDPA attention takes nothing but queries, keys, values, a scale and a causal
    mask (and a sliding window, which packed_attention.py honours), so attention per sequence computes it."""
    from grpo_studio.engine.fast_weights import causal_lm
    from grpo_studio.engine.generation_mode import SUPPORTED_MODEL_TYPES

    config = causal_lm(model).config.get_text_config()
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        return f"model type {config.model_type!r}"
    attention = getattr(config, "_attn_implementation", None) or "sdpa"
    if attention != "sdpa":
        return f"attention {attention!r} (packing needs sdpa)"
    return None


def packing_pays(attention_mask: torch.Tensor, min_saved: float = MIN_PADDING_SAVED) -> bool:
    """True when every row's real tokens are one contiguous run (left-padded prompt, right-padded
    completion: what TRL builds) and at least `min_saved` of the grid is padding. One host sync."""
    keep = attention_mask.bool()
    runs = (keep[:, 1:] & ~keep[:, :-1]).sum(1) + keep[:, 0].long()  # starts of runs of real tokens
    real, scattered = torch.stack([keep.sum(), (runs > 1).sum()]).tolist()
    return scattered == 0 and 0 < real <= (1 - min_saved) * keep.numel()


def packed_logps_and_entropies(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                               logits_to_keep: int, compute_entropy: bool,
                               autocast: Callable[[], AbstractContextManager[Any]]) -> tuple[torch.Tensor, Any]:
    """Per-token log-probs of the last `logits_to_keep` columns (and their entropies), computed on the
    packed real tokens; `model` carries TRL's fused LM head (`add_fused_lm_head`)."""
    from grpo_studio.engine.packed_attention import KWARG, PackedSegments, install

    install()  # the attention layers read the segments (idempotent)
    keep = attention_mask.bool()
    positions = (attention_mask.long().cumsum(1) - 1).clamp(min=0)
    segments = PackedSegments.from_lengths(keep.sum(1).tolist(), input_ids.device)
    # TRL's labels: the completion columns' real tokens; each position scores the token after it.
    labels = input_ids.masked_fill(~keep, -100)
    labels[:, :-logits_to_keep] = -100
    next_labels = torch.full_like(labels, -100)
    next_labels[:, :-1] = labels[:, 1:]
    with autocast():
        out = model(input_ids=input_ids[keep].unsqueeze(0), position_ids=positions[keep].unsqueeze(0),
                    shift_labels=next_labels[keep].unsqueeze(0), fused_lm_head=True, **{KWARG: segments})

    def to_grid(packed: torch.Tensor) -> torch.Tensor:
        # Position j scored the token at j + 1: column c of the grid holds the score of column c + 1.
        grid = packed.new_zeros(keep.shape).masked_scatter(keep, packed[0])
        return grid[:, -logits_to_keep - 1:-1]

    return to_grid(out.log_probs), (to_grid(out.entropy) if compute_entropy else None)
