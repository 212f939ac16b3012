"""A table model over the run store's samples, loaded a page at a time as the view scrolls.

Only the rows scrolled into view are in memory (Qt asks `canFetchMore`/`fetchMore`), so a run
with millions of sampled completions browses like a small one. Each page is one indexed SQLite
query of a few milliseconds, so it runs on the GUI thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt
from PySide6.QtGui import QBrush, QColor

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


class SamplesModel(QAbstractTableModel):
    def __init__(self, parent: Any = None):
        super().__init__(parent)
        self.store: Any = None
        self.run_dir: Path | None = None
        self.filters: dict[str, Any] = {}
        self.order = "step"
        self.reward_names: list[str] = []
        self.rows: list[Any] = []
        self.shades: list[bool] = []
        self.total = 0

    # ---- source ----------------------------------------------------------------------------
    def set_run(self, run_dir: Path | None) -> None:
        self.close()
        self.run_dir = Path(run_dir) if run_dir else None
        self.reward_names = []
        self.reload()

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    def _open(self) -> bool:
        if self.store is None and self.run_dir is not None and (self.run_dir / "run.db").is_file():
            from grpo_studio.engine.store import RunStore

            try:
                self.store = RunStore(self.run_dir, readonly=True)
            except Exception:  # noqa: BLE001 - a database being created right now; try on next refresh
                self.store = None
        return self.store is not None

    def _names_from_store(self) -> list[str]:
        names = list(self.store.meta().get("reward_names") or [])
        if not names:
            first = self.store.samples(limit=1)
            names = list(first[0].rewards) if first else []
        return names

    # ---- querying --------------------------------------------------------------------------
    def set_query(self, filters: dict[str, Any], order: str) -> None:
        self.filters = {k: v for k, v in filters.items() if v not in (None, "")}
        self.order = order
        self.reload()

    def reload(self) -> None:
        """Start over from the first page (filters or order changed)."""
        self.beginResetModel()
        self.rows, self.shades, self.total = [], [], 0
        if self._open():
            self.reward_names = self._names_from_store()
            self.total = self.store.count_samples(**self.filters)
            self._load_page()
        self.endResetModel()

    def refresh(self) -> None:
        """New samples were written: show them without losing the place the user is at."""
        if not self._open():
            return
        names = self._names_from_store()
        if names != self.reward_names:
            self.reload()
            return
        total = self.store.count_samples(**self.filters)
        if total == self.total:
            return
        if self.order != "step" or total < self.total:
            self.reload()  # new rows may land anywhere in this order
            return
        everything_loaded = len(self.rows) == self.total
        self.total = total
        if everything_loaded and len(self.rows) < PAGE:
            self.fetchMore(QModelIndex())  # ascending: new rows go at the end; append them now

    def _load_page(self) -> list[Any]:
        page = self.store.samples(limit=PAGE, offset=len(self.rows), order=self.order, **self.filters)
        self._append(page)
        return page

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
        return not parent.isValid() and self.store is not None and len(self.rows) < self.total

    def fetchMore(self, parent: QModelIndex = QModelIndex()) -> None:
        if not self.canFetchMore(parent):
            return
        start = len(self.rows)
        page = self.store.samples(limit=PAGE, offset=start, order=self.order, **self.filters)
        if not page:
            self.total = start
            return
        self.beginInsertRows(QModelIndex(), start, start + len(page) - 1)
        self._append(page)
        self.endInsertRows()

    # ---- table -----------------------------------------------------------------------------
    def headers(self) -> list[str]:
        # "correctness_reward" -> "correctness": the column is narrow, the tooltip has the full name.
        short = [n[: -len("_reward")] if n.endswith("_reward") and len(n) > 7 else n for n in self.reward_names]
        return ["Step", "Group", "Prompt", "Completion", *short, "Total", "Advantage", "Tokens"]

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
