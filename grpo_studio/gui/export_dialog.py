"""Export a run: its LoRA adapter (PEFT format), or the base model with the adapter merged in.

The export runs on a background thread with progress coming back to the dialog; the window keeps
working meanwhile. Merging needs the base model's weights, so that choice is offered only when
they are on this machine (a local folder, or a hub id already in the cache).
"""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDialog,
    QDialogButtonBox,
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

from grpo_studio.gui.background import Job, run_in_background


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


def _export(kind: str, run_dir: Path, dest: Path, dtype: str, progress) -> Path:
    from grpo_studio.engine.export import export_adapter, export_merged
    from grpo_studio.engine.library_noise import quiet_libraries

    quiet_libraries()  # no progress bars, deprecation notes or optional-kernel notices in the terminal

    if kind == "merged":
        return export_merged(run_dir, dest, dtype=dtype, progress=progress)
    return export_adapter(run_dir, dest, progress=progress)


class ExportDialog(QDialog):
    def __init__(self, run_dir: Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.run_dir = Path(run_dir)
        self.job: Job | None = None
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
        self.close_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.export_button.clicked.connect(self.start)
        self.show_button.clicked.connect(lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.result_path))))
        self.close_button.clicked.connect(self.reject)
        box.addWidget(self.buttons)

    def _kind_changed(self, merged: bool) -> None:
        self.dtype.setEnabled(merged)
        current = Path(self.dest.text())
        if current.parent == self.run_dir and current.name in ("export-adapter", "export-merged"):
            self.dest.setText(str(self.run_dir / ("export-merged" if merged else "export-adapter")))

    def browse(self) -> None:
        from grpo_studio.gui import dialogs

        chosen = dialogs.existing_dir(self, "Export to", str(self.run_dir))
        if chosen:
            self.dest.setText(chosen)

    def start(self) -> None:
        dest = Path(self.dest.text().strip()).expanduser()
        if not self.dest.text().strip():
            self.status.setText("Choose a destination folder.")
            return
        kind = "merged" if self.merged.isChecked() else "adapter"
        for w in (self.adapter, self.merged, self.dest, self.dtype, self.export_button):
            w.setEnabled(False)
        self.close_button.setEnabled(False)
        self.progress.setValue(0)
        self.status.setText("Exporting…")
        self.job = run_in_background(_export, kind, self.run_dir, dest, self.dtype.currentText(),
                                     with_progress=True, parent=self)
        self.job.progress.connect(self._progress)
        self.job.done.connect(self._done)
        self.job.failed.connect(self._failed)

    def _progress(self, text: str, fraction: float) -> None:
        self.progress.setValue(int(round(fraction * 100)))
        self.status.setText(text)

    def _done(self, path: Path) -> None:
        self.result_path = Path(path)
        self.progress.setValue(100)
        self.status.setText(f"Exported to {path}")
        self.show_button.show()
        self.close_button.setEnabled(True)

    def _failed(self, exc: Exception, details: str) -> None:
        from grpo_studio.engine.export import ExportError

        text = str(exc) if isinstance(exc, ExportError) else f"{type(exc).__name__}: {exc}"
        self.status.setText(f"<span style='color:#c62828'>Export failed: {html.escape(text)}</span>")
        self.progress.setValue(0)
        for w in (self.adapter, self.dest, self.export_button):
            w.setEnabled(True)
        self.merged.setEnabled(base_model_available(self.run_dir)[0])
        self.dtype.setEnabled(self.merged.isChecked())
        self.close_button.setEnabled(True)

    def reject(self) -> None:
        if self.job is not None and self.job.running:
            return  # the export finishes first; closing mid-copy would leave half a folder
        super().reject()
