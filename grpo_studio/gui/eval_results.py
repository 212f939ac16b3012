"""One stored comparison of base model vs. adapter, shown: the headline accuracy, the other numbers
side by side, and every prompt with both answers, filterable by what training did to it.

Display only: the Evaluate page (evaluate_page.py) decides which comparison to show.
"""

from __future__ import annotations

import html
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from grpo_studio.gui.style import ERROR, MUTED, OK, TEXT, monospace_font

# (key, button text, tooltip)
FILTERS = [
    ("fixed", "Fixed by training", "Prompts the base model got wrong and the adapter gets right"),
    ("broken", "Broken by training", "Prompts the base model got right and the adapter gets wrong"),
    ("both_right", "Both right", "Prompts both models get right"),
    ("both_wrong", "Both wrong", "Prompts neither model gets right"),
    ("all", "All", "Every held-out prompt"),
]
CHANGE_WORDS = {"fixed": "fixed", "broken": "broken", "both_right": "both right", "both_wrong": "both wrong"}
CHANGE_COLORS = {"fixed": OK, "broken": ERROR, "both_right": MUTED, "both_wrong": MUTED}
PROMPT, ANSWER, BASE, TUNED, CHANGE = range(5)


def pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.1%}"


def one_line(text: str) -> str:
    return text.replace("\n", " ⏎ ").strip()


def mark(correct: bool) -> str:
    return "✓" if correct else "✗"


class EvalResults(QWidget):
    """The comparison on screen; `filter_key` and the table are what tests read."""

    filterChanged = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.comparison: Any = None
        self.filter_key = "all"
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(10)

        card = QFrame()
        card.setObjectName("card")
        card_box = QHBoxLayout(card)
        card_box.setContentsMargins(16, 12, 16, 12)
        card_box.setSpacing(28)
        self.headline = QLabel()
        self.headline.setTextFormat(Qt.TextFormat.RichText)
        self.headline.setToolTip("Greedy accuracy on the held-out prompts: the base model, then with the adapter")
        card_box.addWidget(self.headline, 0, Qt.AlignmentFlag.AlignVCenter)
        self.numbers = QGridLayout()
        self.numbers.setHorizontalSpacing(18)
        self.numbers.setVerticalSpacing(2)
        card_box.addLayout(self.numbers)
        card_box.addStretch(1)
        outer.addWidget(card)

        bar = QHBoxLayout()
        bar.setSpacing(6)
        self.filter_group = QButtonGroup(self)
        self.filter_group.setExclusive(True)
        self.filter_buttons: dict[str, QPushButton] = {}
        for i, (key, text, tip) in enumerate(FILTERS, 1):
            button = QPushButton(text)
            button.setCheckable(True)
            button.setObjectName("filterChip")
            button.setToolTip(f"{tip} (Alt+{i})")
            button.clicked.connect(lambda checked=False, k=key: self.set_filter(k))
            QShortcut(QKeySequence(f"Alt+{i}"), self, activated=lambda k=key: self.set_filter(k))
            self.filter_group.addButton(button)
            self.filter_buttons[key] = button
            bar.addWidget(button)
        bar.addStretch(1)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Find in prompts and answers")
        self.search.setClearButtonEnabled(True)
        self.search.setMinimumWidth(220)
        self.search.setToolTip("Show only prompts whose text, answer or either completion contains this")
        self.search.textChanged.connect(lambda _: self._apply_filter())
        bar.addWidget(self.search)
        outer.addLayout(bar)

        self.table = QTableWidget(0, 5)
        self.table.verticalHeader().setDefaultSectionSize(26)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.table.verticalHeader().setToolTip("The prompt's row in the held-out split")
        header = self.table.horizontalHeader()
        for col, mode in ((PROMPT, QHeaderView.ResizeMode.Interactive), (ANSWER, QHeaderView.ResizeMode.Interactive),
                          (BASE, QHeaderView.ResizeMode.Stretch), (TUNED, QHeaderView.ResizeMode.Stretch),
                          (CHANGE, QHeaderView.ResizeMode.Interactive)):
            header.setSectionResizeMode(col, mode)
        self.table.setColumnWidth(PROMPT, 200)
        self.table.setColumnWidth(ANSWER, 90)
        self.table.setColumnWidth(CHANGE, 96)
        self.table.currentCellChanged.connect(lambda row, *_: self._show_detail(row))

        detail = QWidget()
        detail_box = QVBoxLayout(detail)
        detail_box.setContentsMargins(0, 4, 0, 0)
        detail_box.setSpacing(4)
        self.detail_prompt = QLabel()
        self.detail_prompt.setTextFormat(Qt.TextFormat.RichText)
        self.detail_prompt.setWordWrap(True)
        self.detail_prompt.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        detail_box.addWidget(self.detail_prompt)
        panes = QHBoxLayout()
        self.answer_titles, self.answer_texts = [], []
        for side in ("base", "tuned"):
            column = QVBoxLayout()
            column.setSpacing(2)
            title = QLabel()
            title.setTextFormat(Qt.TextFormat.RichText)
            title.setWordWrap(True)
            text = QPlainTextEdit()
            text.setReadOnly(True)
            text.setFont(monospace_font(9.5))
            text.setToolTip("The whole completion, as the model wrote it (greedy)")
            column.addWidget(title)
            column.addWidget(text, 1)
            panes.addLayout(column, 1)
            self.answer_titles.append(title)
            self.answer_texts.append(text)
        detail_box.addLayout(panes, 1)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(detail)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setChildrenCollapsible(False)
        outer.addWidget(splitter, 1)

    # ---- showing a comparison -------------------------------------------------------------------
    def show_comparison(self, comparison: Any) -> None:
        self.comparison = c = comparison
        b, t = c.base, c.tuned
        gain = c.gain_points()
        color = OK if gain > 0 else ERROR if gain < 0 else MUTED
        self.headline.setText(
            f"<div style='color:{MUTED}'>accuracy on {t.n} held-out prompts</div>"
            f"<div style='font-size:22pt; font-weight:600; color:{TEXT}'>{pct(b.accuracy)} → {pct(t.accuracy)}</div>"
            f"<div style='color:{color}; font-weight:600'>{gain:+.1f} points</div>")
        self._fill_numbers()
        labels = ["Prompt", "Answer", "Base model", f"With {t.label}", "Change"]
        self.table.setHorizontalHeaderLabels(labels)
        self.table.horizontalHeaderItem(BASE).setToolTip(f"{b.model}, greedy; ✓ correct ({c.correctness})")
        self.table.horizontalHeaderItem(TUNED).setToolTip(f"with {t.adapter}, greedy; ✓ correct ({c.correctness})")
        self.table.setRowCount(len(c.prompts))
        for row, p in enumerate(c.prompts):
            values = [one_line(p.prompt), p.answer or "–", f"{mark(p.base.correct)} {one_line(p.base.completion)}",
                      f"{mark(p.tuned.correct)} {one_line(p.tuned.completion)}", CHANGE_WORDS[p.change]]
            for col, value in enumerate(values):
                item = QTableWidgetItem(value)
                item.setToolTip(value if col != CHANGE else FILTERS[[k for k, *_ in FILTERS].index(p.change)][2])
                if col in (BASE, TUNED):
                    ok = p.base.correct if col == BASE else p.tuned.correct
                    item.setForeground(QBrush(QColor(TEXT if ok else ERROR)))
                if col == CHANGE:
                    item.setForeground(QBrush(QColor(CHANGE_COLORS[p.change])))
                self.table.setItem(row, col, item)
            self.table.setVerticalHeaderItem(row, QTableWidgetItem(str(p.index)))
        for key, text, _ in FILTERS:
            n = len(c.prompts) if key == "all" else c.counts.get(key, 0)
            self.filter_buttons[key].setText(f"{text} ({n})")
        self.set_filter("fixed" if c.counts.get("fixed") else "all")

    def _fill_numbers(self) -> None:
        while self.numbers.count():
            item = self.numbers.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        c = self.comparison
        b, t = c.base, c.tuned

        def number(x: float | None) -> str:
            return "–" if x is None else f"{x:.3f}"

        rows = [("", "base model", f"with {t.label}", ""),
                ("format rate", pct(b.format_rate), pct(t.format_rate),
                 f"well formatted: {c.format_rule}" if c.format_rule else "not measured: the run has no format "
                 "reward and no data.answer_pattern"),
                ("mean length", f"{b.mean_length:.1f}", f"{t.mean_length:.1f}", "completion tokens"),
                ("cut at max length", pct(b.truncated_rate), pct(t.truncated_rate),
                 "completions that reached grpo.max_completion_length")]
        rows += [(f"mean {name}", number(b.rewards.get(name)), number(t.rewards.get(name)),
                  "the reward function's mean score") for name in t.rewards]
        for r, (name, base, tuned, tip) in enumerate(rows):
            for col, text in enumerate((name, base, tuned)):
                label = QLabel(text)
                label.setToolTip(tip)
                if r == 0 or col == 0:
                    label.setStyleSheet(f"color:{MUTED};" + ("font-weight:600;" if r == 0 else ""))
                if col:
                    label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.numbers.addWidget(label, r, col)

    # ---- filtering ------------------------------------------------------------------------------
    def set_filter(self, key: str) -> None:
        self.filter_key = key
        self.filter_buttons[key].setChecked(True)
        self._apply_filter()
        self.filterChanged.emit(key)

    def visible_rows(self) -> list[int]:
        return [r for r in range(self.table.rowCount()) if not self.table.isRowHidden(r)]

    def _apply_filter(self) -> None:
        if self.comparison is None:
            return
        needle = self.search.text().strip().lower()
        first = None
        for row, p in enumerate(self.comparison.prompts):
            show = self.filter_key == "all" or p.change == self.filter_key
            if show and needle:
                show = any(needle in s.lower() for s in (p.prompt, p.answer or "", p.base.completion,
                                                          p.tuned.completion))
            self.table.setRowHidden(row, not show)
            if show and first is None:
                first = row
        if first is None:
            self.table.clearSelection()
            self._show_detail(-1)
        else:
            self.table.setCurrentCell(first, PROMPT)
            self._show_detail(first)

    def _show_detail(self, row: int) -> None:
        c = self.comparison
        if c is None or row < 0 or row >= len(c.prompts) or self.table.isRowHidden(row):
            self.detail_prompt.setText(f"<span style='color:{MUTED}'>No prompt in this filter.</span>"
                                       if c is not None else "")
            for title, text in zip(self.answer_titles, self.answer_texts):
                title.setText("")
                text.setPlainText("")
            return
        p = c.prompts[row]
        answer = f" · answer <b>{html.escape(p.answer)}</b>" if p.answer is not None else ""
        self.detail_prompt.setText(f"Held-out row {p.index}: <b>{html.escape(one_line(p.prompt))}</b>{answer} · "
                                   f"<span style='color:{CHANGE_COLORS[p.change]}'>{CHANGE_WORDS[p.change]}</span>")
        for title, text, name, a in zip(self.answer_titles, self.answer_texts, ("Base model", f"With {c.tuned.label}"),
                                        (p.base, p.tuned)):
            verdict = (f"<span style='color:{OK}'>✓ right</span>" if a.correct
                       else f"<span style='color:{ERROR}'>✗ wrong</span>")
            scores = " · ".join(f"{k} {'–' if v is None else f'{v:.2f}'}" for k, v in a.rewards.items())
            cut = " · cut at max length" if a.truncated else ""
            title.setText(f"<b>{html.escape(name)}</b> {verdict}<br><span style='color:{MUTED}'>{a.length} tokens"
                          f"{cut} · {html.escape(scores)}</span>")
            text.setPlainText(a.completion)
