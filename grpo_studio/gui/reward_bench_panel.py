"""The reward test bench in the reward editor: run the functions on real rows before training.

The functions run as the editor shows them (saved or not) on completions the user types for real
dataset rows, or that the run's model samples (a few prompts x the group size). The work happens in
a child process (reward_bench_runner.py) driven from a worker thread, so the window stays
responsive and Cancel ends it at once. The panel is in one of five states:

    idle        nothing run yet (or cancelled): what the bench does
    running     progress and the step it is at; Cancel
    cancelling  the child is being ended
    results     the tables and findings (errors included: a function that raised is a result)
    error       the bench itself could not run (the run file refused, the child died)
"""

from __future__ import annotations

import html
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from grpo_studio.gui.background import Job, run_in_background, serial_pool
from grpo_studio.gui.bench_inputs import TypedCompletionsEditor
from grpo_studio.gui.bench_results import BenchResultsView
from grpo_studio.gui.document import RunDocument
from grpo_studio.gui.field_editors import guard_wheel
from grpo_studio.gui.reward_bench_runner import BenchResult, BenchRun
from grpo_studio.gui.style import ERROR, MUTED, monospace_font

IDLE_TEXT = ("Runs the reward functions in the editor (saved or not) on real rows of the dataset, the way training "
             "calls them, in a separate process. For each function: its scores and time per call; exceptions are "
             "marked at their line; warnings say when a group's completions all score the same (zero advantage: "
             "nothing is learned) or a function never rewards anything.")
STATES = ("idle", "running", "cancelling", "results", "error")


class RewardBenchPanel(QWidget):
    stateChanged = Signal(str)
    finished = Signal(object)  # BenchResult (cancelled ones too), after the panel shows it
    findingActivated = Signal(object)  # BenchFinding with a line: show it in the editor

    def __init__(self, doc: RunDocument, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc = doc
        self.state = "idle"
        self.result: BenchResult | None = None
        self._bench: BenchRun | None = None
        self._job: Job | None = None
        self._pool = serial_pool(self)

        outer = QVBoxLayout(self)
        outer.setContentsMargins(12, 10, 12, 10)
        # Inputs above, what came out below; the user drags the handle to give either more room.
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.setChildrenCollapsible(False)
        outer.addWidget(self.splitter)
        top = QWidget()
        box = QVBoxLayout(top)
        box.setContentsMargins(0, 0, 0, 6)
        box.setSpacing(8)
        modes = QHBoxLayout()
        modes.setSpacing(16)
        self.mode_typed = QRadioButton("Typed completions")
        self.mode_typed.setToolTip("Score completions you write for chosen rows of the dataset")
        self.mode_generated = QRadioButton("Model samples")
        self.mode_generated.setToolTip("Score completions the run's model samples, as training will sample them")
        self.mode_typed.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.mode_typed)
        group.addButton(self.mode_generated)
        modes.addWidget(self.mode_typed)
        modes.addWidget(self.mode_generated)
        modes.addStretch(1)
        self.run_button = QPushButton("▶  Run the bench")
        self.run_button.setObjectName("primary")
        self.run_button.setToolTip("Run the reward functions on these completions (Ctrl+B from any page)")
        self.run_button.clicked.connect(self.run)
        modes.addWidget(self.run_button)
        box.addLayout(modes)

        self.inputs = QStackedWidget()
        self.typed = TypedCompletionsEditor(doc)
        self.inputs.addWidget(self.typed)
        self.inputs.addWidget(self._generated_inputs())
        self.mode_typed.toggled.connect(self._mode_changed)
        self._mode_changed(True)
        box.addWidget(self.inputs)

        self.note = QLabel()  # why Run did nothing, or that the last run was cancelled
        self.note.setWordWrap(True)
        self.note.hide()
        box.addWidget(self.note)
        self.splitter.addWidget(top)

        self.pages = QStackedWidget()
        self.pages.addWidget(self._idle_page())
        self.pages.addWidget(self._running_page())
        self.results = BenchResultsView()
        self.results.findingActivated.connect(self.findingActivated)
        self.results.roomWanted.connect(self._room_for_results)
        self.pages.addWidget(self.results)
        self.pages.addWidget(self._error_page())
        self.splitter.addWidget(self.pages)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        doc.changed.connect(self._update_generated_text)
        doc.changed.connect(lambda path: path == "" and self.reset())
        self._update_generated_text()
        self._set_state("idle")

    # ---- construction ----------------------------------------------------------------------
    def _generated_inputs(self) -> QWidget:
        w = QWidget()
        box = QVBoxLayout(w)
        box.setContentsMargins(0, 0, 0, 0)
        line = QHBoxLayout()
        label = QLabel("Prompts")
        line.addWidget(label)
        self.prompts = QSpinBox()
        self.prompts.setRange(1, 64)
        self.prompts.setValue(4)
        self.prompts.setToolTip("How many dataset rows (a seeded sample) to sample completions for")
        guard_wheel(self.prompts)
        self.prompts.valueChanged.connect(self._update_generated_text)
        label.setBuddy(self.prompts)
        line.addWidget(self.prompts)
        self.group_size = QLabel()
        line.addWidget(self.group_size, 1)
        box.addLayout(line)
        self.generated_note = QLabel()
        self.generated_note.setObjectName("cardSubtitle")
        self.generated_note.setWordWrap(True)
        box.addWidget(self.generated_note)
        return w

    def _mode_changed(self, typed: bool) -> None:
        self.inputs.setCurrentIndex(0 if typed else 1)
        # A stack is as tall as its tallest page unless the hidden ones give up their size.
        for i in range(self.inputs.count()):
            policy = QSizePolicy.Policy.Preferred if i == self.inputs.currentIndex() else QSizePolicy.Policy.Ignored
            self.inputs.widget(i).setSizePolicy(QSizePolicy.Policy.Preferred, policy)
        self.inputs.adjustSize()
        self._fit_inputs()

    def _fit_inputs(self) -> None:
        """The inputs pane as tall as the chosen inputs want; the rest goes to what the bench shows."""
        sizes = self.splitter.sizes()
        total = sum(sizes)
        top = self.splitter.widget(0)
        if total <= 0 or not top.layout():
            return
        layout = top.layout()
        wanted = layout.totalHeightForWidth(top.width()) if layout.hasHeightForWidth() and top.width() > 0 \
            else top.sizeHint().height()
        self.splitter.setSizes([wanted, max(total - wanted, 0)])

    def _idle_page(self) -> QWidget:
        self.idle_label = QLabel(IDLE_TEXT)
        self.idle_label.setWordWrap(True)
        self.idle_label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.idle_label.setObjectName("cardSubtitle")
        page = QWidget()
        box = QVBoxLayout(page)
        box.setContentsMargins(0, 4, 0, 0)
        box.addWidget(self.idle_label)
        box.addStretch(1)
        return page

    def _running_page(self) -> QWidget:
        page = QWidget()
        box = QVBoxLayout(page)
        box.setContentsMargins(0, 4, 0, 0)
        row = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setTextVisible(False)
        row.addWidget(self.progress, 1)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the bench now (ends its process)")
        self.cancel_button.clicked.connect(self.cancel)
        row.addWidget(self.cancel_button)
        box.addLayout(row)
        self.progress_label = QLabel()
        self.progress_label.setObjectName("cardSubtitle")
        self.progress_label.setWordWrap(True)
        box.addWidget(self.progress_label)
        box.addStretch(1)
        return page

    def _error_page(self) -> QWidget:
        page = QWidget()
        box = QVBoxLayout(page)
        box.setContentsMargins(0, 4, 0, 0)
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setTextFormat(Qt.TextFormat.RichText)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.addWidget(self.error_label)
        self.error_details = QPlainTextEdit()
        self.error_details.setReadOnly(True)
        self.error_details.setFont(monospace_font(9))
        self.error_details.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        box.addWidget(self.error_details, 1)
        return page

    def _update_generated_text(self, *_: Any) -> None:
        g = self.doc.config.grpo
        n = self.prompts.value()
        self.group_size.setText(f"× {g.num_generations} per prompt = {n * g.num_generations} completions")
        self.group_size.setToolTip("The group size is grpo.num_generations, as in training")
        model = self.doc.config.model.name or "the model"
        self.generated_note.setText(
            f"Rows picked at random (seeded), completions sampled from {model} as training samples them "
            f"(temperature {g.temperature:g}, up to {g.max_completion_length} tokens). Loads the model first: "
            "seconds for a small one, minutes for a big one.")

    # ---- running ---------------------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        assert state in STATES
        self.state = state
        page = {"idle": 0, "running": 1, "cancelling": 1, "results": 2, "error": 3}[state]
        self.pages.setCurrentIndex(page)
        busy = state in ("running", "cancelling")
        self.run_button.setEnabled(not busy)
        self.cancel_button.setEnabled(state == "running")
        self.inputs.setEnabled(not busy)
        self.mode_typed.setEnabled(not busy)
        self.mode_generated.setEnabled(not busy)
        self.stateChanged.emit(state)

    def run(self) -> None:
        if self.state in ("running", "cancelling"):
            return
        typed = None
        if self.mode_typed.isChecked():
            typed = self.typed.groups()
            if not typed:
                self._say("Type at least one completion first (one per line).", error=True)
                self.typed.completions.setFocus()
                return
        self._say("")
        self._bench = BenchRun()
        saved = self.doc.reward_path() if not self.doc.reward_modified() else None
        self.progress.setValue(0)
        self.progress_label.setText("Starting…")
        self._set_state("running")
        self._job = run_in_background(self._bench, self.doc.config.model_copy(deep=True), self.doc.path,
                                      self.doc.reward_source, typed, self.prompts.value(), saved_reward_file=saved,
                                      pool=self._pool, parent=self, with_progress=True)
        self._job.progress.connect(self._progressed)
        self._job.done.connect(self._done)
        self._job.failed.connect(lambda exc, details: self._failed(f"{type(exc).__name__}: {exc}", details))

    def cancel(self) -> None:
        if self.state != "running" or self._bench is None:
            return
        self.progress_label.setText("Cancelling…")
        self._set_state("cancelling")
        self._bench.cancel()

    def _progressed(self, message: str, fraction: float) -> None:
        if self.state == "running":
            self.progress.setValue(int(100 * max(0.0, min(1.0, fraction))))
            self.progress_label.setText(message[:1].upper() + message[1:] + "…")

    def _done(self, result: BenchResult) -> None:
        if result.cancelled:
            self._say("Cancelled.")
            self._set_state("idle")
        elif result.problem:
            self._show_error(result.problem, result.details)
        else:
            self.result = result
            self.results.show_result(result)
            self._say("")
            self._set_state("results")
            self._room_for_results()
            QTimer.singleShot(0, self._room_for_results)  # again once the results page is laid out
        self.finished.emit(result)

    def _room_for_results(self) -> None:
        """The inputs shrink to what they need, so the tables get the rest (the handle gives it back)."""
        sizes = self.splitter.sizes()
        total = sum(sizes)
        if total <= 0:
            return
        inputs = self.splitter.widget(0)
        needed = inputs.sizeHint().height()
        if inputs.layout().hasHeightForWidth():  # wrapped text: its height at the width it has
            needed = max(needed, inputs.layout().totalHeightForWidth(inputs.width()))
        # Only the typed completions' box gives up room (down to three lines); the rest stays readable.
        shrinkable = self.typed.completions.height() - self.typed.completions.minimumHeight() \
            if self.mode_typed.isChecked() else 0
        top = max(needed - max(shrinkable, 0), min(needed, total - self.results.wanted_height()))
        if sizes[0] > top:
            self.splitter.setSizes([top, total - top])

    def _failed(self, reason: str, details: str) -> None:
        self._show_error(reason, details)
        self.finished.emit(BenchResult(problem=reason, details=details))

    def _show_error(self, reason: str, details: str) -> None:
        self.error_label.setText(f"<b style='color:{ERROR}'>The bench could not run:</b> {html.escape(reason)}")
        self.error_details.setPlainText(details)
        self.error_details.setVisible(bool(details.strip()))
        self._set_state("error")

    def _say(self, text: str, error: bool = False) -> None:
        self.note.setText(text)
        self.note.setStyleSheet(f"color: {ERROR if error else MUTED};")
        self.note.setVisible(bool(text))

    def reset(self) -> None:
        """Another run file was opened (or a new one started): results of the old one would mislead."""
        if self.state == "running":
            self.cancel()
        elif self.state in ("results", "error"):
            self.result = None
            self._say("")
            self._set_state("idle")

    def shutdown(self, timeout_ms: int = 30000) -> None:
        """End a bench in progress and wait for its thread (a thread must not outlive the interpreter)."""
        if self._bench is not None:
            self._bench.cancel()
        self.typed.shutdown(timeout_ms)
        self._pool.waitForDone(timeout_ms)
