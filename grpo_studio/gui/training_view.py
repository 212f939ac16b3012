"""The Training page: progress with step, ETA and throughput; live plots; problems; the log.

It shows either the run in progress (fed event by event from the RunController) or a past run
(read from its run store). Both go through the same `handle_event`, so a reopened run looks
exactly like it did live.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSlider,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from grpo_studio.gui.metric_data import MetricData
from grpo_studio.gui.style import ERROR, MUTED, WARNING, monospace_font

LOG_LINES = 5000


def format_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


class Banner(QFrame):
    """A coloured box for a failure (red) or a health alarm (amber): what happened, what to try."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("banner")
        box = QVBoxLayout(self)
        box.setContentsMargins(14, 10, 14, 10)
        box.setSpacing(4)
        top = QHBoxLayout()
        self.title = QLabel()
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.title.setWordWrap(True)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        top.addWidget(self.title, 1)
        self.details_button = QPushButton("Details")
        self.details_button.setCheckable(True)
        self.details_button.toggled.connect(lambda on: self.details.setVisible(on))
        top.addWidget(self.details_button, 0, Qt.AlignmentFlag.AlignTop)
        close = QToolButton()
        close.setText("✕")
        close.setToolTip("Hide this message")
        close.clicked.connect(self.hide)
        top.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        box.addLayout(top)
        self.hint = QLabel()
        self.hint.setTextFormat(Qt.TextFormat.PlainText)
        self.hint.setWordWrap(True)
        self.hint.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.addWidget(self.hint)
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.details.setFont(monospace_font(9))
        self.details.setMaximumHeight(180)
        self.details.hide()
        box.addWidget(self.details)
        self.hide()

    def show_message(self, level: str, title: str, hint: str = "", details: str = "") -> None:
        self.setProperty("level", level)
        self.style().unpolish(self)
        self.style().polish(self)
        color = ERROR if level == "error" else WARNING
        self.title.setText(f"<b style='color:{color}'>{html.escape(title)}</b>")
        self.hint.setText(hint)
        self.hint.setVisible(bool(hint))
        self.details.setPlainText(details)
        self.details_button.setVisible(bool(details.strip()))
        self.details_button.setChecked(False)
        self.show()


class TrainingView(QWidget):
    runDirChanged = Signal(object)  # Path of the run shown, or None

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.data = MetricData()
        self.run_dir: Path | None = None
        self.reset_state()

        outer = QVBoxLayout(self)
        outer.setContentsMargins(24, 18, 24, 12)
        outer.setSpacing(10)

        head = QHBoxLayout()
        title = QLabel("Training")
        title.setObjectName("pageTitle")
        head.addWidget(title)
        head.addSpacing(12)
        self.run_label = QLabel("No run yet: press Train (F5).")
        self.run_label.setObjectName("cardSubtitle")
        self.run_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        head.addWidget(self.run_label, 1)
        outer.addLayout(head)

        progress_row = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("step %v / %m")
        self.progress.setFixedWidth(360)
        progress_row.addWidget(self.progress)
        self.progress_text = QLabel("")
        self.progress_text.setObjectName("cardSubtitle")
        progress_row.addWidget(self.progress_text, 1)
        progress_row.addWidget(QLabel("Smoothing"))
        self.smoothing = QSlider(Qt.Orientation.Horizontal)
        self.smoothing.setRange(0, 99)
        self.smoothing.setValue(60)
        self.smoothing.setFixedWidth(140)
        self.smoothing.setToolTip("Exponential moving average of the curves (raw values stay visible, faint)")
        self.smoothing_value = QLabel("0.60")
        self.smoothing_value.setFixedWidth(34)
        progress_row.addWidget(self.smoothing)
        progress_row.addWidget(self.smoothing_value)
        outer.addLayout(progress_row)

        self.banner = Banner()
        outer.addWidget(self.banner)

        # The plots (and pyqtgraph) are made when the page is first shown, not at start-up: the
        # window paints sooner, and metrics wait in `self.data` meanwhile.
        self._plots: Any = None
        self.plot_area = QWidget()
        QVBoxLayout(self.plot_area).setContentsMargins(0, 0, 0, 0)
        self.smoothing.valueChanged.connect(self._smoothing_changed)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(LOG_LINES)
        self.log.setFont(monospace_font(9))
        self.log.setPlaceholderText("Messages from the run appear here.")
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.plot_area)
        splitter.addWidget(self.log)
        splitter.setStretchFactor(0, 5)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([560, 130])
        outer.addWidget(splitter, 1)

    @property
    def plots(self) -> Any:
        """The grid of plots, made on first use."""
        if self._plots is None:
            from grpo_studio.gui.plots import PlotGrid

            self._plots = PlotGrid(self.data)
            self._plots.smoothing = self.smoothing.value() / 100
            self.plot_area.layout().addWidget(self._plots)
            if self.isVisible():
                self._plots.show()  # now, not at the layout's next pass: it may be asked to draw at once
        return self._plots

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.plots.redraw()

    def _redraw(self) -> None:
        if self._plots is not None:
            self._plots.redraw()

    # ---- state -----------------------------------------------------------------------------
    def reset_state(self) -> None:
        self.status = "idle"
        self.max_steps = 0
        self.step = 0
        self.resumed_from = 0
        self.first_metrics: tuple[float, int] | None = None
        self.last_metrics_time = 0.0
        self.tokens_per_second: float | None = None
        self.device = ""
        self.started_at = 0.0
        self.final: Any = None

    def clear(self) -> None:
        self.reset_state()
        self.data.clear()
        self.log.clear()
        self.banner.hide()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress_text.setText("")
        self._redraw()

    def begin_live(self) -> None:
        """A new run is starting: forget the shown one."""
        self.clear()
        self.run_dir = None
        self.status = "starting"
        self.run_label.setText("Starting the training process…")
        self.progress.setRange(0, 0)  # busy until the run knows its length
        self.runDirChanged.emit(None)

    def begin_resume(self) -> None:
        """The shown run is being resumed: keep its curves, the new steps continue them."""
        self.banner.hide()
        self.final = None
        self.status = "starting"
        self.first_metrics = None
        self.progress.setRange(0, 0)
        self._update_label()

    def _smoothing_changed(self, value: int) -> None:
        weight = value / 100
        self.smoothing_value.setText(f"{weight:.2f}")
        if self._plots is not None:
            self._plots.set_smoothing(weight)

    # ---- events ----------------------------------------------------------------------------
    def handle_event(self, event: Any, live: bool = True) -> None:
        kind = event.kind
        when = getattr(event, "time", None)
        if kind == "opened":
            self.run_dir = Path(event.run_dir)
            self.status = "loading"
            self.started_at = event.time
            self.run_label.setText(f"{self.run_dir.name} · loading model and data…")
            self.runDirChanged.emit(self.run_dir)
            if event.resume:
                self._log_at(when, "info", "resuming the run")
        elif kind == "log":
            self._log_at(when, event.level, event.message)
        elif kind == "started":
            self.status = "running"
            self.max_steps = event.max_steps
            self.resumed_from = event.resumed_from_step
            self.step = max(self.step, event.resumed_from_step)
            self.device = event.device
            self.progress.setRange(0, max(1, event.max_steps))
            self.progress.setValue(self.step)
            trainable = f"{event.trainable_params:,} of {event.total_params:,} parameters trainable"
            self._log_at(when, "info", f"training {event.model} on {event.device}: {trainable}; rewards: "
                                    f"{', '.join(event.reward_names)}")
            self._update_label()
        elif kind == "metrics":
            self.data.add(event.step, event.values)
            self.step = event.step
            self.max_steps = event.max_steps or self.max_steps
            if self.first_metrics is None:
                self.first_metrics = (event.time, event.step)
            self.last_metrics_time = event.time
            self.tokens_per_second = event.values.get("perf/tokens_per_second", self.tokens_per_second)
            if self.progress.maximum() != max(1, self.max_steps):
                self.progress.setRange(0, max(1, self.max_steps))
            self.progress.setValue(min(self.step, self.progress.maximum()))
            self._update_progress_text(live)
        elif kind == "checkpoint":
            self._log_at(when, "info", f"checkpoint saved at step {event.step}")
        elif kind == "alarm":
            level = "error" if event.severity == "error" else "warning"
            self._log_at(when, level, f"step {event.step}: {event.message}" + (f" — {event.advice}" if event.advice
                                                                            else ""))
            self.banner.show_message(level, f"Step {event.step}: {event.message}", event.advice)
        elif kind == "finished":
            self.final = event
            self.status = "stopped" if event.stopped else "finished"
            self.step = max(self.step, event.step)
            if event.stopped:
                self._log_at(when, "info", f"stopped at step {event.step}; Resume continues from the checkpoint")
            else:
                self._log_at(when, "info", f"finished {event.step} steps in {format_duration(event.seconds)}; "
                                        f"adapter saved in {event.adapter_dir}")
                self.progress.setRange(0, max(1, self.max_steps or event.step))
                self.progress.setValue(event.step)
            if self.progress.maximum() == 0:
                self.progress.setRange(0, 1)
            self._update_label()
            self._update_progress_text(live=False)
        elif kind == "failed":
            self.final = event
            self.status = "failed"
            if self.progress.maximum() == 0:
                self.progress.setRange(0, 1)
            self._log_at(when, "error", f"failed: {event.reason}")
            if event.details:
                self._log_at(when, "debug", event.details.rstrip())
            self.banner.show_message("error", f"Training failed: {event.reason}", event.hint, event.details)
            self._update_label()

    def append_log(self, level: str, message: str, when: float | None = None) -> None:
        color = {"error": ERROR, "warning": WARNING, "debug": MUTED, "output": MUTED}.get(level, "#1f2430")
        stamp = time.strftime("%H:%M:%S", time.localtime(when)) if when else time.strftime("%H:%M:%S")
        lines = html.escape(message).replace("\n", "<br>")
        self.log.appendHtml(f"<span style='color:{MUTED}'>{stamp}</span> <span style='color:{color}'>{lines}</span>")

    def _log_at(self, when: float | None, level: str, message: str) -> None:
        self.append_log(level, message, when)

    def append_output(self, line: str) -> None:
        """A line the worker printed (library output), shown muted."""
        self.log.appendHtml(f"<span style='color:{MUTED}'>{html.escape(line)}</span>")

    def _update_label(self) -> None:
        name = self.run_dir.name if self.run_dir else "run"
        words = {"running": "training", "loading": "loading model and data…", "stopped": "stopped (resumable)",
                 "finished": "finished", "failed": "failed", "stopping": "stopping after this step…"}
        extra = f" · {self.device}" if self.device else ""
        self.run_label.setText(f"{name} · {words.get(self.status, self.status)}{extra}")

    def set_stopping(self) -> None:
        self.status = "stopping"
        self._update_label()

    def _update_progress_text(self, live: bool) -> None:
        parts = [f"step {self.step} of {self.max_steps}"] if self.max_steps else []
        if self.first_metrics is not None and self.step > self.first_metrics[1]:
            t0, s0 = self.first_metrics
            per_step = (self.last_metrics_time - t0) / (self.step - s0)
            if live and self.status in ("running", "stopping") and self.max_steps > self.step:
                parts.append(f"ETA {format_duration(per_step * (self.max_steps - self.step))}")
            parts.append(f"{per_step:.1f} s/step" if per_step >= 1 else f"{1 / max(per_step, 1e-9):.1f} steps/s")
        if self.tokens_per_second:
            parts.append(f"{self.tokens_per_second:,.0f} tokens/s")
        self.progress_text.setText(" · ".join(parts))

    # ---- past runs -------------------------------------------------------------------------
    def show_run(self, run_dir: Path) -> None:
        """Show a past (or other process's) run from its store: curves, log, how it ended."""
        from grpo_studio.engine.store import RunStore

        self.clear()
        self.run_dir = Path(run_dir)
        with RunStore(self.run_dir, readonly=True) as store:
            meta = store.meta()
            self.data.load(store.metrics())
            events = store.events()
        self.max_steps = int(meta.get("max_steps", 0) or 0)
        self.step = max((int(s.steps[-1]) for s in self.data.series.values() if s.n), default=0)
        for event in events:
            if event.kind in ("metrics", "samples"):
                continue
            self.handle_event(event, live=False)
        status = meta.get("status", "")
        if status == "running" and self.final is None:
            self.status = "interrupted"
            self.append_log("warning", "this run has no end in its store: it is still running elsewhere, or its "
                                       "process was killed; Resume continues from the newest checkpoint")
        self.step = int(self.step)
        self.progress.setRange(0, max(1, self.max_steps))
        self.progress.setValue(min(self.step, max(1, self.max_steps)))
        self._update_label()
        self._update_progress_text(live=False)
        self.runDirChanged.emit(self.run_dir)
        self._redraw()
