"""One arm of `grpo-studio bench`, in its own process:  python -m grpo_studio.engine.bench_arm ARM WORK SETUP_JSON

Prints `BENCH_RESULT {json}` as its last line. Timings use CUDA synchronization at the edges of
each step and of each generation, so that asynchronous kernels are charged to the right phase.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from grpo_studio.engine.bench import BenchSetup
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
    """A TrainerCallback (duck-typed) that records synchronized step times."""

    def __init__(self) -> None:
        self.steps: list[float] = []
        self._t = 0.0

    def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
        synchronize_cuda()
        self._t = time.perf_counter()

    def on_step_end(self, *args: Any, **kwargs: Any) -> None:
        synchronize_cuda()
        self.steps.append(time.perf_counter() - self._t)


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
    model_dir = work / f"model-{setup.arch}"
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
            out = super()._generate_single_turn(*args, **kw)
            synchronize_cuda()
            gen_times.append(time.perf_counter() - t)
            return out

    timer = StepTimer()
    callback = type("Timer", (TrainerCallback,), {"on_step_begin": timer.on_step_begin,
                                                  "on_step_end": timer.on_step_end})()
    args = GRPOConfig(
        output_dir=str(work / "trl-out"), per_device_train_batch_size=setup.micro_batch,
        gradient_accumulation_steps=setup.accumulation, num_generations=setup.num_generations,
        max_completion_length=setup.completion_tokens, max_steps=setup.total_steps,
        learning_rate=setup.learning_rate, lr_scheduler_type="constant", beta=0.0, seed=0,
        gradient_checkpointing=setup.gradient_checkpointing, bf16=cuda, use_cpu=not cuda,
        logging_steps=1, save_strategy="no", report_to=[], disable_tqdm=True,
        generation_kwargs={"min_new_tokens": setup.completion_tokens},
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
    return {"step_s": timer.steps, "gen_s": gen_times, "read_bytes": decode_read_bytes(trainer.model)}


def run_studio(setup: BenchSetup, work: Path, arm: str = "studio") -> dict[str, Any]:
    """GRPO Studio's engine on the equivalent run file; timings from its own (synchronized) metrics."""
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
    if arm == "studio-eager":
        os.environ["GRPO_STUDIO_CUDA_GRAPHS"] = "0"
    result = train(work / "run.toml", output=work / f"{arm}-run", listener=events.append, overrides=overrides)
    if result.kind != "finished":
        raise RuntimeError(f"{result.reason}\n{getattr(result, 'details', '')}")
    metrics = [e.values for e in events if e.kind == "metrics"]
    logs = [e.message for e in events if e.kind == "log"]
    # The generator reads its merged bf16 projections and the output head at every decode step.
    shape = Shape.from_config(ARCHS[setup.arch])
    read = (shape.linear_params + shape.vocab * shape.hidden) * 2
    return {"step_s": [m["perf/step_seconds"] for m in metrics],
            "gen_s": [m["perf/generation_seconds"] for m in metrics if "perf/generation_seconds" in m],
            "read_bytes": read, "log": logs,
            "cuda_graphs": any("CUDA graphs" in m for m in logs)}


def main(argv: list[str]) -> int:
    import torch

    arm, work, setup_json = argv
    setup = BenchSetup(**json.loads(setup_json))
    work_path = Path(work)
    bandwidth = measure_bandwidth()
    raw = run_trl(setup, work_path) if arm == "trl" else run_studio(setup, work_path, arm)
    measured = raw["step_s"][setup.warmup:] or raw["step_s"]
    gens = raw["gen_s"][setup.warmup:] or raw["gen_s"]
    step = statistics.median(measured)
    gen = statistics.median(gens) if gens else None
    tokens = setup.completions_per_step * setup.completion_tokens
    result: dict[str, Any] = {
        "arm": arm, "steps": len(measured), "step_s": raw["step_s"], "gen_s": raw["gen_s"],
        "step_s_median": step, "gen_s_median": gen, "train_s_median": None if gen is None else step - gen,
        "gen_tokens_per_s": None if not gen else tokens / gen,
        "peak_vram_gib": None, "peak_reserved_gib": None, "roofline_frac": None,
        "bandwidth_gb_s": None if bandwidth is None else bandwidth / 1e9,
        "decode_read_gib": None if raw.get("read_bytes") is None else raw["read_bytes"] / 2**30,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "versions": _versions(),
    }
    for key in ("log", "cuda_graphs"):
        if key in raw:
            result[key] = raw[key]
    if torch.cuda.is_available():
        result["peak_vram_gib"] = torch.cuda.max_memory_allocated() / 2**30
        result["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
        if gen and raw.get("read_bytes") and bandwidth:
            floor = raw["read_bytes"] / bandwidth  # seconds per decode step at the bandwidth bound
            result["roofline_frac"] = floor / (gen / setup.completion_tokens)
    result["estimate_gib"] = _estimate(setup, work_path, fast=arm in ("studio", "studio-eager"))
    print("BENCH_RESULT " + json.dumps(result), flush=True)
    return 0


def _estimate(setup: BenchSetup, work: Path, fast: bool) -> float | None:
    from grpo_studio.config import load_run
    from grpo_studio.engine.vram import estimate_for_run

    est = estimate_for_run(load_run(work / "run.toml"), fast_generation=fast)
    return None if est is None else est.gib()


def _versions() -> dict[str, str]:
    from grpo_studio.engine.run import environment_summary

    return environment_summary()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
