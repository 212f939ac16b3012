"""One training run, start to finish: run folder, data, rewards, model, TRL trainer, adapter.

`train()` is what the CLI, the GUI's worker process and the tests call. It never raises for an
expected failure: it emits a `Failed` event with a readable reason and returns it. A run stopped
on request (or by Ctrl-C) saves a checkpoint and can be resumed with `resume=True`, continuing at
the step after its newest complete checkpoint with its curves and samples.
"""

from __future__ import annotations

import os
import shutil
import time
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from grpo_studio.config import ConfigError, LoadedRun, load_run, save_run
from grpo_studio.engine.data import DataError
from grpo_studio.engine.events import EventBus, Failed, Finished, Log, Opened, Started
from grpo_studio.engine.model import ModelError
from grpo_studio.engine.rewards import RewardError
from grpo_studio.engine.run_home import record_run, runs_dir
from grpo_studio.engine.store import RunFolder, RunStore


class RunFolderError(Exception):
    pass


def new_run_folder(run: LoadedRun, output: str | Path | None = None) -> RunFolder:
    """Create the folder of a new run; `output` names it exactly, else output_dir/name-date-time."""
    if output is not None:
        folder = RunFolder(Path(output).expanduser().resolve())
        if folder.path.exists() and any(folder.path.iterdir()):
            raise RunFolderError(f"{folder.path} already exists and is not empty: pick a new folder, "
                                 "or add --resume to continue the run in it")
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        base = runs_dir(run.path, run.config.run.output_dir, run.base_dir) / f"{run.config.run.name}-{stamp}"
        folder, n = RunFolder(base), 2
        while folder.path.exists():
            folder, n = RunFolder(base.with_name(f"{base.name}-{n}")), n + 1
    folder.path.mkdir(parents=True, exist_ok=True)
    record_run(folder.path)  # for the window's Runs page, wherever the folder is
    return folder


def freeze_run_file(run: LoadedRun, folder: RunFolder) -> LoadedRun:
    """Copy the run file and reward file into the run folder, with local paths made absolute,
    so the run can be resumed, evaluated and exported even if the originals change or move."""
    cfg = run.config.model_copy(deep=True)
    model_dir = run.resolve(cfg.model.name)
    if model_dir.is_dir():
        cfg.model.name = str(model_dir)
    for section in (cfg.data, cfg.eval):
        if section.source and run.resolve(section.source).exists():
            section.source = str(run.resolve(section.source))
    needs_file = not cfg.rewards.functions or any(f.name for f in cfg.rewards.functions)
    if needs_file:
        src = run.resolve(cfg.rewards.file)
        if not src.is_file():
            raise RewardError("reward file not found", file=src)
        shutil.copyfile(src, folder.rewards)
        cfg.rewards.file = folder.rewards.name
    for fn in cfg.rewards.functions:
        if fn.model and run.resolve(fn.model).is_dir():
            fn.model = str(run.resolve(fn.model))
    cfg.run.output_dir = str(folder.path.parent)
    save_run(cfg, folder.config)
    return LoadedRun(cfg, folder.config, folder.path)


def find_latest_run(run: LoadedRun) -> RunFolder | None:
    """The newest run folder made from this run file (output_dir/name-*)."""
    parent = runs_dir(run.path, run.config.run.output_dir, run.base_dir)
    if not parent.is_dir():
        return None
    candidates = [RunFolder(p) for p in parent.glob(f"{run.config.run.name}-*") if (p / "config.toml").is_file()]
    return max(candidates, key=lambda f: f.config.stat().st_mtime, default=None)


def describe_failure(exc: BaseException) -> Failed:
    """A readable reason (and hint) for anything that ends a run."""
    details = "".join(traceback.format_exception(exc))
    if isinstance(exc, ConfigError):
        return Failed(reason=str(exc).replace("\n", "; "), details=details, input_error=True)
    if isinstance(exc, RewardError):
        # A file that doesn't load is bad input; a function failing mid-run is a failed run.
        return Failed(reason=str(exc), hint=exc.hint, details=exc.details or details,
                      input_error=exc.function is None)
    if isinstance(exc, DataError):
        return Failed(reason=str(exc), details=details, input_error=True)
    if isinstance(exc, ModelError):
        return Failed(reason=str(exc), hint=exc.hint, details=details, input_error=True)
    if isinstance(exc, RunFolderError):
        return Failed(reason=str(exc), details=details, input_error=True)
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else name
    if name == "OutOfMemoryError" or "out of memory" in text.lower():
        return Failed(reason=f"out of GPU memory: {text}",
                      hint="Lower grpo.per_device_train_batch_size or grpo.num_generations or "
                           "grpo.max_completion_length, turn on lora.gradient_checkpointing, or load in 4bit.",
                      details=details)
    return Failed(reason=f"{name}: {text}", details=details)


def reward_failure_hint(exc: RewardError, folder: RunFolder) -> str:
    """What to do after a reward function failed mid-run: the run trains the folder's copy of the file."""
    from grpo_studio.engine.reward_sandbox import RewardTimeout

    slow = "If it is only slow, raise rewards.timeout_s. " if isinstance(exc, RewardTimeout) else ""
    return (f"{slow}Fix {exc.function} in {folder.rewards} (the run's copy of your reward file), check it with "
            f"`grpo-studio rewards-check {folder.config}`, then continue with `grpo-studio train {folder.path} "
            "--resume`. rewards.on_error = \"skip\" lets a run go on past occasional failures.")


def train(
    run: LoadedRun | str | Path,
    *,
    output: str | Path | None = None,
    resume: bool = False,
    listener: Callable[[Any], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
    overrides: list[str] | None = None,
) -> Finished | Failed:
    """Train one run. `run` is a run file, a loaded run, or (with resume) a run folder.

    Under `accelerate launch` / torchrun every process calls this; the main process makes the run
    folder and alone writes the store and emits events, the others train in step with it."""
    started = time.time()
    dist = distributed_state()
    main = dist is None or dist.is_main_process
    bus = EventBus(*([listener] if listener and main else []))
    try:
        folder, run = _open_folder_on_every_process(dist, run, output, resume, overrides)
    except (ConfigError, RunFolderError, RewardError, DataError, ModelError, OSError) as exc:
        failed = describe_failure(exc)
        bus(failed)
        return failed
    store = RunStore(folder.database) if main else None
    if store is not None:
        bus.add(store.record)
        if folder.stop_request.exists():
            folder.stop_request.unlink()
        bus(Opened(run_dir=str(folder.path), resume=resume))

    def stop() -> bool:
        return folder.stop_request.exists() or bool(stop_requested and stop_requested())

    def last_step() -> int:
        return store.last_step() if store is not None else 0

    try:
        result = _train(run, folder, store, bus, resume, stop, started)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a readable event
        if isinstance(exc, KeyboardInterrupt):
            failed = Failed(reason="interrupted", hint="Resume with --resume from the newest checkpoint.",
                            step=last_step())
        else:
            failed = describe_failure(exc)
            failed.step = last_step()
        bus(failed)
        result = failed
    finally:
        if store is not None:
            store.close()
    return result


def distributed_state() -> Any:
    """accelerate's process state when several processes train together (WORLD_SIZE > 1), else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import PartialState

    # Several CPU processes (gloo) only form a group when asked to; the trainer asks the same way later.
    return PartialState(cpu=not torch.cuda.is_available())


def _open_folder_on_every_process(dist: Any, run: LoadedRun | str | Path, output: str | Path | None, resume: bool,
                                  overrides: list[str] | None) -> tuple[RunFolder, LoadedRun]:
    """The main process opens (or creates) the run folder; the others get its path and read the frozen
    run file from it, so every process trains the same run in the same folder."""
    if dist is None:
        return _open_folder(run, output, resume, overrides)
    from accelerate.utils import broadcast_object_list

    message: list[Any] = [None, None]
    if dist.is_main_process:
        try:
            folder, loaded = _open_folder(run, output, resume, overrides)
            message = [str(folder.path), None]
        except Exception as exc:  # noqa: BLE001 - the others must hear about it, or they wait forever
            message = [None, exc]
    broadcast_object_list(message, from_process=0)
    path, error = message
    if error is not None:
        raise error
    if dist.is_main_process:
        return folder, loaded
    folder = RunFolder(path)
    return folder, load_run(folder.config, overrides)


def _open_folder(run: LoadedRun | str | Path, output: str | Path | None, resume: bool,
                 overrides: list[str] | None) -> tuple[RunFolder, LoadedRun]:
    if isinstance(run, (str, Path)):
        path = Path(run)
        if path.is_dir():
            if not RunFolder(path).is_run():
                raise RunFolderError(f"{path} is not a run folder (no config.toml)")
            if not resume:
                raise RunFolderError(f"{path} is a run folder: add --resume to continue it")
            output = path
            path = RunFolder(path).config
        run = load_run(path, overrides)
    _check_trackers(run)
    if resume:
        if output is not None:
            folder = RunFolder(Path(output).expanduser().resolve())
        else:
            folder = find_latest_run(run)
            if folder is None:
                raise RunFolderError(f"no earlier run of {run.config.run.name!r} in "
                                     f"{runs_dir(run.path, run.config.run.output_dir, run.base_dir)} to resume")
        if not folder.is_run():
            raise RunFolderError(f"{folder.path} is not a run folder (no config.toml)")
        # The frozen run file is what was trained; overrides still apply (e.g. more max_steps).
        frozen = load_run(folder.config, overrides)
        _check_trackers(frozen)
        return folder, frozen
    folder = new_run_folder(run, output)
    return folder, freeze_run_file(run, folder)


def _check_trackers(run: LoadedRun) -> None:
    """A tracker chosen in run.report_to without its package is bad input, found before anything loads."""
    if run.config.run.report_to:
        from grpo_studio.engine.library_configs import check_trackers

        problems = check_trackers(run.config)
        if problems:
            raise ConfigError(problems)


def _train(run: LoadedRun, folder: RunFolder, store: RunStore | None, bus: EventBus, resume: bool,
           stop: Callable[[], bool], started: float) -> Finished:
    from grpo_studio.engine.model import choose_placement, count_parameters, load_tokenizer
    from grpo_studio.engine.rewards import close_rewards, load_rewards

    cfg = run.config
    checkpoint = _resume_point(folder, store, bus) if resume else None
    placement = choose_placement(cfg.model)
    bus(Log(message=f"loading tokenizer of {cfg.model.name}"))
    tokenizer = load_tokenizer(run)
    prompts = _load_prompts(run, tokenizer, bus)
    specs = load_rewards(run, columns=list(prompts.dataset.column_names))
    try:  # from here on a reward process may be running: it is stopped whatever happens
        trainer, callback = _build_trainer(run, folder, bus, stop, specs, placement, tokenizer, prompts)
        trainable, total = count_parameters(trainer.model)
        bus(Started(run_dir=str(folder.path), max_steps=cfg.grpo.max_steps,
                    resumed_from_step=int(checkpoint.name.split("-")[1]) if checkpoint else 0,
                    device=f"{placement.device} ({placement.dtype})", model=cfg.model.name,
                    reward_names=[s.label for s in specs], trainable_params=trainable, total_params=total))
        try:
            trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        except RewardError as exc:
            _save_checkpoint_after_failure(trainer, folder, bus)
            exc.hint = reward_failure_hint(exc, folder)
            raise
    finally:
        close_rewards(specs)
    step = trainer.state.global_step
    trainer.save_model(str(folder.adapter))  # every process: sharded setups gather the weights collectively
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(str(folder.adapter))
    stopped = callback.stopped and step < cfg.grpo.max_steps
    if store is not None and folder.stop_request.exists():
        folder.stop_request.unlink()
    finished = Finished(step=step, stopped=stopped, adapter_dir=str(folder.adapter), seconds=time.time() - started)
    bus(finished)
    return finished


def _resume_point(folder: RunFolder, store: RunStore | None, bus: EventBus) -> Path | None:
    """The newest complete checkpoint; the store forgets what was logged after it (those steps rerun)."""
    newest = folder.newest_checkpoint()
    step = 0 if newest is None else newest[0]
    if store is not None:
        store.truncate_after(step)
    if newest is None:
        bus(Log(level="warning", message="no complete checkpoint yet: starting this run from step 0"))
        return None
    bus(Log(message=f"resuming from {newest[1].name} (step {step})"))
    return newest[1]


def _load_prompts(run: LoadedRun, tokenizer: Any, bus: EventBus) -> Any:
    from grpo_studio.engine.data import load_prompts

    cfg = run.config
    bus(Log(message=f"loading dataset {cfg.data.source}"))
    prompts = load_prompts(run, tokenizer)
    if prompts.dropped_long:
        bus(Log(level="warning", message=f"{prompts.dropped_long} prompts are longer than "
                f"data.max_prompt_length={cfg.data.max_prompt_length} tokens and were left out"))
    if prompts.missing_answers:
        bus(Log(level="warning", message=f"{prompts.missing_answers} rows have no ground truth "
                "(answer column empty or answer_pattern did not match)"))
    return prompts


def _build_trainer(run: LoadedRun, folder: RunFolder, bus: EventBus, stop: Callable[[], bool], specs: list[Any],
                   placement: Any, tokenizer: Any, prompts: Any) -> tuple[Any, Any]:
    """TRL's trainer (our subclass) with the model, LoRA, rewards, data and our callback."""
    from transformers.trainer_callback import PrinterCallback

    from grpo_studio.engine.alarms import HealthWatch
    from grpo_studio.engine.library_configs import grpo_config, lora_config, place_trackers
    from grpo_studio.engine.model import check_target_modules, load_model
    from grpo_studio.engine.trainer import StudioCallback, StudioGRPOTrainer

    cfg = run.config
    reward_funcs, reward_tokenizers = _reward_funcs(run, specs, placement, bus)  # before the model: fail fast
    bus(Log(message=f"loading model on {placement.device} ({placement.dtype}, {cfg.quantization.load_in})"))
    model = load_model(run, placement)
    if cfg.lora.enabled:
        check_target_modules(model, cfg.lora.target_modules)
    effective, generation = plan_this_step(run, placement, bus)
    callback = StudioCallback(bus, stop, str(folder.checkpoints),
                              watch=HealthWatch(cfg.alarms, cfg.grpo.max_completion_length))
    trainer = StudioGRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        reward_processing_classes=reward_tokenizers,
        args=grpo_config(effective, folder.checkpoints, placement, [s.weight for s in specs]),
        train_dataset=prompts.dataset,
        processing_class=tokenizer,
        peft_config=lora_config(cfg),
        callbacks=[callback],
        on_samples=bus,
        samples_per_step=cfg.run.samples_per_step,
        generation=generation,
        max_prompt_length=cfg.data.max_prompt_length,
        on_message=lambda level, text: bus(Log(level=level, message=text)),
    )
    trainer.remove_callback(PrinterCallback)  # it prints raw log dicts; our events do the reporting
    place_trackers(trainer, cfg.run.report_to, folder.path)
    if placement.device == "cuda" and cfg.lora.enabled and os.environ.get("GRPO_STUDIO_FUSED_LORA", "1") != "0":
        from grpo_studio.engine.fused_lora import install

        bus(Log(message=f"training: LoRA update fused in {install(trainer.model)} layers"))
    return trainer, callback


def plan_this_step(run: LoadedRun, placement: Any, bus: EventBus) -> tuple[Any, Any]:
    """The step plan on this device (generation mode, training layout), said in the log, and what the
    trainer needs to change its generation mode later (a generation that runs out of memory)."""
    from grpo_studio.engine.generation_mode import cuda_capacity_bytes
    from grpo_studio.engine.model import model_path, read_model_config
    from grpo_studio.engine.step_plan import plan_step
    from grpo_studio.engine.trainer import GenerationSetup
    from grpo_studio.engine.vram import estimate_for_config

    world_size = distributed_world_size()
    try:
        model_config = read_model_config(model_path(run), run.config.model.revision)
    except Exception:  # noqa: BLE001 - the model loaded already; without its config.json there is no estimate
        model_config = None
    on_gpu = placement.device == "cuda"
    capacity = cuda_capacity_bytes() if on_gpu else None
    plan = plan_step(run.config, model_config, capacity, on_gpu=on_gpu, world_size=world_size)
    bus(Log(message=plan.layout.describe()))

    def peak_bytes(mode: str) -> float | None:
        if model_config is None:
            return None
        try:
            return estimate_for_config(model_config, plan.config, generation_mode=mode, world_size=world_size).total
        except (KeyError, TypeError, ValueError):
            return None  # a config.json without the usual decoder fields

    return plan.config, GenerationSetup(plan.config, model_config, peak_bytes, planned=plan.mode)


def distributed_world_size() -> int:
    return max(1, int(os.environ.get("WORLD_SIZE", "1")))


def _reward_funcs(run: LoadedRun, specs: list[Any], placement: Any, bus: EventBus) -> tuple[list[Any], list[Any]]:
    """What GRPOTrainer takes as reward_funcs and reward_processing_classes: our checked functions
    (with the skip policy when rewards.on_error = "skip"), and reward models loaded here, so a bad
    model path fails before the base model loads."""
    from grpo_studio.engine.reward_guard import SkipFailures
    from grpo_studio.engine.reward_model import load_reward_model

    cfg = run.config.rewards

    def report_skip(exc: RewardError, in_a_row: int) -> None:
        bus(Log(level="warning", message=f"{exc} -- skipped: no scores from it for this batch "
                f"({in_a_row} failed call(s) in a row; the run stops at {cfg.max_consecutive_failures})"))

    funcs: list[Any] = []
    tokenizers: list[Any] = []
    for spec in specs:
        if spec.function is None:
            bus(Log(message=f"loading reward model {spec.model}"))
            loaded = load_reward_model(run, spec.model, spec.label, dtype=placement.dtype)
            funcs.append(loaded.model)
            tokenizers.append(loaded.tokenizer)
        elif cfg.on_error == "skip":
            funcs.append(SkipFailures(spec.function, cfg.max_consecutive_failures, report_skip))
            tokenizers.append(None)
        else:
            funcs.append(spec.function)
            tokenizers.append(None)
    return funcs, tokenizers


def _save_checkpoint_after_failure(trainer: Any, folder: RunFolder, bus: EventBus) -> None:
    """Keep the last completed step when user code fails mid-run, so fixing it and resuming loses nothing.

    Rewards are computed before the step's backward pass, so the weights and optimizer state are those
    of the last completed optimizer step: a consistent checkpoint."""
    step = trainer.state.global_step
    newest = folder.newest_checkpoint()
    if step == 0 or (newest and newest[0] >= step):
        return
    try:
        trainer.save_checkpoint_now()
        bus(Log(level="warning", message=f"saved checkpoint-{step} before stopping"))
    except Exception as exc:  # noqa: BLE001 - the original failure matters more
        bus(Log(level="error", message=f"could not save a checkpoint after the failure: {exc}"))


def environment_summary() -> dict[str, str]:
    """Library versions, for logs and bug reports."""
    import importlib.metadata as md

    out = {}
    for pkg in ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "bitsandbytes"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "-"
    out["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return out
