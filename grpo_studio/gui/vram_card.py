"""The VRAM estimate on the Settings page: peak GPU memory of the run as set up, with its parts.

The arithmetic is the engine's (engine/vram.py: the model's config.json, the LoRA, batch and
length settings). It is cheap, but reading config.json touches the disk (a network drive, the HF
cache), so like the dataset preview it runs on a background thread, a moment after the last edit of
a setting it depends on; a result that arrives after newer edits is dropped.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QGridLayout, QLabel, QProgressBar, QWidget

from grpo_studio.config import memory_settings
from grpo_studio.gui.document import RunDocument
from grpo_studio.gui.settings_form import Card
from grpo_studio.gui.style import ERROR, MUTED, TEXT
from grpo_studio.gui.tasks import TaskRunner

ESTIMATE_DELAY_MS = 300
GIB = 2**30
# The settings the estimate reads (`memory=True` on the setting); an edit of any other leaves it as it is.
DEPENDS_ON = frozenset(memory_settings())
PART_LABELS = {
    "weights": "Model weights", "trainable params": "Trainable parameters", "gradients": "Gradients",
    "optimizer state": "Optimizer state", "generation weights (merged)": "Merged copy for generation",
    "generation weights (quantized)": "LoRA stacks, dequantize buffer", "KV cache (static), sampling": "KV cache, sampling",
    "KV cache, sampling": "KV cache, sampling", "training activations": "Training activations",
    "generation weights (mixed)": "Merged layers, LoRA stacks", "prefill activations": "Prompt pass (prefill)",
}
# What each generation mode is, in a few words (engine/generation_mode.py).
MODE_TEXT = {
    "quantized": "GRPO Studio's generator, reading the quantized weights as stored",
    "merged": "GRPO Studio's generator, on a 16-bit copy with LoRA merged in",
    "mixed": "GRPO Studio's generator, on a 16-bit copy with LoRA merged in for {merged} layers, the others "
             "read quantized",
    "trl": "TRL's generate",
}


@dataclass
class VramView:
    """What the card shows; made on the worker thread, pure data."""

    status: str  # "estimate" | "unknown" (hub id not downloaded) | "no_model" | "error"
    message: str = ""
    total: float = 0.0  # bytes
    parts: dict[str, float] = field(default_factory=dict)  # bytes by part
    phase: str = ""  # "generation" | "training": the phase that sets the peak
    gpu: bool | None = None  # a GPU is visible on this computer (None: can't tell)
    device: str = "auto"  # model.device
    mode: str = ""  # the generation mode the run will use (engine/generation_mode.py)
    mode_reason: str = ""
    merged_layers: int = 0  # mode "mixed": the layers generated from a merged copy
    layout: str = ""  # the training layout (engine/training_layout.py)


def format_bytes(n: float) -> str:
    """
    >>> format_bytes(3.44 * 2**30), format_bytes(150 * 2**20), format_bytes(12.4 * 2**20), format_bytes(1000)
    ('3.4 GiB', '0.15 GiB', '12 MiB', '< 1 MiB')
    """
    if n >= 2**30:
        return f"{n / 2**30:.1f} GiB"
    if n >= 100 * 2**20:
        return f"{n / 2**30:.2f} GiB"
    if n >= 2**20:
        return f"{n / 2**20:.0f} MiB"
    return "< 1 MiB"


def gpu_visible() -> bool | None:
    """Whether this computer shows a GPU that PyTorch could train on, without importing torch."""
    if sys.platform == "darwin":
        return False  # no CUDA on macOS; the engine trains on the CPU there
    if sys.platform.startswith("linux"):
        nvidia = Path("/proc/driver/nvidia/gpus")
        if nvidia.is_dir() and any(nvidia.iterdir()):
            return True
        return Path("/dev/kfd").exists()  # ROCm (PyTorch calls it cuda too)
    return True if shutil.which("nvidia-smi") else None


def compute(config: Any, run_path: Path | None, base_dir: Path) -> VramView:
    """Runs on a worker thread: the engine's estimate for these settings."""
    from grpo_studio.config import LoadedRun
    from grpo_studio.engine.generation_mode import gpu_free_bytes_without_torch
    from grpo_studio.engine.model import ModelError
    from grpo_studio.engine.vram import estimate_for_run

    device = config.model.device
    gpu = gpu_visible() if device != "cpu" else None
    if not config.model.name.strip():
        return VramView("no_model", "Choose a model to see its estimate.", gpu=gpu, device=device)
    try:
        # This computer's GPU decides the plan when it has one (nvidia-smi, no torch); else the card is unknown.
        capacity = gpu_free_bytes_without_torch() if gpu and device != "cpu" else None
        est = estimate_for_run(LoadedRun(config, run_path, base_dir), capacity_bytes=capacity,
                               on_gpu=True)  # the figure is what one GPU would need, even for a CPU run
    except ModelError as exc:
        return VramView("error", exc.message, gpu=gpu, device=device)
    except (KeyError, TypeError, ValueError, OSError) as exc:
        return VramView("error", f"no estimate for this model's config.json ({type(exc).__name__}: {exc})",
                        gpu=gpu, device=device)
    if est is None:
        return VramView("unknown", "unknown until the model is downloaded (training downloads it)", gpu=gpu,
                        device=device)
    return VramView("estimate", total=est.total, parts=dict(est.parts), phase=est.peak_phase, gpu=gpu,
                    device=device, mode=est.generation_mode, mode_reason=est.mode_reason,
                    merged_layers=est.merged_layers, layout=est.layout)


class VramEstimator(QObject):
    """Recomputes the estimate a moment after a setting it depends on changes."""

    updated = Signal(object)  # VramView

    def __init__(self, doc: RunDocument, parent: QObject | None = None):
        super().__init__(parent)
        self.doc = doc
        self.view: VramView | None = None
        self.task = TaskRunner(self)  # the newest estimate wins
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(ESTIMATE_DELAY_MS)
        self._timer.timeout.connect(self.refresh)
        doc.changed.connect(self._changed)
        self._timer.start(0)

    def _changed(self, path: str) -> None:
        if path == "" or path in DEPENDS_ON:
            self.task.cancel()  # a result for the old settings is stale now
            self._timer.start()

    def refresh(self) -> None:
        config, path, base = self.doc.config.model_copy(deep=True), self.doc.path, self.doc.base_dir or Path.cwd()
        self.task.start(lambda state: compute(config, path, base), self._show,
                        lambda exc, details: self._show(VramView("error", f"{type(exc).__name__}: {exc}")))

    def is_busy(self) -> bool:
        return self._timer.isActive() or self.task.is_running()

    def _show(self, view: VramView) -> None:
        self.view = view
        self.updated.emit(view)

    def shutdown(self, timeout_ms: int = 30000) -> None:
        self._timer.stop()
        self.task.shutdown(timeout_ms)


def headline(view: VramView) -> str:
    """One line for the status bar and the card's title line."""
    if view.status == "estimate":
        return f"Estimated peak GPU memory: {format_bytes(view.total)}"
    if view.status == "unknown":
        return "Estimated peak GPU memory: unknown until the model is downloaded"
    if view.status == "no_model":
        return "Estimated peak GPU memory: choose a model first"
    return "Estimated peak GPU memory: no estimate"


def device_note(view: VramView) -> str:
    """Where the run will train, when that is not a GPU."""
    figure = " The figure is what one GPU would need." if view.status == "estimate" else ""
    if view.device == "cpu":
        return "CPU run (model.device = cpu): no GPU memory is used." + figure
    if view.gpu is False:
        return "No GPU found on this computer: the run trains on the CPU here." + figure
    return ""


class VramCard(Card):
    """Peak GPU memory with its breakdown, kept up to date by a VramEstimator."""

    def __init__(self, estimator: VramEstimator, parent: QWidget | None = None):
        super().__init__("GPU memory", "", parent)
        self.estimator = estimator
        self.headline = QLabel("Estimating…")
        self.headline.setObjectName("vramHeadline")
        self.headline.setWordWrap(True)
        self.body.addWidget(self.headline)
        self.note = QLabel()
        self.note.setObjectName("cardSubtitle")
        self.note.setWordWrap(True)
        self.body.addWidget(self.note)
        self.grid = QGridLayout()
        self.grid.setContentsMargins(0, 4, 0, 0)
        self.grid.setHorizontalSpacing(10)
        self.grid.setVerticalSpacing(3)
        self.grid.setColumnStretch(2, 1)
        self.body.addLayout(self.grid)
        self._rows: list[QWidget] = []
        estimator.updated.connect(self.show_view)
        if estimator.view is not None:
            self.show_view(estimator.view)

    def show_view(self, view: VramView) -> None:
        self.headline.setText(headline(view))
        notes = []
        if view.status == "estimate":
            peak = "while generating completions" if view.phase == "generation" else "during the training pass"
            notes.append(f"The peak comes {peak}, on one GPU; CUDA itself takes about 0.5 GiB more.")
            if view.mode and view.device != "cpu":
                text = MODE_TEXT.get(view.mode, view.mode).format(merged=view.merged_layers)
                notes.append(f"Generation: {text} ({view.mode_reason}).")
                if view.layout:
                    notes.append(f"Training: {view.layout}.")
        elif view.message and view.status != "unknown":
            notes.append(view.message)
        elif view.status == "unknown":
            notes.append("The estimate reads the model's config.json: it appears once the model is in the "
                         "Hugging Face cache (or give a local folder).")
        if device_note(view):
            notes.append(device_note(view))
        self.note.setText("\n".join(notes))
        color = {"error": ERROR, "estimate": TEXT}.get(view.status, MUTED)
        self.headline.setStyleSheet(f"font-size: 12pt; font-weight: 600; color: {color};")
        self._fill_parts(view)

    def _fill_parts(self, view: VramView) -> None:
        for w in self._rows:
            self.grid.removeWidget(w)
            w.hide()  # gone from the screen now; deleted when the event loop next runs
            w.deleteLater()
        self._rows = []
        if view.status != "estimate" or not view.parts:
            return
        biggest = max(view.parts.values()) or 1
        for r, (key, value) in enumerate(view.parts.items()):
            name = QLabel(PART_LABELS.get(key, key.capitalize()))
            amount = QLabel(format_bytes(value))
            amount.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            bar = QProgressBar()
            bar.setObjectName("vramBar")
            bar.setTextVisible(False)
            bar.setRange(0, 1000)
            bar.setValue(int(1000 * value / biggest))
            bar.setFixedHeight(8)
            bar.setToolTip(f"{value / GIB:.3f} GiB ({100 * value / view.total:.0f}% of the peak)")
            for c, w in enumerate((name, amount, bar)):
                self.grid.addWidget(w, r, c)
                self._rows.append(w)
        self.setToolTip("\n".join(f"{PART_LABELS.get(k, k)}: {v / GIB:.3f} GiB" for k, v in view.parts.items()))
