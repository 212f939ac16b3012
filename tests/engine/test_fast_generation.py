"""The fast generation path: it must sample from exactly the policy being trained.

Checked on the CPU against TRL's own training forward (the log-probs the loss uses), for the
Llama, Qwen2 and Qwen3 layouts, with LoRA merged; and across a real optimizer step.
"""

from __future__ import annotations

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


def with_lora(model):
    from peft import LoraConfig, get_peft_model

    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:  # PEFT starts B at zero; a trained adapter isn't
                p.normal_(std=0.2)
    return peft


def reference_logprobs(model, prompts, completions):
    """Log-probs as the training forward sees them: left-padded prompt + right-padded completion."""
    P, C = max(map(len, prompts)), max(map(len, completions))
    ids = torch.zeros(len(prompts), P + C, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        ids[i, P - len(p):P], mask[i, P - len(p):P] = torch.tensor(p), 1
        ids[i, P:P + len(c)], mask[i, P:P + len(c)] = torch.tensor(c), 1
    device = next(model.parameters()).device
    ids, mask = ids.to(device), mask.to(device)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits[:, P - 1:-1].float()
    return torch.log_softmax(logits, -1).gather(-1, ids[:, P:, None])[..., 0].cpu()


PROMPTS = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14, 15]]


@pytest.mark.parametrize("kind", ["llama", "qwen2", "qwen3"])
def test_logprobs_match_the_training_forward(kind):
    model = with_lora(tiny_causal_lm(kind)).eval()
    gen = FastGenerator(model, SamplingSettings(max_new_tokens=16, eos_token_ids=(2,), pad_token_id=0))
    out = gen.generate(PROMPTS)
    ref = reference_logprobs(model, PROMPTS, out.completion_ids)
    for i, (tokens, logps) in enumerate(zip(out.completion_ids, out.logprobs)):
        assert len(tokens) >= 1
        assert torch.allclose(ref[i, :len(tokens)], torch.tensor(logps), atol=1e-4), kind


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
