"""The Evaluate page: did training help? The base model and the run's adapter (or a checkpoint) answer
the same held-out prompts greedily, the run's correctness reward judges both, and every prompt is
marked fixed / broken / both right / both wrong by training.

The evaluation runs in a child process (the `eval` task of engine/child_tasks.py, a TaskRunner's
work through child_runner.run_in_child): the window never loads a model. Its result is stored with
the run (RUN_DIR/evals/, the engine's eval_compare store) and shown again whenever the run is
reopened.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from grpo_studio.engine.child_process import describe_end
from grpo_studio.gui.adapter_combo import fill_adapter_combo
from grpo_studio.gui.child_runner import run_in_child
from grpo_studio.gui.eval_results import EvalResults, pct
from grpo_studio.gui.style import ERROR, title_row
from grpo_studio.gui.tasks import TaskRunner

EMPTY_NO_RUN = ("<b>No run to evaluate.</b><br>Open a run on the Runs page (Ctrl+8), or train one (F5). "
                "Evaluate then compares the base model with what training made of it, on the held-out prompts.")


class EvaluateView(QWidget):
    evaluated = Signal(object)  # a Comparison: evaluated now, or read from the run's store
    failed = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.run_dir: Path | None = None
        self.training = False  # a run is training: no second model on the same machine
        self.stored: list[Any] = []  # StoredEval entries of the run, newest first
        self._stale = False
        self._listed_run: Path | None = None  # the run whose adapters the picker lists
        self.task = TaskRunner(self)  # the evaluation, in a child process; a new run or Cancel drops it
        outer = QVBoxLayout(self)
        outer.setContentsMargins(24, 18, 24, 12)
        outer.setSpacing(10)
        self.subtitle = QLabel("base model vs. a trained adapter, on the held-out prompts")
        self.subtitle.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        outer.addLayout(title_row("Evaluate", self.subtitle))

        controls = QHBoxLayout()
        controls.setSpacing(8)
        controls.addWidget(QLabel("Base model vs."))
        self.adapter = QComboBox()
        self.adapter.setMinimumWidth(150)
        self.adapter.setToolTip("What to compare with the base model: the run's final adapter or one of its "
                                "checkpoints")
        controls.addWidget(self.adapter)
        controls.addSpacing(8)
        controls.addWidget(QLabel("Prompts"))
        self.limit = QSpinBox()
        self.limit.setRange(0, 1_000_000)
        self.limit.setSpecialValueText("all")
        self.limit.setMinimumWidth(90)
        self.limit.setToolTip("Evaluate only the first N held-out prompts (all: the whole split, or eval.limit)")
        controls.addWidget(self.limit)
        self.evaluate_button = QPushButton("Evaluate")
        self.evaluate_button.setObjectName("primary")
        self.evaluate_button.setToolTip("Both models answer every held-out prompt, greedily, in a separate process "
                                        "(F8)")
        self.evaluate_button.clicked.connect(self.start)
        controls.addWidget(self.evaluate_button)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the evaluation now (Esc); nothing is stored")
        self.cancel_button.setShortcut("Esc")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.hide()
        controls.addWidget(self.cancel_button)
        controls.addStretch(1)
        outer.addLayout(controls)
        status_row = QHBoxLayout()  # a line of its own: progress text and failures need the width
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress.setFixedWidth(240)
        self.progress.hide()
        status_row.addWidget(self.progress)
        self.status = QLabel()
        self.status.setTextFormat(Qt.TextFormat.RichText)
        self.status.setObjectName("cardSubtitle")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        status_row.addWidget(self.status, 1)
        outer.addLayout(status_row)

        stored_row = QHBoxLayout()
        self.stored_label = QLabel("Stored results")
        stored_row.addWidget(self.stored_label)
        self.stored_box = QComboBox()
        self.stored_box.setMinimumWidth(360)
        self.stored_box.setToolTip("Earlier evaluations of this run, kept in its evals/ folder")
        self.stored_box.activated.connect(lambda i: self.show_stored(i))
        stored_row.addWidget(self.stored_box)
        stored_row.addStretch(1)
        outer.addLayout(stored_row)

        self.pages = QStackedWidget()
        self.empty = QLabel(EMPTY_NO_RUN)
        self.empty.setTextFormat(Qt.TextFormat.RichText)
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setObjectName("cardSubtitle")
        self.empty.setContentsMargins(80, 0, 80, 80)
        self.results = EvalResults()
        self.pages.addWidget(self.empty)
        self.pages.addWidget(self.results)
        outer.addWidget(self.pages, 1)
        self._update()

    # ---- which run --------------------------------------------------------------------------------
    def set_run(self, run_dir: Path | None) -> None:
        """The run the window shows; its stored results are read when the page is visible."""
        run_dir = Path(run_dir) if run_dir else None
        if run_dir == self.run_dir and not self._stale:
            return
        was_running = self.running()
        self.task.cancel()
        self.run_dir = run_dir
        self.status.setText("The evaluation was cancelled: training started, or another run was opened."
                            if was_running else "")
        if self.isVisible():
            self.refresh()
        else:
            self._stale = True

    def set_training(self, training: bool) -> None:
        ended, self.training = self.training and not training, training
        if ended and self.run_dir is not None:  # the run that ended may have a new adapter
            self._stale = True
            if self.isVisible():
                self.refresh()
        self._update()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._stale:
            self.refresh()

    def refresh(self) -> None:
        """Read the run's adapters and stored results; show the newest whole-split result."""
        from grpo_studio.engine.eval_compare import latest_eval, list_evals

        self._stale = False
        # Re-reading the same run (training added checkpoints) keeps the adapter the user picked.
        fill_adapter_combo(self.adapter, self.run_dir, keep_current=self.run_dir == self._listed_run)
        self._listed_run = self.run_dir
        self.stored = []
        comparison = None
        if self.run_dir is not None:
            self.stored = list_evals(self.run_dir)
            comparison = latest_eval(self.run_dir, stored=self.stored)
        self._fill_stored(comparison.name if comparison else None)
        if comparison is not None:
            self._show(comparison)
        else:
            self.results.comparison = None
        self._update()

    def _fill_stored(self, selected: str | None) -> None:
        self.stored_box.clear()
        for entry in self.stored:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.created))
            self.stored_box.addItem(f"base vs. {entry.tuned_label} · {entry.n} prompts · "
                                    f"{pct(entry.base_accuracy)} → {pct(entry.tuned_accuracy)} · {when}")
            if entry.name == selected:
                self.stored_box.setCurrentIndex(self.stored_box.count() - 1)

    def show_stored(self, index: int) -> None:
        from grpo_studio.engine.eval_compare import load_eval
        from grpo_studio.engine.evaluate import EvalError

        if not 0 <= index < len(self.stored):
            return
        try:
            self._show(load_eval(self.stored[index].path))
        except EvalError as exc:
            self._say_error(str(exc))

    def _show(self, comparison: Any) -> None:
        self.results.show_comparison(comparison)
        self.pages.setCurrentWidget(self.results)
        t = comparison.tuned
        self.subtitle.setText(f"{self.run_dir.name if self.run_dir else ''} · base model vs. {t.label} on "
                              f"{t.n} held-out prompts · correct = {comparison.correctness}")
        index = self.adapter.findText(t.label)
        if index >= 0:
            self.adapter.setCurrentIndex(index)
        self.evaluated.emit(comparison)

    def _update(self) -> None:
        running = self.running()
        has_adapter = self.adapter.count() > 0
        self.evaluate_button.setEnabled(self.run_dir is not None and has_adapter and not running and not self.training)
        self.adapter.setEnabled(not running and has_adapter)
        self.limit.setEnabled(not running)
        self.cancel_button.setVisible(running)
        self.progress.setVisible(running)
        several = len(self.stored) > 1
        self.stored_label.setVisible(several)
        self.stored_box.setVisible(several)
        if self.training and not running:
            self.evaluate_button.setToolTip("A run is training: evaluate when it has ended")
        else:
            self.evaluate_button.setToolTip("Both models answer every held-out prompt, greedily, in a separate "
                                            "process (F8)")
        if self.results.comparison is not None:
            return
        self.pages.setCurrentWidget(self.empty)
        if self.run_dir is None:
            self.subtitle.setText("base model vs. a trained adapter, on the held-out prompts")
            self.empty.setText(EMPTY_NO_RUN)
        elif not has_adapter:
            self.subtitle.setText(self.run_dir.name)
            self.empty.setText(f"<b>{html.escape(self.run_dir.name)} has no adapter yet.</b><br>A run saves one at "
                               "each checkpoint and when it finishes; evaluate it then.")
        elif running:
            self.subtitle.setText(f"{self.run_dir.name} · evaluating")
            self.empty.setText("<b>Evaluating…</b><br>The base model answers every held-out prompt first, then the "
                               "adapter; both are judged, and the result appears here.")
        else:
            self.subtitle.setText(f"{self.run_dir.name} · not evaluated yet")
            self.empty.setText(
                "<b>No evaluation of this run yet.</b><br>Press <b>Evaluate</b> (F8): the base model and the "
                "adapter answer the same held-out prompts greedily, the run's correctness reward judges both, "
                "and each prompt is marked <i>fixed</i> or <i>broken</i> by training. The result is stored "
                "with the run.")

    # ---- evaluating -------------------------------------------------------------------------------
    def running(self) -> bool:
        return self.task.is_running()

    def start(self) -> None:
        """Evaluate base vs. the chosen adapter in a child process (F8)."""
        from grpo_studio.engine.child_messages import EvalRequest

        if self.running() or self.run_dir is None or not self.evaluate_button.isEnabled():
            return
        request = EvalRequest(run_dir=str(self.run_dir), adapter=self.adapter.currentText() or None,
                              limit=self.limit.value())
        self.task.start(lambda state: run_in_child(request, state), self._ended,
                        lambda exc, details: self._say_error(f"{type(exc).__name__}: {exc}"), self._progressed)
        self.progress.setValue(0)
        self.status.setText("starting the evaluation process…")
        self._update()

    def cancel(self) -> None:
        """End the evaluation's process now (Esc); nothing is stored."""
        if self.running():
            self.task.cancel()
            self.status.setText("Cancelled: nothing was stored.")
            self._update()

    def shutdown(self) -> None:
        self.task.shutdown()

    def _progressed(self, text: str, fraction: float) -> None:
        self.progress.setValue(int(fraction * 1000))
        self.status.setText(html.escape(text))

    def _ended(self, outcome: Any) -> None:
        """The child ended (never called for a cancelled evaluation: its outcome is dropped)."""
        self._update()
        result = outcome.result
        if result is None or result.kind != "eval_stored":  # refused (a TaskFailed), or it died without a word
            self._say_error(getattr(result, "reason", "") or describe_end(outcome.returncode, outcome.log_tail,
                                                                            "evaluation"))
            return
        from grpo_studio.engine.eval_compare import list_evals, load_eval

        comparison = load_eval(result.path)
        self.stored = list_evals(self.run_dir) if self.run_dir else []
        self._fill_stored(comparison.name)
        self._show(comparison)
        self._update()
        b, t = comparison.base, comparison.tuned
        self.status.setText(f"Done: {pct(b.accuracy)} → {pct(t.accuracy)} in {b.seconds + t.seconds:.0f} s; "
                            "stored with the run.")

    def _say_error(self, text: str) -> None:
        self.status.setText(f"<span style='color:{ERROR}'>Evaluation failed: {html.escape(text)}</span>")
        self.failed.emit(text)
        self._update()
