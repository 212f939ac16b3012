"""Several runs on the Training page's plots at once: each run's curves in its own colour (runs are
lettered A, B, C, named in the key above the plots), with the settings that differ between their
frozen run files listed beside them.

The plots are the Training page's own (plots.py), drawing run-qualified series: a metric `reward`
of run A is the series `A\treward`. Nothing here changes how a single run is drawn.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from grpo_studio.gui.metric_data import MetricData
from grpo_studio.gui.plots import MetricPlot, PlotGrid, PlotSpec, _legend_label
from grpo_studio.gui.style import CURVE_COLORS, MUTED
from grpo_studio.gui.tasks import TaskRunner, TaskState

SEP = "\t"
DASHES = [Qt.PenStyle.SolidLine, Qt.PenStyle.DashLine, Qt.PenStyle.DotLine, Qt.PenStyle.DashDotLine]
MAX_RUNS = 6


def run_key(index: int) -> str:
    return chr(ord("A") + index)


def read_stores(run_dirs: list[Path], state: TaskState) -> dict[int, Any]:
    """Each run's store (a StoredRun), or the exception that kept it from being read (off the GUI thread)."""
    from grpo_studio.gui.stored_run import read_stored_run

    stored: dict[int, Any] = {}
    for i, run_dir in enumerate(run_dirs):
        if state.is_cancelled():  # another comparison replaced this one
            break
        try:
            stored[i] = read_stored_run(run_dir)
        except Exception as exc:  # noqa: BLE001 - a damaged store is said in the key, the others are drawn
            stored[i] = exc
    return stored


class OverlayPlot(MetricPlot):
    """A Training plot whose curves come from several runs: colour = run, line style = metric."""

    def _split(self, name: str) -> tuple[str, str]:
        key, metric = name.split(SEP, 1)
        return key, metric

    def names(self, data: MetricData) -> list[str]:
        spec = self.active_spec(data)
        by_run: dict[str, list[str]] = {}
        for name in data.series:
            key, metric = self._split(name)
            by_run.setdefault(key, []).append(metric)
        out = []
        for key in sorted(by_run):
            metrics = by_run[key]
            if spec.pattern:
                prefix, suffix = spec.pattern
                chosen = sorted(m for m in metrics if m.startswith(prefix) and m.endswith(suffix))
            else:
                chosen = [m for m in spec.metrics if m in metrics]
            out += [f"{key}{SEP}{m}" for m in chosen]
        return out

    def active_spec(self, data: MetricData) -> PlotSpec:
        spec = self.spec
        if spec.fallback is not None and not any(self._split(n)[1] in spec.metrics for n in data.series):
            return spec.fallback
        return spec

    def legend_label(self, name: str) -> str:
        key, metric = self._split(name)
        label = _legend_label(metric, self.shown_spec)
        return key if label == self.shown_spec.title else f"{key} {label}"

    def hover_label(self, name: str) -> str:
        return self.legend_label(name)

    def _add_curve(self, name: str, index: int) -> None:
        key, _ = self._split(name)
        color = QColor(CURVE_COLORS[(ord(key) - ord("A")) % len(CURVE_COLORS)])
        style = DASHES[sum(1 for n in self.curves if self._split(n)[0] == key) % len(DASHES)]
        faint = QColor(color)
        faint.setAlpha(60)
        raw = self.plot(pen=pg.mkPen(faint, width=1, style=style))
        smoothed = self.plot(pen=pg.mkPen(color, width=2, style=style))  # (decimated by redraw, as in MetricPlot)
        self.curves[name] = (raw, smoothed)
        if self.legend is not None:
            self._legend_entry(name, smoothed)


class OverlayGrid(PlotGrid):
    COLUMNS = 3  # the differences take the fourth column's room
    plot_class = OverlayPlot


class RunComparisonView(QWidget):
    """The runs' curves overlaid, a key naming each run, and the settings that differ."""

    loaded = Signal(object)  # the run folders, once every store was read
    closeRequested = Signal()

    def __init__(self, smoothing: float = 0.6, parent: QWidget | None = None):
        super().__init__(parent)
        self.run_dirs: list[Path] = []
        self.data = MetricData()
        self.differences: list[tuple[str, list[str]]] = []
        self.reading = TaskRunner(self)  # the runs' stores, read off the GUI thread; a new comparison drops it
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(8)
        top = QHBoxLayout()
        self.key = QLabel()
        self.key.setTextFormat(Qt.TextFormat.RichText)
        self.key.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.key.setToolTip("Each run's colour on every plot; a plot with several curves per run tells them apart "
                            "by line style")
        top.addWidget(self.key, 1)
        self.back = QPushButton("Back to one run")
        self.back.setToolTip("Leave the comparison: the Training page shows the run opened last")
        self.back.clicked.connect(self.closeRequested)
        top.addWidget(self.back, 0, Qt.AlignmentFlag.AlignTop)
        box.addLayout(top)

        self.grid = OverlayGrid(self.data)
        self.grid.smoothing = smoothing
        side = QWidget()
        side.setMinimumWidth(290)  # a setting's path and two values side by side, unclipped
        side_box = QVBoxLayout(side)
        side_box.setContentsMargins(0, 0, 0, 0)
        side_box.setSpacing(4)
        title = QLabel("Settings that differ")
        title.setObjectName("cardTitle")
        side_box.addWidget(title)
        self.diff_note = QLabel()
        self.diff_note.setObjectName("cardSubtitle")
        self.diff_note.setWordWrap(True)
        side_box.addWidget(self.diff_note)
        # One setting per entry, each run's value on a line of its own under it: values as long as a
        # model's path stay readable at any width (elided in the middle, whole in the tooltip).
        self.tree = QTreeWidget()
        self.tree.setHeaderHidden(True)
        self.tree.setRootIsDecorated(False)
        self.tree.setIndentation(14)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.tree.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        side_box.addWidget(self.tree, 1)
        self.splitter = splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.grid)
        splitter.addWidget(side)
        splitter.setStretchFactor(0, 4)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([760, 300])
        splitter.setChildrenCollapsible(False)
        box.addWidget(splitter, 1)

    def set_smoothing(self, weight: float) -> None:
        self.grid.set_smoothing(weight)

    def set_runs(self, run_dirs: list[Path]) -> None:
        """Read each run's store in the background; `loaded` when all are drawn."""
        self.run_dirs = [Path(d) for d in run_dirs][:MAX_RUNS]
        self.data = MetricData()
        smoothing = self.grid.smoothing
        self.grid.hide()
        self.grid.deleteLater()  # fresh plots: the previous comparison's curves and legends go with them
        self.grid = OverlayGrid(self.data)
        self.grid.smoothing = smoothing
        self.splitter.insertWidget(0, self.grid)
        self._show_key({})
        self._show_differences()
        run_dirs = list(self.run_dirs)
        self.reading.start(lambda state: read_stores(run_dirs, state), self._arrived)

    def _arrived(self, stored: dict[int, Any]) -> None:
        for i, item in stored.items():
            if not isinstance(item, BaseException):
                self.data.load({f"{run_key(i)}{SEP}{name}": arrays for name, arrays in item.metrics.items()})
        self._show_key(stored)
        self.grid.redraw()
        self.loaded.emit(self.run_dirs)

    def _show_key(self, stored: dict[int, Any]) -> None:
        lines = []
        for i, run_dir in enumerate(self.run_dirs):
            color = CURVE_COLORS[i % len(CURVE_COLORS)]
            item = stored.get(i)
            if item is None:
                what = "reading…"
            elif isinstance(item, BaseException):
                what = f"cannot read its store: {html.escape(str(item))}"
            else:
                meta = item.meta
                steps = max((int(s[0][-1]) for s in item.metrics.values() if len(s[0])), default=0)
                what = f"{steps} steps · {html.escape(str(meta.get('status', '') or 'not started'))}"
            lines.append(f"<span style='color:{color}; font-size:13pt'>■</span> <b>{run_key(i)}</b> "
                         f"{html.escape(run_dir.name)} <span style='color:{MUTED}'>· {what}</span>")
        self.key.setText("&nbsp;&nbsp;&nbsp;&nbsp;".join(lines))

    def _show_differences(self) -> None:
        from grpo_studio.config.metadata import all_field_specs
        from grpo_studio.engine.run_diff import config_differences

        try:
            self.differences = config_differences(self.run_dirs)
            problem = ""
        except (OSError, ValueError) as exc:
            self.differences, problem = [], f"Cannot read a run file: {exc}"
        helps = {spec.path: spec.help for spec in all_field_specs()}
        keys = [run_key(i) for i in range(len(self.run_dirs))]
        self.tree.clear()
        for path, values in self.differences:
            top = QTreeWidgetItem([path])
            font = top.font(0)
            font.setBold(True)
            top.setFont(0, font)
            top.setToolTip(0, helps.get(path.split("[")[0], "the reward functions, as each run froze them"
                                        if path == "rewards.py" else path))
            for i, value in enumerate(values):
                line = QTreeWidgetItem([f"{keys[i]}   {value}"])
                line.setForeground(0, QColor(CURVE_COLORS[i % len(CURVE_COLORS)]))
                line.setToolTip(0, f"{keys[i]} ({self.run_dirs[i].name}): {value}")
                top.addChild(line)
            self.tree.addTopLevelItem(top)
        self.tree.expandAll()
        self.tree.setVisible(bool(self.differences))
        if problem:
            self.diff_note.setText(problem)
        elif self.differences:
            n = len(self.differences)
            self.diff_note.setText(f"{n} setting{' differs' if n == 1 else 's differ'} between the runs' frozen "
                                   "run files (config.toml):")
        else:
            self.diff_note.setText("None: the runs' frozen run files and reward files are the same. Their curves "
                                   "differ by chance alone (sampling, and where each run stopped or resumed).")
