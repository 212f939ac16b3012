"""Which generator samples a run's completions, chosen by what this model allows and what fits the card.

The modes, in the order "auto" tries them:
    merged     GRPO Studio's generator over a 16-bit copy of the projections with LoRA merged in:
               the fastest (measured), and costs that copy while it generates
    mixed      (a quantized base) the first N layers as merged copies, the others read quantized:
               on a card with room for part of the copy, N is as many layers as fit (the merged
               layers decode faster), at most all but one
    quantized  GRPO Studio's generator reading the packed 4-bit (or 8-bit) base weights as they are
               stored and applying LoRA as its low-rank product: no 16-bit copy (a quantized base
               only). Measured on an H200 its generation is still far from the memory-bandwidth bound
               (10% at the Qwen2.5-7B shape), so it is the memory-saving choice, not the fast one:
               taken when not even one merged layer fits.
    trl        TRL's own `generate`: the reference, and the fallback for everything else

`grpo.fast_generation` = "auto" takes the first mode that applies and whose estimated peak fits this
process's share of the GPU; "quantized" / "merged" ask for one mode, and still fall back (with a
warning) when it does not apply or does not fit; "off" is TRL's generate. A run that fits with TRL's
generate must never fail for memory because of a fast path: the estimate picks the mode before the
first step, and a generation that still runs out of memory drops to the next mode (trainer.py).

Nothing here imports torch: the window asks the same question for its memory card.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any, Callable

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "qwen3", "mistral")
MODES = ("quantized", "mixed", "merged", "trl")
# Leave this share of the card for what no estimate sees: allocator slack, fragmentation, kernels'
# workspaces. The estimate itself is checked against measured peaks by `grpo-studio bench`.
HEADROOM = 0.90
GIB = 2**30


@dataclass
class ModeChoice:
    mode: str
    reason: str
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (mode, why not), in the order tried
    merged_layers: int = 0  # "mixed": the layers merged (the first ones); the others read quantized
    layers: int = 0  # "mixed": the model's layers, for the message

    def describe(self) -> str:
        """One line for the log and the window: the mode, and why."""
        return f"generation: {self.label()} ({self.reason})"

    def label(self) -> str:
        if self.mode == "mixed":
            return f"mixed, {self.merged_layers} of {self.layers} layers merged, the rest quantized"
        return self.mode


def requested_modes(setting: str, load_in: str) -> list[str]:
    """The modes to try, in order, for the grpo.fast_generation setting and the base's precision."""
    if setting == "off":
        return ["trl"]
    if setting in ("quantized", "merged"):
        return [setting, "trl"]
    if setting == "mixed":  # quantized where not one merged layer fits; a 16-bit base says why once
        return ["mixed", "quantized", "trl"] if load_in in ("4bit", "8bit") else ["mixed", "trl"]
    if load_in in ("4bit", "8bit"):
        return ["merged", "mixed", "quantized", "trl"]
    return ["merged", "trl"]


def static_blocker(mode: str, load_in: str, model_config: dict[str, Any] | None) -> str | None:
    """Why `mode` can't serve this model at all (whatever the memory), or None."""
    if mode == "trl":
        return None
    if mode in ("quantized", "mixed") and load_in not in ("4bit", "8bit"):
        return "needs a quantized base (quantization.load_in = \"4bit\" or \"8bit\")"
    if model_config is not None:
        text = model_config.get("text_config", model_config)
        model_type = text.get("model_type", "?")
        if model_type not in SUPPORTED_MODEL_TYPES:
            return f"model type {model_type!r} (supported: {', '.join(SUPPORTED_MODEL_TYPES)})"
        if sliding_window_in_use(text):
            return "sliding-window attention"
    return None


def sliding_window_in_use(config: dict[str, Any]) -> bool:
    """Qwen2 carries a `use_sliding_window` flag; Mistral-style configs set `sliding_window` alone."""
    window = config.get("sliding_window")
    if not window:
        return False
    if "use_sliding_window" in config:
        return bool(config["use_sliding_window"])
    return window < int(config.get("max_position_embeddings") or 0) or not config.get("max_position_embeddings")


def choose_mode(cfg: Any, model_config: dict[str, Any] | None, peak_bytes: Callable[..., float | None],
                capacity_bytes: float | None, *, on_gpu: bool = True, exclude: set[str] | frozenset = frozenset()
                ) -> ModeChoice:
    """The first requested mode that applies and fits: `peak_bytes(mode, merged_layers=0)` is the run's
    estimated peak in that mode (None: unknown), `capacity_bytes` what this process may use on the card
    (None: unknown); modes in `exclude` failed already in this run."""
    setting, load_in = cfg.grpo.fast_generation, cfg.quantization.load_in
    if not on_gpu and setting == "auto":
        return ModeChoice("trl", "no CUDA GPU: the fast generators pay off on one")
    if setting == "off":
        return ModeChoice("trl", "grpo.fast_generation = \"off\"")
    skipped: list[tuple[str, str]] = []
    for mode in requested_modes(setting, load_in):
        blocker = "failed earlier in this run" if mode in exclude else static_blocker(mode, load_in, model_config)
        if blocker:
            skipped.append((mode, blocker))
            continue
        if mode == "mixed":
            choice = _mixed(model_config, peak_bytes, capacity_bytes, skipped, asked=setting == "mixed")
            if isinstance(choice, ModeChoice):
                return choice
            skipped.append(("mixed", choice))
            continue
        peak = peak_bytes(mode)
        if mode == "trl":
            why = "; ".join(f"{m}: {r}" for m, r in skipped) or "requested"
            return ModeChoice("trl", why, skipped)  # "generation: trl (quantized: needs ...)"
        if capacity_bytes is None or peak is None:
            why = "as grpo.fast_generation asks" if setting == mode else "the card's free memory is not known"
            return ModeChoice(mode, _first_reason(mode, skipped, why), skipped)
        if peak <= HEADROOM * capacity_bytes:
            fits = f"the fastest that fits the {capacity_bytes / GIB:.1f} GiB free"
            return ModeChoice(mode, _first_reason(mode, skipped, fits), skipped)
        skipped.append((mode, f"needs ~{peak / GIB:.1f} GiB, {capacity_bytes / GIB:.1f} GiB free"))
    return ModeChoice("trl", "TRL's generate", skipped)  # not reached: "trl" closes every list


def _mixed(model_config: dict[str, Any] | None, peak_bytes: Callable[..., float | None],
           capacity_bytes: float | None, skipped: list[tuple[str, str]], asked: bool = False) -> ModeChoice | str:
    """The mixed mode with as many merged layers as fit (at least one, fewer than all: all is
    "merged"), or why it is not taken. "auto" takes it only against a known card: it exists to fill
    one; asked for (`asked`) without one, half the layers are merged."""
    layers = int((model_config or {}).get("text_config", model_config or {}).get("num_hidden_layers") or 0)
    if layers < 2:
        return "the model's number of layers is not known"
    if capacity_bytes is None:
        if asked:
            return ModeChoice("mixed", "as grpo.fast_generation asks; the card's free memory is not known: half "
                              "the layers merged", skipped, merged_layers=layers // 2, layers=layers)
        return "sized only against a card's known free memory"
    for merged in range(layers - 1, 0, -1):  # the peak grows with every merged layer: the first fit is the most
        peak = peak_bytes("mixed", merged_layers=merged)
        if peak is not None and peak <= HEADROOM * capacity_bytes:
            why = f"as many merged layers as fit the {capacity_bytes / GIB:.1f} GiB free"
            return ModeChoice("mixed", _first_reason("mixed", skipped, why), skipped, merged_layers=merged,
                              layers=layers)
    return f"not one merged layer fits the {capacity_bytes / GIB:.1f} GiB free"


def _first_reason(mode: str, skipped: list[tuple[str, str]], why: str) -> str:
    if not skipped:
        return why
    return why + "; " + "; ".join(f"not {m}: {r}" for m, r in skipped)


# ---- how much of the card this process may use ------------------------------------------------


def vram_limit_bytes() -> float | None:
    """A cap set for this process (GRPO_STUDIO_VRAM_LIMIT_GIB: bench's --vram-limit, or a user
    sharing a card), else None."""
    value = os.environ.get("GRPO_STUDIO_VRAM_LIMIT_GIB", "").strip()
    try:
        return float(value) * GIB if value else None
    except ValueError:
        return None


def cuda_capacity_bytes() -> float:
    """Bytes this process may hold on the current CUDA device: what is free plus what it already holds,
    within a per-process memory fraction or GRPO_STUDIO_VRAM_LIMIT_GIB when set."""
    import torch

    free, total = torch.cuda.mem_get_info()
    capacity = float(free + torch.cuda.memory_reserved())
    get_fraction = getattr(torch.cuda, "get_per_process_memory_fraction", None)
    if get_fraction is not None:
        capacity = min(capacity, get_fraction() * total)
    limit = vram_limit_bytes()
    return min(capacity, limit) if limit else capacity


def gpu_free_bytes_without_torch(timeout: float = 3.0) -> float | None:
    """Free memory of the first NVIDIA GPU from nvidia-smi (the window must not import torch), or None."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=timeout, check=True).stdout
        free = float(out.strip().splitlines()[0]) * 2**20  # MiB
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    limit = vram_limit_bytes()
    return min(free, limit) if limit else free
