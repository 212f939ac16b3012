"""The padding-free training forward (packed_logps.py) computes what TRL's padded one does: the same
log-probs, entropies and LoRA gradients, on real PEFT LoRA over a tiny model with TRL's fused LM head;
also where completions of one prompt share it (packed_layout.py)."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest
import torch
from test_fast_generation import padded_grid, tiny_causal_lm, with_lora

from grpo_studio.engine.packed_layout import plan_packing
from grpo_studio.engine.packed_logps import packed_logps_and_entropies

PROMPTS = [[5, 6, 7, 8, 9, 10], [11, 12, 13], [14, 15, 16, 17]]
COMPLETIONS = [[20, 21, 2], [22, 23, 24, 25, 26, 27, 28, 29, 30], []]  # ended, long, nothing at all
# GRPO's micro-batch: completions of a prompt in rows that aren't neighbours (TRL shuffles them); a
# prompt seen once; a one-token prompt (nothing to share but its last token); an empty completion.
SHARED_PROMPTS = [[5, 6, 7, 8], [9, 10], [5, 6, 7, 8], [11], [5, 6, 7, 8], [9, 10], [11], [12, 13, 14]]
SHARED_COMPLETIONS = [[20, 21, 2], [22, 23, 24, 25], [26], [27, 28], [], [29, 30, 31, 32, 33, 2], [34], [35, 36]]
GRIDS = {"distinct prompts": (PROMPTS, COMPLETIONS), "shared prompts": (SHARED_PROMPTS, SHARED_COMPLETIONS)}


def grid(prompts, completions):
    """TRL's micro-batch, and how many completion columns it scores."""
    ids, mask, prompt_width = padded_grid(prompts, completions)
    return ids, mask, ids.shape[1] - prompt_width


def policy(kind):
    from trl.trainer.utils import add_fused_lm_head

    model = tiny_causal_lm(kind)
    add_fused_lm_head(model, outputs=("log_probs", "entropy"))  # before PEFT, as TRL does
    return with_lora(model)


def trl_padded(model, ids, mask, keep):
    from trl import GRPOTrainer

    trainer = SimpleNamespace(accelerator=SimpleNamespace(autocast=contextlib.nullcontext, is_main_process=True))
    logps, entropies, _ = GRPOTrainer._get_per_token_logps_and_entropies(trainer, model, ids, mask, keep,
                                                                         compute_entropy=True)
    return logps, entropies


def lora_grads(model, logps, weights):
    model.zero_grad()
    (logps * weights).sum().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("kind", ["qwen2", "llama", "qwen3"])
@pytest.mark.parametrize("batch", GRIDS)
def test_packed_forward_matches_trls_padded_one(kind, batch):
    prompts, completions = GRIDS[batch]
    model = policy(kind).train()
    ids, mask, keep = grid(prompts, completions)
    weights = torch.randn(len(prompts), keep, generator=torch.Generator().manual_seed(0))

    expected, expected_entropy = trl_padded(model, ids, mask, keep)
    expected_grads = lora_grads(model, expected, weights)
    packed, entropy = packed_logps_and_entropies(model, ids, mask, keep, True, contextlib.nullcontext)
    grads = lora_grads(model, packed, weights)

    assert packed.shape == expected.shape and entropy.shape == expected_entropy.shape
    assert torch.allclose(packed, expected, atol=1e-5), (packed - expected).abs().max()
    assert torch.allclose(entropy, expected_entropy, atol=1e-5)
    assert (packed[~mask[:, -keep:].bool()] == 0).all()  # padding scores nothing, as TRL's
    assert (packed[mask[:, -keep:].bool()] != 0).all()
    for name, g in expected_grads.items():
        assert torch.allclose(grads[name], g, atol=1e-5, rtol=1e-4), name


def test_a_prompt_is_packed_once_for_its_completions():
    ids, mask, keep = grid(SHARED_PROMPTS, SHARED_COMPLETIONS)
    layout = plan_packing(ids, mask, keep, min_saved=0.0)
    # [5 6 7 8] three times and [9 10] twice are shared; [11] has no token but its last; [12 13 14] is alone.
    assert layout.shared_prefixes == 2
    real = int(mask.sum())
    assert layout.source.numel() == real - 2 * 3 - 1 * 1  # each repeat's prompt but its last token, dropped
    assert layout.segments.shares_prefixes and max(layout.segments.prefix_of) >= 0
    unshared = plan_packing(ids, mask, keep, share_prompts=False, min_saved=0.0)
    assert unshared.source.numel() == real and unshared.shared_prefixes == 0
    assert not unshared.segments.shares_prefixes
    # The seed's shape, fixed lengths: nothing is padding, but the prompts repeat 8 times.
    prompts = [[p] * 128 for p in (1, 2, 3, 4) for _ in range(8)]
    ids, mask, keep = grid(prompts, [[7] * 256] * 32)
    assert plan_packing(ids, mask, keep, share_prompts=False) is None  # nothing to save
    assert plan_packing(ids, mask, keep).source.numel() == 4 * 127 + 32 * 257 == 8732  # of 12,288


def test_packing_is_used_only_where_it_saves_a_fifth_of_the_grid():
    ids, mask, keep = grid(PROMPTS, COMPLETIONS)  # 19 real tokens of 45
    assert plan_packing(ids, mask, keep) is not None
    full = torch.ones(3, 12, dtype=torch.long)
    assert plan_packing(torch.arange(36).view(3, 12), full, 6) is None  # nothing to save
    holes = mask.clone()
    holes[1, -5] = 0  # a masked token inside a sequence: not TRL's layout, left to the padded forward
    assert plan_packing(ids, holes, keep) is None
    assert plan_packing(ids, torch.zeros_like(mask), keep) is None
    # Fixed lengths, 16 x 2 of the seed's 4 x 8: each micro-step holds 4 of a prompt's 8 completions.
    ids, mask, keep = grid([[p] * 128 for p in (1, 2, 3, 4) for _ in range(4)], [[7] * 256] * 16)
    assert plan_packing(ids, mask, keep).source.numel() == 4 * 127 + 16 * 257  # 24.8% saved: packed
    ids, mask, keep = grid([[p] * 16 for p in (1, 2, 3, 4) for _ in range(2)], [[7] * 256] * 8)
    assert plan_packing(ids, mask, keep) is None  # short prompts, two of each: 2.8% saved


def test_the_trainer_packs_when_asked_and_otherwise_scores_as_trl():
    from grpo_studio.engine.trainer import StudioGRPOTrainer

    model = policy("qwen2").train()
    ids, mask, keep = grid(PROMPTS, COMPLETIONS)
    trainer = SimpleNamespace(accelerator=SimpleNamespace(autocast=contextlib.nullcontext, is_main_process=True),
                              padding_free=True, share_prompts=True, pack_min_saved=None,
                              _say_varlen_failure=lambda: None)
    calls = []
    model_forward = model.forward
    model.forward = lambda **kw: calls.append(kw.get("position_ids")) or model_forward(**kw)
    expected, _ = trl_padded(model, ids, mask, keep)
    assert calls == [None]  # TRL's forward: the grid
    score = StudioGRPOTrainer._get_per_token_logps_and_entropies
    logps, entropies, aux = score(trainer, model, ids, mask, keep, batch_size=2, compute_entropy=True)
    assert len(calls) == 3 and all(c is not None and c.shape[0] == 1 for c in calls[1:])  # 2 packed chunks
    assert torch.allclose(logps, expected, atol=1e-5) and entropies.shape == expected.shape and aux is None
    # A chunk with nothing to save goes TRL's way (the grid), beside a packed one.
    full = mask.clone()
    full[2] = 1  # the second chunk: one row with no padding
    calls.clear()
    logps, _, _ = score(trainer, model, ids, full, keep, batch_size=2, compute_entropy=False)
    assert [c is None for c in calls] == [False, True]
    assert torch.allclose(logps, trl_padded(model, ids, full, keep)[0], atol=1e-5)


def test_packed_attention_attends_within_each_sequence_only():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from grpo_studio.engine.packed_attention import KWARG, PackedSegments, install, packed_sdpa

    install()
    lengths = [5, 1, 7, 3]
    L = sum(lengths)
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(1, 4, L, 8, generator=gen)
    k, v = torch.randn(1, 2, L, 8, generator=gen), torch.randn(1, 2, L, 8, generator=gen)  # grouped-query
    segments = PackedSegments.from_lengths(lengths, q.device)
    # The reference: the whole row under a block-diagonal causal mask (what transformers builds).
    owner = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    mask = (owner[:, None] == owner[None, :]) & torch.ones(L, L, dtype=torch.bool).tril()
    module = torch.nn.Module()
    module.is_causal, module.num_key_value_groups = True, 2
    expected, _ = sdpa_attention_forward(module, q, k, v, mask[None, None], scaling=0.3)
    out, _ = packed_sdpa(module, q, k, v, None, scaling=0.3, **{KWARG: segments})
    assert out.shape == expected.shape == (1, L, 4, 8)
    assert torch.allclose(out, expected, atol=1e-6)
    # Without the segments it is transformers' own function, whatever the mask says.
    plain, _ = packed_sdpa(module, q, k, v, mask[None, None], scaling=0.3)
    assert torch.equal(plain, expected)


def test_a_segment_attends_to_its_shared_prefix_whole_then_to_itself_causally():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from grpo_studio.engine.packed_attention import KWARG, PackedSegments, install, packed_sdpa

    install()
    lengths, prefix_of = [4, 3, 1, 5, 2, 2], [-1, 0, 0, -1, -1, 4]  # a prefix of 4 for two; one of 2 for one
    L = sum(lengths)
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(1, 4, L, 8, generator=gen)
    k, v = torch.randn(1, 2, L, 8, generator=gen), torch.randn(1, 2, L, 8, generator=gen)
    segments = PackedSegments.from_lengths(lengths, q.device, prefix_of)
    owner = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    before = torch.ones(L, L, dtype=torch.bool).tril()
    sees_prefix = torch.tensor(prefix_of)[owner][:, None] == owner[None, :]  # all of it, wherever it stands
    mask = ((owner[:, None] == owner[None, :]) & before) | sees_prefix
    module = torch.nn.Module()
    module.is_causal, module.num_key_value_groups = True, 2
    expected, _ = sdpa_attention_forward(module, q, k, v, mask[None, None], scaling=0.3)
    out, _ = packed_sdpa(module, q, k, v, None, scaling=0.3, **{KWARG: segments})
    assert torch.allclose(out, expected, atol=1e-6)
    assert segments.max_len_k == 7 and segments.key_index.tolist()[4:11] == [0, 1, 2, 3, 4, 5, 6]
    assert segments.cu_seqlens_k.tolist() == [0, 4, 11, 16, 21, 23, 27]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("batch", GRIDS)
def test_packed_forward_on_a_gpu_matches_trls_padded_one_in_bf16(monkeypatch, batch):
    from grpo_studio.engine import packed_attention

    model = policy("qwen2").to("cuda", torch.bfloat16).train()
    ids, mask, keep = (t.cuda() if torch.is_tensor(t) else t for t in grid(*GRIDS[batch]))
    calls = []
    if packed_attention._varlen is not None:  # count the variable-length kernel's calls where torch has it
        original = packed_attention._varlen
        monkeypatch.setattr(packed_attention, "_varlen", lambda *a, **kw: calls.append(1) or original(*a, **kw))
    expected, _ = trl_padded(model, ids, mask, keep)
    packed, _ = packed_logps_and_entropies(model, ids, mask, keep, True, contextlib.nullcontext)
    assert (packed - expected).abs().max().item() < 0.05  # bf16 rounding; a wrong mask is off by nats
    if packed_attention._varlen is not None:
        assert len(calls) == model.config.num_hidden_layers and packed_attention.varlen_failure is None


def test_packing_is_left_to_transformers_where_per_sequence_attention_would_differ(monkeypatch):
    from grpo_studio.engine import packed_attention
    from grpo_studio.engine.packed_attention import KWARG, PackedSegments, install, packed_sdpa
    from grpo_studio.engine.packed_logps import padding_free_blocker, prompts_can_be_shared

    install()
    masked = []
    monkeypatch.setattr(packed_attention, "_sdpa", lambda *a, **kw: masked.append(kw) or ("masked row", None))
    q = k = v = torch.zeros(1, 2, 8, 4)
    segments = PackedSegments.from_lengths([6, 2], q.device)
    assert packed_sdpa(None, q, k, v, None, **{KWARG: segments, "sliding_window": 4})[0] == "masked row"
    assert packed_sdpa(None, q, k, v, None, dropout=0.1, **{KWARG: segments})[0] == "masked row"
    assert all(KWARG not in kw for kw in masked)  # transformers' function never sees the segments
    assert packed_sdpa(None, q, k, v, None, **{KWARG: segments, "sliding_window": 6})[0].shape == (1, 8, 2, 4)
    # A shared prefix has no masked row to fall back on: packed_logps doesn't share under a window or dropout.
    shared = PackedSegments.from_lengths([4, 2, 2], q.device, [-1, 0, 0])
    with pytest.raises(RuntimeError, match="shared prompt prefix"):
        packed_sdpa(None, q, k, v, None, **{KWARG: shared, "sliding_window": 4})
    model = policy("qwen2").train()
    assert prompts_can_be_shared(model, 64)
    model.config.sliding_window = 32
    assert not prompts_can_be_shared(model, 64) and prompts_can_be_shared(model, 32)
    model.config.sliding_window, model.config.attention_dropout = None, 0.1
    assert not prompts_can_be_shared(model, 64) and prompts_can_be_shared(model.eval(), 64)
    # Which models pack: the supported families, on SDPA attention.
    assert padding_free_blocker(policy("qwen3")) is None
    eager = policy("llama")
    eager.config._attn_implementation = "eager"
    assert "attention 'eager'" in padding_free_blocker(eager)


def test_a_failed_variable_length_kernel_is_said_once(monkeypatch):
    from grpo_studio.engine import packed_attention
    from grpo_studio.engine.trainer import StudioGRPOTrainer

    messages = []
    trainer = SimpleNamespace(on_message=lambda level, text: messages.append((level, text)),
                              _varlen_failure_said=False)
    StudioGRPOTrainer._say_varlen_failure(trainer)
    assert messages == []  # nothing failed
    monkeypatch.setattr(packed_attention, "varlen_failure", "RuntimeError: no kernel image for this GPU")
    for _ in range(3):
        StudioGRPOTrainer._say_varlen_failure(trainer)
    assert messages == [("warning", "training: the variable-length attention kernel failed (RuntimeError: no "
                                    "kernel image for this GPU); packed sequences attend one at a time")]


def test_the_packing_share_knob_names_itself_when_wrong(monkeypatch):
    from grpo_studio.engine.run import _share_from_env

    monkeypatch.delenv("GRPO_STUDIO_PACK_MIN_SAVED", raising=False)
    assert _share_from_env("GRPO_STUDIO_PACK_MIN_SAVED") is None
    monkeypatch.setenv("GRPO_STUDIO_PACK_MIN_SAVED", "0.1")
    assert _share_from_env("GRPO_STUDIO_PACK_MIN_SAVED") == 0.1
    for bad in ("ten", "1.5"):
        monkeypatch.setenv("GRPO_STUDIO_PACK_MIN_SAVED", bad)
        with pytest.raises(ValueError, match="GRPO_STUDIO_PACK_MIN_SAVED=.*between 0 and 1"):
            _share_from_env("GRPO_STUDIO_PACK_MIN_SAVED")
