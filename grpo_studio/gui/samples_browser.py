"""The Samples page: what the model actually wrote, with the reward each function gave it.

Filters (steps, total reward, text) and the order go straight into the run store's query, which runs
in the background (samples_model.py); the table pages through the result. Picking a row shows the
completion in full with its prompt and ground truth; "Show its group" lists the completions it was
compared with.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableView,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from grpo_studio.gui.field_editors import guard_wheel
from grpo_studio.gui.samples_model import ORDERS, SamplesModel, fmt
from grpo_studio.gui.style import ERROR, MUTED, monospace_font, title_row

FILTER_DELAY_MS = 300
REFRESH_MS = 1000  # live runs: at most one store query per second, however fast samples arrive


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", ".")) if text.strip() else None
    except ValueError:
        return None


class SamplesBrowser(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.model = SamplesModel(self)
        self.group_filter: tuple[int, int] | None = None
        self.live = False

        outer = QVBoxLayout(self)
        outer.setContentsMargins(24, 18, 24, 18)
        outer.setSpacing(10)
        self.run_label = QLabel("No run open: train, or open a past run on the Runs page.")
        head = title_row("Samples", self.run_label)
        self.count_label = QLabel("")
        self.count_label.setObjectName("cardSubtitle")
        head.addWidget(self.count_label)
        outer.addLayout(head)

        bar = QHBoxLayout()
        bar.setSpacing(8)
        self.latest = QCheckBox("Latest step only")
        self.latest.setToolTip("Follow the newest step while the run trains")
        bar.addWidget(self.latest)
        bar.addSpacing(8)
        bar.addWidget(QLabel("Steps"))
        self.step_min, self.step_max = QSpinBox(), QSpinBox()
        for box, tip in ((self.step_min, "From step (0 = first)"), (self.step_max, "To step (0 = last)")):
            box.setRange(0, 10_000_000)
            box.setSpecialValueText("any")
            box.setToolTip(tip)
            box.setFixedWidth(90)
            guard_wheel(box)
        bar.addWidget(self.step_min)
        bar.addWidget(QLabel("–"))
        bar.addWidget(self.step_max)
        bar.addSpacing(8)
        bar.addWidget(QLabel("Total reward"))
        self.total_min, self.total_max = QLineEdit(), QLineEdit()
        for line, text in ((self.total_min, "min"), (self.total_max, "max")):
            line.setPlaceholderText(text)
            line.setFixedWidth(70)
        bar.addWidget(self.total_min)
        bar.addWidget(QLabel("–"))
        bar.addWidget(self.total_max)
        bar.addSpacing(8)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search…")
        self.search.setToolTip("Find samples whose prompt, completion or ground truth contains this text")
        self.search.setClearButtonEnabled(True)
        bar.addWidget(self.search, 1)
        self.order = QComboBox()
        self.order.addItems(list(ORDERS))
        guard_wheel(self.order)
        bar.addWidget(self.order)
        outer.addLayout(bar)

        self.group_bar = QWidget()
        gb = QHBoxLayout(self.group_bar)
        gb.setContentsMargins(0, 0, 0, 0)
        self.group_label = QLabel()
        gb.addWidget(self.group_label)
        back = QPushButton("Show all")
        back.clicked.connect(lambda: self.show_group(None))
        gb.addWidget(back)
        gb.addStretch(1)
        self.group_bar.hide()
        outer.addWidget(self.group_bar)

        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(24)
        self.table.setWordWrap(False)
        self.table.setShowGrid(False)
        self.table.horizontalHeader().setHighlightSections(False)
        self.table.horizontalHeader().setStretchLastSection(False)
        self.model.modelReset.connect(self._after_reset)
        self.model.loaded.connect(self._update_count)
        self.model.failed.connect(self._show_failure)
        self.table.selectionModel().currentRowChanged.connect(lambda cur, prev: self.show_detail(cur.row()))

        self.detail = QTextBrowser()
        self.detail.setOpenLinks(False)
        self.detail.anchorClicked.connect(self._link)
        self.detail.setHtml(f"<p style='color:{MUTED}'>Pick a sample to read it in full.</p>")
        # The sample in full goes below the table: the table keeps its width for the completion
        # column, and long completions wrap across the whole page.
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(self.detail)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setSizes([380, 280])
        outer.addWidget(splitter, 1)

        self._filter_timer = QTimer(self)
        self._filter_timer.setSingleShot(True)
        self._filter_timer.setInterval(FILTER_DELAY_MS)
        self._filter_timer.timeout.connect(self.apply_filters)
        for signal in (self.step_min.valueChanged, self.step_max.valueChanged, self.total_min.textChanged,
                       self.total_max.textChanged, self.search.textChanged):
            signal.connect(self._filter_timer.start)
        self.order.currentIndexChanged.connect(self.apply_filters)
        self.latest.toggled.connect(self._latest_toggled)
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(REFRESH_MS)
        self._refresh_timer.timeout.connect(self._refresh_now)
        self._selected_id: int | None = None

    # ---- run -------------------------------------------------------------------------------
    def set_run(self, run_dir: Path | None, live: bool = False) -> None:
        self.live = live
        self.group_filter = None
        self.group_bar.hide()
        self.latest.blockSignals(True)
        self.latest.setChecked(live)
        self.latest.blockSignals(False)
        self._set_range_enabled(not live)
        self.run_label.setText(f"{Path(run_dir).name}" if run_dir else "No run open.")
        self.model.set_run(run_dir)
        self.apply_filters()

    def samples_arrived(self, step: int) -> None:
        """A live run stored samples for `step`; refresh soon (throttled)."""
        if not self._refresh_timer.isActive():
            self._refresh_timer.start()

    def _refresh_now(self) -> None:
        if self.latest.isChecked():
            self.apply_filters()  # the filter itself moved to the new step
        else:
            self.model.refresh()

    def run_ended(self) -> None:
        self.live = False
        self._refresh_timer.stop()
        self._refresh_now()

    # ---- filters ---------------------------------------------------------------------------
    def _set_range_enabled(self, enabled: bool) -> None:
        for w in (self.step_min, self.step_max):
            w.setEnabled(enabled)

    def _latest_toggled(self, on: bool) -> None:
        self._set_range_enabled(not on)
        self.apply_filters()

    def filters(self) -> dict[str, Any]:
        f: dict[str, Any] = {
            "total_min": _number(self.total_min.text()),
            "total_max": _number(self.total_max.text()),
            "text": self.search.text().strip() or None,
        }
        if self.group_filter is not None:
            f["step"], f["group"] = self.group_filter
        elif self.latest.isChecked():
            f["latest"] = True  # the newest step with samples, looked up with the query
        else:
            f["step_min"] = self.step_min.value() or None
            f["step_max"] = self.step_max.value() or None
        return f

    def apply_filters(self) -> None:
        current = self.model.sample(self.table.currentIndex().row())
        self._selected_id = current.id if current is not None else None
        order = ORDERS[self.order.currentText()] if self.group_filter is None else "step"
        self.model.set_query(self.filters(), order)
        self._update_count()  # "searching…" until the rows come

    def show_group(self, key: tuple[int, int] | None) -> None:
        """List every completion of one prompt group (the ones GRPO compared), or go back to all."""
        self.group_filter = key
        self.group_bar.setVisible(key is not None)
        if key is not None:
            self.group_label.setText(f"Step {key[0]}, prompt group {key[1]}: the completions compared "
                                     "with each other")
        self.apply_filters()

    def _link(self, url) -> None:
        if url.toString().startswith("group:"):
            step, group = url.toString()[6:].split("/")
            self.show_group((int(step), int(group)))

    def _update_count(self) -> None:
        if self.model.busy:
            self.count_label.setText("searching…" if self.model.total else "reading…")
            return
        total = self.model.total
        self.count_label.setText(f"{total:,} sample{'s' if total != 1 else ''}"
                                 + (f" at step {self.model.latest_step}" if self.latest.isChecked() and
                                    self.group_filter is None else ""))

    def _show_failure(self, message: str) -> None:
        self.count_label.setText("")
        self.detail.setHtml(f"<p style='color:{ERROR}'>{html.escape(message)}</p>")

    def _after_reset(self) -> None:
        header = self.table.horizontalHeader()
        n = self.model.columnCount()
        for col in range(n):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Interactive)
        if n > 3:
            header.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(40)
        widths = {0: 52, 1: 56, 2: 110}
        metrics = header.fontMetrics()
        for col in range(n):
            if col in widths:
                self.table.setColumnWidth(col, widths[col])
            elif col >= 4:
                text = self.model.headers()[col]
                self.table.setColumnWidth(col, max(64, min(150, metrics.horizontalAdvance(text) + 24)))
        if self.model.rowCount():
            # Keep the sample being read selected across refreshes, when it is still listed.
            keep = next((i for i, r in enumerate(self.model.rows) if r.id == self._selected_id), 0)
            self.table.selectRow(keep)
        else:
            self.detail.setHtml(f"<p style='color:{MUTED}'>No samples match.</p>" if self.model.store
                                and self.model.latest_step else f"<p style='color:{MUTED}'>No samples yet.</p>")

    # ---- detail ----------------------------------------------------------------------------
    def show_detail(self, row: int) -> None:
        s = self.model.sample(row)
        if s is None:
            return
        pre = ("background:#f6f8fb; padding:8px; margin:2px 0 10px 0; white-space:pre-wrap; "
               f"font-family:{monospace_font().family()}")
        rewards = "".join(
            f"<tr><td style='padding:1px 14px 1px 0'>{html.escape(name)}</td><td align=right>{fmt(value)}</td></tr>"
            for name, value in s.rewards.items())
        length = "" if s.length is None else f" · {s.length} tokens" + (" (cut at max length)" if s.truncated
                                                                        else "")
        group_link = ("" if self.group_filter is not None else
                      f" · <a href='group:{s.step}/{s.group}'>Show its group</a>")
        truth = "<i>none</i>" if s.answer is None else html.escape(s.answer)
        self.detail.setHtml(
            f"<p style='color:{MUTED}'>Step {s.step} · prompt group {s.group}{length}{group_link}</p>"
            f"<table>{rewards}"
            f"<tr><td style='padding:4px 14px 1px 0'><b>Total</b></td><td align=right><b>{fmt(s.total)}</b></td></tr>"
            f"<tr><td style='padding:1px 14px 1px 0'>Advantage</td><td align=right>{fmt(s.advantage, 3)}</td></tr>"
            f"</table>"
            f"<h4 style='margin-bottom:2px'>Completion</h4><pre style='{pre}'>{html.escape(s.completion)}</pre>"
            f"<h4 style='margin-bottom:2px'>Ground truth</h4><pre style='{pre}'>{truth}</pre>"
            f"<h4 style='margin-bottom:2px'>Prompt</h4><pre style='{pre}'>{html.escape(s.prompt)}</pre>")
