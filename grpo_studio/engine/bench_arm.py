"""One arm of `grpo-studio bench`, in its own process:  python -m grpo_studio.engine.bench_arm ARM WORK SETUP_JSON

Prints `BENCH_RESULT {json}` as its last line. Timings use CUDA synchronization at the edges of
each step and of each generation, so that asynchronous kernels are charged to the right phase.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from grpo_studio.engine.bench import BenchSetup, model_folder
from grpo_studio.engine.step_profile import StepProfiler, generation_range
from grpo_studio.engine.trainer import synchronize_cuda


def measure_bandwidth() -> float | None:
    """Device memory bandwidth in bytes/s: a large device-to-device copy (bytes read + written)."""
    import torch

    if not torch.cuda.is_available():
        return None
    n = 1 << 29  # bf16 elements: 1 GiB
    src = torch.empty(n, dtype=torch.bfloat16, device="cuda").uniform_()
    dst = torch.empty_like(src)
    times = []
    for _ in range(6):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    del src, dst
    torch.cuda.empty_cache()
    return 2 * n * 2 / statistics.median(times[1:])


def limit_vram(gib: float) -> None:
    """Stand in for a smaller card: this process may allocate at most `gib` GiB of GPU memory, and the
    engine's memory-aware choices see that cap as the card's size (GRPO_STUDIO_VRAM_LIMIT_GIB)."""
    import torch

    if gib <= 0 or not torch.cuda.is_available():
        return
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, gib * 2**30 / total))
    os.environ["GRPO_STUDIO_VRAM_LIMIT_GIB"] = str(gib)


def decode_read_bytes(model: Any) -> int:
    """Bytes of weights a decode step of TRL's generate reads: every parameter once, as stored,
    except the input embedding (only a row is gathered) unless it is also the output head."""
    embed = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    total = 0
    for p in model.parameters():
        if p is embed and head is not embed:
            continue
        total += p.numel() * p.element_size()
    return total


class StepTimer:
    """A TrainerCallback (duck-typed) that records synchronized step times (and profiles one step when
    given a StepProfiler)."""

    def __init__(self, profiler: StepProfiler | None = None) -> None:
        self.steps: list[float] = []
        self.profiler = profiler
        self._t = 0.0

    def on_step_begin(self, args: Any, state: Any, *rest: Any, **kwargs: Any) -> None:
        synchronize_cuda()
        self._t = time.perf_counter()
        if self.profiler is not None:
            self.profiler.begin(state.global_step)

    def on_step_end(self, *args: Any, **kwargs: Any) -> None:
        synchronize_cuda()
        self.steps.append(time.perf_counter() - self._t)
        if self.profiler is not None:
            self.profiler.end()


def run_trl(setup: BenchSetup, work: Path) -> dict[str, Any]:
    """Plain TRL: GRPOTrainer + LoraConfig, as its documentation shows; only timed from outside."""
    import importlib.util

    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from grpo_studio.engine.model import tokenizer_class  # the same tokenizer class as the studio arm

    spec = importlib.util.spec_from_file_location("bench_rewards", work / "bench_rewards.py")
    rewards = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rewards)
    model_dir = model_folder(setup, work)
    cuda = torch.cuda.is_available()
    kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if cuda else torch.float32}
    if setup.quant == "4bit":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16)
    if cuda:
        kwargs["device_map"] = {"": 0}
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    tokenizer = tokenizer_class(str(model_dir)).from_pretrained(model_dir, padding_side="left")
    dataset = load_dataset("json", data_files=str(work / "prompts.jsonl"), split="train")
    gen_times: list[float] = []

    class TimedGRPOTrainer(GRPOTrainer):
        def _generate_single_turn(self, *args: Any, **kw: Any) -> Any:
            synchronize_cuda()
            t = time.perf_counter()
            with generation_range():
                out = super()._generate_single_turn(*args, **kw)
                synchronize_cuda()
            gen_times.append(time.perf_counter() - t)
            return out

    timer = StepTimer(StepProfiler.from_env())
    callback = type("Timer", (TrainerCallback,), {"on_step_begin": timer.on_step_begin,
                                                  "on_step_end": timer.on_step_end})()
    args = GRPOConfig(
        output_dir=str(work / "trl-out"), per_device_train_batch_size=setup.micro_batch,
        gradient_accumulation_steps=setup.accumulation, num_generations=setup.num_generations,
        max_completion_length=setup.completion_tokens, max_steps=setup.total_steps,
        learning_rate=setup.learning_rate, lr_scheduler_type="constant", beta=0.0, seed=0,
        gradient_checkpointing=setup.gradient_checkpointing, bf16=cuda, use_cpu=not cuda,
        logging_steps=1, save_strategy="no", report_to=[], disable_tqdm=True,
        generation_kwargs={"min_new_tokens": setup.completion_tokens} if setup.lengths == "fixed" else None,
    )
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer = TimedGRPOTrainer(
        model=model, reward_funcs=[rewards.spread_reward], args=args, train_dataset=dataset,
        processing_class=tokenizer, callbacks=[callback],
        peft_config=LoraConfig(r=setup.lora_r, lora_alpha=setup.lora_alpha, target_modules=setup.targets,
                               task_type="CAUSAL_LM"),
    )
    trainer.train()
    history = trainer.state.log_history
    return {"step_s": timer.steps, "gen_s": gen_times, "read_bytes": decode_read_bytes(trainer.model),
            "mean_length": [h["completions/mean_length"] for h in history if "completions/mean_length" in h],
            "max_length": [h["completions/max_length"] for h in history if "completions/max_length" in h],
            "mode": "trl"}


def run_studio(setup: BenchSetup, work: Path, arm: str = "studio", extra: list[str] | None = None) -> dict[str, Any]:
    """GRPO Studio's engine on the equivalent run file; timings from its own (synchronized) metrics."""
    import hashlib

    import torch

    from grpo_studio.engine.bench import ARCHS
    from grpo_studio.engine.library_noise import quiet_libraries
    from grpo_studio.engine.run import train
    from grpo_studio.engine.vram import Shape

    quiet_libraries()
    events: list[Any] = []
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    overrides = ["grpo.fast_generation=off"] if arm == "studio-trlgen" else []
    overrides += extra or []
    if arm == "studio-eager":
        os.environ["GRPO_STUDIO_CUDA_GRAPHS"] = "0"
    profiler = StepProfiler.from_env()
    if profiler is not None:
        profile_studio_step(profiler)
    tag = hashlib.sha1(json.dumps(overrides).encode()).hexdigest()[:8]
    result = train(work / "run.toml", output=work / f"{arm}-run-{tag}", listener=events.append, overrides=overrides)
    if result.kind != "finished":
        raise RuntimeError(f"{result.reason}\n{getattr(result, 'details', '')}")
    metrics = [e.values for e in events if e.kind == "metrics"]
    logs = [e.message for e in events if e.kind == "log"]
    mode, merged_layers = mode_in_log(logs)
    shape = Shape.from_config(ARCHS[setup.arch])
    return {"step_s": [m["perf/step_seconds"] for m in metrics],
            "gen_s": [m["perf/generation_seconds"] for m in metrics if "perf/generation_seconds" in m],
            "mean_length": [m["completions/mean_length"] for m in metrics if "completions/mean_length" in m],
            "max_length": [m["completions/max_length"] for m in metrics if "completions/max_length" in m],
            "read_bytes": decode_bytes(shape, mode, setup, merged_layers), "log": logs, "mode": mode,
            "merged_layers": merged_layers,
            "cuda_graphs": any("CUDA graphs" in m for m in logs) and not any("graph capture failed" in m for m in logs),
            "fused_decode": any("fused decode kernels" in m for m in logs)
            and not any("fused decode kernels failed" in m for m in logs)}


def mode_in_log(logs: list[str]) -> tuple[str, int]:
    """The generation mode the run's log names ("generation: mixed, 18 of 28 layers merged, ... (why)"),
    and its merged layers (0 unless mixed)."""
    label = next((m.split(":", 1)[1].split("(")[0].strip() for m in logs if m.startswith("generation:")), "?")
    merged = re.search(r"(\d+) of \d+ layers merged", label)
    return label.split(",")[0].strip(), int(merged.group(1)) if merged else 0


def decode_bytes(shape: Any, mode: str, setup: BenchSetup, merged_layers: int = 0) -> int | None:
    """Bytes of weights one decode step of the studio's generator reads in `mode`: the projections as
    that mode stores them (a merged bf16 copy, or the packed 4-bit base plus the LoRA factors; mixed:
    the first `merged_layers` layers merged, the others packed), and the output head."""
    from grpo_studio.engine.vram import BNB4_BYTES

    head = shape.vocab * shape.hidden * 2
    per_layer = shape.linear_params // shape.layers
    lora = sum(setup.lora_r * (a + b) for a, b in shape.linear_shapes().values()) * 2
    merged = {"merged": shape.layers, "mixed": min(merged_layers, shape.layers), "quantized": 0}.get(mode)
    if merged is None:
        return None
    packed = shape.layers - merged
    return merged * per_layer * 2 + packed * (int(per_layer * BNB4_BYTES[True]) + lora) + head


def profile_studio_step(profiler: Any) -> None:
    """Hook `profiler` (step_profile.StepProfiler) into the studio's own step callback."""
    from grpo_studio.engine.trainer import StudioCallback

    begin, end = StudioCallback.on_step_begin, StudioCallback.on_step_end

    def on_step_begin(self: Any, args: Any, st: Any, control: Any, **kw: Any) -> None:
        begin(self, args, st, control, **kw)
        profiler.begin(st.global_step)

    def on_step_end(self: Any, args: Any, st: Any, control: Any, **kw: Any) -> None:
        end(self, args, st, control, **kw)
        profiler.end()

    StudioCallback.on_step_begin, StudioCallback.on_step_end = on_step_begin, on_step_end


def main(argv: list[str]) -> int:
    import torch

    arm, work, setup_json, *rest = argv
    setup = BenchSetup(**json.loads(setup_json))
    overrides = json.loads(rest[0]) if rest else []
    work_path = Path(work)
    bandwidth = measure_bandwidth()
    limit_vram(setup.vram_limit_gib)
    capacity = _capacity()
    raw = run_trl(setup, work_path) if arm == "trl" else run_studio(setup, work_path, arm, overrides)
    measured = raw["step_s"][setup.warmup:] or raw["step_s"]
    gens = raw["gen_s"][setup.warmup:] or raw["gen_s"]
    step = statistics.median(measured)
    gen = statistics.median(gens) if gens else None
    # Tokens generated per step, and decode steps per generation (the longest completion of the batch).
    mean_len = _measured(raw.get("mean_length"), setup.warmup) or setup.completion_tokens
    decode_steps = _measured(raw.get("max_length"), setup.warmup) or setup.completion_tokens
    tokens = setup.completions_per_step * mean_len
    result: dict[str, Any] = {
        "arm": arm, "mode": raw.get("mode"), "merged_layers": raw.get("merged_layers", 0), "lengths": setup.lengths,
        "vram_limit_gib": setup.vram_limit_gib or None,
        "mean_completion_tokens": mean_len, "steps": len(measured), "step_s": raw["step_s"], "gen_s": raw["gen_s"],
        "step_s_median": step, "gen_s_median": gen, "train_s_median": None if gen is None else step - gen,
        "gen_tokens_per_s": None if not gen else tokens / gen,
        "peak_vram_gib": None, "peak_reserved_gib": None, "roofline_frac": None,
        "bandwidth_gb_s": None if bandwidth is None else bandwidth / 1e9,
        "decode_read_gib": None if raw.get("read_bytes") is None else raw["read_bytes"] / 2**30,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "versions": _versions(),
    }
    for key in ("log", "cuda_graphs", "fused_decode"):
        if key in raw:
            result[key] = raw[key]
    if torch.cuda.is_available():
        result["peak_vram_gib"] = torch.cuda.max_memory_allocated() / 2**30
        result["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
        if gen and raw.get("read_bytes") and bandwidth:
            floor = raw["read_bytes"] / bandwidth  # seconds per decode step at the bandwidth bound
            result["roofline_frac"] = floor / (gen / decode_steps)
    result["estimate_gib"] = _estimate(arm, work_path, raw.get("mode"), overrides, capacity,
                                       raw.get("merged_layers", 0))
    print("BENCH_RESULT " + json.dumps(result), flush=True)
    return 0


def _measured(values: list[float] | None, warmup: int) -> float | None:
    values = (values or [])[warmup:] or values
    return statistics.median(values) if values else None


def _capacity() -> float | None:
    import torch

    from grpo_studio.engine.generation_mode import cuda_capacity_bytes

    return cuda_capacity_bytes() if torch.cuda.is_available() else None


def _estimate(arm: str, work: Path, mode: str | None, overrides: list[str],
              capacity: float | None, merged_layers: int = 0) -> float | None:
    """The VRAM estimate of what the arm ran: the TRL arm as its settings say (checkpointing on, the
    micro-batch as set, TRL's generate); a studio arm as the step plan the engine made on this card,
    with the generation mode that actually ran."""
    from grpo_studio.config import load_run
    from grpo_studio.engine.model import model_path, read_model_config
    from grpo_studio.engine.step_plan import plan_step
    from grpo_studio.engine.vram import estimate_for_config

    run = load_run(work / "run.toml", overrides)
    model_config = read_model_config(model_path(run), run.config.model.revision)
    if model_config is None:
        return None
    if arm == "trl":
        cfg = run.config.model_copy(deep=True)
        cfg.lora.gradient_checkpointing, cfg.grpo.auto_micro_batch = "on", False
        return estimate_for_config(model_config, cfg, generation_mode="trl", liger=False,
                                   packed=False).gib()  # plain TRL: its own kernels and grid
    plan = plan_step(run.config, model_config, capacity, on_gpu=capacity is not None)
    if mode is None:
        mode, merged_layers = plan.mode.mode, plan.mode.merged_layers
    return estimate_for_config(model_config, plan.config, generation_mode=mode, merged_layers=merged_layers).gib()


def _versions() -> dict[str, str]:
    from grpo_studio.engine.run import environment_summary

    return environment_summary()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
