"""Export a run's result: the LoRA adapter (PEFT format) and, on request, a merged 16-bit model.

The merged model is the base model with the adapter folded into its weights, loadable with plain
`AutoModelForCausalLM.from_pretrained` and servable without PEFT. It is always built from the
unquantized base weights (a 4-bit base cannot be merged losslessly).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from grpo_studio.config import load_run
from grpo_studio.engine.model_card import write_model_card
from grpo_studio.engine.store import RunFolder

Progress = Callable[[str, float], None]  # (what is happening, fraction done 0..1)


class ExportError(Exception):
    pass


def adapter_source(folder: RunFolder) -> Path:
    """The final adapter, or the newest checkpoint's when the run never finished."""
    if (folder.adapter / "adapter_config.json").is_file():
        return folder.adapter
    newest = folder.newest_checkpoint()
    if newest and (newest[1] / "adapter_config.json").is_file():
        return newest[1]
    raise ExportError(f"{folder.path}: no adapter yet (the run has neither finished nor saved a checkpoint)")


def export_adapter(run_dir: str | Path, dest: str | Path, progress: Progress | None = None) -> Path:
    folder = RunFolder(run_dir)
    if not folder.is_run():
        raise ExportError(f"{run_dir}: not a run folder (no config.toml)")
    src = adapter_source(folder)
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise ExportError(f"{dest} already exists and is not empty")
    dest.mkdir(parents=True, exist_ok=True)
    files = [p for p in src.iterdir() if p.is_file() and not _is_training_state(p.name)]
    for i, f in enumerate(files):
        if progress:
            progress(f"copying {f.name}", i / max(1, len(files)))
        shutil.copy2(f, dest / f.name)
    shutil.copy2(folder.config, dest / "grpo_studio_run.toml")
    write_model_card(dest, folder.path, "adapter", adapter=src)  # replaces PEFT's empty template
    if progress:
        progress("adapter exported", 1.0)
    return dest


def _is_training_state(name: str) -> bool:
    """Checkpoint files that only matter for resuming, not for using the adapter."""
    return name in {"optimizer.pt", "scheduler.pt", "trainer_state.json", "training_args.bin", "scaler.pt"} or (
        name.startswith("rng_state")
    )


def export_merged(run_dir: str | Path, dest: str | Path, dtype: str = "bfloat16",
                  progress: Progress | None = None) -> Path:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from grpo_studio.engine.model import load_tokenizer, model_path

    folder = RunFolder(run_dir)
    if not folder.is_run():
        raise ExportError(f"{run_dir}: not a run folder (no config.toml)")
    run = load_run(folder.config)
    if not run.config.lora.enabled:
        raise ExportError("this run trained every weight; its model is already whole: export the adapter folder")
    src = adapter_source(folder)
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise ExportError(f"{dest} already exists and is not empty")
    if progress:
        progress("loading the base model", 0.05)
    name = model_path(run)
    try:
        base = AutoModelForCausalLM.from_pretrained(
            name, dtype=getattr(torch, dtype), trust_remote_code=run.config.model.trust_remote_code,
            revision=run.config.model.revision or None,
        )
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"cannot load the base model {name!r} to merge into: {exc}") from None
    if progress:
        progress("applying the adapter", 0.5)
    merged = PeftModel.from_pretrained(base, str(src)).merge_and_unload()
    if progress:
        progress("writing the merged model", 0.7)
    dest.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(dest)
    load_tokenizer(run).save_pretrained(dest)
    write_model_card(dest, folder.path, "merged", adapter=src)
    if progress:
        progress("merged model exported", 1.0)
    return dest
