"""Settings forms generated from the config's metadata: one card per section.

Each field gets its label, an editor chosen by its kind, its range or choices, its help as a
tooltip, and a line under it that says what is wrong with its value. Basic fields are visible;
advanced ones are folded under "Advanced".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from grpo_studio.config import SECTIONS, FieldSpec, field_specs
from grpo_studio.gui.document import RunDocument
from grpo_studio.gui.field_editors import FieldEditor, PathEditor, make_editor
from grpo_studio.gui.style import set_invalid

def label_for(spec: FieldSpec) -> str:
    """What a field is called on screen (with its unit): the setting's title (config/settings.py)."""
    return spec.label


def specs_of(section: str) -> list[FieldSpec]:
    return field_specs(SECTIONS[section], section)


def spec_for(path: str) -> FieldSpec:
    section = path.split(".", 1)[0]
    return next(s for s in specs_of(section) if s.path == path)


def setting_path(doc: RunDocument, chosen: str) -> str:
    """A picked file as the run file stores it: relative when it lies in the run file's folder tree."""
    base = doc.base_dir
    if base is None:
        return chosen
    try:
        rel = os.path.relpath(chosen, base)
    except ValueError:
        return chosen
    return chosen if rel.startswith("..") else rel


def path_editor(doc: RunDocument, spec: FieldSpec, *, folder: bool, file_filter: str = "",
                placeholder: str = "") -> PathEditor:
    return PathEditor(spec, folder=folder, file_filter=file_filter, placeholder=placeholder,
                      start_dir=lambda: str(doc.base_dir or Path.home()),
                      to_setting=lambda chosen: setting_path(doc, chosen))


class FieldRow:
    """Label + editor + error line for one setting, kept in step with the document both ways."""

    def __init__(self, doc: RunDocument, spec: FieldSpec, editor: FieldEditor | None = None):
        self.doc = doc
        self.spec = spec
        self.editor = editor or make_editor(spec)
        self.label = QLabel(label_for(spec))
        self.label.setObjectName("fieldLabel")
        self.label.setBuddy(self.editor.input_widget())
        self.error = QLabel()
        self.error.setObjectName("fieldError")
        self.error.setWordWrap(True)
        self.error.hide()
        tip = f"<b>{spec.path}</b><br>{spec.help}{self._range_text()}"
        for w in (self.label, self.editor.input_widget()):
            w.setToolTip(tip)
            w.setStatusTip(spec.help)
        self.editor.edited.connect(lambda value: doc.set_field(spec.path, value))
        self.editor.invalid.connect(lambda reason: doc.set_field_error(spec.path, reason))
        doc.changed.connect(self._on_changed)
        doc.problemsChanged.connect(self.show_problem)
        self.editor.set_value(doc.value(spec.path))
        self.show_problem()

    def _range_text(self) -> str:
        s = self.spec
        parts = []
        if s.minimum is not None:
            parts.append(f"{'>' if s.exclusive_minimum else '≥'} {s.minimum:g}")
        if s.maximum is not None:
            parts.append(f"{'<' if s.exclusive_maximum else '≤'} {s.maximum:g}")
        text = f"<br><i>{' and '.join(parts)}</i>" if parts else ""
        return text + f"<br><i>default: {s.default!r}</i>" if s.kind not in ("list", "dict") else text

    def _on_changed(self, path: str) -> None:
        if path in ("", self.spec.path):
            self.editor.set_value(self.doc.value(self.spec.path))

    def show_problem(self) -> None:
        problem = self.doc.problems().get(self.spec.path)
        self.error.setText(problem or "")
        self.error.setVisible(bool(problem))
        set_invalid(self.editor.input_widget(), bool(problem))

    def add_to(self, grid: QGridLayout) -> None:
        row = grid.rowCount()
        cell = QWidget()
        box = QVBoxLayout(cell)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(2)
        box.addWidget(self.editor)
        box.addWidget(self.error)
        top = Qt.AlignmentFlag.AlignTop if self.spec.path in ("data.system_prompt", "data.prompt_template") else (
            Qt.AlignmentFlag.AlignVCenter)
        grid.addWidget(self.label, row, 0, Qt.AlignmentFlag.AlignLeft | top)
        grid.addWidget(cell, row, 1)


LABEL_WIDTH = 215  # one label column width for every card, so the editors line up


def form_grid(label_width: int = LABEL_WIDTH) -> QGridLayout:
    grid = QGridLayout()
    grid.setContentsMargins(0, 0, 0, 0)
    grid.setHorizontalSpacing(14)
    grid.setVerticalSpacing(8)
    grid.setColumnStretch(1, 1)
    grid.setColumnMinimumWidth(0, label_width)
    return grid


class Card(QFrame):
    """A titled white panel; forms and panels are built out of these."""

    def __init__(self, title: str, subtitle: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("card")
        self.body = QVBoxLayout(self)
        self.body.setContentsMargins(16, 12, 16, 14)
        self.body.setSpacing(8)
        heading = QLabel(title)
        heading.setObjectName("cardTitle")
        self.body.addWidget(heading)
        if subtitle:
            sub = QLabel(subtitle)
            sub.setObjectName("cardSubtitle")
            sub.setWordWrap(True)
            self.body.addWidget(sub)


class SectionCard(Card):
    """Every setting of one config section; `editors` replaces the default editor of some fields."""

    def __init__(self, doc: RunDocument, section: str, title: str, subtitle: str = "", *,
                 skip: tuple[str, ...] = (), editors: dict[str, Callable[[FieldSpec], FieldEditor]] | None = None,
                 label_width: int = LABEL_WIDTH, parent: QWidget | None = None):
        super().__init__(title, subtitle, parent)
        self.rows: dict[str, FieldRow] = {}
        editors = editors or {}
        basic, advanced = form_grid(label_width), form_grid(label_width)
        for spec in specs_of(section):
            if spec.path in skip or spec.kind == "table":
                continue
            make = editors.get(spec.path)
            row = FieldRow(doc, spec, make(spec) if make else None)
            if label_width == 0:
                row.label.setWordWrap(True)  # a narrow card: long labels take two lines
            row.add_to(advanced if spec.advanced else basic)
            self.rows[spec.path] = row
        self.body.addLayout(basic)
        self.advanced: QCollapsible | None = None
        if advanced.rowCount() > 1 or advanced.itemAtPosition(0, 0) is not None:
            self.advanced = QCollapsible("Advanced", expandedIcon="▾", collapsedIcon="▸")
            self.advanced.setObjectName("advanced")
            inner = QWidget()
            inner.setLayout(advanced)
            self.advanced.addWidget(inner)
            self.advanced.layout().setContentsMargins(0, 4, 0, 0)
            self.body.addWidget(self.advanced)
            # Open the fold when one of its fields has a problem, so the message is seen.
            doc.problemsChanged.connect(self._unfold_on_problem)
            self._unfold_on_problem()

    def _unfold_on_problem(self) -> None:
        problems = {p for p, row in self.rows.items() if row.spec.advanced and row.error.text()}
        if problems and self.advanced is not None and not self.advanced.isExpanded():
            self.advanced.expand(animate=False)


def scrolling(content: QWidget) -> QScrollArea:
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    content.setObjectName("scrollContent")
    area.setWidget(content)
    return area


def page_header(title: str, subtitle: str) -> QWidget:
    w = QWidget()
    box = QVBoxLayout(w)
    box.setContentsMargins(0, 0, 0, 4)
    box.setSpacing(2)
    t = QLabel(title)
    t.setObjectName("pageTitle")
    s = QLabel(subtitle)
    s.setObjectName("cardSubtitle")
    s.setWordWrap(True)
    box.addWidget(t)
    box.addWidget(s)
    return w


class SettingsView(QWidget):
    """Model, quantization, LoRA, training, run and evaluation settings in two columns of cards."""

    def __init__(self, doc: RunDocument, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc = doc
        content = QWidget()
        outer = QVBoxLayout(content)
        outer.setContentsMargins(24, 18, 24, 24)
        outer.setSpacing(14)
        outer.addWidget(page_header(
            "Settings", "Everything on this page is saved in the run file. Hover a field for what it does."))
        columns = QHBoxLayout()
        columns.setSpacing(16)
        left, right = QVBoxLayout(), QVBoxLayout()
        for col in (left, right):
            col.setSpacing(16)
        model_editors = {"model.name": lambda spec: path_editor(doc, spec, folder=True,
                                                               placeholder="Qwen/Qwen2.5-0.5B-Instruct or a folder")}
        self.cards = {
            "model": SectionCard(doc, "model", "Model", "The base model whose reasoning GRPO improves.",
                                 editors=model_editors),
            "quantization": SectionCard(doc, "quantization", "Quantization",
                                        "Load the base weights in 4 or 8 bits (QLoRA) to save GPU memory."),
            "lora": SectionCard(doc, "lora", "LoRA adapter", "Small trainable matrices beside the frozen weights."),
            "grpo": SectionCard(doc, "grpo", "GRPO training",
                                "Each step samples a group of completions per prompt and favours the "
                                "better-rewarded ones."),
            "run": SectionCard(doc, "run", "Run", "Where runs are written and how often they save.",
                               editors={"run.output_dir": lambda spec: path_editor(doc, spec, folder=True)}),
            "eval": SectionCard(doc, "eval", "Evaluation", "Held-out accuracy for `grpo-studio eval`.",
                                editors={"eval.source": lambda spec: path_editor(
                                    doc, spec, folder=False, file_filter="Data (*.jsonl *.json *.csv *.parquet)",
                                    placeholder="empty = data.source")}),
        }
        if "alarms" in SECTIONS:
            self.cards["alarms"] = SectionCard(doc, "alarms", "Health alarms",
                                               "Warnings (with advice) when the metrics show a run going wrong.")
        for name in ("model", "quantization", "lora", "eval"):
            left.addWidget(self.cards[name])
        # The estimate sits first on the right: it answers "will this fit?" while the settings change.
        from grpo_studio.gui.vram_card import VramCard, VramEstimator

        self.vram = VramEstimator(doc, self)
        self.vram_card = VramCard(self.vram)
        right.addWidget(self.vram_card)
        for name in ("grpo", "run", "alarms"):
            if name in self.cards:
                right.addWidget(self.cards[name])
        left.addStretch(1)
        right.addStretch(1)
        columns.addLayout(left, 1)
        columns.addLayout(right, 1)
        outer.addLayout(columns)
        outer.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scrolling(content))

    def row(self, path: str) -> FieldRow | None:
        card = self.cards.get(path.split(".", 1)[0])
        return card.rows.get(path) if card else None

    def focus_field(self, path: str) -> bool:
        row = self.row(path)
        if row is None:
            return False
        card = self.cards[path.split(".", 1)[0]]
        if row.spec.advanced and card.advanced is not None:
            card.advanced.expand(animate=False)
        widget = row.editor.input_widget()
        widget.setFocus(Qt.FocusReason.OtherFocusReason)
        area = self.findChild(QScrollArea)
        if area is not None:
            area.ensureWidgetVisible(widget, 50, 80)
        return True
