"""Liger's layer kernels on the training forward (liger_layers.py): which layers of which models are
patched, what the log says when they can't be, and, on a GPU, that the packed training forward computes
the same log-probs and LoRA gradients with them as without."""

from __future__ import annotations

import contextlib
import importlib.util
import sys

import pytest
import torch
from test_fast_generation import tiny_causal_lm, with_lora

from grpo_studio.engine import liger_layers

needs_liger = pytest.mark.skipif(importlib.util.find_spec("liger_kernel") is None, reason="needs liger-kernel")


@pytest.fixture
def restored_modeling(monkeypatch):
    """Liger replaces the modeling modules' rotary function for the whole process: put it back after."""
    def keep(kind):
        module = sys.modules[type(tiny_causal_lm(kind)).__module__]
        for name, value in vars(module).items():
            if callable(value) and (name == "apply_rotary_pos_emb" or name.endswith(("RMSNorm", "MLP"))):
                monkeypatch.setattr(module, name, value)
        return module
    return keep


def test_the_fast_path_families_get_all_three_layers_and_swiglu_only_over_silu():
    assert liger_layers.layers_for("qwen2", "silu") == dict(rms_norm=True, rope=True, swiglu=True, cross_entropy=False,
                                                            fused_linear_cross_entropy=False)
    assert liger_layers.layers_for("llama", "gelu")["swiglu"] is False  # Liger would compute SiLU regardless
    assert liger_layers.layers_for("gpt2", "gelu_new") is None


@needs_liger
@pytest.mark.parametrize("kind", ["qwen2", "llama", "qwen3"])
def test_the_models_layers_are_patched_and_its_modeling_classes_are_left_as_they_were(kind, restored_modeling):
    module = restored_modeling(kind)
    classes = {name: value for name, value in vars(module).items() if isinstance(value, type)}
    model = with_lora(tiny_causal_lm(kind))
    assert liger_layers.install(model) == "training: Liger kernels for RMSNorm, SwiGLU, rotary embeddings"
    layer = model.get_base_model().model.layers[0]
    for norm in (layer.input_layernorm, layer.post_attention_layernorm, model.get_base_model().model.norm):
        assert "liger" in norm.forward.__func__.__module__  # the instance's forward is Liger's
    assert "liger" in layer.mlp.forward.__func__.__module__
    assert "liger" in module.apply_rotary_pos_emb.__module__  # what the attention layers call
    assert {name: value for name, value in vars(module).items() if isinstance(value, type)} == classes
    fresh = tiny_causal_lm(kind)  # a model made afterwards is transformers' own
    assert "liger" not in type(fresh.model.norm).forward.__module__


def test_the_log_says_why_nothing_was_patched(monkeypatch):
    model = with_lora(tiny_causal_lm("qwen2"))
    monkeypatch.setenv("GRPO_STUDIO_LIGER", "0")
    assert liger_layers.install(model) == "training: Liger kernels off (GRPO_STUDIO_LIGER=0)"
    monkeypatch.delenv("GRPO_STUDIO_LIGER")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "liger_kernel" else real(name, *a))
    assert liger_layers.install(model).startswith("training: Liger kernels not installed (pip install liger-kernel")
    assert "liger" not in model.get_base_model().model.norm.forward.__func__.__module__


@needs_liger
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("kind", ["qwen2", "llama", "qwen3"])
def test_on_a_gpu_the_packed_forward_gives_the_same_logps_and_lora_gradients(kind, restored_modeling):
    from test_packed_logps import GRIDS, grid, lora_grads, policy

    from grpo_studio.engine.fused_lora import install as fuse_lora
    from grpo_studio.engine.packed_logps import packed_logps_and_entropies

    restored_modeling(kind)
    model = policy(kind).to("cuda", torch.bfloat16).train()
    fuse_lora(model)
    ids, mask, keep = (t.cuda() if torch.is_tensor(t) else t for t in grid(*GRIDS["shared prompts"]))
    weights = torch.randn(ids.shape[0], keep, device="cuda", generator=torch.Generator("cuda").manual_seed(0))

    def logps_and_grads():
        logps, _ = packed_logps_and_entropies(model, ids, mask, keep, True, contextlib.nullcontext)
        return logps.detach(), lora_grads(model, logps, weights)

    expected, expected_grads = logps_and_grads()
    assert liger_layers.install(model).startswith("training: Liger kernels for")
    logps, grads = logps_and_grads()
    assert (logps - expected).abs().max().item() < 0.05  # bf16 rounding order; a wrong layer is off by nats
    for name, g in grads.items():
        ref = expected_grads[name].float()
        assert (g.float() - ref).norm() / ref.norm().clamp(min=1e-12) < 0.05, name


def test_the_vram_estimate_counts_what_ligers_layers_keep_only_where_they_would_be_used(monkeypatch):
    from test_generation_mode import QWEN_15B

    from grpo_studio.config import RunConfig
    from grpo_studio.engine.vram import estimate_for_config

    cfg = RunConfig()
    cfg.lora.gradient_checkpointing = "off"
    plain = estimate_for_config(QWEN_15B, cfg, generation_mode="merged", liger=False, packed=False).total
    fused = estimate_for_config(QWEN_15B, cfg, generation_mode="merged", liger=True, packed=False).total
    assert fused < plain  # the norms' float32 copies and SwiGLU's SiLU output are not kept
    assert not liger_layers.would_install({"model_type": "gpt2", "hidden_act": "gelu_new"})
    monkeypatch.setenv("GRPO_STUDIO_LIGER", "0")
    assert not liger_layers.would_install(QWEN_15B)
    assert estimate_for_config(QWEN_15B, cfg, generation_mode="merged", packed=False).total == plain
    assert estimate_for_config(QWEN_15B, cfg, generation_mode="merged", on_gpu=False, packed=False).total == plain
    monkeypatch.delenv("GRPO_STUDIO_LIGER")
    if importlib.util.find_spec("liger_kernel") is not None:
        assert liger_layers.would_install(QWEN_15B)
        assert estimate_for_config(QWEN_15B, cfg, generation_mode="merged", packed=False).total == fused
