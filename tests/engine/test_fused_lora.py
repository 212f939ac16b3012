"""The fused LoRA update computes what PEFT computes: the same outputs and the same gradients."""

from __future__ import annotations

import copy

import pytest
import torch

from grpo_studio.engine.fused_lora import install
from test_fast_generation import tiny_causal_lm, with_lora


def loss_and_grads(model, ids, autocast: bool):
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logits = model(input_ids=ids).logits
    loss = torch.log_softmax(logits.float(), -1)[..., 3].mean()
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return logits.detach().float(), grads


@pytest.mark.parametrize("kind, autocast, tol", [("llama", False, 1e-5), ("qwen2", False, 1e-5),
                                                 ("qwen2", True, 3e-2)])
def test_outputs_and_gradients_match_peft(kind, autocast, tol):
    peft_model = with_lora(tiny_causal_lm(kind))
    fused = copy.deepcopy(peft_model)
    assert install(fused) == 2 * 7  # every projection of both layers
    ids = torch.randint(3, 101, (3, 12), generator=torch.Generator().manual_seed(0))
    ref_out, ref_grads = loss_and_grads(peft_model, ids, autocast)
    out, grads = loss_and_grads(fused, ids, autocast)
    assert (out - ref_out).norm() / ref_out.norm() < tol
    assert ref_grads.keys() == grads.keys() and ref_grads
    for name, g in grads.items():
        assert g.dtype == torch.float32  # float32 adapters keep float32 gradients
        assert (g - ref_grads[name]).norm() / ref_grads[name].norm().clamp(min=1e-12) < tol, name


def test_layers_it_cannot_serve_exactly_keep_peft_forward():
    model = with_lora(tiny_causal_lm("llama"))
    install(model)
    ids = torch.randint(3, 101, (2, 8), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        on = model(input_ids=ids).logits
        with model.disable_adapter():  # adapters off: the base model's output, not the fused update's
            off = model(input_ids=ids).logits
        base = model.get_base_model()
    assert not torch.allclose(on, off)
    layer = base.model.layers[0].self_attn.q_proj
    layer.lora_dropout["default"] = torch.nn.Dropout(0.5)  # dropout: PEFT's forward runs
    layer.train()
    x = torch.randn(2, 64)
    torch.manual_seed(0)
    a = layer(x)
    torch.manual_seed(0)
    b = type(layer).forward(layer, x)
    assert torch.equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_with_the_triton_add_outputs_and_gradients_match_peft():
    """On CUDA the update is added by lora_add's kernel (bf16 model: PEFT's forward in bf16 too)."""
    peft_model = with_lora(tiny_causal_lm("qwen2")).to("cuda", torch.bfloat16)
    fused = copy.deepcopy(peft_model)
    install(fused)
    ids = torch.randint(3, 101, (3, 12), generator=torch.Generator().manual_seed(0)).cuda()
    ref_out, ref_grads = loss_and_grads(peft_model, ids, autocast=False)
    out, grads = loss_and_grads(fused, ids, autocast=False)
    assert (out - ref_out).norm() / ref_out.norm() < 3e-2
    for name, g in grads.items():
        assert (g.float() - ref_grads[name].float()).norm() / ref_grads[name].float().norm().clamp(min=1e-12) < 5e-2, name
