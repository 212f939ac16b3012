"""Export a run's result: the LoRA adapter (PEFT format) and, on request, a merged 16-bit model.

The merged model is the base model with the adapter folded into its weights, loadable with plain
`AutoModelForCausalLM.from_pretrained` and servable without PEFT. It is always built from the
unquantized base weights (a 4-bit base cannot be merged losslessly).
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

from grpo_studio.config import ConfigError, LoadedRun, load_run
from grpo_studio.engine.error_text import first_line
from grpo_studio.engine.integrity import adapter_problem, loadable_checkpoint
from grpo_studio.engine.model_card import write_model_card
from grpo_studio.engine.resume import is_training_state
from grpo_studio.engine.safe_files import disk_full_message, staged_folder
from grpo_studio.engine.store import RunFolder

Progress = Callable[[str, float], None]  # (what is happening, fraction done 0..1)


class ExportError(Exception):
    """Export cannot be done; `failed` marks a failure of the writing itself (exit 1), not of the input (exit 2)."""

    def __init__(self, message: str, failed: bool = False):
        super().__init__(message)
        self.failed = failed


def adapter_source(folder: RunFolder) -> Path:
    """The final adapter, or the newest loadable checkpoint's when the run never finished.

    A damaged final adapter is an error, never silently replaced by an older checkpoint's."""
    if folder.adapter.exists():
        problem = adapter_problem(folder.adapter)
        if problem is None:
            return folder.adapter
        raise ExportError(f"{folder.adapter}: {problem}. `grpo-studio train {folder.path} --resume` rewrites it "
                          "from the newest checkpoint (no training), or pass a checkpoint with --adapter")
    newest, _skipped = loadable_checkpoint(folder)
    if newest and (newest[1] / "adapter_config.json").is_file():
        return newest[1]
    raise ExportError(f"{folder.path}: no adapter yet (the run has neither finished nor saved a loadable checkpoint)")


def check_dest(dest: Path) -> None:
    """An export never writes into a folder that holds something."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ExportError(f"{dest} already exists and is not empty: pick another --to, or remove it")


def frozen_run(folder: RunFolder) -> LoadedRun:
    """The run's config.toml as it was trained (a damaged one is an ExportError, not a traceback)."""
    try:
        return load_run(folder.config)
    except ConfigError as exc:
        raise ExportError(str(exc).replace("\n", "; ")) from None


def export_adapter(run_dir: str | Path, dest: str | Path, progress: Progress | None = None) -> Path:
    folder = RunFolder(run_dir)
    if not folder.is_run():
        raise ExportError(f"{run_dir}: not a run folder (no config.toml)")
    frozen_run(folder)  # a damaged config.toml is said here, not copied
    src = adapter_source(folder)
    dest = Path(dest)
    check_dest(dest)
    files = [p for p in src.iterdir() if p.is_file() and not is_training_state(p.name)]
    with staged_export(dest) as staging:
        for i, f in enumerate(files):
            if progress:
                progress(f"copying {f.name}", i / max(1, len(files)))
            shutil.copy2(f, staging / f.name)
        shutil.copy2(folder.config, staging / "grpo_studio_run.toml")
        write_model_card(staging, folder.path, "adapter", adapter=src)  # replaces PEFT's empty template
    if progress:
        progress("adapter exported", 1.0)
    return dest


def _write_failure(exc: BaseException, dest: Path) -> str:
    full = disk_full_message(exc, dest.parent)
    what = full or f"{type(exc).__name__}: {exc}"
    return f"export to {dest} failed: {what}; nothing was left there, so the same command can be run again"


def export_merged(run_dir: str | Path, dest: str | Path, dtype: str = "bfloat16",
                  progress: Progress | None = None) -> Path:
    from grpo_studio.engine.model import load_tokenizer

    folder = RunFolder(run_dir)
    if not folder.is_run():
        raise ExportError(f"{run_dir}: not a run folder (no config.toml)")
    run = frozen_run(folder)
    if not run.config.lora.enabled:
        raise ExportError("this run trained every weight; its model is already whole: export the adapter folder")
    src = adapter_source(folder)
    dest = Path(dest)
    check_dest(dest)
    if progress:
        progress("loading the base model and applying the adapter", 0.05)
    merged = merged_model(run, src, dtype)
    if progress:
        progress("writing the merged model", 0.7)
    with staged_export(dest) as staging:
        merged.save_pretrained(staging)
        load_tokenizer(run).save_pretrained(staging)
        write_model_card(staging, folder.path, "merged", adapter=src)
    if progress:
        progress("merged model exported", 1.0)
    return dest


def merged_model(run: LoadedRun, adapter: Path, dtype: str = "auto") -> Any:
    """The base model with the adapter folded into its weights (or, for a fully trained run, the saved
    model), in `dtype` ("auto": as stored). A base or adapter that will not load is an ExportError."""
    import torch
    from transformers import AutoModelForCausalLM

    from grpo_studio.engine.model import model_path

    cfg = run.config.model
    kwargs = dict(dtype=dtype if dtype == "auto" else getattr(torch, dtype), trust_remote_code=cfg.trust_remote_code,
                  revision=cfg.revision or None)
    if not run.config.lora.enabled:  # full fine-tuning saved the whole model
        return AutoModelForCausalLM.from_pretrained(str(adapter), **kwargs)
    from peft import PeftModel

    name = model_path(run)
    try:
        base = AutoModelForCausalLM.from_pretrained(name, **kwargs)
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"cannot load the base model {name!r} to merge into: {exc}") from None
    try:
        return PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    except Exception as exc:  # noqa: BLE001 - checked files that still do not fit this base model
        raise ExportError(f"{adapter}: cannot apply the adapter to {name!r}: "
                          f"{first_line(exc)}") from None


@contextlib.contextmanager
def staged_export(dest: Path, staging: Path | None = None) -> Iterator[Path]:
    """An export written into a staging folder and renamed to `dest` when the block succeeds
    (safe_files.staged_folder, with the export_written fault point). A failure of the writing itself
    (a full disk above all) becomes an ExportError marked `failed` (exit 1) that says nothing was
    left, instead of a traceback; other errors pass through."""
    try:
        with staged_folder(dest, point="export_written", staging=staging) as folder:
            yield folder
    except OSError as exc:
        raise ExportError(_write_failure(exc, dest), failed=True) from exc
    except Exception as exc:  # noqa: BLE001 - safetensors reports a full disk as its own error type
        if disk_full_message(exc, dest.parent):
            raise ExportError(_write_failure(exc, dest), failed=True) from exc
        raise


def export_run(run_dir: str | Path, dest: str | Path, kind: str, *, dtype: str = "bfloat16", gguf_type: str = "f16",
               progress: Progress | None = None) -> Path:
    """The one entry of the command line and the window: kind "adapter", "merged" or "gguf". Returns
    the exported folder (the .gguf file for GGUF)."""
    if kind == "gguf":
        from grpo_studio.engine.gguf_export import export_gguf

        return export_gguf(run_dir, dest, gguf_type, progress=progress)
    if kind == "merged":
        return export_merged(run_dir, dest, dtype=dtype, progress=progress)
    return export_adapter(run_dir, dest, progress=progress)
