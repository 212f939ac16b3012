"""The fast path on a CUDA GPU: CUDA-graph decoding in bf16 (and over a 4-bit base) samples from the
trained policy. Skipped without a GPU; run on the lent device (see grpo_studio/engine/bench.py)."""

from __future__ import annotations

import pytest
import torch

from grpo_studio.engine.fast_generation import FastGenerator, SamplingSettings
from test_fast_generation import PROMPTS, reference_logprobs, tiny_causal_lm, with_lora

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("kind", ["llama", "qwen2", "qwen3"])
def test_graph_decoding_matches_the_training_forward_in_bf16(kind):
    model = with_lora(tiny_causal_lm(kind).to("cuda", torch.bfloat16)).eval()
    gen = FastGenerator(model, SamplingSettings(max_new_tokens=24, eos_token_ids=(2,), pad_token_id=0))
    out = gen.generate(PROMPTS)
    assert gen.use_cuda_graphs and not gen.graph_failures, gen.graph_failures  # it decoded through a graph
    ref = reference_logprobs(model, [p for p in PROMPTS], out.completion_ids)
    for i, (tokens, logps) in enumerate(zip(out.completion_ids, out.logprobs)):
        diff = (ref[i, :len(tokens)] - torch.tensor(logps)).abs().max().item()
        assert diff < 0.1, (kind, diff)  # bf16 rounding; a wrong position or mask gives errors of several nats


def test_graph_and_eager_decoding_agree():
    model = with_lora(tiny_causal_lm("qwen2").to("cuda", torch.bfloat16)).eval()
    settings = SamplingSettings(max_new_tokens=16, pad_token_id=0, min_new_tokens=16)
    torch.manual_seed(0)
    graphed = FastGenerator(model, settings).generate(PROMPTS)
    eager_gen = FastGenerator(model, settings, use_cuda_graphs=False)
    torch.manual_seed(0)
    eager = eager_gen.generate(PROMPTS)
    ref = reference_logprobs(model, PROMPTS, graphed.completion_ids)
    for i, logps in enumerate(graphed.logprobs):
        assert (ref[i] - torch.tensor(logps)).abs().max() < 0.1
    assert [len(c) for c in eager.completion_ids] == [16, 16, 16]


def test_four_bit_base_is_dequantized_and_merged():
    pytest.importorskip("bitsandbytes")
    import tempfile

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    with tempfile.TemporaryDirectory() as folder:
        tiny_causal_lm("qwen2").save_pretrained(folder)
        base = AutoModelForCausalLM.from_pretrained(
            folder, quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16),
            dtype=torch.bfloat16, device_map={"": 0})
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.2)
    model.eval()
    gen = FastGenerator(model, SamplingSettings(max_new_tokens=12, eos_token_ids=(2,), pad_token_id=0))
    out = gen.generate(PROMPTS)
    ref = reference_logprobs(model, PROMPTS, out.completion_ids)
    for i, (tokens, logps) in enumerate(zip(out.completion_ids, out.logprobs)):
        assert (ref[i, :len(tokens)] - torch.tensor(logps)).abs().max() < 0.15
