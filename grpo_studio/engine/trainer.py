"""TRL's GRPOTrainer, with what GRPO Studio needs to watch and steer it.

`StudioGRPOTrainer` is the real GRPOTrainer; it only adds a hook after each generation batch has
been scored, to hand the sampled completions (with per-function rewards and advantages) to the
run's listeners. `StudioCallback` turns the trainer's logs into metrics events, reports
checkpoints, and stops the run cleanly on request: finish the step, save, exit.

This is the one module that touches TRL's and transformers' internals (private methods, undocumented
attributes); `trl_contract.py` lists each of them, and the trainer checks the list when it is built.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from transformers import TrainerCallback
from trl import GRPOTrainer

from grpo_studio.engine import metric_names
from grpo_studio.engine.error_text import first_line
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
                 samples_per_step: int = 0, generation: "GenerationSetup | None" = None,
                 max_prompt_length: int | None = None, on_message: Callable[[str, str], None] | None = None,
                 **kwargs: Any):
        from grpo_studio.engine.trl_contract import check_trainer, check_trainer_class

        check_trainer_class(GRPOTrainer)  # a TRL we do not fit fails here, not mid-run
        super().__init__(*args, **kwargs)
        check_trainer(self)
        self.on_samples = on_samples
        self.samples_per_step = samples_per_step
        self.generation = generation
        self.max_prompt_length = max_prompt_length
        self.on_message = on_message or (lambda level, text: None)
        self._fast: Any = None  # FastGenerator of the chosen mode, made on first use (model on its device)
        self._mode: str | None = None  # the generation mode in use, once chosen
        self._excluded: set[str] = set()  # modes that turned out not to work for this run

    # ---- the training forward -------------------------------------------------------------
    padding_free = False  # run.py turns it on, on CUDA (GRPO_STUDIO_PADDING_FREE=0 keeps it off): packed_logps.py
    share_prompts = True  # packed, each prompt once for its completions (GRPO_STUDIO_SHARED_PROMPTS=0: per row)
    pack_min_saved: float | None = None  # packed_layout.MIN_SAVED unless run.py says (GRPO_STUDIO_PACK_MIN_SAVED)

    def _get_per_token_logps_and_entropies(self, model: Any, input_ids: Any, attention_mask: Any,
                                           logits_to_keep: int, batch_size: int | None = None,
                                           compute_entropy: bool = False, compute_aux_loss: bool = False,
                                           **extra: Any) -> tuple[Any, Any, Any]:
        """TRL's scoring of a micro-batch; without its padding (and its prompts' repeats) where that pays
        (text only, no MoE loss). Each of TRL's chunks (a bound on memory) is packed on its own."""
        if not self.padding_free or compute_aux_loss or any(v is not None for v in extra.values()):
            return super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep,
                                                              batch_size, compute_entropy, compute_aux_loss, **extra)
        import torch

        from grpo_studio.engine.packed_layout import MIN_SAVED, plan_packing
        from grpo_studio.engine.packed_logps import packed_logps_and_entropies, prompts_can_be_shared

        share = self.share_prompts and prompts_can_be_shared(model, input_ids.size(1))
        min_saved = MIN_SAVED if self.pack_min_saved is None else self.pack_min_saved
        size = batch_size or input_ids.size(0)
        parts = []
        for i in range(0, input_ids.size(0), size):
            ids, mask = input_ids[i:i + size], attention_mask[i:i + size]
            layout = plan_packing(ids, mask, logits_to_keep, share, min_saved)
            if layout is None:  # little padding, no repeats: TRL's grid
                parts.append(GRPOTrainer._get_per_token_logps_and_entropies(self, model, ids, mask, logits_to_keep,
                                                                            size, compute_entropy)[:2])
            else:
                parts.append(packed_logps_and_entropies(model, ids, mask, logits_to_keep, compute_entropy,
                                                        self.accelerator.autocast, layout))
        self._say_varlen_failure()
        entropies = torch.cat([e for _, e in parts]) if compute_entropy else None
        return torch.cat([lp for lp, _ in parts]), entropies, None

    _varlen_failure_said = False

    def _say_varlen_failure(self) -> None:
        """Once: the packed attention's variable-length kernel failed, so it attends one sequence at a time."""
        from grpo_studio.engine import packed_attention

        if packed_attention.varlen_failure is not None and not self._varlen_failure_said:
            self._varlen_failure_said = True
            self.on_message("warning", "training: the variable-length attention kernel failed "
                            f"({packed_attention.varlen_failure}); packed sequences attend one at a time")

    # ---- checkpoints ----------------------------------------------------------------------
    _staging_root: str | None = None

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        """TRL's checkpoint, written under checkpoints/.staging and renamed into place when whole:
        a crash or a full disk mid-save leaves the older checkpoints as they were, never a half one."""
        from grpo_studio.engine.faults import fault_point
        from grpo_studio.engine.safe_files import publish

        real = Path(self.args.output_dir)
        name = f"checkpoint-{self.state.global_step}"
        staging_root = real / ".staging"
        main = self.accelerator.is_main_process
        fault_point("checkpoint_begin", real)
        if main:
            shutil.rmtree(staging_root / name, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        self._staging_root = str(staging_root)  # read by _get_output_dir, where the trainer writes
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_root = None
        self.accelerator.wait_for_everyone()  # every process wrote its part (rng_state_N.pth...)
        if main:
            publish(staging_root / name, real / name, replace=True, point="checkpoint_written")
            shutil.rmtree(staging_root, ignore_errors=True)
            fault_point("checkpoint_renamed", real)
            if self.args.save_total_limit:
                from transformers.trainer_utils import rotate_checkpoints

                rotate_checkpoints(str(real), save_total_limit=self.args.save_total_limit, use_mtime=False)
        self.accelerator.wait_for_everyone()

    def _get_output_dir(self, trial: Any) -> str:
        return self._staging_root or super()._get_output_dir(trial)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        from grpo_studio.engine.faults import fault_point

        fault_point("save_model", output_dir)
        super().save_model(output_dir, _internal_call)

    # ---- generation -----------------------------------------------------------------------
    def _generate_single_turn(self, prompt_ids: list, images: Any, multimodal_fields: Any, num_generations: int,
                              has_tool_images: bool = False) -> tuple[list, Any]:
        from grpo_studio.engine.step_profile import generation_range

        with generation_range():  # a profile of the step tells generation from the training half
            return self._timed_generation(prompt_ids, images, multimodal_fields, num_generations, has_tool_images)

    def _timed_generation(self, prompt_ids: list, images: Any, multimodal_fields: Any, num_generations: int,
                          has_tool_images: bool) -> tuple[list, Any]:
        started = time.perf_counter()
        fast = self._fast_generator() if images is None and not multimodal_fields else None
        result = None
        while fast is not None:
            try:
                if fast.synced_version != self.state.global_step:
                    fast.sync(self.state.global_step)  # the policy changed: re-merge LoRA
                result = (fast.generate(prompt_ids, self.max_prompt_length).completion_ids, None)
                self._say_fused_compile_time(fast)
                break
            except Exception as exc:  # noqa: BLE001 - only running out of memory is handled here
                if not _is_out_of_memory(exc):
                    raise
                fast = self._drop_mode(f"it ran out of GPU memory ({first_line(exc)[:160]})")
        if result is None:
            result = super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations,
                                                   has_tool_images)
        synchronize_cuda()
        mode = "train" if self.model.training else "eval"
        self._metrics[mode][metric_names.GENERATION_SECONDS].append(time.perf_counter() - started)
        return result

    _compile_time_said = False

    def _say_fused_compile_time(self, fast: Any) -> None:
        """Once: what compiling the fused decode kernels cost (it makes the first step slower than the rest)."""
        seconds = fast.ops.compile_seconds
        if seconds and not self._compile_time_said:
            self._compile_time_said = True
            self.on_message("info", f"generation: fused decode kernels compiled in {seconds:.1f} s (the first step "
                            "only)")

    def _fast_generator(self) -> Any:
        """The generator of the chosen mode, or None for TRL's generate (the choice is said once, in the log)."""
        while self._mode is None:
            choice = self._choose_mode()
            if choice.mode == "trl":
                self._mode = "trl"
                self.on_message("info", choice.describe())
                break
            try:
                self._fast = self._build_generator(choice.mode, choice.merged_layers)
            except Exception as exc:  # noqa: BLE001 - Unsupported, or no memory for it after all
                from grpo_studio.engine.fast_generation import Unsupported

                if not isinstance(exc, Unsupported) and not _is_out_of_memory(exc):
                    raise
                self._excluded.add(choice.mode)
                self.on_message("info", f"generation: {choice.mode} not used ({exc})")
                continue
            self._mode = choice.mode
            graphs = ", CUDA graphs" if self._fast.use_cuda_graphs else ", no CUDA graphs"
            fused = ", fused decode kernels" if self._fast.ops.fused else ""
            self.on_message("info", choice.describe() + graphs + fused)
        return self._fast

    def _choose_mode(self) -> Any:
        from grpo_studio.engine.generation_mode import ModeChoice, choose_mode, cuda_capacity_bytes

        setup = self.generation
        if setup is None:
            return ModeChoice("trl", "no generation setup given")
        blocker = self._fast_path_blocker()
        if blocker is not None and setup.config.grpo.fast_generation != "off":
            return ModeChoice("trl", f"TRL's generate: {blocker}")
        if setup.planned is not None and setup.planned.mode not in self._excluded:
            return setup.planned
        cuda = self.accelerator.device.type == "cuda"
        capacity = cuda_capacity_bytes() if cuda else None
        choice = choose_mode(setup.config, setup.model_config, setup.peak_bytes, capacity, on_gpu=cuda,
                             exclude=self._excluded)
        if setup.config.grpo.fast_generation in ("quantized", "mixed", "merged") and choice.mode != \
                setup.config.grpo.fast_generation:
            self.on_message("warning", f"grpo.fast_generation = \"{setup.config.grpo.fast_generation}\" "
                            f"is not possible here: {choice.describe()}")
        return choice

    def _build_generator(self, mode: str, merged_layers: int = 0) -> Any:
        from grpo_studio.engine import fast_generation
        from grpo_studio.engine.fast_generation import FastGenerator, SamplingSettings, Unsupported

        if mode not in getattr(fast_generation, "WEIGHT_MODES", ("merged",)):
            raise Unsupported(f"this build has no {mode} generator")
        extra = dict(self.args.generation_kwargs or {})
        graphs = os.environ.get("GRPO_STUDIO_CUDA_GRAPHS", "1") != "0"  # a troubleshooting switch
        sampling = SamplingSettings(
            max_new_tokens=self.max_completion_length, temperature=self.temperature, top_p=self.top_p,
            top_k=self.top_k or 0, min_new_tokens=int(extra.get("min_new_tokens", 0)),
            eos_token_ids=tuple(self.eos_token_ids), pad_token_id=self._tokenizer.pad_token_id,
            suppress_tokens=tuple(extra.get("suppress_tokens") or ()))
        kwargs: dict[str, Any] = {"weights": mode} if mode != "merged" else {}
        if mode == "mixed":
            kwargs["merged_layers"] = merged_layers
        generator = FastGenerator(self.model_wrapped, use_cuda_graphs=graphs, sampling=sampling, **kwargs)
        generator.on_graph_failure = lambda reason: self.on_message(
            "warning", f"generation: CUDA graph capture failed, decoding without graphs ({reason})")
        generator.ops.on_failure = lambda reason: self.on_message(
            "warning", f"generation: the fused decode kernels failed to compile, decoding without them ({reason})")
        return generator

    def _drop_mode(self, why: str) -> Any:
        """The current mode failed: say so, free what it held, and choose again (TRL's generate at the end)."""
        import torch

        failed, self._mode, self._fast = self._mode, None, None
        self._excluded.add(str(failed))
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.on_message("warning", f"generation: {failed} dropped: {why}; choosing again")
        return self._fast_generator()

    def _fast_path_blocker(self) -> str | None:
        if self.use_vllm or self.use_transformers_continuous_batching:
            return "another generation backend is configured"
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            return "DeepSpeed/FSDP shard the weights"
        if self.tools or self.environment_factories:
            return "tool calling"
        from grpo_studio.engine.fast_path_sampling import sampling_blocker

        return sampling_blocker(self.args)  # an allowlist: any other sampling knob that is set keeps it off

    def save_checkpoint_now(self) -> None:
        """A resumable checkpoint of the current step, outside the save schedule (transformers' private
        `_save_checkpoint`: what `save_strategy` calls, with the optimizer, scheduler and RNG state)."""
        self._save_checkpoint(self.model, trial=None)

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        output = super()._generate_and_score_completions(inputs)
        if self.on_samples is not None and self.model.training:
            self._report_samples(inputs, output)
        return output

    def _report_samples(self, inputs: list[dict[str, Any]], output: dict[str, Any]) -> None:
        from accelerate.utils import gather_object

        # Per-completion facts known only on this process; gathered so the main process sees all.
        # Each completion's length and last token, read in one transfer (read one by one, each made the
        # host wait for the GPU: 32 waits a step at 32 completions).
        mask = output["completion_mask"]
        ids = output["completion_ids"]
        counts = mask.sum(dim=1).to(ids.dtype)
        last = ids.gather(1, (counts - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
        lengths, last_tokens = torch.stack([counts, last]).tolist()
        eos = set(self.eos_token_ids)
        truncated = [bool(n) and int(token) not in eos for n, token in zip(lengths, last_tokens)]
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


@dataclass
class GenerationSetup:
    """What the trainer needs to choose a generation mode (generation_mode.py) once the model is on its
    device: the run's settings, the model's config.json, and the estimated peak memory of each mode."""

    config: Any  # RunConfig
    model_config: dict[str, Any] | None
    peak_bytes: Callable[..., float | None]  # (mode, merged_layers=0) -> estimated peak bytes, or None
    planned: Any = None  # generation_mode.ModeChoice made before training (step_plan.py), tried first


def _is_out_of_memory(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


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
            perf[metric_names.STEP_SECONDS] = sum(self._step_seconds) / len(self._step_seconds)
            self._step_seconds.clear()
        tokens = state.num_input_tokens_seen - self._tokens_at_log
        if now > self._time_at_log and tokens > 0:
            perf[metric_names.TOKENS_PER_SECOND] = tokens / (now - self._time_at_log)
        self._tokens_at_log, self._time_at_log = state.num_input_tokens_seen, now
        memory = _gpu_memory_gib()
        if memory is not None:
            perf[metric_names.GPU_MEMORY_GIB] = memory
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
