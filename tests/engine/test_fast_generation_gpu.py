"""The fast path on a CUDA GPU: CUDA-graph decoding samples from the trained policy, in each weight
mode ("merged" bf16/fp16 copy; "quantized": bitsandbytes 4-bit/8-bit read by the Triton kernel;
"mixed": layer 0 merged, layer 1 quantized),
and the kernel computes what bitsandbytes' dequantize + matmul does on real quantized weights.
Skipped without a GPU; run on the lent device:

    python -m pytest tests/engine/test_fast_generation_gpu.py -q

Tolerances (|log p| per sampled token, vs the training forward): bf16/fp16 0.1 nats (the GPU's
attention and matmul kernels round differently from the training forward's); 8-bit 0.15 (the
training forward quantizes activations to int8). Kernel vs reference: relative error < 2e-3.
"""

from __future__ import annotations

import pytest
import torch

from grpo_studio.engine.fast_generation import FastGenerator, SamplingSettings
from test_fast_generation import PROMPTS, max_logprob_error, quantized_causal_lm, tiny_causal_lm, with_lora

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def lora_b_random(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.2)
    return model.eval()


def quantized_model(kind="qwen2", bits=4, quant_type="nf4", double_quant=True, dtype=torch.bfloat16):
    from peft import LoraConfig, get_peft_model

    base = quantized_causal_lm(kind, bits, quant_type, double_quant, dtype, device="cuda")
    return lora_b_random(get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                         task_type="CAUSAL_LM")))


@pytest.mark.parametrize("kind", ["llama", "qwen2", "qwen3"])
def test_graph_decoding_matches_the_training_forward_in_bf16(kind):
    model = with_lora(tiny_causal_lm(kind).to("cuda", torch.bfloat16)).eval()
    gen = FastGenerator(model, SamplingSettings(max_new_tokens=24, eos_token_ids=(2,), pad_token_id=0))
    out = gen.generate(PROMPTS)
    assert gen.use_cuda_graphs and not gen.graph_failures, gen.graph_failures  # it decoded through a graph
    assert gen.ops.fused and gen.ops.failure is None, gen.ops.failure  # with the fused element-wise kernels
    assert max_logprob_error(model, out) < 0.1  # bf16 rounding; a wrong position or mask gives several nats


QUANT_MODELS = [  # (layout, bits, 4-bit type, double quantization, dtype)
    ("qwen2", 4, "nf4", True, torch.bfloat16),
    ("llama", 4, "nf4", False, torch.float16),
    ("qwen3", 4, "fp4", True, torch.bfloat16),
    ("llama", 4, "fp4", False, torch.bfloat16),
    ("qwen2", 8, "", False, torch.bfloat16),
]


@pytest.mark.parametrize("weights", ["merged", "quantized", "mixed"])
@pytest.mark.parametrize("kind,bits,quant_type,double_quant,dtype", QUANT_MODELS,
                         ids=[f"{c[0]}-{c[1]}bit-{c[2] or 'int8'}{'-dq' if c[3] else ''}-{str(c[4])[6:]}"
                              for c in QUANT_MODELS])
def test_quantized_base_decodes_the_training_policy(kind, bits, quant_type, double_quant, dtype, weights):
    model = quantized_model(kind, bits, quant_type, double_quant, dtype)
    gen = FastGenerator(model, SamplingSettings(max_new_tokens=16, eos_token_ids=(2,), pad_token_id=0),
                        weights=weights, merged_layers=1)  # mixed: layer 0 merged, layer 1 quantized
    out = gen.generate(PROMPTS)
    assert gen.use_cuda_graphs and not gen.graph_failures, gen.graph_failures
    assert max_logprob_error(model, out) < (0.15 if bits == 8 else 0.1)


@pytest.mark.parametrize("weights", ["merged", "quantized", "mixed"])
def test_graph_and_eager_decoding_agree(weights):
    """Same seed, same tokens: a replayed graph computes (and draws) exactly what eager steps do."""
    model = with_lora(tiny_causal_lm("qwen2").to("cuda", torch.bfloat16)).eval() if weights == "merged" else \
        quantized_model("qwen2")
    settings = SamplingSettings(max_new_tokens=16, pad_token_id=0, min_new_tokens=16)
    graphed_gen = FastGenerator(model, settings, weights=weights, merged_layers=1)
    eager_gen = FastGenerator(model, settings, weights=weights, merged_layers=1, use_cuda_graphs=False)
    torch.manual_seed(0)
    graphed = graphed_gen.generate(PROMPTS)
    torch.manual_seed(0)
    eager = eager_gen.generate(PROMPTS)
    assert graphed_gen.use_cuda_graphs and not graphed_gen.graph_failures, graphed_gen.graph_failures
    assert [len(c) for c in graphed.completion_ids] == [16, 16, 16]
    assert graphed.completion_ids == eager.completion_ids
    assert torch.allclose(torch.tensor(graphed.logprobs), torch.tensor(eager.logprobs), atol=1e-5)
    assert max_logprob_error(model, graphed) < 0.1
    torch.manual_seed(0)
    again = graphed_gen.generate(PROMPTS)  # the same shapes: captured again without the eager warm-up
    assert len(graphed_gen._warmed) == 1 and not graphed_gen.graph_failures
    assert again.completion_ids == eager.completion_ids


@pytest.mark.parametrize("weights", ["quantized", "mixed"])
def test_quantized_sync_after_an_optimizer_step_reaches_the_graph(weights):
    model = quantized_model("llama")
    gen = FastGenerator(model, SamplingSettings(max_new_tokens=8, eos_token_ids=(2,), pad_token_id=0),
                        weights=weights, merged_layers=1)
    gen.generate(PROMPTS)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=0.5)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]], device="cuda")
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    model.eval()
    gen.sync(1)
    assert max_logprob_error(model, gen.generate(PROMPTS)) < 0.1


def test_quantized_weights_cost_less_memory_than_the_merged_copy():
    model = quantized_model("qwen2")
    settings = SamplingSettings(max_new_tokens=4, pad_token_id=0)
    quant, merged = (FastGenerator(model, settings, weights=w) for w in ("quantized", "merged"))
    assert quant.extra_bytes() == FastGenerator.planned_extra_bytes(model, "quantized")
    assert merged.extra_bytes() == FastGenerator.planned_extra_bytes(model, "merged")
    assert quant.extra_bytes() < merged.extra_bytes() / 4


# ---- the kernel on real bitsandbytes CUDA weights ----------------------------------------------------

KERNEL_CASES = [  # rows, cols, 4-bit type, double quantization, blocksize, dtype: odd shapes included
    (4096, 512, "nf4", True, 64, torch.bfloat16),
    (1000, 768, "nf4", False, 64, torch.float16),
    (1536, 1600, "fp4", True, 64, torch.bfloat16),
    (264, 4864, "fp4", False, 128, torch.float16),
    (512, 1024, "nf4", True, 32, torch.bfloat16),
    (384, 2048, "nf4", False, 256, torch.bfloat16),
    (33, 75, "nf4", True, 64, torch.bfloat16),  # blocks straddle rows, odd K: the any-shape path
    (160, 96, "fp4", True, 64, torch.float16),
    (17, 4096, "nf4", True, 4096, torch.bfloat16),
]


def cuda_weight(rows, cols, kind, nested, blocksize, dtype, seed=0):
    from bitsandbytes.nn import Params4bit

    g = torch.Generator().manual_seed(seed)
    w = (torch.randn(rows, cols, generator=g) * 0.03).to(dtype)
    return Params4bit(w, requires_grad=False, quant_type=kind, compress_statistics=nested,
                      blocksize=blocksize).to("cuda")


def _rel_error(out, ref):
    return ((out.float() - ref.float()).norm() / ref.float().norm()).item()


@pytest.mark.parametrize("rows,cols,kind,nested,blocksize,dtype", KERNEL_CASES,
                         ids=[f"{c[0]}x{c[1]}-{c[2]}{'-dq' if c[3] else ''}-b{c[4]}-{str(c[5])[6:]}"
                              for c in KERNEL_CASES])
def test_kernel_matches_bitsandbytes_dequantize_and_matmul(rows, cols, kind, nested, blocksize, dtype):
    import bitsandbytes.functional as bnbf

    from grpo_studio.engine import quant_matmul as qm

    p = cuda_weight(rows, cols, kind, nested, blocksize, dtype)
    qw = qm.QuantWeight.from_param(p)
    dense = bnbf.dequantize_4bit(p.data, p.quant_state)
    assert torch.equal(qm.dequantize(qw), dense)  # the reference reads bitsandbytes' CUDA layout exactly
    for M in (1, 8, 32, 200):
        x = torch.randn(M, cols, dtype=dtype, device="cuda")
        out = qm.quant_linear(x, [qw])
        torch.cuda.synchronize()
        rounding = qm.kernel_rounding(x, [qw])
        assert _rel_error(out, qm.reference_linear(x, [qw], rounding=rounding)) < 2e-3, M
        # The register table rounds three times where bitsandbytes rounds once (register_dequantize).
        assert _rel_error(out, x.float() @ dense.float().T) < (2e-3 if rounding == "bitsandbytes" else 5e-3), M
    if (cols % blocksize, blocksize % 32) == (0, 0):
        assert qm.kernel_rounding(x, [qw]) == "register"  # the fast path, with its lookup in registers


@pytest.mark.parametrize("M", [8, 32, 256])
def test_kernel_group_with_lora_bias_and_split_k_in_a_cuda_graph(M):
    """A q/k/v group (three weights, one launch) with LoRA and biases, captured and replayed."""
    from grpo_studio.engine import quant_matmul as qm

    parts = [qm.QuantWeight.from_param(cuda_weight(rows, 1536, "nf4", True, 64, torch.bfloat16, seed=i))
             for i, rows in enumerate((1536, 256, 256))]
    n_total, rank = 2048, 48
    x = torch.randn(M, 1536, dtype=torch.bfloat16, device="cuda")
    xa = torch.randn(M, rank, dtype=torch.bfloat16, device="cuda")
    lb = torch.randn(n_total, rank, dtype=torch.bfloat16, device="cuda") * 0.05
    bias = torch.randn(n_total, dtype=torch.bfloat16, device="cuda")
    for config in (qm.Config(), qm.Config(split_k=1), qm.Config(block_n=64, split_k=5)):
        rounding = qm.kernel_rounding(x, parts, config)
        ref = qm.reference_linear(x, parts, bias, xa, lb, rounding=rounding)  # of this x: the replay changes it
        eager = qm.quant_linear(x, parts, bias=bias, lora_xa=xa, lora_b=lb, config=config)
        assert _rel_error(eager, ref) < 2e-3, config
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured = qm.quant_linear(x, parts, bias=bias, lora_xa=xa, lora_b=lb, config=config)
        for _ in range(2):  # split K: each launch leaves its tile counters at 0 for the next replay
            x.normal_()  # a replay reads the new input in place
            graph.replay()
            torch.cuda.synchronize()
            fresh = qm.reference_linear(x, parts, bias, xa, lb, rounding=rounding)
            assert _rel_error(captured, fresh) < 2e-3, config


def test_kernel_reads_int8_weights_on_the_gpu():
    from bitsandbytes.nn import Int8Params

    from grpo_studio.engine import quant_matmul as qm

    parts = [qm.QuantWeight.from_param(Int8Params(torch.randn(rows, 1024, dtype=torch.float16) * 0.03,
                                                  requires_grad=False, has_fp16_weights=False).to("cuda"))
             for rows in (1024, 512)]
    x = torch.randn(32, 1024, dtype=torch.bfloat16, device="cuda")
    assert _rel_error(qm.quant_linear(x, parts), qm.reference_linear(x, parts)) < 2e-3
