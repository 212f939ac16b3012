"""The fast generation path: it must sample from exactly the policy being trained.

Checked on the CPU against TRL's own training forward (the log-probs the loss uses), for the
Llama, Qwen2 and Qwen3 layouts, in each weight mode: LoRA merged into a copy ("merged"), a
bitsandbytes 4-bit / 8-bit base read in place with LoRA kept low-rank ("quantized"), and the two
layer by layer ("mixed"); across a real optimizer step; and with the decode step's element-wise
kernels compiled (decode_ops.py). Sampling is checked against transformers' own logits processors.

Tolerances on |log p(fast) - log p(training forward)| per sampled token: float32 1e-4 (the same
arithmetic in another order); bf16/fp16 on the CPU 0.02 nats (one rounding of each activation
differs); an 8-bit base 0.05 (its training forward also rounds the activations to int8). A wrong
position, mask or weight gives errors of a nat or more.
"""

from __future__ import annotations

import tempfile

import pytest
import torch

from grpo_studio.engine.fast_generation import FastGenerator, SamplingSettings, Unsupported


def tiny_causal_lm(kind: str):
    from transformers import (LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config,
                              Qwen3ForCausalLM)

    torch.manual_seed(0)
    common = dict(vocab_size=101, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0, eos_token_id=2)
    if kind == "llama":
        return LlamaForCausalLM(LlamaConfig(**common))
    if kind == "qwen2":  # biases on q/k/v, tied embeddings
        return Qwen2ForCausalLM(Qwen2Config(**common, tie_word_embeddings=True))
    return Qwen3ForCausalLM(Qwen3Config(**common, head_dim=24))  # q/k norms, head_dim != hidden/heads


def quantized_causal_lm(kind: str, bits: int = 4, quant_type: str = "nf4", double_quant: bool = True,
                        dtype: torch.dtype = torch.bfloat16, device: str = "cpu"):
    """The tiny model loaded through transformers' real bitsandbytes path (4-bit or 8-bit)."""
    from bnb_cpu import keep_gpu_layout, use_portable_dequantize
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    use_portable_dequantize()  # the training forward's reference, as a GPU computes it (bnb_cpu.py)
    if bits == 4:
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant_type, bnb_4bit_compute_dtype=dtype,
                                    bnb_4bit_use_double_quant=double_quant)
    else:
        config = BitsAndBytesConfig(load_in_8bit=True)
    with tempfile.TemporaryDirectory() as folder:
        tiny_causal_lm(kind).save_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, quantization_config=config, dtype=dtype,
                                                     device_map={"": device})
    return keep_gpu_layout(model)


def with_lora(model):
    from peft import LoraConfig, get_peft_model

    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:  # PEFT starts B at zero; a trained adapter isn't
                p.normal_(std=0.2)
    return peft


def lora_run_config(r):
    """A run's settings with with_lora's adapter (rank r on every projection)."""
    from grpo_studio.config import RunConfig

    cfg = RunConfig()
    cfg.lora.enabled, cfg.lora.r, cfg.lora.target_modules = True, r, "all-linear"
    return cfg


def padded_grid(prompts, completions):
    """TRL's micro-batch: prompts padded on the left, completions on the right; (ids, mask, prompt width)."""
    P, C = max(map(len, prompts)), max(map(len, completions))
    ids = torch.zeros(len(prompts), P + C, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        ids[i, P - len(p):P], mask[i, P - len(p):P] = torch.tensor(p), 1
        ids[i, P:P + len(c)], mask[i, P:P + len(c)] = torch.tensor(c, dtype=torch.long), 1
    return ids, mask, P


def reference_logprobs(model, prompts, completions):
    """Log-probs as the training forward sees them: left-padded prompt + right-padded completion."""
    ids, mask, P = padded_grid(prompts, completions)
    device = next(model.parameters()).device
    ids, mask = ids.to(device), mask.to(device)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits[:, P - 1:-1].float()
    return torch.log_softmax(logits, -1).gather(-1, ids[:, P:, None])[..., 0].cpu()


PROMPTS = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14, 15]]


def max_logprob_error(model, out, prompts=PROMPTS) -> float:
    ref = reference_logprobs(model, prompts, out.completion_ids)
    assert all(len(tokens) >= 1 for tokens in out.completion_ids)
    return max((ref[i, :len(tokens)] - torch.tensor(logps)).abs().max().item()
               for i, (tokens, logps) in enumerate(zip(out.completion_ids, out.logprobs)))


@pytest.mark.parametrize("kind", ["llama", "qwen2", "qwen3"])
def test_logprobs_match_the_training_forward(kind):
    model = with_lora(tiny_causal_lm(kind)).eval()
    gen = FastGenerator(model, SamplingSettings(max_new_tokens=16, eos_token_ids=(2,), pad_token_id=0))
    out = gen.generate(PROMPTS)
    ref = reference_logprobs(model, PROMPTS, out.completion_ids)
    for i, (tokens, logps) in enumerate(zip(out.completion_ids, out.logprobs)):
        assert len(tokens) >= 1
        assert torch.allclose(ref[i, :len(tokens)], torch.tensor(logps), atol=1e-4), kind


def test_repeated_prompts_are_prefilled_once():
    """GRPO's groups: each distinct prompt goes through the prefill once, its rows sample on their own."""
    model = with_lora(tiny_causal_lm("qwen2")).eval()
    gen = FastGenerator(model, SamplingSettings(max_new_tokens=12, eos_token_ids=(2,), pad_token_id=0))
    prompts = [p for p in PROMPTS for _ in range(4)]  # 12 rows, 3 distinct, of different lengths
    widths = []
    prefill = gen._prefill
    gen._prefill = lambda x, *args: widths.append(x.shape[0]) or prefill(x, *args)
    torch.manual_seed(0)
    out = gen.generate(prompts)
    assert widths == [3]
    ref = reference_logprobs(model, prompts, out.completion_ids)
    for i, (tokens, logps) in enumerate(zip(out.completion_ids, out.logprobs)):
        assert torch.allclose(ref[i, :len(tokens)], torch.tensor(logps), atol=1e-4), i
    assert len({tuple(c) for c in out.completion_ids[:4]}) > 1  # one prompt's rows sampled apart


def test_sampling_follows_the_distribution():
    """Gumbel-max sampling: token frequencies track the model's probabilities."""
    model = with_lora(tiny_causal_lm("llama")).eval()
    gen = FastGenerator(model, SamplingSettings(max_new_tokens=1, pad_token_id=0))
    torch.manual_seed(1)
    prompts = [[5, 6, 7]] * 4000
    first = torch.tensor([c[0] for c in gen.generate(prompts).completion_ids])
    with torch.no_grad():
        ids = torch.tensor([[5, 6, 7]])
        probs = torch.softmax(model(input_ids=ids).logits[0, -1].float(), -1)
    observed = torch.bincount(first, minlength=probs.numel()).float() / len(first)
    assert (observed - probs).abs().max() < 0.03


def test_eos_stops_and_min_new_tokens_and_suppress():
    model = with_lora(tiny_causal_lm("llama")).eval()
    vocab = model.config.vocab_size
    # Only eos left to sample: every completion is just [eos], and nothing after it is kept.
    only_eos = FastGenerator(model, SamplingSettings(max_new_tokens=8, eos_token_ids=(2,), pad_token_id=0,
                                                     suppress_tokens=tuple(t for t in range(vocab) if t != 2)))
    out = only_eos.generate(PROMPTS)
    assert out.completion_ids == [[2], [2], [2]]
    fixed = FastGenerator(model, SamplingSettings(max_new_tokens=8, eos_token_ids=(2,), pad_token_id=0,
                                                  min_new_tokens=8, suppress_tokens=(7,)))
    out = fixed.generate(PROMPTS)
    assert all(len(c) == 8 and 2 not in c and 7 not in c for c in out.completion_ids)


def test_unsupported_models_are_refused_with_a_reason():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50))
    with pytest.raises(Unsupported, match="model type 'gpt2'"):
        FastGenerator(model, SamplingSettings(max_new_tokens=4))


def test_an_optimizer_step_changes_what_the_generator_samples(tmp_path, tiny_model):
    """Through the real trainer: after one GRPO step the generator re-merges the new LoRA weights."""
    import tiny
    from grpo_studio.engine.run import train

    # A reward with spread even for a random model, so the first step has a gradient.
    rewards = "def vowel_reward(completions, **kwargs):\n    return [float(sum(ch in 'aeiou' for ch in c)) for c in completions]\n"
    run_file = tiny.write_run(tmp_path / "p", tiny_model, rewards=rewards)
    messages = []
    result = train(run_file, listener=lambda e: messages.append(e),
                   overrides=["grpo.fast_generation=merged", "grpo.max_steps=1", "grpo.learning_rate=0.05",
                              "eval.correctness=vowel_reward"])
    assert result.kind == "finished", getattr(result, "details", "")
    logs = [e.message for e in messages if e.kind == "log"]
    assert any(m.startswith("generation: merged") for m in logs), logs
    metrics = [e for e in messages if e.kind == "metrics"]
    assert all("perf/generation_seconds" in m.values for m in metrics)

    # Rebuild the policy as it was before and after training, and sample with the same seed.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    assert metrics[0].values["grad_norm"] > 0
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    before = with_lora(base)
    with torch.no_grad():
        for name, p in before.named_parameters():
            if "lora_B" in name:
                p.zero_()  # a fresh adapter: the base policy
    after = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), result.adapter_dir)
    settings = SamplingSettings(max_new_tokens=6, pad_token_id=0)
    prompts = [[10, 11, 12]] * 64
    torch.manual_seed(3)
    a = FastGenerator(before.eval(), settings).generate(prompts)
    torch.manual_seed(3)
    b = FastGenerator(after.eval(), settings).generate(prompts)
    assert a.completion_ids != b.completion_ids
    # And within one generator: sync() after a weight change moves its log-probs.
    gen = FastGenerator(after.eval(), settings)
    lp_before = gen.generate([[10, 11, 12]]).logprobs
    with torch.no_grad():
        for name, p in after.named_parameters():
            if "lora_B" in name:
                p.add_(0.1)
    gen.sync(1)
    out = gen.generate([[10, 11, 12]])
    ref = reference_logprobs(after, [[10, 11, 12]], out.completion_ids)
    assert torch.allclose(ref[0, :len(out.logprobs[0])], torch.tensor(out.logprobs[0]), atol=1e-4)
    assert lp_before != out.logprobs


# ---- sampling against transformers' own logits processors ----------------------------------------


def _first_token_frequencies(model, settings, prompt, n=4000):
    torch.manual_seed(1)
    first = torch.tensor([c[0] for c in FastGenerator(model, settings).generate([prompt] * n).completion_ids])
    return torch.bincount(first, minlength=model.config.vocab_size).float() / n


def _processed_probs(model, prompt, processors):
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt])).logits[:, -1].float()
    return torch.softmax(processors(torch.tensor([prompt]), logits), dim=-1)[0]


@pytest.mark.parametrize("temperature,top_k,top_p", [(0.7, 5, 1.0), (0.3, 0, 0.5), (0.5, 8, 0.7)])
def test_top_k_and_top_p_sample_what_transformers_processors_keep(temperature, top_k, top_p):
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    model = with_lora(tiny_causal_lm("llama")).eval()
    prompt = [5, 6, 7]
    processors = LogitsProcessorList([TemperatureLogitsWarper(temperature)]
                                     + ([TopKLogitsWarper(top_k)] if top_k else [])
                                     + ([TopPLogitsWarper(top_p)] if top_p < 1 else []))
    expected = _processed_probs(model, prompt, processors)
    settings = SamplingSettings(max_new_tokens=1, pad_token_id=0, temperature=temperature, top_k=top_k, top_p=top_p)
    observed = _first_token_frequencies(model, settings, prompt)
    assert 1 < int((expected > 0).sum()) < 40  # the filters cut something and leave a choice
    assert observed[expected == 0].sum() == 0  # nothing outside what transformers keeps
    assert (observed - expected).abs().max() < 0.03


def test_min_new_tokens_follows_transformers_processor():
    from transformers import LogitsProcessorList, MinNewTokensLengthLogitsProcessor, SuppressTokensLogitsProcessor

    model = with_lora(tiny_causal_lm("llama")).eval()
    prompt, eos, keep = [5, 6, 7], 2, (2, 5, 6, 7)
    suppress = tuple(t for t in range(model.config.vocab_size) if t not in keep)
    settings = SamplingSettings(max_new_tokens=5, eos_token_ids=(eos,), pad_token_id=0, min_new_tokens=3,
                                suppress_tokens=suppress)
    processors = LogitsProcessorList([SuppressTokensLogitsProcessor(suppress),
                                      MinNewTokensLengthLogitsProcessor(len(prompt), 3, eos)])
    expected = _processed_probs(model, prompt, processors)
    assert expected[eos] == 0 and set(expected.nonzero().flatten().tolist()) == {5, 6, 7}
    observed = _first_token_frequencies(model, settings, prompt, n=3000)
    assert (observed - expected).abs().max() < 0.03
    torch.manual_seed(2)
    completions = FastGenerator(model, settings).generate([prompt] * 300).completion_ids
    assert all(eos not in c[:3] for c in completions)
    assert any(c[-1] == eos for c in completions)  # after the minimum, the end is allowed again
    assert all(c[-1] == eos or len(c) == 5 for c in completions)


# ---- the models the fast path refuses ------------------------------------------------------------


def test_mistral_sliding_window_is_refused_like_qwen2s_flag():
    from transformers import MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM

    common = dict(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  num_key_value_heads=2, max_position_embeddings=256)
    settings = SamplingSettings(max_new_tokens=4)
    mistral = MistralForCausalLM(MistralConfig(**common, sliding_window=16))  # no use_sliding_window flag
    assert not hasattr(mistral.config, "use_sliding_window")
    with pytest.raises(Unsupported, match="sliding-window"):
        FastGenerator(mistral, settings)
    qwen2 = Qwen2ForCausalLM(Qwen2Config(**common, use_sliding_window=True, sliding_window=16, max_window_layers=0))
    with pytest.raises(Unsupported, match="sliding-window"):
        FastGenerator(qwen2, settings)
    FastGenerator(MistralForCausalLM(MistralConfig(**common, sliding_window=None)), settings)  # full attention: fine
    FastGenerator(Qwen2ForCausalLM(Qwen2Config(**common)), settings)


# ---- quantized weights, read in place ----------------------------------------------------------------


QUANTIZED_CASES = [  # (layout, bits, 4-bit type, double quantization, dtype, kernel backend, tolerance)
    ("llama", 4, "nf4", True, torch.bfloat16, "interpret", 0.02),  # the Triton kernel, interpreted
    ("qwen2", 4, "fp4", False, torch.float16, "interpret", 0.02),
    ("qwen3", 4, "nf4", False, torch.bfloat16, "torch", 0.02),  # its PyTorch reference (the CPU path)
    ("llama", 8, "", False, torch.bfloat16, "interpret", 0.05),
]


@pytest.mark.parametrize("kind,bits,quant_type,double_quant,dtype,backend,tolerance", QUANTIZED_CASES,
                         ids=[f"{c[0]}-{c[1]}bit{'-' + c[2] if c[2] else ''}-{c[5]}" for c in QUANTIZED_CASES])
def test_quantized_weights_logprobs_match_the_training_forward(monkeypatch, kind, bits, quant_type, double_quant,
                                                               dtype, backend, tolerance):
    monkeypatch.setenv("GRPO_STUDIO_QUANT_BACKEND", backend)
    if backend == "interpret":
        pytest.importorskip("triton")
    model = with_lora(quantized_causal_lm(kind, bits, quant_type, double_quant, dtype)).eval()
    settings = SamplingSettings(max_new_tokens=6, eos_token_ids=(2,), pad_token_id=0)
    gen = FastGenerator(model, settings, weights="quantized")
    assert all(type(p).__name__ == "QuantProjection" for layer in gen.layers for p in layer.projections)
    assert max_logprob_error(model, gen.generate(PROMPTS)) < tolerance
    merged = FastGenerator(model, settings)  # the same policy through a dequantized, merged copy
    assert max_logprob_error(model, merged.generate(PROMPTS)) < tolerance


def test_quantized_weights_own_only_the_lora_stacks_and_follow_sync():
    model = with_lora(quantized_causal_lm("qwen2")).eval()
    settings = SamplingSettings(max_new_tokens=6, eos_token_ids=(2,), pad_token_id=0)
    quant = FastGenerator(model, settings, weights="quantized")
    merged = FastGenerator(model, settings)
    assert quant.extra_bytes() == FastGenerator.planned_extra_bytes(model, "quantized")
    assert merged.extra_bytes() == FastGenerator.planned_extra_bytes(model, "merged")
    # Per layer, r=4 on all 7 projections (hidden 64, q 64, k/v 32, intermediate 96), bf16: the stacked
    # A and block-diagonal B of q/k/v 12*(64+128), gate/up 8*(64+192), o 4*(64+64), down 4*(96+64), and
    # Qwen2's q/k/v biases (128). The LM head is tied to the embeddings: shared, no copy.
    assert quant.extra_bytes() == 2 * 2 * (12 * 192 + 8 * 256 + 4 * 128 + 4 * 160 + 128)
    assert merged.extra_bytes() == 2 * 2 * ((128 + 192 + 64) * 64 + 64 * 96 + 128)  # the whole copy
    assert quant.prefill_scratch_bytes() == 96 * 64 * 2  # the largest weight (gate, up or down) in bf16
    # The VRAM estimate's figure, from config.json's sizes alone: the same, less the biases, with the scratch.
    from grpo_studio.engine.vram import Shape, generation_weight_bytes

    shape, cfg = Shape.from_config(model.config.to_dict()), lora_run_config(r=4)
    biases = 2 * 128 * 2  # two layers' q/k/v biases in bf16
    assert generation_weight_bytes(shape, cfg, "quantized") == \
        quant.extra_bytes() - biases + quant.prefill_scratch_bytes()
    assert generation_weight_bytes(shape, cfg, "merged") == merged.extra_bytes() - biases
    before = quant.generate(PROMPTS).logprobs
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.add_(0.05)
    quant.sync(1)  # in place: the stacks a captured CUDA graph reads
    out = quant.generate(PROMPTS)
    assert out.logprobs != before
    assert max_logprob_error(model, out) < 0.02


def test_mixed_weights_merge_the_first_layers_and_read_the_others_in_place(monkeypatch):
    monkeypatch.setenv("GRPO_STUDIO_QUANT_BACKEND", "torch")
    model = with_lora(quantized_causal_lm("llama")).eval()
    settings = SamplingSettings(max_new_tokens=6, eos_token_ids=(2,), pad_token_id=0)
    gen = FastGenerator(model, settings, weights="mixed", merged_layers=1)
    kinds = [{type(p).__name__ for p in layer.projections} for layer in gen.layers]
    assert kinds == [{"MergedProjection"}, {"QuantProjection"}]
    # Its memory: layer 0's merged copy and layer 1's LoRA stacks (the two layers have the same sizes).
    planned = FastGenerator.planned_extra_bytes(model, "mixed", merged_layers=1)
    assert gen.extra_bytes() == planned
    assert 2 * planned == FastGenerator.planned_extra_bytes(model, "merged") + \
        FastGenerator.planned_extra_bytes(model, "quantized")
    from grpo_studio.engine.vram import Shape, generation_weight_bytes

    estimated = generation_weight_bytes(Shape.from_config(model.config.to_dict()), lora_run_config(r=4), "mixed",
                                        merged_layers=1)
    assert estimated == planned + gen.prefill_scratch_bytes()  # llama: no biases
    before = gen.generate(PROMPTS)
    assert max_logprob_error(model, before) < 0.02
    with torch.no_grad():  # an optimizer step: both kinds of layer must follow it
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.add_(0.05)
    gen.sync(1)
    out = gen.generate(PROMPTS)  # the merged copy was given back after the last generation: made again
    assert out.logprobs != before.logprobs
    assert max_logprob_error(model, out) < 0.02


def test_quantized_weights_need_a_quantized_base():
    for weights in ("quantized", "mixed"):
        with pytest.raises(Unsupported, match="4-bit or 8-bit"):
            FastGenerator(with_lora(tiny_causal_lm("llama")), SamplingSettings(max_new_tokens=4), weights=weights)


# ---- a CUDA graph that can't be captured -------------------------------------------------------------


def test_a_failed_graph_capture_is_reported_and_decoding_goes_on():
    model = with_lora(tiny_causal_lm("llama")).eval()
    reasons = []
    gen = FastGenerator(model, SamplingSettings(max_new_tokens=5, pad_token_id=0), on_graph_failure=reasons.append)
    gen.use_cuda_graphs = True  # on the CPU a capture can only fail: exactly the case to report
    out = gen.generate(PROMPTS)
    assert len(reasons) == 1 and gen.graph_failures == reasons and not gen.use_cuda_graphs
    assert max_logprob_error(model, out) < 1e-4 and all(len(c) == 5 for c in out.completion_ids)


def test_the_trainer_logs_a_failed_graph_capture(tmp_path, tiny_model, monkeypatch):
    import tiny
    from grpo_studio.engine import fast_generation
    from grpo_studio.engine.run import train

    original = fast_generation.FastGenerator.__init__

    def graphs_that_fail(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.use_cuda_graphs = True  # CPU: the capture fails; on a GPU the monkeypatch below makes it
    monkeypatch.setattr(fast_generation.FastGenerator, "__init__", graphs_that_fail)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: (_ for _ in ()).throw(RuntimeError("no graphs today")))
    messages = []
    result = train(tiny.write_run(tmp_path / "p", tiny_model), listener=messages.append,
                   overrides=["grpo.fast_generation=merged", "grpo.max_steps=1"])
    assert result.kind == "finished", getattr(result, "details", "")
    logs = [e.message for e in messages if e.kind == "log"]
    assert any("CUDA graph capture failed" in m for m in logs), logs


# ---- the decode step's element-wise kernels, fused by torch.compile ----------------------------------


@pytest.mark.parametrize("kind", ["llama", "qwen3"])  # qwen3: the per-head q/k norms inside the fused RoPE
def test_fused_decode_ops_sample_the_same_policy(kind):
    """Compiled (Inductor's C++ on the CPU, Triton on a GPU), the step keeps intermediates in float32:
    float32 models agree to 1e-4 as the eager step does, and the compiled functions really ran."""
    from grpo_studio.engine import decode_ops

    model = with_lora(tiny_causal_lm(kind)).eval()
    settings = SamplingSettings(max_new_tokens=8, pad_token_id=0)
    failures = []
    gen = FastGenerator(model, settings, fuse_decode=True)
    gen.ops.on_failure = failures.append
    calls = {}
    for name, fn in list(gen.ops._compiled.items()):
        def counted(*args, fn=fn, name=name):
            calls[name] = calls.get(name, 0) + 1
            return fn(*args)
        gen.ops._compiled[name] = counted
    out = gen.generate(PROMPTS)
    assert not failures and gen.ops.fused
    # 7 decode steps x 2 layers: a norm before the first layer, two residual adds with norms a layer.
    assert calls == {"rms": 7, "rope_qk": 14, "add_rms": 28, "gated": 14}
    assert max_logprob_error(model, out) < 1e-4
    assert decode_ops.plain_activation(model.base_model.model.model.layers[0].mlp.act_fn) is torch.nn.functional.silu


def test_a_failed_compile_is_said_once_and_the_eager_ops_serve():
    model = with_lora(tiny_causal_lm("llama")).eval()
    reasons = []
    gen = FastGenerator(model, SamplingSettings(max_new_tokens=6, pad_token_id=0), fuse_decode=True)
    gen.ops.on_failure = reasons.append

    def broken(*args):
        raise RuntimeError("no C compiler\nsecond line")
    gen.ops._compiled = dict.fromkeys(gen.ops._compiled, broken)
    out = gen.generate(PROMPTS)
    assert reasons == ["RuntimeError: no C compiler"] and not gen.ops.fused
    assert max_logprob_error(model, out) < 1e-4 and all(len(c) == 6 for c in out.completion_ids)


def test_a_refused_torch_compile_is_said_at_the_first_step(monkeypatch):
    """torch.compile itself raises on some setups (a Python that Dynamo doesn't support yet): the generator is
    built all the same, and the reason reaches the callback set after construction, as the trainer sets it."""
    def refused(*args, **kwargs):
        raise RuntimeError("Dynamo is not supported on this Python")
    monkeypatch.setattr(torch, "compile", refused)
    model = with_lora(tiny_causal_lm("llama")).eval()
    gen = FastGenerator(model, SamplingSettings(max_new_tokens=4, pad_token_id=0), fuse_decode=True)
    reasons = []
    gen.ops.on_failure = reasons.append
    out = gen.generate(PROMPTS)
    assert reasons == ["RuntimeError: Dynamo is not supported on this Python"] and not gen.ops.fused
    assert max_logprob_error(model, out) < 1e-4


def test_fusion_is_on_for_cuda_by_default_and_the_switch_overrides(monkeypatch):
    import torch.utils._triton as triton_check

    from grpo_studio.engine.decode_ops import fusion_wanted

    monkeypatch.delenv("GRPO_STUDIO_FUSED_DECODE", raising=False)
    monkeypatch.setattr(triton_check, "has_triton_package", lambda: True)
    assert fusion_wanted(torch.device("cuda")) and not fusion_wanted(torch.device("cpu"))
    monkeypatch.setattr(triton_check, "has_triton_package", lambda: False)  # Inductor has no GPU code without it
    assert not fusion_wanted(torch.device("cuda"))
    monkeypatch.setenv("GRPO_STUDIO_FUSED_DECODE", "0")
    assert not fusion_wanted(torch.device("cuda"))
    monkeypatch.setenv("GRPO_STUDIO_FUSED_DECODE", "1")
    assert fusion_wanted(torch.device("cpu"))


def test_the_trainer_says_once_what_compiling_the_fused_kernels_cost(tmp_path, tiny_model, monkeypatch):
    import tiny
    from grpo_studio.engine.run import train

    monkeypatch.setenv("GRPO_STUDIO_FUSED_DECODE", "1")  # the CPU: Inductor's C++ compiles them
    messages = []
    result = train(tiny.write_run(tmp_path / "p", tiny_model), listener=messages.append,
                   overrides=["grpo.fast_generation=merged", "grpo.max_steps=2"])
    assert result.kind == "finished", getattr(result, "details", "")
    logs = [e.message for e in messages if e.kind == "log"]
    chosen = [m for m in logs if m.startswith("generation: merged")]
    assert chosen and chosen[0].endswith(", fused decode kernels"), logs
    said = [m for m in logs if "fused decode kernels compiled in" in m]
    assert len(said) == 1 and "(the first step only)" in said[0], logs
