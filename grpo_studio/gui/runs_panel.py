"""The Runs page: every run the user started, from the window or the command line (the engine notes
each new run folder: engine/run_home.py), the run folders of the open run file, and any run folder
opened before; to reopen, resume or export.

A run folder is found by its config.toml; what it did (status, steps, model) comes from the meta
table of its run store, which is a few rows: reading a few dozen of them is instant. Whether a process
trains it right now comes from its lock (engine/run_lock.py): such a run is listed as training, can be
opened (read-only, following it) but not resumed or exported, and the page looks again every few
seconds while it is shown, so a run started or ended elsewhere changes its row by itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from grpo_studio.engine.events import STOPPED_BEFORE_TRAINING
from grpo_studio.engine.run_lock import LockHolder, lock_holder, lock_path
from grpo_studio.engine.store import RunFolder
from grpo_studio.gui import dialogs
from grpo_studio.gui.style import title_row

LIVENESS_MS = 2000  # how often a shown Runs page asks which runs are being trained

STATUS_WORDS = {"running": "running or interrupted", "finished": "finished", "stopped": "stopped (resumable)",
                "failed": "failed", "": "not started"}


@dataclass
class RunInfo:
    path: Path
    status: str = ""
    last_step: int = 0
    max_steps: int = 0
    started: float = 0.0
    model: str = ""
    failure: str = ""
    checkpoint_step: int = 0
    holder: LockHolder | None = None  # the process training it right now, if one is

    @property
    def resumable(self) -> bool:
        """A checkpoint to continue from, or steps done in a run that ended (a run that failed before its
        first step has nothing to resume: train it again). Never while a process trains it."""
        if self.holder is not None:
            return False
        return self.checkpoint_step > 0 or (self.status in ("stopped", "failed", "running") and self.last_step > 0)

    @property
    def exportable(self) -> bool:
        return self.holder is None and (self.checkpoint_step > 0 or self.status == "finished")

    @property
    def status_text(self) -> str:
        if self.holder is not None:
            return "training now"
        if self.status == "running" and lock_path(self.path).is_file():
            return "interrupted"  # its process took the lock and nobody holds it now: killed or crashed
        words = STATUS_WORDS.get(self.status, self.status)
        if self.status in ("failed", "stopped") and not self.last_step:
            stopped = self.failure == STOPPED_BEFORE_TRAINING
            return "stopped before step 1" if stopped else f"{self.status} before step 1"
        return words


def read_run(path: Path) -> RunInfo:
    from grpo_studio.engine.store import RunStore

    info = RunInfo(path)
    info.holder = lock_holder(path)  # first: a run ending meanwhile is then read with its end
    folder = RunFolder(path)
    newest = folder.newest_checkpoint()
    info.checkpoint_step = newest[0] if newest else 0
    if folder.database.is_file():
        try:
            with RunStore(path, readonly=True) as store:
                meta = store.meta()
        except Exception:  # noqa: BLE001 - a damaged or foreign database: list the folder anyway
            meta = {}
        info.status = meta.get("status", "")
        info.last_step = int(meta.get("last_step", 0) or 0)
        info.max_steps = int(meta.get("max_steps", 0) or 0)
        info.started = float(meta.get("started", 0) or 0)
        info.model = str(meta.get("model", ""))
        info.failure = str(meta.get("failure", ""))
    if not info.started:
        info.started = folder.config.stat().st_mtime
    return info


def find_runs(folders: list[Path], extra: list[Path]) -> list[RunInfo]:
    """Run folders directly inside `folders`, plus `extra` run folders; newest first."""
    seen: set[Path] = set()
    runs = []
    candidates = [p for f in folders if f.is_dir() for p in f.iterdir()] + list(extra)
    for path in candidates:
        try:
            resolved = path.resolve()
        except OSError:
            continue
        if resolved in seen or not RunFolder(resolved).is_run():
            continue
        seen.add(resolved)
        runs.append(read_run(resolved))
    return sorted(runs, key=lambda r: r.started, reverse=True)


class RunsView(QWidget):
    openRequested = Signal(object)  # Path
    resumeRequested = Signal(object)
    exportRequested = Signal(object)
    compareRequested = Signal(object)  # list of Paths, two or more

    COLUMNS = ["Run", "Status", "Steps", "Started", "Model"]

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.folders: list[Path] = []
        self.extra: list[Path] = []
        self.runs: list[RunInfo] = []
        self.busy = False
        self.own_run: Path | None = None  # the run this window trains, if it does
        self._stale = False
        self._liveness = QTimer(self)
        self._liveness.setInterval(LIVENESS_MS)
        self._liveness.timeout.connect(self.update_liveness)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(24, 18, 24, 18)
        outer.setSpacing(10)
        self.where = QLabel()
        self.where.setWordWrap(True)
        head = title_row("Runs", self.where)
        outer.addLayout(head)

        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        # Several rows (Ctrl+click, Shift+click) for Compare; the other buttons act on the current row.
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setShowGrid(False)
        self.table.verticalHeader().setDefaultSectionSize(28)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col, width in ((1, 170), (2, 90), (3, 140), (4, 260)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Interactive)
            self.table.setColumnWidth(col, width)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.table.itemDoubleClicked.connect(lambda item: self._emit(self.openRequested))
        outer.addWidget(self.table, 1)

        self.detail = QLabel()
        self.detail.setTextFormat(Qt.TextFormat.PlainText)  # paths and failure reasons, never markup
        self.detail.setWordWrap(True)
        self.detail.setObjectName("cardSubtitle")
        outer.addWidget(self.detail)

        buttons = QHBoxLayout()
        self.open_button = QPushButton("Open")
        self.open_button.setToolTip("Show this run's curves and samples")
        self.open_button.clicked.connect(lambda: self._emit(self.openRequested))
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue from its newest complete checkpoint")
        self.resume_button.clicked.connect(lambda: self._emit(self.resumeRequested))
        self.compare_button = QPushButton("Compare")
        self.compare_button.setToolTip("Overlay the selected runs' curves on the Training plots, with the settings "
                                       "that differ (select two or more with Ctrl+click or Shift+click; "
                                       "Ctrl+Shift+C)")
        self.compare_button.clicked.connect(self._compare)
        self.export_button = QPushButton("Export…")
        self.export_button.clicked.connect(lambda: self._emit(self.exportRequested))
        self.folder_button = QPushButton("Show folder")
        self.folder_button.clicked.connect(self._show_folder)
        browse = QPushButton("Open run folder…")
        browse.setToolTip("Open any run folder (one with config.toml and run.db)")
        browse.clicked.connect(self.browse)
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh)
        for b in (self.open_button, self.compare_button, self.resume_button, self.export_button, self.folder_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(browse)
        buttons.addWidget(refresh)
        outer.addLayout(buttons)
        self._update_buttons()

    def set_sources(self, folders: list[Path], extra: list[Path]) -> None:
        self.folders, self.extra = folders, extra
        if self.isVisible():
            self.refresh()
        else:
            self._stale = True  # read when the page is shown: the window's first paint does not wait for it

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.refresh()  # runs started from the command line meanwhile appear too
        self._liveness.start()

    def hideEvent(self, event) -> None:
        super().hideEvent(event)
        self._liveness.stop()

    def update_liveness(self) -> None:
        """Rows of runs that began or ended training elsewhere, or are training (their steps grow), read
        again; the others are left alone (a lock probe per run: a few system calls)."""
        for row, run in enumerate(self.runs):
            holder = lock_holder(run.path)
            if holder is None and run.holder is None:
                continue
            self.runs[row] = read_run(run.path)
            self._fill_row(row, self.runs[row])
        self._update_buttons()

    def refresh(self) -> None:
        from grpo_studio.engine.run_home import recorded_runs

        self._stale = False
        selected = self.selected()
        self.runs = find_runs(self.folders, recorded_runs() + self.extra)
        self.where.setText("Every run you started, from the window or the command line. New runs of this "
                           f"run file go to {self.folders[0]}." if self.folders else
                           "Every run you started, from the window or the command line.")
        self.table.setRowCount(len(self.runs))
        for row, run in enumerate(self.runs):
            self._fill_row(row, run)
            if selected is not None and run.path == selected.path:
                self.table.selectRow(row)
        if self.table.currentRow() < 0 and self.runs:
            self.table.selectRow(0)
        self._update_buttons()

    def _fill_row(self, row: int, run: RunInfo) -> None:
        steps = f"{run.last_step} / {run.max_steps}" if run.max_steps else str(run.last_step or "–")
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(run.started)) if run.started else ""
        status = run.status_text
        if run.holder is not None:
            status = "training in this window" if self.own_run and run.path == self.own_run else "training elsewhere"
        values = [run.path.name, status, steps, started, Path(run.model).name if run.model else ""]
        tips = {0: str(run.path), 4: run.model,
                1: f"Trained by {run.holder.describe()}" if run.holder is not None else status}
        for col, value in enumerate(values):
            item = self.table.item(row, col)
            if item is None:
                item = QTableWidgetItem()
                self.table.setItem(row, col, item)
            item.setText(value)
            item.setToolTip(tips.get(col, value))

    def selected(self) -> RunInfo | None:
        row = self.table.currentRow()
        return self.runs[row] if 0 <= row < len(self.runs) else None

    def selected_runs(self) -> list[RunInfo]:
        """Every selected run, in table order."""
        rows = sorted({index.row() for index in self.table.selectionModel().selectedRows()})
        return [self.runs[r] for r in rows if 0 <= r < len(self.runs)]

    def _compare(self) -> None:
        runs = self.selected_runs()
        if len(runs) >= 2:
            self.compareRequested.emit([r.path for r in runs])

    def select(self, path: Path) -> bool:
        if self._stale:
            self.refresh()
        for row, run in enumerate(self.runs):
            if run.path == Path(path).resolve():
                self.table.selectRow(row)
                return True
        return False

    def set_busy(self, busy: bool) -> None:
        """While a run trains, nothing else can be opened into the training view or resumed."""
        self.busy = busy
        self._update_buttons()

    def _update_buttons(self) -> None:
        run = self.selected()
        self.open_button.setEnabled(run is not None and not self.busy)
        self.resume_button.setEnabled(run is not None and run.resumable and not self.busy)
        self.export_button.setEnabled(run is not None and run.exportable)
        self.folder_button.setEnabled(run is not None)
        self.compare_button.setEnabled(len(self.selected_runs()) >= 2 and not self.busy)
        if run is None:
            # An empty table alone looks broken: say what will appear here and how.
            self.detail.setText("" if self.runs else "No runs yet. Press Train (F5) to start one; every run of "
                                "this run file appears here to reopen, resume or export. Open run folder… "
                                "shows a run from anywhere else.")
            return
        several = self.selected_runs()
        if len(several) > 1:
            self.detail.setText(f"{len(several)} runs selected: Compare (Ctrl+Shift+C) overlays their curves on the "
                                "Training plots, with the settings that differ between them.")
            return
        text = str(run.path)
        if run.holder is not None:
            text += (" · training in this window" if self.own_run and run.path == self.own_run else
                     f" · trained by {run.holder.describe()}: Open follows it; Resume and Export once it ends")
        if run.checkpoint_step:
            text += f" · newest checkpoint: step {run.checkpoint_step}"
        if run.failure:
            text += f" · failed: {run.failure}"
        self.detail.setText(text)

    def _emit(self, signal) -> None:
        run = self.selected()
        if run is not None:
            signal.emit(run.path)

    def _show_folder(self) -> None:
        run = self.selected()
        if run is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(run.path)))

    def browse(self) -> None:
        start = str(self.folders[0]) if self.folders else str(Path.home())
        chosen = dialogs.existing_dir(self, "Open a run folder", start)
        if chosen:
            self.openRequested.emit(Path(chosen))
