"""`grpo-studio bench` on the CPU with the tiny shape: both arms run, the JSON has the fixed keys."""

from __future__ import annotations

import json
import subprocess
import sys


def test_tiny_bench_runs_both_arms(tmp_path):
    out = subprocess.run([sys.executable, "-m", "grpo_studio.cli", "bench", "--arch", "tiny", "--steps", "2",
                          "--json", str(tmp_path / "bench.json"), "--work", str(tmp_path / "work")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    results = json.loads((tmp_path / "bench.json").read_text())
    assert [r["arm"] for r in results] == ["trl", "studio"]
    for r in results:
        assert r["step_s_median"] > 0 and r["gen_tokens_per_s"] > 0
        assert r["peak_vram_gib"] is None and r["roofline_frac"] is None  # CPU: no VRAM, no roofline
        assert len(r["step_s"]) == 3  # warm-up + 2 measured
        assert r["mode"] and r["gen_s_median"] > 0 and r["train_s_median"] > 0 and r["mean_completion_tokens"] > 0
    studio = results[1]
    assert studio["cuda_graphs"] is False and studio["fused_decode"] is False  # the CPU: neither is used
    assert "s/step" in out.stdout and "x the seconds per step of plain TRL" in out.stdout


def test_bench_rejects_unknown_arch():
    out = subprocess.run([sys.executable, "-m", "grpo_studio.cli", "bench", "--arch", "gpt5"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "--arch must be one of" in out.stderr


def test_arm_overrides_are_parsed():
    from grpo_studio.engine.bench import parse_arm

    assert parse_arm("trl") == ("trl", [])
    assert parse_arm("studio+lora.gradient_checkpointing=off+grpo.top_k=5") == (
        "studio", ["lora.gradient_checkpointing=off", "grpo.top_k=5"])


def test_a_random_model_is_given_a_steady_chance_of_ending():
    """--lengths natural: the calibrated model ends a completion at each token with the chance asked for."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from grpo_studio.engine.bench import calibrate_eos

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                                         num_key_value_heads=2, intermediate_size=128, vocab_size=512,
                                         tie_word_embeddings=True, max_position_embeddings=512)).eval()
    reached = calibrate_eos(model, eos_id=1, target=0.05)
    assert abs(reached - 0.05) < 0.005
    ids = torch.randint(3, 512, (16, 160), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        p = torch.softmax(model(input_ids=ids).logits[:, 128:].float(), -1)[..., 1]
    assert 0.03 < p.mean() < 0.07 and p.std() < 0.03  # about the same chance everywhere


def test_the_ending_chance_does_not_depend_on_the_layers_at_a_wide_shape():
    """At a wide shape (the 7B bench ended every completion at its first token) the calibration keeps the
    residual stream dominated by its one dimension, so the chance of ending is the same whatever the
    layers compute: the final hidden state is nearly that dimension alone, and noise added to every
    projection (as 4-bit rounding does) leaves the chance where it was."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from grpo_studio.engine.bench import calibrate_eos

    torch.manual_seed(0)
    hidden = 512
    model = Qwen2ForCausalLM(Qwen2Config(hidden_size=hidden, num_hidden_layers=6, num_attention_heads=8,
                                         num_key_value_heads=2, intermediate_size=2816, vocab_size=2048,
                                         tie_word_embeddings=False, max_position_embeddings=512)).eval()
    calibrate_eos(model, eos_id=1, target=0.02)
    ids = torch.randint(3, 2048, (4, 160), generator=torch.Generator().manual_seed(2))

    def chance() -> float:
        with torch.no_grad():
            return float(torch.softmax(model(input_ids=ids).logits[:, 128:].float(), -1)[..., 1].mean())

    with torch.no_grad():
        h = model.model(input_ids=ids).last_hidden_state
    assert float(h[..., 0].abs().mean()) > 0.9 * hidden ** 0.5  # RMS-normed: nearly all of it in dimension 0
    before = chance()
    with torch.no_grad():
        for name, w in model.named_parameters():
            if "proj" in name and w.dim() == 2:
                w.add_(torch.randn_like(w) * w.std() * 0.1)
    assert abs(chance() - before) < 0.1 * before


def test_natural_lengths_far_too_short_are_said():
    from grpo_studio.engine.bench import BenchSetup, length_warnings

    natural = BenchSetup.for_arch("qwen2.5-7b", "4bit", 1, lengths="natural")
    results = [{"arm": "trl", "mean_completion_tokens": 1.0}, {"arm": "studio", "mean_completion_tokens": 97.0}]
    assert length_warnings(natural, results) == [
        "warning: arm trl: completions averaged 1 tokens of 256 (intended ~102): the lengths are not realistic"]
    assert length_warnings(BenchSetup.for_arch("qwen2.5-7b", "4bit", 1), results) == []


def test_a_work_folder_can_be_benched_again(tmp_path):
    """The studio arms' run folders (ARM-run-TAG) of an earlier bench are cleared, or the next studio
    arm would refuse to train into an existing run folder."""
    from grpo_studio.engine.bench import BenchSetup, prepare

    setup = BenchSetup.for_arch("tiny", "16bit", 1)
    prepare(setup, tmp_path)
    (tmp_path / "studio-run-0123abcd").mkdir()
    (tmp_path / "studio+grpo.top_k=5-run-89abcdef").mkdir()
    prepare(setup, tmp_path)
    assert not list(tmp_path.glob("studio*-run-*"))
