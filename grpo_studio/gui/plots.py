"""Live metric plots: whole arrays (metric_data.py) redrawn on a timer.

Events may arrive faster than is worth painting; they only append to arrays and mark the grid
dirty, and a timer redraws at most a few times a second, one plot per turn of the event loop
(PLOTS_PER_TURN), so painting twelve plots never holds the window for long. Each curve is smoothed incrementally and
decimated to a min/max pair per pixel column before it is handed to pyqtgraph, so a run of tens of
thousands of steps draws as fast as a short one. Hovering a plot shows the step and the values under
the mouse, read from the full arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer
from PySide6.QtGui import QColor, QFont, QFontMetrics
from PySide6.QtWidgets import QGridLayout, QWidget

from grpo_studio.engine import metric_names as m
from grpo_studio.gui.metric_data import MetricData, decimate
from grpo_studio.gui.style import BORDER, CURVE_COLORS, MUTED, TEXT

REDRAW_MS = 250
PLOTS_PER_TURN = 1  # plots redrawn (and then painted) per turn of the event loop: one costs 10-30 ms
TURN_MS = 16  # between turns: longer than Qt's 5 ms wait before it paints what changed, so each turn is
# painted before the next begins (with 0, every turn ran first and all twelve plots were painted at once)
PIXELS_PER_BIN = 2  # decimation: one min/max pair per this many pixels of plot width
LEGEND_FONT_PT = "8pt"
LEGEND_ROWS = 2  # at most; beyond that, names are shortened
pg.setConfigOptions(antialias=True, background="w", foreground=TEXT)


@dataclass
class PlotSpec:
    key: str
    title: str
    metrics: list[str] = field(default_factory=list)  # exact names
    pattern: tuple[str, str] | None = None  # (prefix, suffix): one curve per matching metric
    empty_note: str = "no data yet"
    fallback: "PlotSpec | None" = None  # shown instead while this one has no data (GPU memory on a CPU)


def _label(name: str, spec: PlotSpec) -> str:
    if spec.pattern:
        prefix, suffix = spec.pattern
        return name[len(prefix): len(name) - len(suffix)]
    return {m.MEAN_LENGTH: "mean", m.MAX_LENGTH: "max"}.get(name, spec.title)


def _legend_label(name: str, spec: PlotSpec) -> str:
    """Legends are narrow: under "Reward by function", `correctness` says what `correctness_reward` does."""
    label = _label(name, spec)
    return label.removesuffix("_reward") or label if spec.key == "rewards" else label


PLOTS = [
    PlotSpec("reward", "Total reward", [m.REWARD]),
    PlotSpec("rewards", "Reward by function", pattern=(m.REWARD_PREFIX, m.MEAN_SUFFIX)),
    PlotSpec("reward_std", "Reward std in groups", [m.REWARD_STD]),
    PlotSpec("zero_std", "Groups without spread", [m.ZERO_STD_FRACTION]),
    PlotSpec("kl", "KL to the base model", [m.KL], empty_note="no KL: beta is 0"),
    PlotSpec("loss", "Loss", [m.LOSS]),
    PlotSpec("length", "Completion tokens", [m.MEAN_LENGTH, m.MAX_LENGTH]),
    PlotSpec("clipped", "Cut at max length (ratio)", [m.CLIPPED_RATIO]),
    PlotSpec("lr", "Learning rate", [m.LEARNING_RATE]),
    PlotSpec("grad_norm", "Grad norm", [m.GRAD_NORM]),
    PlotSpec("entropy", "Entropy", [m.ENTROPY]),
    PlotSpec("gpu", "Peak GPU memory (GiB)", [m.GPU_MEMORY_GIB],
             fallback=PlotSpec("throughput", "Throughput (tokens/s)", [m.TOKENS_PER_SECOND])),
]


class LineSample(pg.ItemSample):
    """A legend's line sample, lower than pyqtgraph's 20 x 20 square, so a legend row stays one text
    line high."""

    WIDTH, HEIGHT = 18, 12

    def __init__(self, item) -> None:
        super().__init__(item)
        self.setFixedWidth(self.WIDTH)
        self.setFixedHeight(self.HEIGHT)

    def boundingRect(self):
        return QRectF(0, 0, self.WIDTH, self.HEIGHT)

    def paint(self, painter, *args) -> None:
        painter.setRenderHint(painter.RenderHint.Antialiasing)
        painter.setPen(pg.mkPen(self.item.opts["pen"]))
        painter.drawLine(QPointF(0, self.HEIGHT / 2), QPointF(self.WIDTH, self.HEIGHT / 2))


class StepAxis(pg.AxisItem):
    """Steps are whole numbers: no 1.5 ticks on the x axis."""

    def tickValues(self, minVal, maxVal, size):
        levels = [(spacing, [v for v in values if float(v).is_integer()])
                  for spacing, values in super().tickValues(minVal, maxVal, size) if spacing >= 1]
        if not levels:
            return [(1.0, [float(v) for v in range(int(math.ceil(minVal)), int(maxVal) + 1)])]
        return levels[:1]  # the major ticks only: step labels never crowd into each other


class ValueAxis(pg.AxisItem):
    """Compact tick labels (1e-05, 0.25, 1.2e+04) that fit a narrow axis, without SI prefixes."""

    def tickStrings(self, values, scale, spacing):
        return tick_labels([v * scale for v in values], spacing * scale)


def tick_labels(values: list[float], spacing: float) -> list[str]:
    """As many digits as the tick spacing needs, so neighbouring ticks never read the same."""
    if not values:
        return []
    biggest = max(abs(v) for v in values)
    step_digits = math.floor(math.log10(spacing)) if spacing > 0 else 0
    if biggest and (biggest < 1e-3 or biggest >= 1e5 or -step_digits > 4):
        decimals = max(0, math.floor(math.log10(biggest)) - step_digits)
        out = []
        for v in values:
            if v == 0:
                out.append("0")
                continue
            mantissa, exp = f"{v:.{decimals}e}".split("e")
            out.append(f"{mantissa}e{int(exp)}")
        return out
    decimals = max(0, -step_digits)
    return [f"{v:.{decimals}f}" for v in values]


class MetricPlot(pg.PlotWidget):
    """One small plot: raw values faint, smoothed values bold, values under the mouse on hover."""

    def __init__(self, spec: PlotSpec, parent: QWidget | None = None):
        super().__init__(parent, axisItems={"bottom": StepAxis("bottom"), "left": ValueAxis("left")})
        self.spec = spec
        self.shown_spec = spec
        self.curves: dict[str, tuple[pg.PlotDataItem, pg.PlotDataItem]] = {}
        self._drawn_version = -1
        self._smoothing = -1.0
        self._drawn_bins = 0
        self._x_range: tuple[float, float] | None = None
        self._y_range: tuple[float, float] | None = None
        self._data: MetricData | None = None  # what was drawn last: the hover reads its full arrays
        item = self.getPlotItem()
        item.setTitle(f"<span style='font-size:10pt; font-weight:600'>{spec.title}</span>")
        item.showGrid(x=True, y=True, alpha=0.15)
        item.setMenuEnabled(False)
        item.hideButtons()
        for axis in ("left", "bottom"):
            ax = item.getAxis(axis)
            ax.setPen(pg.mkPen(BORDER))
            ax.setTextPen(pg.mkPen(MUTED))
        item.getAxis("left").enableAutoSIPrefix(False)
        # Room for "-0.250" from the start; longer labels ("9.95e-4") widen the axis when they come.
        item.getAxis("left").setStyle(autoExpandTextSpace=True, tickTextWidth=44)
        # Small enough that three rows fit beside a two-line banner in an 800-pixel window: a grid
        # squeezed below its minimum is clipped, and the bottom row loses its step labels.
        self.setMinimumSize(200, 120)
        self.setMouseEnabled(x=False, y=False)
        self.legend: pg.LegendItem | None = None
        self.legend_names: list[str] = []  # whole; the legend may show them shortened
        self.empty = pg.TextItem(spec.empty_note, color=MUTED, anchor=(0.5, 0.5))
        self.empty.setPos(0.5, 0.5)
        item.addItem(self.empty, ignoreBounds=True)
        item.setRange(xRange=(0, 1), yRange=(0, 1), padding=0)
        self.cursor_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("#9aa1ad", style=Qt.PenStyle.DashLine))
        self.cursor_line.hide()
        item.addItem(self.cursor_line, ignoreBounds=True)
        self.hover = pg.TextItem(color=TEXT, fill=pg.mkBrush(255, 255, 255, 230), border=pg.mkPen(BORDER))
        self.hover.setZValue(100)
        self.hover.hide()
        item.addItem(self.hover, ignoreBounds=True)
        self.scene().sigMouseMoved.connect(self._mouse_moved)
        self.hover_text = ""

    # ---- data ------------------------------------------------------------------------------
    def names(self, data: MetricData) -> list[str]:
        spec = self.active_spec(data)
        if spec.pattern:
            prefix, suffix = spec.pattern
            return sorted(n for n in data.series if n.startswith(prefix) and n.endswith(suffix))
        return [n for n in spec.metrics if n in data.series]

    def active_spec(self, data: MetricData) -> PlotSpec:
        spec = self.spec
        if spec.fallback is not None and not any(n in data.series for n in spec.metrics):
            return spec.fallback
        return spec

    def bins(self) -> int:
        """How many min/max pairs a curve is decimated to: one per PIXELS_PER_BIN of the plot's width, the
        width rounded down to 32 pixels (a value axis that widens for its labels then draws nothing again)."""
        return max(50, int(self.getPlotItem().vb.width()) // 32 * 32 // PIXELS_PER_BIN)

    def is_current(self, data: MetricData, smoothing: float) -> bool:
        return (data.version, smoothing, self.bins()) == (self._drawn_version, self._smoothing, self._drawn_bins)

    def redraw(self, data: MetricData, smoothing: float) -> None:
        if self.is_current(data, smoothing):
            return
        self._drawn_version, self._smoothing, self._drawn_bins = data.version, smoothing, self.bins()
        self._data = data
        spec = self.active_spec(data)
        if spec is not self.shown_spec:
            self.shown_spec = spec
            self.getPlotItem().setTitle(f"<span style='font-size:10pt; font-weight:600'>{spec.title}</span>")
            self.empty.setText(spec.empty_note)
            for raw, smoothed in self.curves.values():
                self.removeItem(raw)
                self.removeItem(smoothed)
            self.curves.clear()
        names = self.names(data)
        for i, name in enumerate(names):
            if name not in self.curves:
                self._add_curve(name, len(self.curves))
            raw, smoothed = self.curves[name]
            series = data.series[name]
            steps, values = series.steps, series.values
            bins = self._drawn_bins
            if smoothing > 0 and len(values) > 1:
                raw.setData(*decimate(steps, values, bins))
                raw.show()
                smoothed.setData(*decimate(steps, series.smoothed(smoothing), bins))
            else:
                raw.hide()
                smoothed.setData(*decimate(steps, values, bins))
        has_data = any(data.series[n].n for n in names)
        self.empty.setVisible(not has_data)
        if has_data:
            # Steps set the x range; y follows the data.
            first = min(data.series[n].steps[0] for n in names if data.series[n].n)
            last = max(data.series[n].steps[-1] for n in names if data.series[n].n)
            vb = self.getPlotItem().vb
            start, end = step_range(first, last)
            if (start, end) != self._x_range:  # a new range redraws both axes: the costliest part of a redraw
                self._x_range = (start, end)
                vb.setXRange(start, end, padding=0)
            y_range = value_range(data, names)
            if y_range is not None and y_range != self._y_range:  # as for x: only when it really moves
                self._y_range = y_range
                vb.setYRange(*y_range, padding=0)
        else:
            for raw, smoothed in self.curves.values():
                raw.setData([], [])
                smoothed.setData([], [])
            self.getPlotItem().setRange(xRange=(0, 1), yRange=(0, 1), padding=0)
            self._x_range = self._y_range = None
        if len(names) > 1 and self.legend is None:
            self._add_legend()
            for name, (raw, smoothed) in self.curves.items():
                self._legend_entry(name, smoothed)

    # ---- legend ----------------------------------------------------------------------------
    def _add_legend(self) -> None:
        """The legend in a row of its own under the step axis, entries side by side: over the plot
        area it covered the curves (the newest values, top right, are the ones people look at)."""
        item = self.getPlotItem()
        self.legend = pg.LegendItem(labelTextSize=LEGEND_FONT_PT, labelTextColor=MUTED, frame=False, horSpacing=2,
                                    verSpacing=0, sampleType=LineSample)
        self.legend.layout.setContentsMargins(0, 0, 0, 0)
        item.layout.addItem(self.legend, 4, 1)  # rows: title, top axis, plot, step axis, then this
        item.layout.setAlignment(self.legend, Qt.AlignmentFlag.AlignHCenter)

    def legend_label(self, name: str) -> str:
        """A curve's name in the legend (the run comparison names the run too)."""
        return _legend_label(name, self.shown_spec)

    def hover_label(self, name: str) -> str:
        """A curve's name in the hover text."""
        return _label(name, self.shown_spec)

    def _legend_entry(self, name: str, curve: pg.PlotDataItem) -> None:
        self.legend_names.append(self.legend_label(name))
        self.legend.addItem(curve, self.legend_names[-1])
        label = self.legend.items[-1][1]
        label.item.document().setDocumentMargin(1)  # Qt's 4-pixel text margin made each row 28 pixels high
        label.updateMin()
        self._fit_legend()

    def _fit_legend(self) -> None:
        """As many entries side by side as the plot's width holds, in at most two rows; names that still
        do not fit are shortened in the middle (the hover shows them whole). A legend wider than the plot
        would widen its column and push the plot out of its frame."""
        legend = self.__dict__.get("legend")  # resizeEvent comes during the base class's __init__ too
        if legend is None or not legend.items:
            return
        font = QFont(self.font())
        font.setPointSizeF(float(LEGEND_FONT_PT.removesuffix("pt")))
        metrics = QFontMetrics(font)
        room = max(80.0, self.width() - self.getPlotItem().getAxis("left").width() - 12)
        cell_extra = LineSample.WIDTH + 14  # the line sample and the spacing around a label
        widths = [metrics.horizontalAdvance(n) + cell_extra for n in self.legend_names]
        columns = len(widths)
        while columns > 1 and sum(sorted(widths, reverse=True)[:columns]) > room:
            columns -= 1
        columns = max(columns, math.ceil(len(widths) / LEGEND_ROWS))
        fit = int(room / columns - cell_extra)
        for (sample, label), name in zip(legend.items, self.legend_names):
            text = metrics.elidedText(name, Qt.TextElideMode.ElideMiddle, max(fit, 24))
            if label.text != text:
                label.setText(text)
        legend.setColumnCount(columns)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit_legend()

    def _add_curve(self, name: str, index: int) -> None:
        color = QColor(CURVE_COLORS[index % len(CURVE_COLORS)])
        faint = QColor(color)
        faint.setAlpha(70)
        # Already decimated to the plot's width (redraw): no downsampling or clipping left to pyqtgraph.
        raw = self.plot(pen=pg.mkPen(faint, width=1))
        smoothed = self.plot(pen=pg.mkPen(color, width=2))
        self.curves[name] = (raw, smoothed)
        if self.legend is not None:
            self._legend_entry(name, smoothed)

    # ---- hover -----------------------------------------------------------------------------
    def _mouse_moved(self, pos: QPointF) -> None:
        item = self.getPlotItem()
        if not item.sceneBoundingRect().contains(pos) or not self.curves:
            self.cursor_line.hide()
            self.hover.hide()
            return
        x = item.vb.mapSceneToView(pos).x()
        self.show_values_at(x)

    def show_values_at(self, x: float) -> str:
        """Show the values nearest to step `x`; returns the text (also used by tests)."""
        lines, step = [], None
        data = self._data
        for name, (raw, smoothed) in self.curves.items():
            series = data.series.get(name) if data is not None else None
            if series is None or not series.n:  # the curves hold a decimated copy: read the full arrays
                continue
            xs = series.steps
            i = int(np.clip(np.searchsorted(xs, x), 0, len(xs) - 1))
            if i > 0 and abs(xs[i - 1] - x) < abs(xs[i] - x):
                i -= 1
            step = xs[i]
            raw_text = ""
            if raw.isVisible():
                shown = series.smoothed(self._smoothing)[i]
                raw_text = f" (raw {_fmt(series.values[i])})"
            else:
                shown = series.values[i]
            lines.append(f"{self.hover_label(name)}: {_fmt(shown)}{raw_text}")
        if step is None:
            return ""
        self.hover_text = f"step {int(step)}\n" + "\n".join(lines)
        self.hover.setText(self.hover_text)
        vb = self.getPlotItem().vb
        (x0, x1), (y0, y1) = vb.viewRange()
        self.hover.setAnchor((1, 0) if step > (x0 + x1) / 2 else (0, 0))
        self.hover.setPos(step, y1)
        self.cursor_line.setPos(step)
        self.cursor_line.show()
        self.hover.show()
        return self.hover_text

    def leaveEvent(self, event) -> None:
        self.cursor_line.hide()
        self.hover.hide()
        super().leaveEvent(event)


def step_range(first: float, last: float) -> tuple[float, float]:
    """The step axis from a little before the first step to a round number a little past the newest one,
    so a live run's axis (and every label on it) stays put for many steps instead of moving with each.

    >>> step_range(1, 20000), step_range(1, 20600), step_range(1, 50), step_range(1, 3)
    ((0.0, 20500.0), (0.0, 22000.0), (0.0, 52.0), (0.9, 3.1))
    """
    span = max(last - first, 1.0)
    grain = round_grain(span * 0.05)  # about a twentieth of the run
    if grain < 1:  # a short run: a small margin each side, as auto-range would leave
        return first - span * 0.05, max(last, first + 1) + span * 0.05
    return math.floor(first / grain) * grain, math.ceil((last + span * 0.02) / grain) * grain


def round_grain(x: float) -> float:
    """The 1-2-5 number at or below `x` (0.2, 0.5, 1, 2, 5, 10, ...)."""
    grain = 10.0 ** math.floor(math.log10(x))
    return grain * (5 if x >= 5 * grain else 2 if x >= 2 * grain else 1)


def value_range(data: MetricData, names: list[str]) -> tuple[float, float] | None:
    """The value axis: every raw value of the plot's curves (smoothed values lie between them, so the
    smoothing never moves it), a little room, rounded out to a twentieth of the span, so most new steps do
    not move it either; None when there are no finite values.

    A constant curve (a constant learning rate, a loss of exactly 0) gets a range around its value: rounding
    float noise would label ticks 1.000000000000002e-1.

    >>> d = MetricData(); d.load({"a": ([1, 2, 3], [0.12, 0.5, 0.93]), "lr": ([1, 2], [1e-4, 1e-4])})
    >>> value_range(d, ["a"]), value_range(d, ["lr"])
    ((0.08, 0.98), (9e-05, 0.00011))
    """
    values = np.concatenate([data.series[n].values for n in names if data.series[n].n])
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    low, high = float(values.min()), float(values.max())
    middle = (low + high) / 2
    if high - low <= 1e-9 * max(abs(middle), 1e-12):
        pad = abs(middle) * 0.1 if middle else 0.5
        return middle - pad, middle + pad
    span = high - low
    grain = round_grain(span / 20)
    return math.floor((low - span * 0.04) / grain) * grain, math.ceil((high + span * 0.04) / grain) * grain


def _fmt(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    a = abs(v)
    if a != 0 and (a < 1e-3 or a >= 1e5):
        return f"{v:.3e}"
    return f"{v:.4g}"


class PlotGrid(QWidget):
    """The training view's plots, redrawn on a timer when new metrics arrived, one per turn of the
    event loop (painting all twelve at once held the window for a quarter of a second on a long run)."""

    COLUMNS = 4
    plot_class = MetricPlot  # the run comparison (run_overlay.py) draws several runs per plot

    def __init__(self, data: MetricData, parent: QWidget | None = None):
        super().__init__(parent)
        self.data = data
        self.smoothing = 0.6
        self.plots = {spec.key: self.plot_class(spec) for spec in PLOTS}
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(6)
        for i, plot in enumerate(self.plots.values()):
            grid.addWidget(plot, i // self.COLUMNS, i % self.COLUMNS)
        self.timer = QTimer(self)
        self.timer.setInterval(REDRAW_MS)
        self.timer.timeout.connect(self.schedule)
        self.timer.start()
        self._turn = QTimer(self)  # the next few plots, once what the last turn drew has been painted
        self._turn.setSingleShot(True)
        self._turn.setInterval(TURN_MS)
        self._turn.timeout.connect(self._redraw_some)

    def set_smoothing(self, weight: float) -> None:
        self.smoothing = weight
        self.schedule()

    def schedule(self) -> None:
        """Redraw what changed, one plot per turn of the event loop, beginning with the next turn (not
        inside whatever handler asked, which has its own work to finish and paint)."""
        if self.isVisible() and not self._turn.isActive() and not self.is_current():
            self._turn.start()

    def _redraw_some(self) -> None:
        if not self.isVisible():
            return  # drawn when shown again; the arrays keep growing meanwhile
        stale = [p for p in self.plots.values() if not p.is_current(self.data, self.smoothing)]
        for plot in stale[:PLOTS_PER_TURN]:
            plot.redraw(self.data, self.smoothing)
        if len(stale) > PLOTS_PER_TURN:
            self._turn.start()

    def is_current(self) -> bool:
        """Every plot shows the data and smoothing there are now."""
        return all(p.is_current(self.data, self.smoothing) for p in self.plots.values())

    def redraw(self) -> None:
        """Redraw every plot now (a screenshot, a test); the window itself goes through `schedule`."""
        if not self.isVisible():
            return
        for plot in self.plots.values():
            plot.redraw(self.data, self.smoothing)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.schedule()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.schedule()  # wider plots get more points
