"""The Dataset page: where prompts come from, which columns hold prompt and answer, and a preview of
the first rows exactly as the model will see them (system prompt and chat template applied).

Reading a dataset and loading a tokenizer take seconds (first use imports `datasets` and
`transformers`), so the preview is built on a background thread, only while the page is shown,
and a moment after the last edit. A result that arrives after newer edits is dropped.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from grpo_studio.config import FieldSpec
from grpo_studio.gui.document import RunDocument
from grpo_studio.gui.field_editors import FieldEditor, guard_wheel
from grpo_studio.gui.settings_form import Card, FieldRow, form_grid, page_header, path_editor, scrolling, spec_for
from grpo_studio.gui.style import MUTED, monospace_font
from grpo_studio.gui.tasks import TaskRunner

PREVIEW_ROWS = 5
PREVIEW_DELAY_MS = 400
DATA_FILES = "Data files (*.jsonl *.json *.csv *.parquet);;All files (*)"


class ColumnEditor(FieldEditor):
    """An editable combo box offering the dataset's real column names."""

    NONE = "(none)"

    def __init__(self, spec: FieldSpec, allow_none: bool, parent: QWidget | None = None):
        super().__init__(spec, parent)
        self.allow_none = allow_none
        self.combo = QComboBox()
        self.combo.setEditable(True)
        self.combo.setMinimumWidth(200)
        self.combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        guard_wheel(self.combo)
        self.combo.currentTextChanged.connect(self._chosen)
        self._add(self.combo, 0)
        self._layout.addStretch(1)
        self.set_columns([])

    def _chosen(self, text: str) -> None:
        self.edited.emit("" if text == self.NONE else text.strip())

    def set_columns(self, columns: list[str]) -> None:
        current = self.combo.currentText()
        self.combo.blockSignals(True)
        self.combo.clear()
        if self.allow_none:
            self.combo.addItem(self.NONE)
        self.combo.addItems(columns)
        self.combo.setCurrentText(current)
        self.combo.blockSignals(False)

    def set_value(self, value: Any) -> None:
        text = value or (self.NONE if self.allow_none else "")
        if self.combo.currentText() != text:
            self.combo.blockSignals(True)
            self.combo.setCurrentText(text)
            self.combo.blockSignals(False)

    def input_widget(self) -> QWidget:
        return self.combo


def _preview(config: Any, base_dir: Any, reload: bool = False) -> Any:
    """Runs on the worker thread: the engine's preview of a snapshot of the config (`reload`: read the
    dataset again, not from the preview's cache)."""
    from grpo_studio.config import LoadedRun
    from grpo_studio.engine.preview import forget_cached_dataset, preview

    if reload:
        forget_cached_dataset()
    return preview(LoadedRun(config, None, base_dir), n=PREVIEW_ROWS)


class DatasetView(QWidget):
    def __init__(self, doc: RunDocument, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc = doc
        self.columns: list[str] = []
        self._stale = True
        self.preview_task = TaskRunner(self)  # the preview, built in the background; the newest wins
        self.rows: dict[str, FieldRow] = {}

        form = QWidget()
        form_box = QVBoxLayout(form)
        form_box.setContentsMargins(24, 18, 12, 24)
        form_box.setSpacing(14)
        form_box.addWidget(page_header("Dataset", "The prompts GRPO trains on and their ground truths."))

        self.prompt_column = ColumnEditor(spec_for("data.prompt_column"), allow_none=False)
        self.answer_column = ColumnEditor(spec_for("data.answer_column"), allow_none=True)
        groups = [
            ("Source", "A local .jsonl / .json / .csv / .parquet file, or a dataset id on the Hugging Face Hub.",
             ["data.source", "data.subset", "data.split", "data.max_rows"]),
            ("Columns", "Which columns hold the prompt and its ground truth (passed to reward functions as "
             "`answer`).", ["data.prompt_column", "data.answer_column", "data.answer_pattern"]),
            ("Prompt", "How each row becomes the text the model continues.",
             ["data.prompt_template", "data.system_prompt", "data.chat_template", "data.max_prompt_length"]),
        ]
        editors = {
            "data.source": path_editor(doc, spec_for("data.source"), folder=False, file_filter=DATA_FILES,
                                       placeholder="train.jsonl or openai/gsm8k"),
            "data.prompt_column": self.prompt_column,
            "data.answer_column": self.answer_column,
        }
        for title, subtitle, paths in groups:
            card = Card(title, subtitle)
            grid = form_grid()
            grid.setColumnMinimumWidth(0, 190)
            for path in paths:
                row = FieldRow(doc, spec_for(path), editors.get(path))
                row.add_to(grid)
                self.rows[path] = row
            card.body.addLayout(grid)
            form_box.addWidget(card)
        form_box.addStretch(1)

        preview_panel = QWidget()
        pbox = QVBoxLayout(preview_panel)
        pbox.setContentsMargins(12, 18, 24, 24)
        card = Card("Preview", "The first rows as they will be sent to the model.")
        head = QHBoxLayout()
        self.status = QLabel("Not loaded yet.")
        self.status.setWordWrap(True)
        self.status.setObjectName("cardSubtitle")
        head.addWidget(self.status, 1)
        self.reload_button = QPushButton("Reload")
        self.reload_button.setToolTip("Read the dataset again (e.g. after the file changed on disk)")
        self.reload_button.clicked.connect(lambda: self.request_preview(force=True))
        head.addWidget(self.reload_button, 0, Qt.AlignmentFlag.AlignTop)
        card.body.addLayout(head)
        self.preview = QTextBrowser()
        self.preview.setOpenLinks(False)
        self.preview.document().setDefaultFont(monospace_font(10))
        card.body.addWidget(self.preview, 1)
        pbox.addWidget(card, 1)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(scrolling(form))
        splitter.addWidget(preview_panel)
        splitter.setStretchFactor(0, 5)
        splitter.setStretchFactor(1, 6)
        splitter.setSizes([520, 640])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(PREVIEW_DELAY_MS)
        self._timer.timeout.connect(self.request_preview)
        doc.changed.connect(self._on_changed)

    # ---- loading ---------------------------------------------------------------------------
    def _on_changed(self, path: str) -> None:
        if path == "" or path.startswith("data.") or path in ("model.name", "model.revision"):
            self._stale = True
            self.preview_task.cancel()  # a preview of the old settings would mislead
            self.reload_button.setEnabled(True)
            self.doc.set_found_problems("dataset", {})  # about the old settings; the preview looks again
            if self.isVisible():
                self._timer.start()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._stale:
            self._timer.start(0)

    def request_preview(self, force: bool = False) -> None:
        if not self.doc.config.data.source.strip():
            self._stale = False
            self.status.setText("Choose a file or type a hub dataset id above.")
            self.preview.clear()
            return
        self._stale = False
        self.status.setText("Loading…")
        self.reload_button.setEnabled(False)
        config, base = self.doc.config.model_copy(deep=True), self.doc.base_dir or Path.cwd()
        self.preview_task.start(lambda state: _preview(config, base, reload=force), self._show, self._show_failure)

    def shutdown(self, timeout_ms: int = 30000) -> None:
        """Let a preview in progress finish before the window goes (a thread must not outlive Python)."""
        self.preview_task.shutdown(timeout_ms)

    def is_loading(self) -> bool:
        """A preview is being built, or about to be (edits pause briefly before it starts)."""
        return self._timer.isActive() or self.preview_task.is_running()

    def _show_failure(self, exc: Exception, details: str = "") -> None:
        self.reload_button.setEnabled(True)
        self.status.setText(f"Could not build the preview: {type(exc).__name__}: {exc}")

    def _show(self, result: Any) -> None:
        self.reload_button.setEnabled(True)
        if result.columns:
            self.columns = result.columns
            self.prompt_column.set_columns(result.columns)
            self.answer_column.set_columns(result.columns)
        self.doc.set_found_problems("dataset", {result.problem_field: result.problem} if result.problem else {})
        if result.problem:
            where = result.problem_field
            self.status.setText(f"<span style='color:#c62828'><b>{html.escape(where)}</b>: "
                                f"{html.escape(result.problem)}</span>")
            self.preview.clear()
            return
        facts = [f"{result.n_rows:,} rows", "columns: " + ", ".join(result.columns),
                 "chat template applied" if result.chat else "plain text (no chat template)"]
        self.status.setText(" · ".join(facts) + "".join(f"<br>{html.escape(n)}" for n in result.notes))
        self.preview.setHtml(self._render(result.rows))

    @staticmethod
    def _render(rows: list[Any]) -> str:
        parts = []
        for i, row in enumerate(rows, 1):
            tokens = f" · {row.tokens} tokens" if row.tokens is not None else ""
            truth = ("<span style='color:#c62828'>none</span>" if row.answer is None
                     else f"<b>{html.escape(row.answer)}</b>")
            parts.append(
                f"<p style='margin:10px 0 4px 0; color:{MUTED}; font-family:sans-serif'>Row {i}{tokens} · "
                f"ground truth: {truth}</p>"
                f"<pre style='background:#f6f8fb; margin:0; padding:8px; white-space:pre-wrap'>"
                f"{html.escape(row.text)}</pre>")
        return "".join(parts) or "<p>No rows.</p>"
