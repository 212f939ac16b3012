"""The training forward without padding: a micro-batch's sequences packed into one row.

TRL scores a micro-batch as a [batch, prompt + completion] grid: prompts padded on the left to the
longest prompt, completions on the right to the longest completion. When completions end at EOS, as
real GRPO completions do, much of that grid is padding that every projection still multiplies; and GRPO's
completions of one prompt each carry that prompt again. Packed, the real tokens form one row, each prompt
once for all its completions in the micro-batch (packed_layout.py says where each token comes from), with
position ids as in the grid. Rotary embeddings depend only on positions, which packing keeps. The
log-probs (and entropies) come back in TRL's [batch, logits_to_keep] layout, zero at padding, as TRL's own
`_get_per_token_logps_and_entropies` returns them.

Attention must then stay within each sequence (and its shared prompt) without a dense [L, L] mask: the
segments go down to the attention layers (packed_attention.py, which the first packed call installs).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch

from grpo_studio.engine.packed_layout import PackedLayout, plan_packing


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


def prompts_can_be_shared(model: Any, width: int) -> bool:
    """False where attention is not plain causal over a grid this wide: a sliding window shorter than it,
    or attention dropout while training (packed_attention.py can't compute those with a shared prefix)."""
    from grpo_studio.engine.fast_weights import causal_lm

    config = causal_lm(model).config.get_text_config()
    window = getattr(config, "sliding_window", None)
    dropout = getattr(config, "attention_dropout", 0.0) or 0.0
    return (not window or window >= width) and not (dropout and model.training)


def packed_logps_and_entropies(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                               logits_to_keep: int, compute_entropy: bool,
                               autocast: Callable[[], AbstractContextManager[Any]],
                               layout: PackedLayout | None = None) -> tuple[torch.Tensor, Any]:
    """Per-token log-probs of the last `logits_to_keep` columns (and their entropies), computed on the
    packed real tokens; `model` carries TRL's fused LM head (`add_fused_lm_head`). Without a `layout`,
    the grid is packed whatever it saves, prompts shared where the model allows."""
    from grpo_studio.engine.packed_attention import KWARG, install

    install()  # the attention layers read the segments (idempotent)
    if layout is None:
        layout = plan_packing(input_ids, attention_mask, logits_to_keep,
                              prompts_can_be_shared(model, input_ids.shape[1]), min_saved=0.0)
        if layout is None:
            raise ValueError("packed_logps: a row's real tokens are not one contiguous run (not TRL's grid)")
    with autocast():
        out = model(input_ids=input_ids.reshape(-1)[layout.source].unsqueeze(0),
                    position_ids=layout.positions.unsqueeze(0), shift_labels=layout.labels.unsqueeze(0),
                    fused_lm_head=True, **{KWARG: layout.segments})
    rows = input_ids.shape[0]
    entropy = layout.to_grid(out.entropy, rows, logits_to_keep) if compute_entropy else None
    return layout.to_grid(out.log_probs, rows, logits_to_keep), entropy
