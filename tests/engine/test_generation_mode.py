"""Choosing the generation mode: the fastest that applies and fits, down to TRL's generate."""

from __future__ import annotations

import pytest

from grpo_studio.config import RunConfig, loads_run
from grpo_studio.engine.bench import ARCHS
from grpo_studio.engine.generation_mode import GIB, choose_mode, sliding_window_in_use
from grpo_studio.engine.vram import estimate_for_config

QWEN_7B = {**ARCHS["qwen2.5-7b"], "model_type": "qwen2", "head_dim": 128}
QWEN_15B = {**ARCHS["qwen2.5-1.5b"], "model_type": "qwen2"}


def seed_run(load_in: str = "4bit", setting: str = "auto") -> RunConfig:
    """The seed's recipe: Qwen2.5-7B, LoRA r=16, 8 completions of up to 256 tokens after 128-token prompts."""
    cfg = RunConfig()
    cfg.quantization.load_in = load_in
    cfg.lora.r = 16
    cfg.grpo.fast_generation = setting
    cfg.grpo.per_device_train_batch_size, cfg.grpo.num_generations = 8, 8
    cfg.data.max_prompt_length, cfg.grpo.max_completion_length = 128, 256
    return cfg


def test_the_seed_run_on_a_16_gib_card_merges_as_many_layers_as_fit_and_decodes_the_rest_from_4bit():
    cfg = seed_run()
    est = estimate_for_config(QWEN_7B, cfg, capacity_bytes=16 * GIB)
    merged = estimate_for_config(QWEN_7B, cfg, generation_mode="merged")
    assert merged.total > 16 * GIB  # the merged copy would not fit
    assert est.generation_mode == "mixed" and 0 < est.merged_layers < 28
    assert est.total <= 0.9 * 16 * GIB  # within the headroom...
    one_more = estimate_for_config(QWEN_7B, est_config(cfg, 16), generation_mode="mixed",
                                   merged_layers=est.merged_layers + 1)
    assert one_more.total > 0.9 * 16 * GIB  # ...and one merged layer more would not be
    quantized = estimate_for_config(QWEN_7B, cfg, generation_mode="quantized")
    assert quantized.total < est.total
    # A larger card merges more layers; asking for "quantized" keeps every layer quantized.
    assert estimate_for_config(QWEN_7B, cfg, capacity_bytes=18 * GIB).merged_layers > est.merged_layers
    asked = estimate_for_config(QWEN_7B, seed_run(setting="quantized"), capacity_bytes=16 * GIB)
    assert (asked.generation_mode, asked.merged_layers) == ("quantized", 0)


def test_the_generation_phase_counts_the_prompts_forward_pass():
    # The 7B shape's prefill of 128-token prompts: gate/up output, activation and product at the MLP
    # (4 x 18944) and a few hidden-sized tensors (8 x 3584), bf16, a row. Without it the mixed mode's
    # measured peak (H200) sat 0.74 GiB above the estimate. The fast generator prefills each distinct
    # prompt once (TRL's generate every row of the generation batch).
    cfg = seed_run()
    prompts = cfg.generation_batch(1) // cfg.grpo.num_generations
    assert (cfg.generation_batch(1), prompts) == (8, 1)
    row = 128 * (4 * 18944 + 8 * 3584) * 2
    for mode in ("mixed", "merged"):  # modes whose generation phase sets the peak here
        est = estimate_for_config(QWEN_7B, cfg, generation_mode=mode, merged_layers=10)
        assert est.peak_phase == "generation"
        assert est.parts["prefill activations"] == prompts * row, mode


def est_config(cfg: RunConfig, gib: float) -> RunConfig:
    """The run config with the training layout the plan gives it on a card of `gib`."""
    from grpo_studio.engine.step_plan import plan_step

    return plan_step(cfg, QWEN_7B, gib * GIB).config


def test_mixed_says_how_many_layers_and_steps_aside_when_not_one_layer_fits():
    cfg = seed_run()
    per_layer = 2 * 10**8  # bytes a merged layer adds to the peak, in this made-up estimate

    def peak(mode: str, merged_layers: int = 0) -> float:
        return {"merged": 30 * GIB, "trl": 5 * GIB}.get(mode, 6 * GIB) + merged_layers * per_layer

    choice = choose_mode(cfg, QWEN_7B, peak, 10 / 0.9 * GIB)  # room for 4 GiB of merged layers
    assert (choice.mode, choice.merged_layers) == ("mixed", int(4 * GIB // per_layer))
    assert choice.describe().startswith(f"generation: mixed, {choice.merged_layers} of 28 layers merged, "
                                        "the rest quantized (as many merged layers as fit the 11.1 GiB free")
    tight = choose_mode(cfg, QWEN_7B, peak, 6.1 / 0.9 * GIB)
    assert tight.mode == "quantized" and "mixed: not one merged layer fits" in tight.reason
    # "auto" sizes the mixed mode against a known card only.
    assert choose_mode(cfg, QWEN_7B, peak, None).mode == "merged"
    # Asked for, it merges as many layers as fit (all but one at most), half without a known card (the CPU),
    # and falls back to quantized where not one layer fits.
    asked = seed_run(setting="mixed")
    assert choose_mode(asked, QWEN_7B, peak, 80 * GIB).merged_layers == 27
    blind = choose_mode(asked, QWEN_7B, peak, None, on_gpu=False)
    assert (blind.mode, blind.merged_layers) == ("mixed", 14) and "half the layers" in blind.reason
    assert choose_mode(asked, QWEN_7B, peak, 6.1 / 0.9 * GIB).mode == "quantized"
    on_16bit = choose_mode(seed_run(load_in="16bit", setting="mixed"), QWEN_15B, peak, 80 * GIB)
    assert on_16bit.mode == "trl" and on_16bit.reason.count("needs a quantized base") == 1  # said once
    assert on_16bit.describe() == 'generation: trl (mixed: needs a quantized base (quantization.load_in = "4bit" ' \
        'or "8bit"))'


def test_a_16bit_base_takes_the_merged_copy_when_it_fits_and_trl_when_it_does_not():
    cfg = seed_run(load_in="16bit")
    roomy = estimate_for_config(QWEN_15B, cfg, capacity_bytes=80 * GIB)
    assert roomy.generation_mode == "merged"
    merged_peak = estimate_for_config(QWEN_15B, cfg, generation_mode="merged").total
    trl_peak = estimate_for_config(QWEN_15B, cfg, generation_mode="trl").total
    tight = (trl_peak + merged_peak) / 2 / 0.9  # room for TRL's generate, not for the copy
    est = estimate_for_config(QWEN_15B, cfg, capacity_bytes=tight)
    assert est.generation_mode == "trl"
    assert "merged: needs" in est.mode_reason


def test_requests_off_cpu_and_unsupported_models_say_why():
    cfg = seed_run(setting="off")
    assert choose_mode(cfg, QWEN_7B, lambda m, merged_layers=0: 1.0, 80 * GIB).reason == 'grpo.fast_generation = "off"'
    auto = seed_run()
    assert choose_mode(auto, QWEN_7B, lambda m, merged_layers=0: 1.0, None, on_gpu=False).mode == "trl"
    gpt2 = {"model_type": "gpt2"}
    choice = choose_mode(auto, gpt2, lambda m, merged_layers=0: 1.0, 80 * GIB)
    assert choice.mode == "trl" and "model type 'gpt2'" in choice.reason
    # A mode asked for explicitly is used on the CPU too (the tests' tiny models), without a memory check.
    asked = seed_run(load_in="16bit", setting="merged")
    assert choose_mode(asked, QWEN_15B, lambda m, merged_layers=0: 1.0, None, on_gpu=False).mode == "merged"
    # quantized needs a 4-bit base; the request falls back with the reason.
    choice = choose_mode(seed_run(load_in="16bit", setting="quantized"), QWEN_15B, lambda m, merged_layers=0: 1.0, 80 * GIB)
    assert choice.mode == "trl" and "needs a quantized base" in choice.reason


def test_a_mode_that_failed_is_not_chosen_again():
    cfg = seed_run()
    choice = choose_mode(cfg, QWEN_7B, lambda m, merged_layers=0: 1.0, 80 * GIB, exclude={"merged"})
    assert (choice.mode, choice.merged_layers) == ("mixed", 27) and "failed earlier" in choice.reason
    choice = choose_mode(cfg, QWEN_7B, lambda m, merged_layers=0: 1.0, 80 * GIB, exclude={"merged", "mixed"})
    assert choice.mode == "quantized" and "failed earlier" in choice.reason


@pytest.mark.parametrize("config, expected", [
    ({"sliding_window": 4096, "max_position_embeddings": 32768}, True),  # Mistral-7B-v0.1
    ({"sliding_window": None, "max_position_embeddings": 32768}, False),  # Mistral v0.3
    ({"use_sliding_window": False, "sliding_window": 4096, "max_position_embeddings": 32768}, False),  # Qwen2
    ({"use_sliding_window": True, "sliding_window": 4096, "max_position_embeddings": 32768}, True),
    ({"sliding_window": 32768, "max_position_embeddings": 32768}, False),  # a window as long as the context
])
def test_sliding_window_in_use(config, expected):
    assert sliding_window_in_use(config) is expected


def test_old_run_files_saying_on_mean_the_merged_copy():
    run = loads_run('[grpo]\nfast_generation = "on"\n')
    assert run.config.grpo.fast_generation == "merged"


# ---- the training layout ---------------------------------------------------------------------

from grpo_studio.engine.step_plan import plan_step  # noqa: E402
from grpo_studio.engine.training_layout import candidates, choose_layout  # noqa: E402


def layout_run(load_in: str = "16bit", loss: str = "dapo", setting: str = "auto") -> RunConfig:
    cfg = seed_run(load_in=load_in, setting=setting)
    cfg.grpo.gradient_accumulation_steps = 4
    cfg.grpo.loss_type = loss
    cfg.lora.gradient_checkpointing = "auto"
    return cfg


def test_layouts_are_ordered_by_launches_and_keep_the_generation_batch():
    cfg = layout_run()
    options = candidates(cfg, on_gpu=True)
    assert options[0] == (32, 1, False) and options[-1] == (8, 4, True)
    assert all(micro * accum == 32 for micro, accum, _ in options)
    # A loss normalized per micro-batch (bnpo) keeps the micro-batch as set; so does the CPU.
    assert {o[:2] for o in candidates(layout_run(loss="bnpo"), on_gpu=True)} == {(8, 4)}
    assert candidates(cfg, on_gpu=False) == [(8, 4, False)]


def test_a_roomy_card_gets_the_fastest_layout_and_a_small_one_a_frugal_one():
    roomy = plan_step(layout_run(), QWEN_15B, 139 * GIB)
    assert (roomy.layout.micro_batch, roomy.layout.checkpointing) == (32, False)
    assert roomy.config.grpo.per_device_train_batch_size == 32 and roomy.config.lora.gradient_checkpointing == "off"
    seed = plan_step(layout_run(load_in="4bit"), QWEN_7B, 16 * GIB)
    assert seed.mode.mode == "mixed"  # the whole merged copy of 7B does not fit 16 GiB
    assert seed.layout.checkpointing  # 7B activations without recomputation do not fit 16 GiB
    # Packed, 32 completions in one micro-step (past the work limit for TRL's padded grid) train under
    # the merged layers' generation peak.
    assert (seed.layout.micro_batch, seed.layout.accumulation) == (32, 1)
    est = estimate_for_config(QWEN_7B, seed.config, generation_mode="mixed", merged_layers=seed.mode.merged_layers)
    assert est.total <= 0.9 * 16 * GIB and est.peak_phase == "generation"
    # Asked for the smallest generator ("quantized"), training sets the peak. Packed (each prompt once),
    # fewer micro-steps pay past the work limit: 32 x 1 where it fits.
    small = plan_step(layout_run(load_in="4bit", setting="quantized"), QWEN_7B, 16 * GIB)
    assert (small.mode.mode, small.layout.micro_batch, small.layout.accumulation) == ("quantized", 32, 1)
    assert small.layout.reason.startswith("estimated peak")
    unknown = plan_step(layout_run(), QWEN_15B, None)
    assert (unknown.layout.micro_batch, unknown.layout.checkpointing) == (8, True)


def test_merging_stops_where_a_micro_step_keeps_the_gpu_busy():
    from grpo_studio.engine.training_layout import MERGE_WORK_LIMIT

    cfg = layout_run()  # 8 completions x 4 micro-steps of 128 + 256 tokens
    assert {o[0] for o in candidates(cfg, on_gpu=True, linear_params=10**9)} == {8, 16, 32}
    per_completion = 384 * 6 * 10**9  # a 7B-sized model: 6e9 linear parameters
    allowed = {o[0] for o in candidates(cfg, on_gpu=True, linear_params=6 * 10**9)}
    assert allowed == {m for m in (8, 16, 32) if m == 8 or m * per_completion <= MERGE_WORK_LIMIT} == {8, 16}
    huge = {o[0] for o in candidates(cfg, on_gpu=True, linear_params=10**12)}
    assert huge == {8}  # the micro-batch as set is always allowed


def test_unpacked_training_keeps_the_work_limit(monkeypatch):
    # Without packing (turned off here; also models the packed attention doesn't serve), merging stops
    # where a micro-step keeps the GPU busy: 16 x 2 at 7B.
    monkeypatch.setenv("GRPO_STUDIO_PADDING_FREE", "0")
    small = plan_step(layout_run(load_in="4bit", setting="quantized"), QWEN_7B, 16 * GIB)
    assert (small.mode.mode, small.layout.micro_batch, small.layout.accumulation) == ("quantized", 16, 2)
    # Packing or not, the CPU keeps the layout as set.
    assert plan_step(layout_run(), QWEN_15B, None, on_gpu=False).layout.micro_batch == 8


def test_an_explicit_checkpointing_setting_is_kept():
    cfg = layout_run()
    cfg.lora.gradient_checkpointing = "on"
    layout = choose_layout(cfg, lambda c: 1.0, 139 * GIB)
    assert layout.checkpointing and layout.micro_batch == 32


def test_a_mixed_generation_that_runs_out_of_memory_drops_to_quantized_then_to_trl(monkeypatch):
    """The trainer's fallback chain on a (pretend) 16 GiB GPU: mixed, then quantized, then TRL's generate."""
    from types import SimpleNamespace

    from grpo_studio.engine import generation_mode
    from grpo_studio.engine.step_plan import plan_step
    from grpo_studio.engine.trainer import GenerationSetup, StudioGRPOTrainer

    cfg = layout_run(load_in="4bit")
    plan = plan_step(cfg, QWEN_7B, 16 * GIB)

    def peak(mode, merged_layers=0):
        return estimate_for_config(QWEN_7B, plan.config, generation_mode=mode, merged_layers=merged_layers).total

    trainer = StudioGRPOTrainer.__new__(StudioGRPOTrainer)  # the generation-mode logic alone, no model
    messages, built = [], []
    trainer.generation = GenerationSetup(plan.config, QWEN_7B, peak, planned=plan.mode)
    trainer.accelerator = SimpleNamespace(device=SimpleNamespace(type="cuda"))
    trainer.on_message = lambda level, text: messages.append(text)
    trainer._fast, trainer._mode, trainer._excluded = None, None, set()
    monkeypatch.setattr(StudioGRPOTrainer, "_fast_path_blocker", lambda self: None)
    monkeypatch.setattr(StudioGRPOTrainer, "_build_generator",
                        lambda self, mode, merged_layers=0: built.append((mode, merged_layers)) or
                        SimpleNamespace(use_cuda_graphs=True, ops=SimpleNamespace(fused=False)))
    monkeypatch.setattr(generation_mode, "cuda_capacity_bytes", lambda: 16 * GIB)

    trainer._fast_generator()
    assert built == [("mixed", plan.mode.merged_layers)] and plan.mode.merged_layers > 0
    assert messages[-1].startswith(f"generation: mixed, {plan.mode.merged_layers} of 28 layers merged")
    trainer._drop_mode("it ran out of GPU memory (CUDA out of memory)")
    assert built[-1] == ("quantized", 0) and trainer._mode == "quantized"
    assert any("mixed dropped" in m for m in messages)
    assert trainer._drop_mode("it ran out of GPU memory (again)") is None and trainer._mode == "trl"


def test_training_is_estimated_on_the_packed_tokens_where_the_gpu_packs_each_prompt_once(monkeypatch):
    from grpo_studio.engine.vram import packs_prompts, training_tokens

    cfg = seed_run()
    cfg.grpo.per_device_train_batch_size = 32  # the whole generation batch: 4 prompts x 8 completions
    assert training_tokens(cfg, packed=False) == 32 * (128 + 256)
    assert training_tokens(cfg, packed=True) == 4 * 128 + 32 * 256  # 29% fewer
    cfg.data.max_prompt_length = 16  # packing would save 4%: under the fifth it asks for, so TRL's grid
    assert training_tokens(cfg, packed=True) == 32 * (16 + 256)
    assert packs_prompts(QWEN_7B)
    assert not packs_prompts({**QWEN_7B, "sliding_window": 4096, "use_sliding_window": True})
    assert not packs_prompts({**QWEN_7B, "model_type": "gpt2"})
    monkeypatch.setenv("GRPO_STUDIO_SHARED_PROMPTS", "0")
    assert not packs_prompts(QWEN_7B)
    cfg = seed_run(setting="quantized")
    cfg.lora.gradient_checkpointing = "on"
    grid = estimate_for_config(QWEN_7B, cfg, generation_mode="quantized", packed=False, liger=False)
    packed = estimate_for_config(QWEN_7B, cfg, generation_mode="quantized", packed=True, liger=False)
    assert packed.total < grid.total and packed.peak_phase == grid.peak_phase == "training"
    monkeypatch.delenv("GRPO_STUDIO_SHARED_PROMPTS")
    assert estimate_for_config(QWEN_7B, cfg, generation_mode="quantized", liger=False).total == packed.total
