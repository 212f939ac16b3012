"""A table model over the run store's samples, loaded a page at a time as the view scrolls.

Only the rows scrolled into view are in memory (Qt asks `canFetchMore`/`fetchMore`), so a run with
millions of sampled completions browses like a small one. Every query (a new filter or order, the
next page, a live run's new rows) runs on a thread of its own with its own read-only connection: a
text search looks at every completion of a long run, which takes a second, and the window must not
wait for it. The newest query wins: starting one cancels (and interrupts) the one before, and rows
come back through a queued signal; until they do, the table keeps showing what it had.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt, Signal
from PySide6.QtGui import QBrush, QColor

from grpo_studio.engine.error_text import first_line
from grpo_studio.gui.tasks import TaskRunner, TaskState

PAGE = 200
ORDERS = {"Step, then prompt group": "step", "Newest step first": "-step",
          "Total reward, high first": "-total", "Total reward, low first": "total"}

SHADE = QBrush(QColor("#f4f7fc"))
POSITIVE = QBrush(QColor("#1f7a45"))
NEGATIVE = QBrush(QColor("#c62828"))


def one_line(text: str, limit: int = 160) -> str:
    text = text.replace("\r", "").replace("\n", " ⏎ ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


@dataclass
class Page:
    """What one query found (on the query thread)."""

    reward_names: list[str]
    total: int | None  # None: not counted (the next page of a query already counted)
    rows: list[Any]
    latest_step: int  # the newest step with samples (the "latest step only" filter's step)


class SampleReader:
    """The query thread's side: one read-only connection to one run's store, reused from query to query.
    Used by the model's TaskRunner thread only (one thread: no lock needed)."""

    def __init__(self) -> None:
        self.store: Any = None
        self.run_dir: Path | None = None

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    def open(self, run_dir: Path | None) -> Any:
        if run_dir != self.run_dir:
            self.close()
            self.run_dir = run_dir
        if self.store is None and run_dir is not None and (run_dir / "run.db").is_file():
            from grpo_studio.engine.store import RunStore

            self.store = RunStore(run_dir, readonly=True)
        return self.store

    def query(self, state: TaskState, run_dir: Path | None, filters: dict[str, Any], order: str, offset: int,
              count: bool) -> Page:
        store = self.open(run_dir)
        if store is None:
            return Page([], 0 if count else None, [], 0)  # no store yet: a run that is starting
        state.on_cancel(store.db.interrupt)  # a newer query wants the connection: stop this one now
        filters = dict(filters)
        latest = self._latest_step(store)
        if filters.pop("latest", False):
            filters["step"] = latest
        names = list(store.meta().get("reward_names") or [])
        total = store.count_samples(**filters) if count and not state.is_cancelled() else None
        rows = [] if state.is_cancelled() else store.samples(limit=PAGE, offset=offset, order=order, **filters)
        if not names and rows:
            names = list(rows[0].rewards)
        return Page(names, total, rows, latest)

    @staticmethod
    def _latest_step(store: Any) -> int:
        row = store.db.execute("SELECT MAX(step) FROM samples").fetchone()
        return int(row[0]) if row and row[0] is not None else 0


class SamplesModel(QAbstractTableModel):
    loaded = Signal()  # a query's rows (and its count) are shown
    failed = Signal(str)  # the store could not be read: one line

    def __init__(self, parent: Any = None):
        super().__init__(parent)
        self.run_dir: Path | None = None
        self.filters: dict[str, Any] = {}
        self.order = "step"
        self.reward_names: list[str] = []
        self.rows: list[Any] = []
        self.shades: list[bool] = []
        self.total = 0
        self.latest_step = 0
        self.error = ""
        self.busy = False  # a new query's rows are not shown yet
        self._queries = TaskRunner(self)
        self._reader = SampleReader()
        self._headers: tuple[tuple, list[str]] = ((None,), [])
        self._refresh_wanted = False

    # ---- source ----------------------------------------------------------------------------
    def set_run(self, run_dir: Path | None) -> None:
        """Show another run's samples (queried by the next `set_query` or `reload`)."""
        self.run_dir = Path(run_dir) if run_dir else None
        self.reward_names = []
        self.beginResetModel()
        self.rows, self.shades, self.total, self.latest_step, self.error = [], [], 0, 0, ""
        self.endResetModel()

    @property
    def store(self) -> Any:
        """Whether there is a store to query (the connection itself lives on the query thread)."""
        return self.run_dir if self.run_dir is not None and (self.run_dir / "run.db").is_file() else None

    def close(self, timeout_ms: int = 10000) -> None:
        """Close the connection on its thread and wait for it (the window is closing)."""
        reader = self._reader
        self._queries.start(lambda state: reader.close(), lambda _: None)
        self._queries.pool.waitForDone(timeout_ms)

    # ---- querying --------------------------------------------------------------------------
    def set_query(self, filters: dict[str, Any], order: str) -> None:
        self.filters = {k: v for k, v in filters.items() if v not in (None, "", False)}
        self.order = order
        self.reload()

    def reload(self) -> None:
        """Start over from the first page (filters or order changed); the rows shown stay until the new
        ones come."""
        self.busy = True
        self._refresh_wanted = False
        self._run("reload", offset=0, count=True)

    def refresh(self) -> None:
        """New samples were written: show them without losing the place the user is at."""
        if self._queries.is_running():
            self._refresh_wanted = True  # after the query in flight
            return
        self._run("count", offset=0, count=True)

    def _run(self, task: str, offset: int, count: bool) -> None:
        """Query on the reader's thread: "reload" (a new first page), "page" (the next one) or "count"."""
        reader, run_dir, filters, order = self._reader, self.run_dir, dict(self.filters), self.order
        self._queries.start(lambda state: reader.query(state, run_dir, filters, order, offset, count),
                            lambda page: self._arrived(task, offset, page), self._query_failed)

    def _arrived(self, task: str, offset: int, page: Page) -> None:
        self.latest_step = page.latest_step
        self.error = ""
        if task == "reload":
            self.beginResetModel()
            self.rows, self.shades, self.total = [], [], page.total or 0
            self.reward_names = page.reward_names
            self._append(page.rows)
            self.busy = False
            self.endResetModel()
            self.loaded.emit()
        elif task == "page":
            if offset == len(self.rows) and page.rows:
                self.beginInsertRows(QModelIndex(), offset, offset + len(page.rows) - 1)
                self._append(page.rows)
                self.endInsertRows()
            elif offset == len(self.rows):
                self.total = offset  # fewer rows than counted (a run resumed meanwhile)
        else:  # "count", for a live run
            self._counted(page)
            return
        self._after_query()

    def _counted(self, page: Page) -> None:
        """A live run's new count: append its new rows, or start over when they may land anywhere."""
        total = page.total or 0
        if page.reward_names != self.reward_names or (total != self.total and (self.order != "step"
                                                                                or total < self.total)):
            self.reload()
            return
        everything_loaded = len(self.rows) == self.total
        changed, self.total = total != self.total, total
        if changed:
            self.loaded.emit()
        if changed and everything_loaded and len(self.rows) < PAGE:
            self.fetchMore(QModelIndex())  # in step order new rows go at the end: append them now
        else:
            self._after_query()

    def _after_query(self) -> None:
        if self._refresh_wanted and not self._queries.is_running():
            self._refresh_wanted = False
            self.refresh()

    def _query_failed(self, exc: BaseException, details: str) -> None:
        self.busy = False
        text = first_line(exc)
        self.error = f"Cannot read the samples: {text}"
        self.failed.emit(self.error)
        self._after_query()

    def _append(self, page: list[Any]) -> None:
        """Add rows; the shading flips at each new prompt group, so a group reads as one block."""
        shading = self.order in ("step", "-step")
        for row in page:
            prev = self.rows[-1] if self.rows else None
            if prev is None:
                shade = False
            elif (prev.step, prev.group) == (row.step, row.group):
                shade = self.shades[-1]
            else:
                shade = not self.shades[-1]
            self.rows.append(row)
            self.shades.append(shade if shading else False)

    def canFetchMore(self, parent: QModelIndex = QModelIndex()) -> bool:
        return (not parent.isValid() and self.run_dir is not None and len(self.rows) < self.total
                and not self._queries.is_running())

    def fetchMore(self, parent: QModelIndex = QModelIndex()) -> None:
        """The next page, queried in the background; its rows are inserted when they come."""
        if self.canFetchMore(parent):
            self._run("page", offset=len(self.rows), count=False)

    # ---- table -----------------------------------------------------------------------------
    def headers(self) -> list[str]:
        names = tuple(self.reward_names)
        if self._headers[0] != names:  # asked for at every paint: made once per set of reward functions
            # "correctness_reward" -> "correctness": the column is narrow, the tooltip has the full name.
            short = [n[: -len("_reward")] if n.endswith("_reward") and len(n) > 7 else n for n in names]
            self._headers = (names, ["Step", "Group", "Prompt", "Completion", *short, "Total", "Advantage", "Tokens"])
        return self._headers[1]

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.headers())

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.headers()[section]
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.ToolTipRole:
            name = self.headers()[section]
            if 4 <= section < 4 + len(self.reward_names):
                return f"Reward from {self.reward_names[section - 4]} (unweighted)"
            return {"Group": "Completions of the same prompt within a step form a group; GRPO compares them",
                    "Total": "Weighted sum of the rewards, as the trainer used it",
                    "Advantage": "Reward relative to the group: > 0 is reinforced, < 0 discouraged",
                    "Tokens": "Completion length in tokens (✂ = cut at max_completion_length)"}.get(
                        name)
        return None

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        col = index.column()
        n_rewards = len(self.reward_names)
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return row.step
            if col == 1:
                return row.group
            if col == 2:
                return one_line(row.prompt, 80)
            if col == 3:
                return one_line(row.completion)
            if col < 4 + n_rewards:
                return fmt(row.rewards.get(self.reward_names[col - 4]))
            k = col - 4 - n_rewards
            if k == 0:
                return fmt(row.total)
            if k == 1:
                return fmt(row.advantage, 2)
            if k == 2:
                return "–" if row.length is None else f"{row.length}{' ✂' if row.truncated else ''}"
        if role == Qt.ItemDataRole.TextAlignmentRole and (col < 2 or col >= 4):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.BackgroundRole and self.shades[index.row()]:
            return SHADE
        if role == Qt.ItemDataRole.ForegroundRole and col == 5 + n_rewards and row.advantage:
            return POSITIVE if row.advantage > 0 else NEGATIVE
        if role == Qt.ItemDataRole.ToolTipRole and col in (2, 3):
            text = row.prompt if col == 2 else row.completion
            return text if len(text) < 2000 else text[:2000] + "…"
        return None

    def sample(self, row: int) -> Any:
        return self.rows[row] if 0 <= row < len(self.rows) else None
