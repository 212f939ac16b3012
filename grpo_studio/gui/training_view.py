"""The Training page: progress with step, ETA and throughput; live plots; problems; the log.

It shows either the run in progress (fed event by event from the RunController) or a past run
(read from its run store on a worker thread). Both go through the same `handle_event`, so a
reopened run looks like it did live, except that its old alarms are listed quietly instead of
raising a banner: a banner is for something happening now.

A reopened run that another process still trains (it holds the run's lock) is followed read-only:
a banner names that process, the curves grow as its store does (run_follower.py), and when the
process ends the page says how the run ended (`liveChanged` tells the window to offer Resume).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QSlider, QSplitter, QVBoxLayout, QWidget

from grpo_studio.engine import metric_names
from grpo_studio.engine.events import STOPPED_BEFORE_TRAINING
from grpo_studio.engine.run_lock import lock_path
from grpo_studio.gui.banner import Banner
from grpo_studio.gui.log_view import LogView
from grpo_studio.gui.metric_data import MetricData
from grpo_studio.gui.style import title_row
from grpo_studio.gui.tasks import TaskRunner

PAST_ALARMS_LISTED = 2


def format_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


class TrainingView(QWidget):
    runDirChanged = Signal(object)  # Path of the run shown, or None
    runLoaded = Signal(object)  # a past run's store was read and shown (its Path)
    comparingChanged = Signal(bool)  # several runs overlaid (run_overlay.py) instead of one
    liveChanged = Signal()  # following a run another process trains began or ended (see `holder`)
    samplesStored = Signal(int)  # a followed run stored samples up to this step

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.data = MetricData()
        self.run_dir: Path | None = None
        self.past_alarms: list[Any] = []
        self._loading = False  # a stored run is being read
        self._load_task = TaskRunner(self)  # reads a stored run; opening another one cancels it
        self._queued: list[Any] = []  # live events that arrived while a store was being read
        self._resume_after_load = False
        self.comparison: Any = None  # run_overlay.RunComparisonView, made when first asked for
        self._refollow = False  # a run followed live when a comparison began: followed again after it
        self.holder: Any = None  # the other process that trains the shown run (a LockHolder), while it does
        self._follower: Any = None
        self._last_sample_step = 0
        self.reset_state()

        outer = QVBoxLayout(self)
        outer.setContentsMargins(24, 18, 24, 12)
        outer.setSpacing(10)

        self.run_label = QLabel("No run yet: press Train (F5).")
        self.run_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        head = title_row("Training", self.run_label)
        outer.addLayout(head)

        progress_row = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("step %v / %m")  # the step lives here; the text beside it says the rest
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

        # Who trains the shown run when another process does (and, once it has ended, how the run ended).
        self.live_banner = Banner()
        outer.addWidget(self.live_banner)
        self.banner = Banner()
        outer.addWidget(self.banner)
        # Alarms of a reopened run: history, not news. Listed quietly; the log has them in full.
        self.past_alarms_label = QLabel()
        self.past_alarms_label.setObjectName("cardSubtitle")
        self.past_alarms_label.setWordWrap(True)
        self.past_alarms_label.setTextFormat(Qt.TextFormat.PlainText)
        self.past_alarms_label.hide()
        outer.addWidget(self.past_alarms_label)

        # The plots (and pyqtgraph) are made when the page is first shown, not at start-up: the
        # window paints sooner, and metrics wait in `self.data` meanwhile.
        self._plots: Any = None
        self.plot_area = QWidget()
        QVBoxLayout(self.plot_area).setContentsMargins(0, 0, 0, 0)
        self.smoothing.valueChanged.connect(self._smoothing_changed)
        self.log = LogView()
        self.log.setMinimumHeight(48)
        self.splitter = splitter = QSplitter(Qt.Orientation.Vertical)
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
        self.plots.schedule()

    def _schedule_redraw(self) -> None:
        if self._plots is not None:
            self._plots.schedule()

    def _redraw(self) -> None:
        """Every plot at once (a screenshot); the page itself redraws through `_schedule_redraw`."""
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
        self._stop_following()
        self.live_banner.hide()
        self.reset_state()
        self.data.clear()
        self.log.clear()
        self.banner.hide()
        self.past_alarms = []
        self.past_alarms_label.hide()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress_text.setText("")
        self._schedule_redraw()

    def begin_live(self) -> None:
        """A new run is starting: forget the shown one."""
        self._refollow = False  # another run is shown instead
        self.end_comparison()
        self._loading = False  # a store still being read is not shown any more
        self._load_task.cancel()
        self._stop_following()
        self._queued = []
        self.clear()
        self.run_dir = None
        self.status = "starting"
        self.run_label.setText("Starting the training process…")
        self.progress.setRange(0, 0)  # busy until the run knows its length
        self.runDirChanged.emit(None)

    def begin_resume(self) -> None:
        """The shown run is being resumed: keep its curves, the new steps continue them."""
        self._refollow = False  # this window trains it now: nothing to follow
        self.end_comparison()
        if self._loading:
            self._resume_after_load = True  # its curves are still being read: resume once they are shown
            return
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
        if self.comparison is not None:
            self.comparison.set_smoothing(weight)

    # ---- events ----------------------------------------------------------------------------
    def handle_event(self, event: Any, live: bool = True) -> None:
        if live and self._loading:
            self._queued.append(event)  # after the stored steps, which are still being read
            return
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
            self._reached(event.step, event.max_steps, event.time,
                          event.values.get(metric_names.TOKENS_PER_SECOND, self.tokens_per_second), live)
        elif kind == "checkpoint":
            self._log_at(when, "info", f"checkpoint saved at step {event.step}")
        elif kind == "alarm":
            level = "error" if event.severity == "error" else "warning"
            self._log_at(when, level, f"step {event.step}: {event.message}" + (f"\n{event.advice}" if event.advice
                                                                            else ""))
            if live:
                self.banner.show_message(level, f"Step {event.step}: {event.message}", event.advice)
            else:
                self.past_alarms.append(event)
                self._show_past_alarms()
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
        elif kind == "failed" and event.reason == STOPPED_BEFORE_TRAINING:
            self.final = event  # Stop pressed while the model or data were loading: asked for, not a failure
            self.status = "stopped"
            if self.progress.maximum() == 0:
                self.progress.setRange(0, 1)
            self._log_at(when, "info", event.reason)
            self.banner.show_message("info", "Stopped before the first step: nothing was trained.",
                                     "Train starts the run again.")
            self._update_label()
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

    def _reached(self, step: int, max_steps: int, when: float, tokens_per_second: float | None, live: bool) -> None:
        """The run got to `step` (a metrics event, or a followed run's new rows)."""
        self.step = step
        self.max_steps = max_steps or self.max_steps
        if self.first_metrics is None:
            self.first_metrics = (when, step)
        self.last_metrics_time = when
        self.tokens_per_second = tokens_per_second
        if self.progress.maximum() != max(1, self.max_steps):
            self.progress.setRange(0, max(1, self.max_steps))
        self.progress.setValue(min(self.step, self.progress.maximum()))
        self._update_progress_text(live)

    def append_log(self, level: str, message: str, when: float | None = None) -> None:
        self.log.append_message(level, message, when)

    def _log_at(self, when: float | None, level: str, message: str) -> None:
        self.append_log(level, message, when)

    def append_output(self, line: str) -> None:
        """A line the worker printed (library output), shown muted."""
        self.log.append_output(line)

    def _show_past_alarms(self) -> None:
        alarms = self.past_alarms
        n = len(alarms)
        listed = "; ".join(f"step {a.step}: {a.message}" for a in alarms[:PAST_ALARMS_LISTED])
        more = f"; and {n - PAST_ALARMS_LISTED} more" if n > PAST_ALARMS_LISTED else ""
        self.past_alarms_label.setText(f"⚠ {n} alarm{'s' if n != 1 else ''} during this run (in full in the log "
                                       f"below): {listed}{more}")
        self.past_alarms_label.setToolTip("\n\n".join(
            f"Step {a.step}: {a.message}" + (f"\n{a.advice}" if a.advice else "") for a in alarms))
        self.past_alarms_label.show()

    def _update_label(self) -> None:
        name = self.run_dir.name if self.run_dir else "run"
        words = {"running": "training", "loading": "loading model and data…", "stopped": "stopped (resumable)",
                 "finished": "finished", "failed": "failed", "stopping": "stopping after this step…"}
        extra = f" · {self.device}" if self.device else ""
        if self.holder is not None:
            extra += " · read-only: another process trains it"
        ended_early = self.step == 0 and self.status in ("failed", "stopped", "interrupted")
        state = f"{self.status} before step 1" if ended_early else words.get(self.status, self.status)
        self.run_label.setText(f"{name} · {state}{extra}")
        # Not "step 0 / 1": a run that ended before its first step never learned its length.
        self.progress.setFormat(f"{self.status} before step 1" if ended_early else "step %v / %m")

    def trained_steps(self) -> bool:
        """Whether the shown run got past its first step (else there is nothing to resume)."""
        return self.step > 0

    def set_stopping(self) -> None:
        self.status = "stopping"
        self._update_label()

    def _update_progress_text(self, live: bool) -> None:
        parts = []  # the step itself is on the progress bar
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
        """Show a past (or other process's) run from its store: curves, log, how it ended.

        The store is read on a worker thread (a long run has hundreds of thousands of metric rows);
        `runLoaded` says when it is on screen. Live events of a resumed run that arrive meanwhile wait."""
        from grpo_studio.gui.stored_run import read_stored_run

        self._refollow = False  # another run is shown instead
        self.end_comparison()
        self.clear()  # and stop following the run shown before
        self.run_dir = Path(run_dir)
        self._loading = True
        self._queued = []
        self._resume_after_load = False
        self.run_label.setText(f"{self.run_dir.name} · reading the run…")
        self.progress.setRange(0, 0)
        self.runDirChanged.emit(self.run_dir)
        run_dir = self.run_dir
        self._load_task.start(lambda state: read_stored_run(run_dir), self._apply_stored,
                              lambda exc, details: self._load_failed(exc))

    def is_loading(self) -> bool:
        return bool(self._loading)

    def _apply_stored(self, stored: Any) -> None:
        meta = stored.meta
        self.data.load(stored.metrics)
        self.max_steps = int(meta.get("max_steps", 0) or 0)
        self.step = max((int(s.steps[-1]) for s in self.data.series.values() if s.n), default=0)
        for event in stored.events:
            self.handle_event(event, live=False)
        status = meta.get("status", "")
        if stored.holder is not None and not self._resume_after_load:
            self._follow(stored)  # another process trains it now: show it live, read-only
        elif status == "running" and self.final is None:
            self.status = "interrupted"
            # Its process took the run's lock and nobody holds it now: it is dead. (Runs trained before the
            # lock existed cannot tell.)
            how = "its process was killed or crashed" if lock_path(self.run_dir).is_file() else \
                "it is still running elsewhere, or its process was killed"
            self.append_log("warning", f"this run has no end in its store: {how}; Resume continues from the newest "
                                       "checkpoint")
        self.step = int(self.step)
        self.progress.setRange(0, max(1, self.max_steps))
        self.progress.setValue(min(self.step, max(1, self.max_steps)))
        self._update_label()
        self._update_progress_text(live=False)
        self._finish_load()

    # ---- a run another process trains -----------------------------------------------------------
    def _follow(self, stored: Any) -> None:
        from grpo_studio.gui.run_follower import RunFollower

        self.holder = stored.holder
        self._last_sample_step = stored.last_sample_step
        self._show_holder()
        self._follower = RunFollower(self.run_dir, self.step, stored.last_event_id, parent=self)
        self._follower.updated.connect(self._followed)
        self._follower.failed.connect(lambda reason: self.run_label.setText(
            f"{self.run_dir.name} · cannot read its store just now ({reason}); trying again"))
        self.liveChanged.emit()

    def _show_holder(self) -> None:
        who = self.holder.describe() if self.holder.pid else "another process"
        self.live_banner.show_message(
            "live", f"Trained by {who}: shown read-only, following it as it trains",
            "Resume and Export become available when it ends. To stop it: its window's Stop, or Ctrl-C in its "
            "terminal.")

    def _followed(self, update: Any) -> None:
        """What a followed run added since the last read: steps, events, samples; its end."""
        if update.metrics:
            self.data.load(update.metrics)
            last = max(int(steps[-1]) for steps, _ in update.metrics.values())
            self._reached(max(last, self.step), int(update.meta.get("max_steps", 0) or 0),
                          float(update.meta.get("updated", 0) or 0) or time.time(),
                          self.data.latest(metric_names.TOKENS_PER_SECOND), live=True)
        for event in update.events:
            self.handle_event(event)  # alarms raise a banner: they are news now
        if update.last_sample_step > self._last_sample_step:
            self._last_sample_step = update.last_sample_step
            self.samplesStored.emit(update.last_sample_step)
        if update.holder is None:
            self._followed_run_ended()
        elif not update.holder.pid or not self.holder.pid:  # the holder's note was being written: now known
            if update.holder.pid and not self.holder.pid:
                self.holder = update.holder
                self._show_holder()
        elif update.holder != self.holder:
            # Another process took over (ended, then resumed): it replays steps from its checkpoint.
            self.show_run(self.run_dir)
            return
        self._update_label()

    def _followed_run_ended(self) -> None:
        holder, self.holder = self.holder, None
        self._stop_following()
        who = holder.describe() if holder is not None and holder.pid else "another process"
        if self.final is None:
            self.status = "interrupted"
            self.append_log("warning", f"the process that trained this run ({who}) ended without saying how: "
                                       "killed or crashed; Resume continues from the newest checkpoint")
        how = {"finished": f"it finished {self.step} steps", "stopped": f"it stopped at step {self.step}",
               "failed": "the run failed", "interrupted": "it ended without saying how (killed or crashed)"}
        self.live_banner.show_message(
            "info", f"The process that trained this run ({who}) has ended: {how.get(self.status, self.status)}",
            "Resume and Export are available now." if self.step else "")
        self._update_label()
        self._update_progress_text(live=False)
        self.liveChanged.emit()

    def _stop_following(self) -> None:
        if self._follower is not None:
            self._follower.stop()
            self._follower.deleteLater()
            self._follower = None
        if self.holder is not None:
            self.holder = None
            self.liveChanged.emit()

    def shutdown(self) -> None:
        """The window is closing: no read may outlive it, and nobody is told that following ended (the
        other pages are closing too)."""
        if self._follower is not None:
            self._follower.shutdown()
        self.blockSignals(True)
        self._stop_following()
        self.blockSignals(False)
        self._load_task.shutdown()
        if self.comparison is not None:
            self.comparison.reading.shutdown()

    def _load_failed(self, exc: BaseException) -> None:
        self.progress.setRange(0, 1)
        self.status = "unreadable"
        self._update_label()
        self.banner.show_message("error", f"Cannot read the run: {exc}",
                                 "Its run.db may be damaged, or still being written by another program.")
        self._finish_load()

    def _finish_load(self) -> None:
        self._loading = False
        if self._resume_after_load:
            self._resume_after_load = False
            self.begin_resume()
        queued, self._queued = self._queued, []
        for event in queued:
            self.handle_event(event)
        self.runDirChanged.emit(self.run_dir)
        self._schedule_redraw()
        self.runLoaded.emit(self.run_dir)

    # ---- comparing runs --------------------------------------------------------------------
    def show_comparison(self, run_dirs: list[Path]) -> None:
        """Several runs' curves overlaid on the same plots, with the settings that differ beside them,
        in place of one run's; `end_comparison` (or opening or starting a run) goes back."""
        from grpo_studio.gui.run_overlay import RunComparisonView

        if self.comparison is None:
            self.comparison = RunComparisonView(self.smoothing.value() / 100)
            self.comparison.hide()
            self.comparison.closeRequested.connect(self.end_comparison)
            self.layout().addWidget(self.comparison, 1)
        if not self.comparing():
            # A run followed live is let go meanwhile (its updates would write over the comparison) and
            # followed again from its store when the comparison ends.
            self._refollow = self.holder is not None
            self._stop_following()
            self._single_run_shown = (self.banner.isVisible(), self.past_alarms_label.isVisible())
            for widget in (self.progress, self.banner, self.live_banner, self.past_alarms_label, self.splitter):
                widget.hide()
            self.progress_text.setText("")  # (kept: its stretch keeps the smoothing slider on the right)
            self.comparison.show()
        self.comparison.set_runs(run_dirs)
        self.run_label.setText(f"comparing {len(run_dirs)} runs: their curves overlaid, the settings that differ "
                               "on the right")
        self.run_label.setToolTip("\n".join(str(d) for d in run_dirs))
        self.comparingChanged.emit(True)

    def comparing(self) -> bool:
        return self.comparison is not None and not self.comparison.isHidden()  # (hidden: one run shown)

    def end_comparison(self) -> None:
        if not self.comparing():
            return
        self.comparison.hide()
        banner, alarms = self._single_run_shown
        for widget, shown in ((self.progress, True), (self.splitter, True), (self.banner, banner),
                              (self.past_alarms_label, alarms)):
            widget.setVisible(shown)
        self._update_progress_text(live=False)
        self.run_label.setToolTip("")
        if self._refollow and self.run_dir is not None:
            self._refollow = False
            self.comparingChanged.emit(False)
            self.show_run(self.run_dir)  # its process may still train it: followed again from its store
            return
        if self.run_dir is None:
            self.run_label.setText("No run yet: press Train (F5).")
        else:
            self._update_label()
        self._redraw()
        self.comparingChanged.emit(False)
