"""TRL's GRPOTrainer, with what GRPO Studio needs to watch and steer it.

`StudioGRPOTrainer` is the real GRPOTrainer; it only adds a hook after each generation batch has
been scored, to hand the sampled completions (with per-function rewards and advantages) to the
run's listeners. `StudioCallback` turns the trainer's logs into metrics events, reports
checkpoints, and stops the run cleanly on request: finish the step, save, exit.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Callable

from transformers import TrainerCallback
from trl import GRPOTrainer

from grpo_studio.engine.events import Checkpoint, Metrics, Sample, Samples


def message_text(value: Any) -> str:
    """A prompt or completion as plain text (chat messages joined as `role: content`)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        if len(value) == 1 and isinstance(value[0], dict) and value[0].get("role") == "assistant":
            return str(value[0].get("content", ""))
        return "\n".join(f"{m.get('role', '?')}: {m.get('content', '')}" for m in value if isinstance(m, dict))
    return str(value)


class StudioGRPOTrainer(GRPOTrainer):
    """GRPOTrainer that reports every scored generation batch to `on_samples`."""

    def __init__(self, *args: Any, on_samples: Callable[[Samples], None] | None = None,
                 samples_per_step: int = 0, fast_generation: str = "off", max_prompt_length: int | None = None,
                 on_message: Callable[[str, str], None] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.on_samples = on_samples
        self.samples_per_step = samples_per_step
        self.fast_generation = fast_generation
        self.max_prompt_length = max_prompt_length
        self.on_message = on_message or (lambda level, text: None)
        self._fast: Any = None  # FastGenerator, made on first use (after the model is on its device)

    # ---- generation -----------------------------------------------------------------------
    def _generate_single_turn(self, prompt_ids: list, images: Any, multimodal_fields: Any, num_generations: int,
                              has_tool_images: bool = False) -> tuple[list, Any]:
        started = time.perf_counter()
        fast = self._fast_generator() if images is None and not multimodal_fields else None
        if fast is not None:
            if fast.synced_version != self.state.global_step:
                fast.sync(self.state.global_step)  # the policy changed: re-merge LoRA
            result = (fast.generate(prompt_ids, self.max_prompt_length).completion_ids, None)
        else:
            result = super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations,
                                                   has_tool_images)
        synchronize_cuda()
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["perf/generation_seconds"].append(time.perf_counter() - started)
        return result

    def _fast_generator(self) -> Any:
        """The fast generator, or None when it is off or can't serve this model (said once, in the log)."""
        if self._fast is not None or self.fast_generation == "off":
            return self._fast or None
        from grpo_studio.engine.fast_generation import FastGenerator, SamplingSettings, Unsupported

        reason = self._fast_path_blocker()
        if reason is None:
            try:
                extra = dict(self.args.generation_kwargs or {})
                graphs = os.environ.get("GRPO_STUDIO_CUDA_GRAPHS", "1") != "0"  # a troubleshooting switch
                self._fast = FastGenerator(self.model_wrapped, use_cuda_graphs=graphs, sampling=SamplingSettings(
                    max_new_tokens=self.max_completion_length, temperature=self.temperature, top_p=self.top_p,
                    top_k=self.top_k or 0, min_new_tokens=int(extra.get("min_new_tokens", 0)),
                    eos_token_ids=tuple(self.eos_token_ids), pad_token_id=self._tokenizer.pad_token_id,
                    suppress_tokens=tuple(extra.get("suppress_tokens") or ())))
                self.on_message("info", "fast generation on: merged LoRA copy, static KV cache"
                                + (", CUDA graphs" if self._fast.use_cuda_graphs else ""))
                return self._fast
            except Unsupported as exc:
                reason = str(exc)
        level = "warning" if self.fast_generation == "on" else "info"
        self.on_message(level, f"fast generation off ({reason}); using TRL's generate")
        self.fast_generation = "off"
        return None

    def _fast_path_blocker(self) -> str | None:
        if self.fast_generation == "auto" and self.accelerator.device.type != "cuda":
            return "no CUDA GPU"
        if self.use_vllm or self.use_transformers_continuous_batching:
            return "another generation backend is configured"
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            return "DeepSpeed/FSDP shard the weights"
        if self.tools or self.environment_factories:
            return "tool calling"
        if self.min_p or self.repetition_penalty != 1.0:
            return "min_p / repetition_penalty"
        unsupported = set(self.args.generation_kwargs or {}) - {"min_new_tokens", "suppress_tokens"}
        if unsupported:
            return f"generation_kwargs {sorted(unsupported)}"
        return None

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        output = super()._generate_and_score_completions(inputs)
        if self.on_samples is not None and self.model.training:
            self._report_samples(inputs, output)
        return output

    def _report_samples(self, inputs: list[dict[str, Any]], output: dict[str, Any]) -> None:
        from accelerate.utils import gather_object

        # Per-completion facts known only on this process; gathered so the main process sees all.
        mask = output["completion_mask"]
        ids = output["completion_ids"]
        lengths = mask.sum(dim=1).tolist()
        eos = set(self.eos_token_ids)
        truncated = [
            bool(n) and int(ids[i, int(n) - 1]) not in eos for i, n in enumerate(lengths)
        ]
        answers = gather_object([x.get("answer") for x in inputs])
        lengths = gather_object([int(n) for n in lengths])
        truncated = gather_object(truncated)
        if not self.accelerator.is_main_process:
            return
        # TRL keeps the newest generation batch (all processes) in self._logs.
        n = len(answers)
        prompts = list(self._logs["prompt"])[-n:]
        completions = list(self._logs["completion"])[-n:]
        advantages = list(self._logs["advantages"])[-n:]
        per_func = {name: list(self._logs["rewards"][name])[-n:] for name in self.reward_func_names}
        weights = self.reward_weights.tolist()
        samples = []
        for i in range(n):
            rewards = {name: _none_if_nan(per_func[name][i]) for name in self.reward_func_names}
            present = [(w, r) for w, r in zip(weights, rewards.values()) if r is not None]
            samples.append(Sample(
                group=i // self.num_generations,
                prompt=message_text(prompts[i]),
                completion=message_text(completions[i]),
                answer=None if answers[i] is None else str(answers[i]),
                rewards=rewards,
                total=sum(w * r for w, r in present) if present else None,
                advantage=_none_if_nan(advantages[i]),
                length=lengths[i],
                truncated=truncated[i],
            ))
        if self.samples_per_step and len(samples) > self.samples_per_step:
            keep_groups = max(1, self.samples_per_step // self.num_generations)
            samples = [s for s in samples if s.group < keep_groups]
        # Completions generated now train the coming optimizer step.
        self.on_samples(Samples(step=self.state.global_step + 1, samples=samples))


def _none_if_nan(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


class StudioCallback(TrainerCallback):
    """Metrics, alarm and checkpoint events, timing, and a clean stop on request."""

    def __init__(self, emit: Callable[[Any], None], stop_requested: Callable[[], bool], checkpoints_dir: str,
                 watch: Any = None):
        self.emit = emit
        self.stop_requested = stop_requested
        self.checkpoints_dir = checkpoints_dir
        self.watch = watch  # alarms.HealthWatch: turns logged metrics into health alarms
        self.stopped = False
        self._step_started = 0.0
        self._step_seconds: list[float] = []
        self._tokens_at_log = 0
        self._time_at_log = 0.0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._time_at_log = time.perf_counter()
        self._tokens_at_log = state.num_input_tokens_seen

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        synchronize_cuda()  # charge queued GPU work to the step that queued it
        self._step_started = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        synchronize_cuda()
        self._step_seconds.append(time.perf_counter() - self._step_started)
        if self._should_stop(args):
            self.stopped = True
            control.should_save = True
            control.should_training_stop = True

    def _should_stop(self, args: Any) -> bool:
        requested = bool(self.stop_requested())
        if args.world_size > 1:
            # Every process must stop at the same step, or the others would wait forever in a collective.
            import torch
            from accelerate.utils import broadcast

            flag = torch.tensor([1 if requested else 0], device=args.device)
            requested = bool(broadcast(flag, from_process=0).item())
        return requested

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        if "train_runtime" in logs:  # the end-of-training summary, not a step
            return
        now = time.perf_counter()
        perf: dict[str, float] = {}
        if self._step_seconds:
            perf["perf/step_seconds"] = sum(self._step_seconds) / len(self._step_seconds)
            self._step_seconds.clear()
        tokens = state.num_input_tokens_seen - self._tokens_at_log
        if now > self._time_at_log and tokens > 0:
            perf["perf/tokens_per_second"] = tokens / (now - self._time_at_log)
        self._tokens_at_log, self._time_at_log = state.num_input_tokens_seen, now
        memory = _gpu_memory_gib()
        if memory is not None:
            perf["perf/gpu_memory_gib"] = memory
        logs.update(perf)  # the callbacks after this one (trackers) see the same metrics as the window
        values = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.emit(Metrics(step=state.global_step, max_steps=state.max_steps, values=values))
        if self.watch is not None:
            for alarm in self.watch.observe(state.global_step, values):
                self.emit(alarm)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            path = os.path.join(self.checkpoints_dir, f"checkpoint-{state.global_step}")
            self.emit(Checkpoint(step=state.global_step, path=path))


def synchronize_cuda() -> None:
    """Wait for queued GPU work, so that a host clock read after it includes that work."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _gpu_memory_gib() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.max_memory_allocated() / 2**30
