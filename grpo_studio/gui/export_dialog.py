"""Export a run: its LoRA adapter (PEFT format), or the base model with the adapter merged in.

The export runs in a child process (engine/child_tasks.py), driven from a background thread, with
its progress coming back to the dialog; the window keeps working meanwhile. Merging loads the whole
base model: run in the window's process, an out-of-memory kill of a 7B merge would take the window
and its unsaved edits with it; in a child, it costs the export. Cancel ends the child at once and
removes the half-written folder. Merging needs the base model's weights, so that choice is offered
only when they are on this machine (a local folder, or a hub id already in the cache).
"""

from __future__ import annotations

import html
import shutil
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from grpo_studio.gui.tasks import TaskRunner


def base_model_available(run_dir: Path) -> tuple[bool, str]:
    """Whether the merged export can load the base weights here; else why not."""
    from grpo_studio.config import ConfigError, load_run
    from grpo_studio.engine.store import RunFolder

    try:
        run = load_run(RunFolder(run_dir).config)
    except ConfigError as exc:
        return False, f"the run's config.toml cannot be read: {exc}"
    if not run.config.lora.enabled:
        return False, "this run trained every weight: its adapter folder is already the whole model"
    name = run.config.model.name
    if run.resolve(name).is_dir():
        return True, str(run.resolve(name))
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json", revision=run.config.model.revision or None)
    except Exception:  # noqa: BLE001 - not a valid repo id, no cache: not available
        cached = None
    if isinstance(cached, str):
        return True, f"{name} (from the local cache)"
    return False, f"the base model {name!r} is not on this machine (not a folder, not in the hub cache)"


def export_in_child(request: Any, state: Any, started: Any = None) -> Any:
    """Runs on a worker thread: the export in a child process; a cancelled one leaves no half folder."""
    from grpo_studio.engine.child_tasks import run_task

    dest = Path(request.dest)
    fresh = not dest.exists() or (dest.is_dir() and not any(dest.iterdir()))  # the export refuses anything else

    def on_start(child: Any) -> None:
        state.on_cancel(child.cancel)
        if started is not None:
            started(child)

    outcome = run_task(request, progress=state.set_progress, started=on_start)
    if outcome.cancelled and fresh and dest.is_dir():
        shutil.rmtree(dest, ignore_errors=True)
    return outcome


class ExportDialog(QDialog):
    finished_export = Signal(str)  # "done" | "failed" | "cancelled"

    def __init__(self, run_dir: Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.run_dir = Path(run_dir)
        self.task = TaskRunner(self)
        self.child: Any = None  # the export's child process while it runs (for tests and Cancel)
        self.result_path: Path | None = None
        self.setWindowTitle(f"Export {self.run_dir.name}")
        self.setMinimumWidth(620)
        box = QVBoxLayout(self)
        box.setContentsMargins(20, 18, 20, 16)
        box.setSpacing(12)
        title = QLabel(f"<b>Export run</b> {self.run_dir.name}")
        box.addWidget(title)

        self.adapter = QRadioButton("LoRA adapter (PEFT format): small; load it on top of the base model")
        self.merged = QRadioButton("Merged model: the base model with the adapter folded in (16-bit)")
        self.kind = QButtonGroup(self)
        self.kind.addButton(self.adapter)
        self.kind.addButton(self.merged)
        self.adapter.setChecked(True)
        box.addWidget(self.adapter)
        box.addWidget(self.merged)
        available, why = base_model_available(self.run_dir)
        self.merged.setEnabled(available)
        self.merged_note = QLabel(("Base model: " if available else "Not available: ") + why)
        self.merged_note.setObjectName("cardSubtitle")
        self.merged_note.setWordWrap(True)
        self.merged_note.setContentsMargins(24, 0, 0, 0)
        box.addWidget(self.merged_note)

        grid = QGridLayout()
        grid.setHorizontalSpacing(10)
        grid.addWidget(QLabel("Destination folder"), 0, 0)
        row = QHBoxLayout()
        self.dest = QLineEdit(str(self.run_dir / "export-adapter"))
        row.addWidget(self.dest, 1)
        browse = QPushButton("Folder…")
        browse.setAutoDefault(False)  # Enter exports; it does not open the folder picker
        browse.clicked.connect(self.browse)
        row.addWidget(browse)
        grid.addLayout(row, 0, 1)
        grid.addWidget(QLabel("Merged dtype"), 1, 0)
        self.dtype = QComboBox()
        self.dtype.addItems(["bfloat16", "float16", "float32"])
        self.dtype.setEnabled(False)
        grid.addWidget(self.dtype, 1, 1, Qt.AlignmentFlag.AlignLeft)
        box.addLayout(grid)
        self.merged.toggled.connect(self._kind_changed)

        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        box.addWidget(self.progress)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.addWidget(self.status)

        self.buttons = QDialogButtonBox()
        self.export_button = self.buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        self.export_button.setObjectName("primary")
        self.export_button.setDefault(True)
        self.show_button = self.buttons.addButton("Show folder", QDialogButtonBox.ButtonRole.ActionRole)
        self.show_button.hide()
        self.cancel_button = self.buttons.addButton("Cancel export", QDialogButtonBox.ButtonRole.RejectRole)
        self.cancel_button.setToolTip("Stop the export now; the half-written folder is removed")
        self.cancel_button.hide()
        self.close_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.export_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.show_button.clicked.connect(lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.result_path))))
        self.close_button.clicked.connect(self.reject)
        box.addWidget(self.buttons)

    def _kind_changed(self, merged: bool) -> None:
        self.dtype.setEnabled(merged)
        current = Path(self.dest.text())
        if current.parent == self.run_dir and current.name in ("export-adapter", "export-merged"):
            self.dest.setText(str(self.run_dir / ("export-merged" if merged else "export-adapter")))

    def browse(self) -> None:
        chosen = QFileDialog.getExistingDirectory(self, "Export to", str(self.run_dir))
        if chosen:
            self.dest.setText(chosen)

    def start(self) -> None:
        dest = Path(self.dest.text().strip()).expanduser()
        if not self.dest.text().strip():
            self.status.setText("Choose a destination folder.")
            return
        from grpo_studio.engine.child_messages import ExportRequest

        request = ExportRequest(run_dir=str(self.run_dir), dest=str(dest), merged=self.merged.isChecked(),
                                dtype=self.dtype.currentText())
        for w in (self.adapter, self.merged, self.dest, self.dtype, self.export_button):
            w.setEnabled(False)
        self.close_button.hide()
        self.cancel_button.show()
        self.show_button.hide()
        self.progress.setValue(0)
        self.status.setText("Exporting…")
        self.task.start(lambda state: export_in_child(request, state, started=self._child_started), self._ended,
                        lambda exc, details: self._failed(f"{type(exc).__name__}: {exc}"), self._progress)

    def _child_started(self, child: Any) -> None:
        self.child = child  # from the worker thread: a reference, read by Cancel and tests

    def _progress(self, text: str, fraction: float) -> None:
        self.progress.setValue(int(round(fraction * 100)))
        self.status.setText(text)

    def _ended(self, outcome: Any) -> None:
        from grpo_studio.engine.child_messages import Exported, TaskFailed

        if isinstance(outcome.result, Exported):
            self.result_path = Path(outcome.result.path)
            self.progress.setValue(100)
            self.status.setText(f"Exported to {self.result_path}")
            self.show_button.show()
            self._idle(inputs=False)  # as exported: Close, or Show folder
            self.finished_export.emit("done")
        elif isinstance(outcome.result, TaskFailed):
            self._failed(outcome.result.reason)
        else:  # the child died without a word: killed for memory, a crash
            last = [line for line in outcome.log_tail.splitlines() if line.strip()][-1:]
            how = f"killed by signal {-outcome.returncode}" if (outcome.returncode or 0) < 0 else \
                f"exit code {outcome.returncode}"
            self._failed(f"the export process ended ({how}) without finishing" + (f": {last[0]}" if last else "")
                         + (" (out of memory?)" if outcome.returncode == -9 else ""))

    def _failed(self, text: str) -> None:
        self.status.setText(f"<span style='color:#c62828'>Export failed: {html.escape(text)}</span>")
        self.progress.setValue(0)
        self._idle()
        self.finished_export.emit("failed")

    def cancel(self) -> None:
        """End the export's process now; its half-written folder is removed."""
        if not self.task.is_running():
            return
        self.task.cancel()
        self.status.setText("Export cancelled.")
        self.progress.setValue(0)
        self._idle()
        self.finished_export.emit("cancelled")

    def _idle(self, inputs: bool = True) -> None:
        self.child = None
        if inputs:
            for w in (self.adapter, self.dest, self.export_button):
                w.setEnabled(True)
            self.merged.setEnabled(base_model_available(self.run_dir)[0])
            self.dtype.setEnabled(self.merged.isChecked())
        self.cancel_button.hide()
        self.close_button.show()

    def reject(self) -> None:
        if self.task.is_running():
            return  # Cancel export ends it (and removes the half folder); closing must not leave it behind
        super().reject()

    def done(self, result: int) -> None:
        self.task.shutdown(0)  # nothing left running once the dialog is gone
        super().done(result)
