"""Export a run: its LoRA adapter (PEFT format), the base model with the adapter merged in, or one
GGUF file for llama.cpp / Ollama / LM Studio; then, if asked, push it to the Hugging Face Hub.

The export runs in a child process (the `export` task of engine/child_tasks.py, a TaskRunner's work
through child_runner.run_in_child): a merge loads the whole base model, and an out-of-memory kill of
it must cost the export, not the window. Cancel ends the child at once and, once it is gone, removes
what it half wrote. Merging and GGUF need the
base model's weights, so they are offered only when those are on this machine; GGUF also needs the
optional `gguf` package, and a push a Hugging Face login: the dialog says what is missing and how
to get it before anything starts.
"""

from __future__ import annotations

import html
import importlib.util
import shutil
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
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

from grpo_studio.engine.child_process import describe_end
from grpo_studio.gui.child_runner import run_in_child
from grpo_studio.gui.style import ERROR, OK
from grpo_studio.gui.tasks import TaskRunner, TaskState

KINDS = ("adapter", "merged", "gguf")


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


def gguf_installed() -> bool:
    return importlib.util.find_spec("gguf") is not None


def gguf_problem(run_dir: Path, base: tuple[bool, str] | None = None) -> str | None:
    """Why a GGUF export cannot be made here (the package, the base weights, the architecture), or None.
    `base`: base_model_available(run_dir), when the caller has it already."""
    from grpo_studio.engine.gguf_export import PIP_HINT, GgufError, check_base_model

    if not gguf_installed():
        return PIP_HINT
    available, why = base or base_model_available(run_dir)
    if not available:
        return why
    from grpo_studio.config import load_run
    from grpo_studio.engine.store import RunFolder

    try:
        check_base_model(load_run(RunFolder(run_dir).config))
    except GgufError as exc:
        return str(exc)
    return None


def remove_partial(request: Any, fresh: bool, pid: int | None) -> None:
    """What a cancelled export left (a killed child never cleans up): its staging folder (the engine's
    names for it, safe_files), and the destination folder when the export made it."""
    from grpo_studio.engine.safe_files import process_staging_path, staging_path

    dest = Path(request.dest)
    if request.kind == "gguf":
        if pid is not None:
            shutil.rmtree(process_staging_path(dest, pid), ignore_errors=True)
    else:
        shutil.rmtree(staging_path(dest), ignore_errors=True)
    if fresh and dest.is_dir() and not any(dest.iterdir()):
        dest.rmdir()


def export_in_child(request: Any, fresh: bool, state: TaskState) -> Any:
    """A TaskRunner's work: the export in a child process; when it was cancelled, what it half wrote
    is removed once the child is gone (on this worker thread, before another export may start)."""
    outcome = run_in_child(request, state)
    if outcome.cancelled:
        remove_partial(request, fresh, outcome.pid)
    return outcome


class ExportDialog(QDialog):
    finished_export = Signal(str)  # "done" | "failed" | "cancelled"

    def __init__(self, run_dir: Path, parent: QWidget | None = None):
        from grpo_studio.engine.gguf_export import GGUF_TYPES

        super().__init__(parent)
        self.run_dir = Path(run_dir)
        self.task = TaskRunner(self)  # the export's child process; one at a time, a cancelled one cleans up first
        self.result_path: Path | None = None
        self.setWindowTitle(f"Export {self.run_dir.name}")
        self.setMinimumWidth(660)
        box = QVBoxLayout(self)
        box.setContentsMargins(20, 18, 20, 16)
        box.setSpacing(10)
        box.addWidget(QLabel(f"<b>Export run</b> {html.escape(self.run_dir.name)}"))

        self.adapter = QRadioButton("LoRA adapter (PEFT format): small; load it on top of the base model")
        self.merged = QRadioButton("Merged model: the base model with the adapter folded in (16-bit)")
        self.gguf = QRadioButton("GGUF file for llama.cpp, Ollama and LM Studio (merged, then quantized)")
        self.kind = QButtonGroup(self)
        kinds = QGridLayout()
        kinds.setHorizontalSpacing(12)
        kinds.setVerticalSpacing(6)
        self.dtype = QComboBox()
        self.dtype.addItems(["bfloat16", "float16", "float32"])
        self.dtype.setToolTip("The merged model's weight type")
        self.gguf_type = QComboBox()
        self.gguf_type.addItems(list(GGUF_TYPES))
        self.gguf_type.setCurrentText("f16")
        self.gguf_type.setToolTip("f16/bf16: as trained; q8_0: half the size, nearly lossless; q5/q4: smaller, "
                                  "coarser (for K-quants run llama.cpp's llama-quantize on the f16 file)")
        for row, (button, extra) in enumerate(((self.adapter, None), (self.merged, self.dtype),
                                               (self.gguf, self.gguf_type))):
            self.kind.addButton(button)
            kinds.addWidget(button, row, 0)
            if extra is not None:
                kinds.addWidget(extra, row, 1, Qt.AlignmentFlag.AlignLeft)
        kinds.setColumnStretch(2, 1)
        for combo in (self.dtype, self.gguf_type):
            combo.setMinimumHeight(combo.sizeHint().height())  # rows of radio buttons are lower: no clipped "q8_0"
            combo.setMinimumWidth(110)
        box.addLayout(kinds)
        self.adapter.setChecked(True)
        available, why = base_model_available(self.run_dir)
        self.merged_available = available
        self.merged.setEnabled(available)
        self.gguf_reason = gguf_problem(self.run_dir, (available, why))
        self.gguf.setEnabled(self.gguf_reason is None)
        self.note = QLabel()
        self.note.setObjectName("cardSubtitle")
        self.note.setWordWrap(True)
        self.note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        notes = [("Base model: " if available else "Merged model not available: ") + why]
        if self.gguf_reason:
            notes.append(f"GGUF not available: {self.gguf_reason}")
        self.note.setText("\n".join(notes))
        box.addWidget(self.note)

        grid = QGridLayout()
        grid.setHorizontalSpacing(10)
        grid.addWidget(QLabel("Destination folder"), 0, 0)
        row = QHBoxLayout()
        self.dest = QLineEdit(str(self.run_dir / "export-adapter"))
        self.dest.setToolTip("An empty or new folder; it is written beside itself and renamed when complete")
        row.addWidget(self.dest, 1)
        self.browse_button = QPushButton("Folder…")
        self.browse_button.setAutoDefault(False)  # Enter exports; it does not open the folder picker
        self.browse_button.clicked.connect(self.browse)
        row.addWidget(self.browse_button)
        grid.addLayout(row, 0, 1)
        box.addLayout(grid)

        push_row = QHBoxLayout()
        self.push = QCheckBox("Push to the Hugging Face Hub")
        self.push.setToolTip("Upload the export with its model card, using your own Hugging Face login")
        push_row.addWidget(self.push)
        self.repo = QLineEdit()
        self.repo.setPlaceholderText("user-or-org/name")
        self.repo.setToolTip("The model repo to push to (created if missing)")
        push_row.addWidget(self.repo, 1)
        self.private = QCheckBox("Private")
        self.private.setToolTip("Create the repo private (an existing repo keeps its visibility)")
        push_row.addWidget(self.private)
        box.addLayout(push_row)
        self.push_note = QLabel()
        self.push_note.setWordWrap(True)
        self.push_note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.push_note.setContentsMargins(24, 0, 0, 0)
        box.addWidget(self.push_note)
        self.push.toggled.connect(self._push_changed)
        self._push_changed(False)
        for button in (self.adapter, self.merged, self.gguf):
            button.toggled.connect(self._kind_changed)
        self._kind_changed()

        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self.progress.hide()  # until there is something to show
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
        self.cancel_button.setToolTip("Stop the export now; what it half wrote is removed")
        self.cancel_button.hide()
        self.close_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.export_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.show_button.clicked.connect(lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.result_path))))
        self.close_button.clicked.connect(self.reject)
        box.addWidget(self.buttons)

    # ---- choices ----------------------------------------------------------------------------------
    def chosen_kind(self) -> str:
        return "gguf" if self.gguf.isChecked() else "merged" if self.merged.isChecked() else "adapter"

    def _kind_changed(self, *_: Any) -> None:
        kind = self.chosen_kind()
        self.dtype.setEnabled(kind == "merged")
        self.gguf_type.setEnabled(kind == "gguf")
        current = Path(self.dest.text())
        if current.parent == self.run_dir and current.name in {f"export-{k}" for k in KINDS}:
            self.dest.setText(str(self.run_dir / f"export-{kind}"))

    def _push_changed(self, on: bool) -> None:
        self.repo.setEnabled(on)
        self.private.setEnabled(on)
        if not on:
            self.push_note.setText("")
            return
        from huggingface_hub import get_token

        if get_token():
            self.push_note.setText("Uses your Hugging Face login (the token `hf auth login` stored, or HF_TOKEN).")
            self.push_note.setStyleSheet("")
        else:
            self.push_note.setText("No Hugging Face login on this machine: run `hf auth login` in a terminal (or set "
                                   "HF_TOKEN to a token with write access), then export again.")
            self.push_note.setStyleSheet(f"color: {ERROR};")
        self.repo.setFocus()

    def browse(self) -> None:
        from grpo_studio.gui import dialogs

        chosen = dialogs.existing_dir(self, "Export to", str(self.run_dir))
        if chosen:
            self.dest.setText(chosen)

    # ---- exporting --------------------------------------------------------------------------------
    def start(self) -> None:
        from grpo_studio.engine.child_messages import ExportRequest
        from grpo_studio.engine.hub_push import push_problem

        text = self.dest.text().strip()
        if not text:
            self.status.setText("Choose a destination folder.")
            return
        dest = Path(text).expanduser()
        repo = self.repo.text().strip() if self.push.isChecked() else ""
        if self.push.isChecked():
            problem = "write the repo id to push to (user-or-org/name)" if not repo else push_problem(repo)
            if problem:
                self._failed(f"not pushed: {problem}")
                return
        request = ExportRequest(run_dir=str(self.run_dir), dest=str(dest), kind=self.chosen_kind(),
                                dtype=self.dtype.currentText(), gguf_type=self.gguf_type.currentText(),
                                push_repo=repo, private=self.private.isChecked())
        fresh = not dest.exists() or (dest.is_dir() and not any(dest.iterdir()))  # removed again on Cancel
        self.task.start(lambda state: export_in_child(request, fresh, state), self._ended,
                        lambda exc, details: self._failed(f"{type(exc).__name__}: {exc}"), self._progressed)
        self._set_inputs(False)
        self.progress.show()
        self.close_button.hide()
        self.cancel_button.show()
        self.show_button.hide()
        self.progress.setValue(0)
        self.status.setText("Exporting…")

    def _progressed(self, text: str, fraction: float) -> None:
        self.progress.setValue(int(round(fraction * 100)))
        self.status.setText(text)

    def _ended(self, outcome: Any) -> None:
        """The child ended, with its TaskOutcome (never called for a cancelled export: Cancel said so)."""
        result = outcome.result
        if result is not None and result.kind == "exported":
            self.result_path = Path(result.path)
            self.progress.setValue(100)
            pushed = (f"; pushed to <a href='{html.escape(result.url)}'>{html.escape(result.url)}</a>"
                      if result.url else "")
            self.status.setText(f"<span style='color:{OK}'>Exported to {html.escape(str(self.result_path))}"
                                f"</span>{pushed}")
            self.status.setOpenExternalLinks(True)
            self.show_button.show()
            self._idle(inputs=False)  # as exported: Close, or Show folder
            self.finished_export.emit("done")
        elif result is not None and result.kind == "task_failed":
            if result.exported:
                self.result_path = Path(result.exported)
                self.show_button.show()
            self._failed(result.reason)
        else:  # the child died without a word: killed for memory, a crash
            self._failed(describe_end(outcome.returncode, outcome.log_tail, "export") + " without finishing")

    def _failed(self, text: str) -> None:
        self.status.setText(f"<span style='color:{ERROR}'>Export failed: {html.escape(text)}</span>")
        self.progress.setValue(0)
        self._idle()
        self.finished_export.emit("failed")

    def cancel(self) -> None:
        """End the export's process now; what it half wrote is removed."""
        if not self.task.is_running():
            return
        self.task.cancel()  # export_in_child removes the half-written folder once the process is gone
        self.status.setText("Export cancelled.")
        self.progress.setValue(0)
        self._idle()
        self.finished_export.emit("cancelled")

    def _set_inputs(self, enabled: bool) -> None:
        for w in (self.adapter, self.dest, self.browse_button, self.push, self.export_button):
            w.setEnabled(enabled)
        self.merged.setEnabled(enabled and self.merged_available)
        self.gguf.setEnabled(enabled and self.gguf_reason is None)
        self.repo.setEnabled(enabled and self.push.isChecked())
        self.private.setEnabled(enabled and self.push.isChecked())
        kind = self.chosen_kind()
        self.dtype.setEnabled(enabled and kind == "merged")
        self.gguf_type.setEnabled(enabled and kind == "gguf")

    def _idle(self, inputs: bool = True) -> None:
        if inputs:
            self._set_inputs(True)
        self.cancel_button.hide()
        self.close_button.show()

    def reject(self) -> None:
        if self.task.is_running():
            return  # Cancel export ends it (and removes the half folder); closing must not leave it behind
        super().reject()

    def shutdown(self) -> None:
        """The window closes: an export still running is cancelled (and cleaned up) first."""
        self.task.shutdown()
