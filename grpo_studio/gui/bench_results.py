"""What the reward bench found: a line of totals, a table per function (mean, min, max, time per
call), every completion's scores grouped as GRPO groups them, and the findings, each a link to its
line in the editor (with the traceback beneath when there is one).
"""

from __future__ import annotations

import math

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTableWidgetSelectionRange,
    QVBoxLayout,
    QWidget,
)

from grpo_studio.engine.child_messages import BenchFinding
from grpo_studio.gui.reward_bench_runner import BenchResult
from grpo_studio.gui.style import ERROR, ERROR_BG, MUTED, OK, WARNING, WARNING_BG, monospace_font

GROUP_SHADE = "#f4f6fa"  # every other group, so groups read as blocks
ROLE_FINDING = Qt.ItemDataRole.UserRole


def format_score(value: float | None) -> str:
    """A score for a table cell: `–` when there is none.

    >>> format_score(None), format_score(0.5), format_score(1/3), format_score(-12.0)
    ('–', '0.5', '0.333', '-12')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.3g}"


def format_ms(value: float | None) -> str:
    """Milliseconds per call, with the digits that matter.

    >>> format_ms(0.2566), format_ms(12.34), format_ms(1534.2), format_ms(None)
    ('0.26', '12.3', '1534', '–')
    """
    if value is None:
        return "–"
    if value < 10:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:.0f}"


def _item(text: str, *, align_right: bool = False, tip: str = "") -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
    if align_right:
        item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    if tip:
        item.setToolTip(tip)
    return item


def _table(columns: list[str]) -> QTableWidget:
    table = QTableWidget(0, len(columns))
    table.setHorizontalHeaderLabels(columns)
    table.verticalHeader().hide()
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setWordWrap(False)
    table.verticalHeader().setDefaultSectionSize(24)
    return table


def _fit_height(table: QTableWidget, max_rows: int) -> None:
    """Tall enough for its rows (up to max_rows), so a short table takes no more room than it needs."""
    rows = min(table.rowCount(), max_rows)
    height = table.horizontalHeader().height() + rows * table.verticalHeader().defaultSectionSize() + 4
    if table.rowCount() > max_rows:
        height += 2
    table.setFixedHeight(max(height, 60))


class BenchResultsView(QWidget):
    findingActivated = Signal(object)  # BenchFinding: go to its line
    roomWanted = Signal()  # a traceback opened: more height would help

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.result: BenchResult | None = None
        self._group_rows: list[tuple[int, int]] = []
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(6)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        box.addWidget(self.summary)

        self.functions = _table(["Function", "Weight", "Mean", "Min", "Max", "ms/call"])
        header = self.functions.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in range(1, 6):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.functions.setToolTip("Every function's scores over all completions, and its time per call (one call "
                                  "per group, as training calls it)")
        box.addWidget(self.functions)

        self.splitter = splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.setChildrenCollapsible(False)
        self.scores = _table(["Group", "Completion", "Total"])
        self.scores.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # the answer is usually at the end
        self.scores.setMinimumHeight(90)
        self.scores.setToolTip("Each completion's score by function and its weighted total; amber totals: a group "
                               "whose completions all score the same (zero advantage)")
        splitter.addWidget(self.scores)
        findings_box = QWidget()
        fbox = QVBoxLayout(findings_box)
        fbox.setContentsMargins(0, 0, 0, 0)
        fbox.setSpacing(4)
        self.findings = QListWidget()
        self.findings.setObjectName("findings")
        self.findings.setWordWrap(True)
        self.findings.setMinimumHeight(60)
        self.findings.setCursor(Qt.CursorShape.PointingHandCursor)
        self.findings.itemClicked.connect(self._activate)
        self.findings.itemActivated.connect(self._activate)
        self.findings.currentItemChanged.connect(lambda item, _: self._show_details(item))
        fbox.addWidget(self.findings, 1)
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.details.setFont(monospace_font(9))
        self.details.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.details.setMaximumHeight(150)
        self.details.hide()
        fbox.addWidget(self.details)
        splitter.addWidget(findings_box)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        box.addWidget(splitter, 1)

    # ---- filling ---------------------------------------------------------------------------
    def show_result(self, result: BenchResult) -> None:
        self.result = result
        self._fill_summary(result)
        self._fill_functions(result)
        self._fill_scores(result)
        self._fill_findings(result)

    def _fill_summary(self, result: BenchResult) -> None:
        n = sum(len(g.completions) for g in result.groups)
        source = "typed" if result.source == "typed" else "sampled from the model"
        facts = (f"{len(result.functions)} function{'s' if len(result.functions) != 1 else ''} on {n} completion"
                 f"{'s' if n != 1 else ''} ({source}) in {len(result.groups)} group"
                 f"{'s' if len(result.groups) != 1 else ''} · {result.seconds:.1f} s")
        errors, warnings = len(result.errors), len(result.warnings)
        if errors:
            head = f"<b style='color:{ERROR}'>✗ {errors} error{'s' if errors != 1 else ''}</b>"
        elif warnings:
            head = f"<b style='color:{WARNING}'>⚠ ran cleanly, {warnings} warning{'s' if warnings != 1 else ''}</b>"
        else:
            head = f"<b style='color:{OK}'>✓ every function ran cleanly, no warnings</b>"
        if errors and warnings:
            head += f" <b style='color:{WARNING}'>· {warnings} warning{'s' if warnings != 1 else ''}</b>"
        self.summary.setText(f"{head}<br><span style='color:{MUTED}'>{facts}</span>")

    def _fill_functions(self, result: BenchResult) -> None:
        table = self.functions
        table.clearSpans()
        table.setRowCount(len(result.functions))
        for r, f in enumerate(result.functions):
            name = _item(f.name, tip=f"{f.name}, line {f.line}" if f.line else f.name)
            table.setItem(r, 0, name)
            table.setItem(r, 1, _item(f"{f.weight:g}", align_right=True))
            if f.failed and not f.values:
                failed = _item("failed", tip="The function raised or broke the contract: see the findings below")
                failed.setForeground(QBrush(QColor(ERROR)))
                table.setItem(r, 2, failed)
                table.setSpan(r, 2, 1, 3)
            else:
                for c, value in enumerate((f.mean, f.minimum, f.maximum), start=2):
                    table.setItem(r, c, _item(format_score(value), align_right=True))
            table.setItem(r, 5, _item(format_ms(f.ms_per_call), align_right=True,
                                      tip=f"{f.calls} call{'s' if f.calls != 1 else ''}"))
            if f.failed:
                name.setForeground(QBrush(QColor(ERROR)))
        _fit_height(table, 6)

    def _fill_scores(self, result: BenchResult) -> None:
        table = self.scores
        names = [f.name for f in result.functions]
        table.clear()
        table.setColumnCount(3 + len(names))
        table.setHorizontalHeaderLabels(["Group", "Completion", *[_short(n) for n in names], "Total"])
        for c, name in enumerate(names, start=2):
            table.horizontalHeaderItem(c).setToolTip(name)
        rows = sum(len(g.completions) for g in result.groups)
        table.setRowCount(rows)
        self._group_rows = []  # (first row, row count) of each group, for findings that name groups
        r = 0
        for gi, group in enumerate(result.groups):
            self._group_rows.append((r, len(group.completions)))
            shade = QBrush(QColor(GROUP_SHADE)) if gi % 2 else None
            # The row names the group (typed and sampled groups are one per row), as the findings do.
            where = f"row {group.row}" if group.row is not None else f"group {gi}"
            prompt_tip = f"Prompt:\n{group.prompt}\n\nAnswer: {group.answer if group.answer is not None else '–'}"
            for ci, completion in enumerate(group.completions):
                cells = [_item(where if ci == 0 else "", tip=prompt_tip),
                         _item(completion.replace("\n", " ⏎ "), tip=completion)]
                for f in result.functions:
                    scores = f.scores[gi] if gi < len(f.scores) else None
                    if scores is None:
                        cell = _item("error", align_right=True, tip=f"{f.name} failed on this group")
                        cell.setForeground(QBrush(QColor(ERROR)))
                    else:
                        cell = _item(format_score(scores[ci] if ci < len(scores) else None), align_right=True)
                    cells.append(cell)
                total = group.totals[ci] if ci < len(group.totals) else None
                total_cell = _item(format_score(total), align_right=True)
                font = total_cell.font()
                font.setBold(True)
                total_cell.setFont(font)
                cells.append(total_cell)
                for c, cell in enumerate(cells):
                    if shade is not None:
                        cell.setBackground(shade)
                    table.setItem(r, c, cell)
                if group.zero_spread:
                    total_cell.setBackground(QBrush(QColor(WARNING_BG)))
                    total_cell.setToolTip("Every completion of this group has the same total: zero advantage, "
                                          "nothing is learned from this prompt")
                r += 1
        header = table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        for c in range(2, table.columnCount()):
            header.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)

    def _fill_findings(self, result: BenchResult) -> None:
        self.findings.clear()
        self.details.hide()
        for finding in result.errors + result.warnings:
            error = finding.level == "error"
            where = f"line {finding.line} · " if finding.line else ""
            item = QListWidgetItem(f"{'✗' if error else '⚠'}  {where}{finding.message}")
            item.setData(ROLE_FINDING, finding)
            item.setForeground(QBrush(QColor(ERROR if error else WARNING)))
            item.setBackground(QBrush(QColor(ERROR_BG if error else WARNING_BG)))
            tip = ("Click to go to the line in the editor" if finding.line else
                   "Click to select the group's completions above" if finding.groups else "")
            if finding.details:
                tip += ("; " if tip else "") + "the traceback is shown below"
            item.setToolTip(tip)
            self.findings.addItem(item)
        if not self.findings.count():
            item = QListWidgetItem("No errors, no warnings.")
            item.setForeground(QBrush(QColor(MUTED)))
            item.setFlags(Qt.ItemFlag.NoItemFlags)
            self.findings.addItem(item)
        self._share_room()

    def _share_room(self) -> None:
        """The findings get the room they need (up to four, and the traceback), the scores the rest."""
        rows = sum(self.findings.sizeHintForRow(i) for i in range(min(4, self.findings.count())))
        self.findings.setMinimumHeight(max(32, rows + 6))
        wanted = self.findings.minimumHeight() + (self.details.maximumHeight() + 4 if self.details.isVisible() else 0)
        total = sum(self.splitter.sizes())
        if total > 0:
            self.splitter.setSizes([max(total - wanted, 90), wanted])

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._share_room()  # the split is only known once the results are laid out

    def wanted_height(self) -> int:
        """The height that shows everything without scrolling (the panel gives it, when it can)."""
        scores = self.scores.horizontalHeader().height() + self.scores.rowCount() * \
            self.scores.verticalHeader().defaultSectionSize() + 6
        findings = sum(self.findings.sizeHintForRow(i) for i in range(self.findings.count())) + 8
        if self.details.isVisible():
            findings += self.details.maximumHeight()
        spacing = self.layout().spacing() * 3 + 8
        return self.summary.sizeHint().height() + self.functions.height() + scores + findings + spacing

    # ---- interaction -----------------------------------------------------------------------
    def finding_items(self) -> list[BenchFinding]:
        return [self.findings.item(i).data(ROLE_FINDING) for i in range(self.findings.count())
                if self.findings.item(i).data(ROLE_FINDING) is not None]

    def _show_details(self, item: QListWidgetItem | None) -> None:
        finding = item.data(ROLE_FINDING) if item is not None else None
        text = finding.details if finding is not None else ""
        if bool(text) != self.details.isVisible() or text != self.details.toPlainText():
            self.details.setPlainText(text)
            self.details.setVisible(bool(text))
            self._share_room()
            self.roomWanted.emit()

    def _activate(self, item: QListWidgetItem) -> None:
        finding = item.data(ROLE_FINDING)
        self._show_details(item)
        if finding is None:
            return
        if finding.groups:
            self.select_group(finding.groups[0])
        if finding.line:
            self.findingActivated.emit(finding)

    def select_group(self, index: int) -> None:
        """Select a group's completions in the scores table (a finding about a group was clicked)."""
        if not 0 <= index < len(self._group_rows):
            return
        first, count = self._group_rows[index]
        self.scores.clearSelection()
        selection = QTableWidgetSelectionRange(first, 0, first + count - 1, self.scores.columnCount() - 1)
        self.scores.setRangeSelected(selection, True)
        self.scores.scrollToItem(self.scores.item(first, 0), QAbstractItemView.ScrollHint.PositionAtTop)


def _short(name: str) -> str:
    """A column title: `correctness_reward` -> `correctness` (the full name is its tooltip)."""
    return name[: -len("_reward")] if name.endswith("_reward") and len(name) > len("_reward") else name
