"""A bar above the pages listing what blocks training, each problem a link to its field; or the result
of Check (F7) when nothing does.

It appears when Train is pressed with problems, and goes away by itself once they are fixed. A
passed check stays until the settings change (then it no longer says anything about them).
"""

from __future__ import annotations

import html
import re

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QWidget

from grpo_studio.gui.document import RunDocument

MAX_LISTED = 4
FIELD = re.compile(r"^[a-z_]+\.[a-z_]+$")  # section.key


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
        doc.changed.connect(self._settings_changed)
        self.showing_check = False
        self.hide()

    def setVisible(self, visible: bool) -> None:
        super().setVisible(visible)
        self.shown.emit(visible)

    def show_blocking(self) -> None:
        self._refresh(force=True)

    def show_check(self, summary: str, warnings: list[str]) -> None:
        """Check passed: what it found, and its warnings (a setting named at the start is a link)."""
        self.showing_check = True
        self._set_level("warning" if warnings else "info")
        lines = [f"<b style='color:#1f7a45'>✓ Check passed</b>: {html.escape(summary)}"]
        for text in warnings[:MAX_LISTED]:
            head, sep, rest = text.partition(": ")
            if sep and view_of_field(head) and FIELD.match(head):
                lines.append(f"• warning: <a href='{html.escape(head)}'>{html.escape(head)}</a>: {html.escape(rest)}")
            else:
                lines.append(f"• warning: {html.escape(text)}")
        if len(warnings) > MAX_LISTED:
            lines.append(f"… and {len(warnings) - MAX_LISTED} more warnings")
        self.text.setText("<br>".join(lines))
        self.show()

    def _settings_changed(self, path: str) -> None:
        if self.showing_check and self.isVisible():
            self.hide()  # about settings that are no longer these

    def _set_level(self, level: str) -> None:
        if self.property("level") != level:
            self.setProperty("level", level)
            self.style().unpolish(self)
            self.style().polish(self)

    def _refresh(self, force: bool = False) -> None:
        if not (force or (self.isVisible() and not self.showing_check)):
            return
        problems = self.doc.problems()
        if not problems:
            self.hide()
            return
        self.showing_check = False
        self._set_level("error")
        items = list(problems.items())
        links = "<br>".join(f"• <a href='{html.escape(f)}'>{html.escape(f)}</a>: {html.escape(m)}"
                            for f, m in items[:MAX_LISTED])
        more = f"<br>… and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
        n = len(items)
        self.text.setText(f"<b style='color:#c62828'>Training cannot start: {n} problem{'s' if n != 1 else ''} "
                          f"to fix</b><br>{links}{more}")
        self.show()
