"""One training run, start to finish: run folder, data, rewards, model, TRL trainer, adapter.

`train()` is what the CLI, the GUI's worker process and the tests call. It never raises for an
expected failure: it emits a `Failed` event with a readable reason and returns it. A run stopped
on request (or by Ctrl-C) saves a checkpoint and can be resumed with `resume=True`, continuing at
the step after its newest loadable checkpoint with its curves and samples.

What a run promises (README, "Reliability"): one writer per run folder (`run_lock`); every check
of `validate` before a folder is made or a model loaded; a new run that never reaches step 1
leaves no folder behind; checkpoints, the adapter and exports are staged and renamed into place
(`safe_files`); a finished run resumed changes nothing (`resume`).
"""

from __future__ import annotations

import os
import shutil
import time
import traceback
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from grpo_studio.config import ConfigError, LoadedRun, load_run, save_run, with_local_paths
from grpo_studio.engine.checks import require_before_loading
from grpo_studio.engine.data import DataError
from grpo_studio.engine.error_text import first_line
from grpo_studio.engine.events import STOPPED_BEFORE_TRAINING, EventBus, Failed, Finished, Log, Opened, Started
from grpo_studio.engine.faults import fault_point
from grpo_studio.engine.model import ModelError
from grpo_studio.engine.resume import ResumePlan, complete_final_save, file_sha256, nothing_to_do, plan_resume
from grpo_studio.engine.rewards import RewardError
from grpo_studio.engine.run_endings import clear_folder, clear_staging, end_with_failure, never_trained
from grpo_studio.engine.run_home import record_run, runs_dir
from grpo_studio.engine.run_lock import LOCK_FILE, RunLock, RunLocked
from grpo_studio.engine.safe_files import SpaceReserve, disk_full_message, prepare_staging, publish, staging_path
from grpo_studio.engine.store import RunFolder, RunStore, StoreError


class RunFolderError(Exception):
    pass


def new_run_folder(run: LoadedRun, output: str | Path | None = None) -> RunFolder:
    """Create the folder of a new run; `output` names it exactly, else output_dir/name-date-time."""
    if output is not None:
        folder = RunFolder(Path(output).expanduser().resolve())
        if folder.path.exists() and any(folder.path.iterdir()) and not never_trained(folder):
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
    # model.name, data.source, eval.source, reward models: local ones made absolute, hub ids kept.
    cfg = with_local_paths(run.config, lambda value: str(run.resolve(value)) if run.resolve(value).exists() else None)
    needs_file = not cfg.rewards.functions or any(f.name for f in cfg.rewards.functions)
    if needs_file:
        src = run.resolve(cfg.rewards.file)
        if not src.is_file():
            raise RewardError("reward file not found", file=src)
        shutil.copyfile(src, folder.rewards)
        cfg.rewards.file = folder.rewards.name
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


def describe_failure(exc: BaseException, where: str | Path | None = None) -> Failed:
    """A readable reason (and hint) for anything that ends a run; `where` is the run folder, if any."""
    details = "".join(traceback.format_exception(exc))
    if isinstance(exc, ConfigError):
        return Failed(reason=str(exc).replace("\n", "; "), details=details, input_error=True)
    if isinstance(exc, RewardError):
        # A file that doesn't load is bad input; a function failing mid-run is a failed run.
        return Failed(reason=str(exc), hint=exc.hint, details=exc.details or details,
                      input_error=exc.function is None)
    if isinstance(exc, (DataError, RunFolderError, RunLocked)):
        return Failed(reason=str(exc), details=details, input_error=True)
    if isinstance(exc, ModelError):
        return Failed(reason=str(exc), hint=exc.hint, details=details, input_error=True)
    full = disk_full_message(exc, where or Path.cwd())
    if full:
        return Failed(reason=full, hint="Free some space (old checkpoints: run.save_total_limit), then continue "
                      "with --resume: nothing before the newest checkpoint is lost.", details=details)
    if isinstance(exc, StoreError):  # a damaged run.db is an input problem; a failed write is not
        return Failed(reason=str(exc), details=details, input_error="damaged" in exc.problem)
    name = type(exc).__name__
    text = first_line(exc)
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


@dataclass
class OpenedRun:
    """A run folder ready to train: its run file, what --resume found, whether this call made it."""

    folder: RunFolder
    run: LoadedRun
    plan: ResumePlan | None = None  # resuming only
    new_run: bool = False  # removed again if it fails before step 1
    made_dir: bool = False  # the folder itself did not exist before
    lock: RunLock | None = None  # held by the main process only


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
    folder, holds its lock and alone writes the store and emits events, the others train in step with it."""
    started = time.time()
    dist = distributed_state()
    main = dist is None or dist.is_main_process
    bus = EventBus(*([listener] if listener and main else []))
    try:
        opened = _open_folder_on_every_process(dist, run, output, resume, overrides)
    except (ConfigError, RunFolderError, RunLocked, RewardError, DataError, ModelError, StoreError, OSError) as exc:
        failed = describe_failure(exc, output)
        bus(failed)
        return failed
    try:
        return _train_in_folder(opened, dist, main, bus, resume, stop_requested, started)
    finally:
        if opened.lock is not None:
            opened.lock.release()


def _train_in_folder(opened: OpenedRun, dist: Any, main: bool, bus: EventBus, resume: bool,
                     stop_requested: Callable[[], bool] | None, started: float) -> Finished | Failed:
    folder, run, plan = opened.folder, opened.run, opened.plan
    if plan is not None and plan.action == "finished":  # nothing to do, and nothing is written
        bus(Opened(run_dir=str(folder.path), resume=True))
        return nothing_to_do(folder, plan, run.config.grpo.max_steps, bus)
    store: RunStore | None = None
    record = None
    reserve = SpaceReserve(folder.path)
    try:
        if main:
            reserve.create()
            store = RunStore(folder.database, check=resume)
            record = store.record
            bus.add(record, critical=True, first=True)  # stored first: a listener told of a step can read it back;
            # and a run whose events cannot be stored must not go on silently
            bus.add(lambda e: fault_point("step_end", folder.path) if e.kind == "metrics" else None, critical=True)
            if folder.stop_request.exists():
                folder.stop_request.unlink()
            bus(Opened(run_dir=str(folder.path), resume=resume))
    except (StoreError, OSError) as exc:
        reserve.release()
        failed = describe_failure(exc, folder.path)
        if store is not None:
            bus.remove(record)
        bus(failed)
        return failed

    def stop() -> bool:
        return folder.stop_request.exists() or bool(stop_requested and stop_requested())

    try:
        fault_point("folder_opened", folder.path)
        if plan is not None and plan.action == "complete":
            result: Finished | Failed = complete_final_save(folder, plan, store, bus, started)
        else:
            result = _train(run, folder, store, bus, plan, stop, started, dist)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a readable event
        if isinstance(exc, StoppedBeforeTraining) or (
                isinstance(exc, KeyboardInterrupt) and not _reached_step_1(store, folder)):
            # A stop while loading (engine/stop.py interrupts downloads and hub retries): nothing trained.
            failed = Failed(reason=STOPPED_BEFORE_TRAINING, interrupted=True)
        elif isinstance(exc, KeyboardInterrupt):
            failed = Failed(reason="interrupted", hint="Resume with --resume from the newest checkpoint.",
                            interrupted=True)
        else:
            failed = describe_failure(exc, folder.path)
        reserve.release()  # room for the store to record the failure, should the disk be full
        if main:
            failed = end_with_failure(folder, store, record, bus, failed, new_run=opened.new_run,
                                      made_dir=opened.made_dir, lock=opened.lock)
        result = failed
    finally:
        reserve.release()
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
                                  overrides: list[str] | None) -> OpenedRun:
    """The main process opens (or creates) the run folder and takes its lock; the others get its path
    and the resume plan, and read the frozen run file from it, so every process trains the same run."""
    if dist is None:
        return _open_folder(run, output, resume, overrides, 1)
    from accelerate.utils import broadcast_object_list

    message: list[Any] = [None, None, None]
    if dist.is_main_process:
        try:
            opened = _open_folder(run, output, resume, overrides, dist.num_processes)
            message = [str(opened.folder.path), opened.plan, None]
        except Exception as exc:  # noqa: BLE001 - the others must hear about it, or they wait forever
            message = [None, None, exc]
    broadcast_object_list(message, from_process=0)
    path, plan, error = message
    if error is not None:
        raise error
    if dist.is_main_process:
        return opened
    folder = RunFolder(path)
    return OpenedRun(folder, load_run(folder.config, overrides), plan)


def _open_folder(run: LoadedRun | str | Path, output: str | Path | None, resume: bool,
                 overrides: list[str] | None, world_size: int) -> OpenedRun:
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
        lock = RunLock(folder.path).acquire()  # before anything in the folder is read for writing
        try:
            _check_store_version(folder)
            # The frozen run file is what was trained; overrides still apply (e.g. more max_steps).
            frozen = load_run(folder.config, overrides)
            require_before_loading(frozen, world_size)  # (trackers in run.report_to included)
            return OpenedRun(folder, frozen, plan_resume(folder, frozen.config.grpo.max_steps), lock=lock)
        except BaseException:
            lock.release()
            raise
    require_before_loading(run, world_size)  # before a folder exists: bad input leaves nothing behind
    target = Path(output).expanduser().resolve() if output is not None else None
    made_dir = target is None or not target.exists()
    folder = new_run_folder(run, output)
    lock = RunLock(folder.path).acquire()
    try:
        # Asked again under the lock: another process may have trained here since new_run_folder
        # looked (a resume, or a run that made the same folder a moment earlier).
        if any(p.name != LOCK_FILE for p in folder.path.iterdir()) and not never_trained(folder, locked=True):
            made_dir = False  # it holds another process's run: never removed
            raise RunFolderError(f"{folder.path} already exists and is not empty: pick a new folder, "
                                 "or add --resume to continue the run in it")
        clear_folder(folder.path, keep=(LOCK_FILE,))  # an earlier run here never reached step 1
        return OpenedRun(folder, freeze_run_file(run, folder), new_run=True, made_dir=made_dir, lock=lock)
    except BaseException:
        lock.release()
        if made_dir:
            shutil.rmtree(folder.path, ignore_errors=True)
        raise


def _check_store_version(folder: RunFolder) -> None:
    """A run store from a newer GRPO Studio is bad input, said before anything is written to it."""
    from grpo_studio.engine.store_versions import StoreVersionError

    if folder.database.exists():
        try:
            RunStore(folder.database, readonly=True).close()
        except StoreVersionError as exc:
            raise RunFolderError(str(exc)) from None


def _train(run: LoadedRun, folder: RunFolder, store: RunStore | None, bus: EventBus, plan: ResumePlan | None,
           stop: Callable[[], bool], started: float, dist: Any) -> Finished:
    from grpo_studio.engine.checks import require_eval_correctness
    from grpo_studio.engine.model import choose_placement, count_parameters, load_tokenizer, skip_unused_bitsandbytes
    from grpo_studio.engine.resume import resume_point, say_if_rewards_changed
    from grpo_studio.engine.rewards import close_rewards, load_rewards

    cfg = run.config
    world_size = dist.num_processes if dist is not None else 1
    checkpoint = resume_point(plan, store, bus) if plan is not None else None
    if store is not None:
        clear_staging(folder)  # what a killed earlier segment left half-written
    placement = choose_placement(cfg.model)
    skip_unused_bitsandbytes(run, placement)  # before TRL and peft are imported
    bus(Log(message=f"loading tokenizer of {cfg.model.name}"))
    tokenizer = load_tokenizer(run)
    prompts = _load_prompts(run, tokenizer, bus, world_size)
    _stop_point(stop)  # the model is the slow part: a stop asked for while loading is honoured here
    specs = load_rewards(run, columns=list(prompts.dataset.column_names),
                         notify=lambda text: bus(Log(level="warning", message=text)))
    try:  # from here on a reward process may be running: it is stopped whatever happens
        require_eval_correctness(run, [s.label for s in specs])
        trainer, callback = _build_trainer(run, folder, bus, stop, specs, placement, tokenizer, prompts)
        trainable, total = count_parameters(trainer.model)
        rewards_hash = file_sha256(folder.rewards)
        if store is not None and plan is not None:
            say_if_rewards_changed(store, bus, rewards_hash, checkpoint)
        bus(Started(run_dir=str(folder.path), max_steps=cfg.grpo.max_steps,
                    resumed_from_step=int(checkpoint.name.split("-")[1]) if checkpoint else 0,
                    device=f"{placement.device} ({placement.dtype})", model=cfg.model.name,
                    reward_names=[s.label for s in specs], trainable_params=trainable, total_params=total,
                    rewards_sha256=rewards_hash))
        _stop_point(stop)
        try:
            trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        except RewardError as exc:
            _save_checkpoint_after_failure(trainer, folder, bus)
            exc.hint = reward_failure_hint(exc, folder)
            raise
    finally:
        close_rewards(specs)
    step = trainer.state.global_step
    _save_final_adapter(trainer, tokenizer, folder)
    stopped = callback.stopped and step < cfg.grpo.max_steps
    if store is not None and folder.stop_request.exists():
        folder.stop_request.unlink()
    fault_point("finished", folder.path)
    finished = Finished(step=step, stopped=stopped, adapter_dir=str(folder.adapter), seconds=time.time() - started)
    bus(finished)
    return finished


def _reached_step_1(store: RunStore | None, folder: RunFolder) -> bool:
    try:
        logged = store is not None and store.last_step() > 0
    except StoreError:
        logged = False
    return logged or folder.newest_checkpoint() is not None


class StoppedBeforeTraining(Exception):
    """A stop asked for while the run was still loading: nothing to save, nothing trained."""


def _stop_point(stop: Callable[[], bool]) -> None:
    if stop():
        raise StoppedBeforeTraining()


def _save_final_adapter(trainer: Any, tokenizer: Any, folder: RunFolder) -> None:
    """The adapter (and tokenizer), staged beside adapter/ and renamed over it: a crash or a full disk
    leaves the previous adapter (or none), never half of a new one."""
    main = trainer.accelerator.is_main_process
    staging = staging_path(folder.adapter)
    if main:
        prepare_staging(folder.adapter)
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(staging))  # every process: sharded setups gather the weights collectively
    if main:
        tokenizer.save_pretrained(str(staging))
        publish(staging, folder.adapter, replace=True, point="adapter_written")
    trainer.accelerator.wait_for_everyone()


def _load_prompts(run: LoadedRun, tokenizer: Any, bus: EventBus, world_size: int) -> Any:
    from grpo_studio.engine.checks import as_problem, rows_problem
    from grpo_studio.engine.data import load_prompts

    cfg = run.config
    bus(Log(message=f"loading dataset {cfg.data.source}"))
    prompts = load_prompts(run, tokenizer)
    too_few = rows_problem(run, len(prompts.dataset), world_size, prompts.dropped_long)
    if too_few:
        raise ConfigError([as_problem(too_few)])
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
    if placement.device == "cuda":
        from grpo_studio.engine import liger_layers

        bus(Log(message=liger_layers.install(trainer.model)))  # norms, SwiGLU, rotary: fused kernels
    if placement.device == "cuda" and os.environ.get("GRPO_STUDIO_PADDING_FREE", "1") != "0":
        # packed_logps.py: the same numbers as the padded grid (tests); on an H200 at the 7B shape with
        # completions ending at EOS, 8% faster, and 1.1 GiB less at the quantized mode's peak. "0" turns it off.
        from grpo_studio.engine.packed_logps import padding_free_blocker

        blocker = padding_free_blocker(trainer.model)
        trainer.padding_free = blocker is None
        # packed_layout.py: a prompt packed once for all its completions in a micro-batch ("0": once a row).
        trainer.share_prompts = os.environ.get("GRPO_STUDIO_SHARED_PROMPTS", "1") != "0"
        trainer.pack_min_saved = _share_from_env("GRPO_STUDIO_PACK_MIN_SAVED")  # a measurement's knob
        shared = ", each prompt once for its completions," if trainer.share_prompts else ""
        bus(Log(message=f"training: micro-batches packed without padding{shared} where that saves a fifth or "
                "more of the grid" if blocker is None else f"training: micro-batches padded (not packed: {blocker})"))
    return trainer, callback


def _share_from_env(name: str) -> float | None:
    """A share between 0 and 1 from an environment variable (None when unset), or an error naming it."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}={text!r}: expected a share between 0 and 1 (e.g. 0.2)")
    return value


def plan_this_step(run: LoadedRun, placement: Any, bus: EventBus) -> tuple[Any, Any]:
    """The step plan on this device (generation mode, training layout), said in the log, and what the
    trainer needs to change its generation mode later (a generation that runs out of memory)."""
    from grpo_studio.engine.generation_mode import cuda_capacity_bytes
    from grpo_studio.engine.model import model_path, read_model_config
    from grpo_studio.engine.step_plan import estimated_peak, plan_step
    from grpo_studio.engine.trainer import GenerationSetup

    world_size = distributed_world_size()
    try:
        model_config = read_model_config(model_path(run), run.config.model.revision)
    except Exception:  # noqa: BLE001 - the model loaded already; without its config.json there is no estimate
        model_config = None
    on_gpu = placement.device == "cuda"
    capacity = cuda_capacity_bytes() if on_gpu else None
    plan = plan_step(run.config, model_config, capacity, on_gpu=on_gpu, world_size=world_size)
    bus(Log(message=plan.layout.describe()))

    def peak_bytes(mode: str, merged_layers: int = 0) -> float | None:
        return estimated_peak(model_config, plan.config, mode, world_size=world_size, merged_layers=merged_layers)

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
