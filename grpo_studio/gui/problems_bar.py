"""A bar above the pages listing what blocks training, each problem a link to its field.

It appears when Train is pressed with problems, and goes away by itself once they are fixed.
"""

from __future__ import annotations

import html

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QWidget

from grpo_studio.gui.document import RunDocument

MAX_LISTED = 4


def view_of_field(path: str) -> str:
    """The page that edits a setting."""
    section = path.split(".", 1)[0].split("[", 1)[0]
    return {"data": "dataset", "rewards": "rewards"}.get(section, "settings")


class ProblemsBar(QFrame):
    fieldClicked = Signal(str)
    shown = Signal(bool)  # so the holder with its margins hides with it

    def __init__(self, doc: RunDocument, parent: QWidget | None = None):
        super().__init__(parent)
        self.doc = doc
        self.setObjectName("banner")
        self.setProperty("level", "error")
        box = QHBoxLayout(self)
        box.setContentsMargins(14, 8, 10, 8)
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setOpenExternalLinks(False)
        self.text.linkActivated.connect(self.fieldClicked)
        box.addWidget(self.text, 1)
        close = QToolButton()
        close.setText("✕")
        close.setToolTip("Hide")
        close.clicked.connect(self.hide)
        box.addWidget(close)
        doc.problemsChanged.connect(self._refresh)
        self.hide()

    def setVisible(self, visible: bool) -> None:
        super().setVisible(visible)
        self.shown.emit(visible)

    def show_blocking(self) -> None:
        self._refresh(force=True)

    def _refresh(self, force: bool = False) -> None:
        if not (force or self.isVisible()):
            return
        problems = self.doc.problems()
        if not problems:
            self.hide()
            return
        items = list(problems.items())
        links = "<br>".join(f"• <a href='{html.escape(f)}'>{html.escape(f)}</a>: {html.escape(m)}"
                            for f, m in items[:MAX_LISTED])
        more = f"<br>… and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
        n = len(items)
        self.text.setText(f"<b style='color:#c62828'>Training cannot start: {n} problem{'s' if n != 1 else ''} "
                          f"to fix</b><br>{links}{more}")
        self.show()
