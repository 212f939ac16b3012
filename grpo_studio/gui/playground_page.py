"""The Playground page: one prompt, answered by the base model and by a trained adapter side by side,
tokens streaming in, each answer scored by the run's reward functions on the spot.

The model lives in a child process (the `playground` task of engine/child_tasks.py, through
child_runner.py's ChildRunner) that loads it once and keeps it while the page is in use: it is let
go a few minutes after the page is left, when another run is shown, and at once when training
starts (the GPU is needed there). A crashed child is started again by the next Generate.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut, QTextCursor
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from grpo_studio.engine.child_process import describe_end
from grpo_studio.gui.adapter_combo import fill_adapter_combo
from grpo_studio.gui.child_runner import ChildRunner
from grpo_studio.gui.style import ERROR, MUTED, monospace_font, title_row

UNLOAD_AFTER_MS = 3 * 60 * 1000  # the page was left: free the model's memory after this long
NO_RUN = "Open a run (Runs page, Ctrl+8) or train one: the playground answers with its base model and its adapter."


class AnswerPane(QFrame):
    """One model's answer: a title, the text as it streams in, its reward scores."""

    def __init__(self, title: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("card")
        box = QVBoxLayout(self)
        box.setContentsMargins(12, 10, 12, 10)
        box.setSpacing(6)
        self.title = QLabel(title)
        self.title.setObjectName("cardTitle")
        box.addWidget(self.title)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setFont(monospace_font(10))
        self.text.setPlaceholderText("The answer streams in here.")
        box.addWidget(self.text, 1)
        self.scores = QLabel()
        self.scores.setTextFormat(Qt.TextFormat.RichText)
        self.scores.setWordWrap(True)
        self.scores.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.scores.setToolTip("The run's reward functions on this answer, as training scores it")
        box.addWidget(self.scores)

    def clear(self) -> None:
        self.text.clear()
        self.scores.setText("")

    def append(self, delta: str) -> None:
        cursor = self.text.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(delta)
        self.text.setTextCursor(cursor)

    def show_scores(self, answer: Any) -> None:
        parts = []
        for name, value in answer.rewards.items():
            parts.append(f"{html.escape(name)} <b>{'–' if value is None else f'{value:.2f}'}</b>")
        for name, why in answer.reward_errors.items():
            short = why.split(" (")[0] if why.startswith("no ground truth") else why
            parts.append(f"{html.escape(name)} <b>–</b> <span style='color:{ERROR}'>({html.escape(short)})</span>")
        self.scores.setToolTip("The run's reward functions on this answer, as training scores it" + "".join(
            f"\n{name}: {why}" for name, why in answer.reward_errors.items()))
        total = "" if answer.total is None else f" · total <b>{answer.total:.2f}</b>"
        cut = f" · <span style='color:{ERROR}'>cut at max tokens</span>" if answer.truncated else ""
        self.scores.setText(" · ".join(parts) + total +
                            f"<span style='color:{MUTED}'> · {answer.tokens} tokens</span>{cut}")


class PlaygroundView(QWidget):
    sampled = Signal(object)  # a Sampled reply (both answers, scored)
    ready = Signal(object)  # the child loaded the model: a PlaygroundReady

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.run_dir: Path | None = None
        self.runner: ChildRunner | None = None
        self.info: Any = None  # the child's PlaygroundReady
        self.pending: Any = None  # a Sample waiting for the model to load
        self.generating: int | None = None  # id of the sample in flight
        self._next_id = 0
        self.training = False
        self.unload_timer = QTimer(self)
        self.unload_timer.setSingleShot(True)
        self.unload_timer.setInterval(UNLOAD_AFTER_MS)
        self.unload_timer.timeout.connect(self.release)

        outer = QVBoxLayout(self)
        outer.setContentsMargins(24, 18, 24, 12)
        outer.setSpacing(10)
        self.subtitle = QLabel(NO_RUN)
        self.subtitle.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        outer.addLayout(title_row("Playground", self.subtitle))

        top = QHBoxLayout()
        top.setSpacing(16)
        left = QVBoxLayout()
        left.setSpacing(4)
        prompt_label = QLabel("Prompt")
        prompt_label.setObjectName("fieldLabel")
        left.addWidget(prompt_label)
        self.prompt = QPlainTextEdit()
        self.prompt.setPlaceholderText("Type a prompt, or pick a held-out row on the right. Ctrl+Enter answers it.")
        self.prompt.setToolTip("The prompt column's text: the run's prompt template, system prompt and chat "
                               "template are applied to it, as in training")
        self.prompt.setFixedHeight(92)
        left.addWidget(self.prompt)
        self.how = QLabel()
        self.how.setObjectName("cardSubtitle")
        self.how.setWordWrap(True)
        left.addWidget(self.how)
        left.addStretch(1)
        top.addLayout(left, 3)

        form = QFormLayout()
        form.setHorizontalSpacing(10)
        form.setVerticalSpacing(6)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.row = QComboBox()
        self.row.setMinimumWidth(260)
        self.row.setPlaceholderText("none: a typed prompt")
        self.row.setToolTip("A row of the run's held-out split: its prompt, and its ground truth for the rewards")
        self.row.activated.connect(self._row_chosen)
        form.addRow("Dataset row", self.row)
        self.answer = QLineEdit()
        self.answer.setPlaceholderText("ground truth, for the rewards")
        self.answer.setToolTip("Passed to the reward functions as the `answer` column (a held-out row fills it)")
        form.addRow("Answer", self.answer)
        self.adapter = QComboBox()
        self.adapter.setToolTip("The right-hand side answers with this adapter: the run's final one or a checkpoint")
        form.addRow("Adapter", self.adapter)
        knobs = QHBoxLayout()
        knobs.setSpacing(8)  # nested rows of the form get no spacing: "Max tokens" touched its box
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.0, 2.0)
        self.temperature.setSingleStep(0.1)
        self.temperature.setDecimals(2)
        self.temperature.setSpecialValueText("0 (greedy)")
        self.temperature.setMinimumWidth(110)
        self.temperature.setToolTip("0: greedy, the most likely token each time (as Evaluate does); higher: sampled, "
                                    "more varied")
        knobs.addWidget(self.temperature)
        knobs.addSpacing(12)
        knobs.addWidget(QLabel("Max tokens"))
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(1, 32768)
        self.max_tokens.setValue(64)
        self.max_tokens.setToolTip("Stop each answer after this many tokens (the run's max_completion_length "
                                   "to begin with)")
        knobs.addWidget(self.max_tokens)
        knobs.addStretch(1)
        form.addRow("Temperature", knobs)
        buttons = QHBoxLayout()
        buttons.setSpacing(8)
        self.generate_button = QPushButton("Generate")
        self.generate_button.setObjectName("primary")
        self.generate_button.setToolTip("Answer the prompt with both models, side by side (Ctrl+Enter)")
        self.generate_button.clicked.connect(self.generate)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop the answers where they are (Esc)")
        self.stop_button.clicked.connect(self.stop)
        buttons.addWidget(self.generate_button)
        buttons.addWidget(self.stop_button)
        buttons.addStretch(1)
        form.addRow("", buttons)
        top.addLayout(form, 2)
        outer.addLayout(top)
        for keys in ("Ctrl+Return", "Ctrl+Enter"):
            QShortcut(QKeySequence(keys), self, activated=self.generate,
                      context=Qt.ShortcutContext.WidgetWithChildrenShortcut)
        QShortcut(QKeySequence("Esc"), self, activated=self.stop, context=Qt.ShortcutContext.WidgetWithChildrenShortcut)

        self.status = QLabel()
        self.status.setTextFormat(Qt.TextFormat.RichText)
        self.status.setObjectName("cardSubtitle")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        outer.addWidget(self.status)
        panes = QHBoxLayout()
        panes.setSpacing(12)
        self.panes = [AnswerPane("Base model"), AnswerPane("With the adapter")]
        for pane in self.panes:
            panes.addWidget(pane, 1)
        outer.addLayout(panes, 1)
        self._update()

    # ---- the run and the child --------------------------------------------------------------------
    def set_run(self, run_dir: Path | None) -> None:
        run_dir = Path(run_dir) if run_dir else None
        if run_dir == self.run_dir:
            return
        self.release()
        self.run_dir = run_dir
        self.info = None
        self.row.clear()
        fill_adapter_combo(self.adapter, run_dir)
        for pane in self.panes:
            pane.clear()
        self.status.setText("")
        if run_dir is not None and self.isVisible():
            self.load()
        self._update()

    def set_training(self, training: bool) -> None:
        """Training needs the memory: let the model go while a run trains."""
        ended, self.training = self.training and not training, training
        if training:
            self.release()
        elif ended and self.run_dir is not None:  # the run that ended may have new adapters
            fill_adapter_combo(self.adapter, self.run_dir, keep_current=True)
        self._update()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.unload_timer.stop()
        if not self.loaded():
            self.load()

    def hideEvent(self, event) -> None:
        super().hideEvent(event)
        if self.loaded():
            self.unload_timer.start()

    def loaded(self) -> bool:
        """The child runs (loading or holding the model)."""
        return self.runner is not None and self.runner.running()

    def load(self) -> None:
        """Start the child that loads the run's base model and adapter (once; then it stays)."""
        from grpo_studio.engine.child_messages import PlaygroundOpen

        if self.loaded() or self.run_dir is None or self.training or self.adapter.count() == 0:
            self._update()
            return
        self.info = None
        self.runner = runner = ChildRunner(self)
        runner.reply.connect(lambda message: runner is self.runner and self._reply(message))
        runner.ended.connect(lambda code, tail: self._ended(runner, code, tail))
        try:
            runner.start(PlaygroundOpen(run_dir=str(self.run_dir), adapter=self.adapter.currentText() or None))
        except OSError as exc:
            self._say(f"<span style='color:{ERROR}'>Cannot start the model process: {html.escape(str(exc))}</span>")
            return
        self._say("Loading the base model and the adapter in a separate process…")
        self._update()

    def release(self) -> None:
        """Let the model go: its process ends (its memory with it)."""
        self.unload_timer.stop()
        runner, self.runner = self.runner, None
        if runner is not None and runner.running():
            runner.cancel()
        self.info = None
        self.pending = None
        self.generating = None
        if self.run_dir is not None and runner is not None:
            self._say("The model was let go to free its memory; Generate loads it again.")
        self._update()

    shutdown = release

    # ---- prompts ------------------------------------------------------------------------------------
    def _row_chosen(self, index: int) -> None:
        if self.info is None or not 0 <= index < len(self.info.rows):
            return
        row = self.info.rows[index]
        self.prompt.setPlainText(row.text)
        self.answer.setText(row.answer or "")

    def generate(self) -> None:
        """Both models answer the prompt (Ctrl+Enter)."""
        from grpo_studio.engine.child_messages import Sample

        if not self.generate_button.isEnabled():
            return
        text = self.prompt.toPlainText()
        if not text.strip():
            self._say("Type a prompt first, or pick a dataset row.")
            self.prompt.setFocus()
            return
        self._next_id += 1
        row = self.row.currentIndex() if self.info is not None and self.row.currentIndex() >= 0 else None
        sample = Sample(id=self._next_id, text=text, row=row, answer=self.answer.text() or None,
                        adapter=self.adapter.currentText() or None, temperature=self.temperature.value(),
                        max_tokens=self.max_tokens.value())
        for pane in self.panes:
            pane.clear()
        self.panes[1].title.setText(f"With {sample.adapter or 'the adapter'}")
        self.generating = sample.id
        if self.info is None:
            self.pending = sample  # sent once the model is loaded
            if not self.loaded():
                self.load()
        else:
            self._send(sample)
        self._update()

    def _send(self, sample: Any) -> None:
        self.pending = None
        if not self.runner.send(sample):
            self.generating = None
            self._say(f"<span style='color:{ERROR}'>The model process is gone; Generate starts it again.</span>")
            return
        self._say("Generating…")

    def stop(self) -> None:
        from grpo_studio.engine.child_messages import StopSampling

        if self.generating is None:
            return
        if self.pending is not None:  # still loading: nothing to stop yet but the wish
            self.pending = None
            self.generating = None
            self._say("Stopped before the model had loaded.")
            self._update()
            return
        self.runner.send(StopSampling())

    # ---- replies ------------------------------------------------------------------------------------
    def _reply(self, message: Any) -> None:
        kind = message.kind
        if kind == "progress":
            self._say(html.escape(message.message[:1].upper() + message.message[1:]) + "…")
        elif kind == "playground_ready":
            self._ready(message)
        elif kind == "tokens" and message.id == self.generating:
            for pane, delta in zip(self.panes, message.deltas):
                if delta:
                    pane.append(delta)
        elif kind == "sampled" and message.id == self.generating:
            self.generating = None
            for pane, answer in zip(self.panes, message.answers):
                pane.text.setPlainText(answer.text)  # the final text (what streamed may lack a last piece)
                pane.show_scores(answer)
            self.panes[1].title.setText(f"With {message.answers[1].label}")
            stopped = "stopped · " if message.stopped else ""
            self._say(f"{stopped}{message.seconds:.1f} s on {self.info.device if self.info else '?'} · "
                      f"the model saw: {html.escape(repr(message.prompt))}")
            self.sampled.emit(message)
        elif kind == "task_failed":
            self.generating = None
            self._say(f"<span style='color:{ERROR}'>{html.escape(message.reason)}</span>")
        self._update()

    def _ready(self, info: Any) -> None:
        self.info = info
        current_row = self.row.currentIndex()
        self.row.clear()
        for row in info.rows:
            answer = f"   → {row.answer}" if row.answer is not None else ""
            self.row.addItem(f"#{row.index}  {row.text.splitlines()[0][:60] if row.text else ''}{answer}")
        self.row.setToolTip(f"The first {len(info.rows)} rows of the run's {info.rows_from}: the prompt, and its "
                            "ground truth for the rewards")
        if 0 <= current_row < self.row.count():
            self.row.setCurrentIndex(current_row)
        else:
            self.row.setCurrentIndex(-1)
        if self.max_tokens.value() == 64 and info.max_tokens != 64 and self.generating is None:
            self.max_tokens.setValue(info.max_tokens)
        system = info.system_prompt.strip()
        self.how.setText(
            f"Prompt template {info.template!r} · system prompt: "
            f"{repr(system[:60] + ('…' if len(system) > 60 else '')) if system else 'none'} · chat template: "
            f"{'on' if info.chat else 'off'} · rewards: {', '.join(info.rewards) or 'none'}")
        self.how.setToolTip(f"As in training.\nSystem prompt:\n{info.system_prompt or '(none)'}")
        self.temperature.setToolTip(f"0: greedy, the most likely token each time (as Evaluate does); higher: sampled, "
                                    f"more varied (the run trained at {info.temperature:g})")
        self._say(f"{Path(info.model).name} and its adapters are loaded on {info.device}, in a separate process.")
        self.ready.emit(info)
        if self.pending is not None:
            self._send(self.pending)

    def _ended(self, runner: ChildRunner, code: int, tail: str) -> None:
        if runner is not self.runner:
            return  # let go on purpose
        self.runner = None
        self.info = None
        self.generating = None
        self.pending = None
        self._say(f"<span style='color:{ERROR}'>{html.escape(describe_end(code, tail, 'model'))}</span> "
                  "Generate starts it again.")
        self._update()

    # ---- state --------------------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        self.status.setText(text)

    def _update(self) -> None:
        busy = self.generating is not None
        usable = self.run_dir is not None and self.adapter.count() > 0 and not self.training
        self.generate_button.setEnabled(usable and not busy)
        self.stop_button.setEnabled(busy)
        self.adapter.setEnabled(usable and not busy)
        self.row.setEnabled(self.info is not None)
        if self.run_dir is None:
            self.subtitle.setText(NO_RUN)
        elif self.adapter.count() == 0:
            self.subtitle.setText(f"{self.run_dir.name} has no adapter yet: it saves one at each checkpoint")
        elif self.training:
            self.subtitle.setText(f"{self.run_dir.name} · a run is training: the playground waits for it to end")
        else:
            self.subtitle.setText(f"{self.run_dir.name} · the base model and an adapter answer the same prompt")
        self.panes[0].title.setText("Base model")
        if not busy and self.info is not None:
            self.panes[1].title.setText(f"With {self.adapter.currentText() or 'the adapter'}")
