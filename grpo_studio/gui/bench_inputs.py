"""What the reward bench scores: completions the user types for real dataset rows, or a number of
prompts for the model to sample completions for.

Typed completions come in groups, one per row, as GRPO groups them: a tab per group, the row's
prompt and ground truth shown (read on a background thread through the Dataset page's preview, so
the prompt reads exactly as the model will see it), and a text box of completions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QSpinBox,
    QTabBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from grpo_studio.gui.document import RunDocument
from grpo_studio.gui.field_editors import guard_wheel
from grpo_studio.gui.reward_bench_runner import TypedGroup, split_completions
from grpo_studio.gui.style import ERROR, MUTED, monospace_font
from grpo_studio.gui.tasks import TaskRunner

ROW_DELAY_MS = 250
PLACEHOLDER = ("One completion per line, as the model might answer this prompt.\n"
               "For completions of several lines, put a line with --- between them.")


@dataclass
class _Group:
    row: int
    text: str = ""


def _row_preview(config: Any, base_dir: Path, row: int) -> Any:
    """Runs on a worker thread: one row through the Dataset page's preview (prompt as the model sees it)."""
    from grpo_studio.config import LoadedRun
    from grpo_studio.engine.preview import preview

    return preview(LoadedRun(config, None, base_dir), n=1, first=row)


class TypedCompletionsEditor(QWidget):
    """Groups of typed completions: a tab per dataset row."""

    changed = Signal()

    def __init__(self, doc: RunDocument, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc = doc
        self._groups = [_Group(0)]
        self._current = 0
        self._switching = False
        self.row_task = TaskRunner(self)  # the row's prompt, read in the background; the newest read wins
        self.n_rows: int | None = None

        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(6)
        tabs_row = QHBoxLayout()
        tabs_row.setSpacing(4)
        self.tabs = QTabBar()
        self.tabs.setObjectName("groupTabs")
        self.tabs.setTabsClosable(True)
        self.tabs.setExpanding(False)
        self.tabs.setDrawBase(False)
        self.tabs.setUsesScrollButtons(True)
        self.tabs.addTab("")
        self.tabs.currentChanged.connect(self._switch)
        self.tabs.tabCloseRequested.connect(self.remove_group)
        tabs_row.addWidget(self.tabs, 1)
        self.add_button = QToolButton()
        self.add_button.setText("+ Group")
        self.add_button.setToolTip("Add a group: completions for another row")
        self.add_button.clicked.connect(self.add_group)
        tabs_row.addWidget(self.add_button)
        box.addLayout(tabs_row)

        row_line = QHBoxLayout()
        row_line.setSpacing(8)
        row_label = QLabel("Dataset row")
        row_line.addWidget(row_label)
        self.row = QSpinBox()
        self.row.setRange(0, 10_000_000)
        self.row.setMinimumWidth(90)
        self.row.setMaximumWidth(120)
        self.row.setToolTip("0-based row of data.source; its prompt and columns (the answer) are passed to the "
                            "reward functions")
        guard_wheel(self.row)
        self.row.valueChanged.connect(self._row_changed)
        row_label.setBuddy(self.row)
        row_line.addWidget(self.row)
        self.row_info = QLabel()
        self.row_info.setObjectName("cardSubtitle")
        self.row_info.setTextFormat(Qt.TextFormat.RichText)
        row_line.addWidget(self.row_info, 1)
        box.addLayout(row_line)

        self.prompt = QPlainTextEdit()
        self.prompt.setReadOnly(True)
        self.prompt.setObjectName("promptView")
        self.prompt.setFont(monospace_font(9))
        self._fit_prompt()
        self.prompt.setPlaceholderText("The row's prompt appears here.")
        self.prompt.setToolTip("The prompt of this row, as the model sees it")
        box.addWidget(self.prompt)

        self.completions = QPlainTextEdit()
        self.completions.setFont(monospace_font(10))
        self.completions.setPlaceholderText(PLACEHOLDER)
        self.completions.setMinimumHeight(self.completions.fontMetrics().lineSpacing() * 3 + 20)
        self.completions.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.completions.textChanged.connect(self._typed)
        box.addWidget(self.completions, 1)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(ROW_DELAY_MS)
        self._timer.timeout.connect(self.load_row)
        doc.changed.connect(self._settings_changed)
        self._update_tabs()

    # ---- groups ----------------------------------------------------------------------------
    def groups(self) -> list[TypedGroup]:
        """The groups with at least one completion, in tab order."""
        self._store()
        out = []
        for g in self._groups:
            texts = split_completions(g.text)
            if texts:
                out.append(TypedGroup(g.row, texts))
        return out

    def set_groups(self, groups: list[tuple[int, str]]) -> None:
        """Replace every group: (row, text of completions)."""
        self._groups = [_Group(row, text) for row, text in groups] or [_Group(0)]
        self._switching = True
        while self.tabs.count() > 1:
            self.tabs.removeTab(self.tabs.count() - 1)
        for _ in self._groups[1:]:
            self.tabs.addTab("")
        self._switching = False
        self._current = -1
        self.tabs.setCurrentIndex(0)
        self._switch(0)

    def add_group(self) -> None:
        self._store()
        last = self._groups[-1].row if self._groups else -1
        self._groups.append(_Group(last + 1 if self.n_rows is None or last + 1 < self.n_rows else 0))
        self.tabs.addTab("")
        self.tabs.setCurrentIndex(len(self._groups) - 1)
        self.completions.setFocus()

    def remove_group(self, index: int) -> None:
        if len(self._groups) == 1:  # one group always stays: clear it instead
            self._groups = [_Group(self._groups[0].row)]
            self._current = -1
            self._switch(0)
            return
        self._store()
        del self._groups[index]
        self._switching = True
        self.tabs.removeTab(index)
        self._switching = False
        self._current = -1
        self._switch(self.tabs.currentIndex())

    def _store(self) -> None:
        if 0 <= self._current < len(self._groups):
            self._groups[self._current].text = self.completions.toPlainText()

    def _switch(self, index: int) -> None:
        if self._switching or index < 0:
            return
        self._store()
        self._current = index
        group = self._groups[index]
        self._switching = True
        self.completions.setPlainText(group.text)
        self.row.setValue(group.row)
        self._switching = False
        self._update_tabs()
        self._timer.start(0)

    def _typed(self) -> None:
        if self._switching:
            return
        self._store()
        self._update_tabs()
        self.changed.emit()

    def _row_changed(self, value: int) -> None:
        if self._switching:
            return
        self._groups[self._current].row = value
        self._update_tabs()
        self._timer.start()
        self.changed.emit()

    def _update_tabs(self) -> None:
        for i, g in enumerate(self._groups):
            n = len(split_completions(g.text))
            self.tabs.setTabText(i, f"Row {g.row}" + (f" ({n})" if n else ""))
            self.tabs.setTabToolTip(i, f"Group {i + 1}: {n} completion{'s' if n != 1 else ''} for row {g.row}")

    # ---- the row's prompt ------------------------------------------------------------------
    def _settings_changed(self, path: str) -> None:
        if path == "" or path.startswith("data.") or path in ("model.name", "model.revision"):
            self.n_rows = None
            if self.isVisible():
                self._timer.start()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._timer.start(0)

    def load_row(self) -> None:
        if not self.doc.config.data.source.strip():
            self._show_info("Choose a dataset on the Dataset page first.", error=True)
            return
        row = self.row.value()
        config, base = self.doc.config.model_copy(deep=True), self.doc.base_dir or Path.cwd()
        self.row_task.start(lambda state: _row_preview(config, base, row), lambda result: self._show_row(result, row),
                            lambda exc, details: self._show_info(f"Could not read the row: {exc}", error=True))

    def is_loading(self) -> bool:
        return self._timer.isActive() or self.row_task.is_running()

    def _show_row(self, result: Any, row: int) -> None:
        if result.problem:
            self._show_info(f"{result.problem_field}: {result.problem}", error=True)
            return
        self.n_rows = result.n_rows
        if not result.rows:
            self._show_info(f"data.source has {result.n_rows:,} rows: row {row} is past the end "
                            f"(0 to {result.n_rows - 1:,}).", error=True)
            return
        shown = result.rows[0]
        truth = ("<span style='color:%s'>no ground truth</span>" % ERROR if shown.answer is None
                 else f"answer <b>{_escape(shown.answer)}</b>")
        self.row_info.setText(f"of {result.n_rows:,} · {truth}")
        self.prompt.setPlainText(shown.text)
        self._fit_prompt()

    def _fit_prompt(self) -> None:
        """As tall as the prompt (1 to 5 lines): a one-line sum needs no box of five."""
        lines = max(1, min(5, self.prompt.toPlainText().count("\n") + 1))
        height = self.prompt.fontMetrics().lineSpacing() * lines + 20  # + document margin, padding, frame
        self.prompt.setFixedHeight(height)

    def _show_info(self, text: str, error: bool = False) -> None:
        color = ERROR if error else MUTED
        self.row_info.setText(f"<span style='color:{color}'>{_escape(text)}</span>")
        self.prompt.clear()

    def shutdown(self, timeout_ms: int = 30000) -> None:
        self.row_task.shutdown(timeout_ms)


def _escape(text: str) -> str:
    import html

    return html.escape(text)
