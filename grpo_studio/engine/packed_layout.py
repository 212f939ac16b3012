"""Where each token of a packed micro-batch comes from: the layout of the padding-free row.

TRL scores a micro-batch as a [batch, prompt + completion] grid (prompts padded on the left, completions
on the right). Packed (packed_logps.py), the grid's real tokens stand end to end in one row, and this
module says which grid cell each packed token is, its position id, and which packed outputs score which
completion token.

GRPO samples several completions of each prompt, so a micro-batch holds the same prompt several times
(8 of its 32 rows at the seed's settings). A prompt's forward does not depend on what follows it, so its
tokens are packed once, as a shared prefix, for all of that prompt's completions in the micro-batch;
each completion's segment starts with the prompt's last token (whose output scores the completion's
first token, which differs between completions) and attends to the prefix in front of it
(packed_attention.py). Gradients through the prefix sum over the completions, as they do in the grid.
At 4 prompts x 8 completions of 128 + 256 tokens that packs 8,732 tokens where the grid has 12,288.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from grpo_studio.engine.packed_attention import PackedSegments
from grpo_studio.engine.packing_rule import MIN_SAVED, pays  # MIN_SAVED: trainer.py reads it here


@dataclass(frozen=True)
class PackedLayout:
    source: torch.Tensor  # [T]: each packed token's flat index into the [batch, width] grid
    positions: torch.Tensor  # [T]: its position id
    labels: torch.Tensor  # [T]: the token its output scores (TRL's shifted labels), -100 where none
    scored: torch.Tensor  # [S]: the packed positions that score a completion token
    target: torch.Tensor  # [S]: where each of those goes in the [batch, logits_to_keep] output, flat
    segments: PackedSegments
    shared_prefixes: int  # prompts packed once for two or more completions

    def to_grid(self, packed: torch.Tensor, rows: int, logits_to_keep: int) -> torch.Tensor:
        """A packed output [1, T] in TRL's [batch, logits_to_keep] layout, zero where nothing is scored."""
        flat = packed.new_zeros(rows * logits_to_keep).index_put((self.target,), packed[0, self.scored])
        return flat.view(rows, logits_to_keep)


def plan_packing(input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int,
                 share_prompts: bool = True, min_saved: float = MIN_SAVED) -> PackedLayout | None:
    """The packed layout of TRL's micro-batch, or None where packing doesn't pay (less than `min_saved` of
    the grid saved) or the grid is not TRL's (a row whose real tokens are not one contiguous run).
    One host sync."""
    keep = attention_mask.bool()
    rows, width = keep.shape
    prompt_width = width - logits_to_keep
    counts = keep.sum(1)
    first = keep.int().argmax(1)  # each row's first real column
    runs = (keep[:, 1:] & ~keep[:, :-1]).sum(1) + keep[:, 0].long()
    if share_prompts and prompt_width > 0:  # rows whose real prompt tokens are the same: one group each
        prompts = input_ids[:, :prompt_width].masked_fill(~keep[:, :prompt_width], -1)
        group = torch.unique(prompts, dim=0, return_inverse=True)[1]
    else:
        group = torch.arange(rows, device=keep.device)
    counts_h, first_h, runs_h, group_h = torch.stack([counts, first, runs, group]).tolist()
    if any(r > 1 for r in runs_h) or sum(counts_h) == 0:
        return None
    prompt_len = [max(0, prompt_width - f) if n else 0 for n, f in zip(counts_h, first_h)]
    members: dict[int, int] = {}
    for g, p in zip(group_h, prompt_len):
        members[g] = members.get(g, 0) + (p >= 2)  # a prefix needs a token besides the prompt's last
    # Pieces of the row, in order: (flat grid start, length, first position id, prefix piece or -1).
    pieces: list[tuple[int, int, int, int]] = []
    prefix_piece: dict[int, int] = {}
    for r, (n, f, g, p) in enumerate(zip(counts_h, first_h, group_h, prompt_len)):
        if n == 0:
            continue
        if p < 2 or members[g] < 2:
            pieces.append((r * width + f, n, 0, -1))
            continue
        if g not in prefix_piece:
            prefix_piece[g] = len(pieces)
            pieces.append((r * width + f, p - 1, 0, -1))
        pieces.append((r * width + prompt_width - 1, n - p + 1, p - 1, prefix_piece[g]))
    lengths = torch.tensor([length for _, length, _, _ in pieces])
    total = int(lengths.sum())
    if not pays(total, rows * width, min_saved):
        return None
    offsets = torch.arange(total) - torch.repeat_interleave(lengths.cumsum(0) - lengths, lengths)
    source = torch.repeat_interleave(torch.tensor([s for s, _, _, _ in pieces]), lengths) + offsets
    positions = torch.repeat_interleave(torch.tensor([p for _, _, p, _ in pieces]), lengths) + offsets
    # A packed token scores the next grid column when that column is a real completion token.
    row, col = source // width, source % width
    ends = torch.tensor(first_h)[row] + torch.tensor(counts_h)[row]
    scores = (col >= prompt_width - 1) & (col + 1 < ends)
    device = input_ids.device
    source, positions, scores = source.to(device), positions.to(device), scores.to(device)
    flat_ids = input_ids.reshape(-1)
    labels = torch.where(scores, flat_ids[(source + 1).clamp(max=flat_ids.numel() - 1)], -100)
    scored = scores.nonzero().squeeze(1)
    target = (row.to(device) * logits_to_keep + col.to(device) - prompt_width + 1)[scored]
    segments = PackedSegments.from_lengths(lengths.tolist(), device, [q for _, _, _, q in pieces])
    return PackedLayout(source, positions, labels, scored, target, segments, len(prefix_piece))
