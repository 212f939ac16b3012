"""A fold with a title (▸ Advanced / ▾ Advanced) over widgets that show only when it is open.

superqt's QCollapsible did this; importing superqt brings qtpy's compatibility layer, which imports
QtOpenGL and more: a quarter of the window's start-up, for one widget.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QToolButton, QVBoxLayout, QWidget


class Collapsible(QWidget):
    toggled = Signal(bool)

    def __init__(self, title: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.title = title
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(0)
        self.button = QToolButton()
        self.button.setObjectName("foldButton")
        self.button.setCheckable(True)
        self.button.setAutoRaise(True)
        self.button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.button.toggled.connect(self._set_open)
        box.addWidget(self.button, 0, Qt.AlignmentFlag.AlignLeft)
        self.content = QWidget()
        self.content_layout = QVBoxLayout(self.content)
        self.content_layout.setContentsMargins(0, 0, 0, 0)
        self.content.hide()
        box.addWidget(self.content)
        self._set_open(False)

    def addWidget(self, widget: QWidget) -> None:
        self.content_layout.addWidget(widget)

    def isExpanded(self) -> bool:
        return self.button.isChecked()

    def expand(self, animate: bool = False) -> None:
        self.button.setChecked(True)

    def collapse(self, animate: bool = False) -> None:
        self.button.setChecked(False)

    def _set_open(self, opened: bool) -> None:
        self.button.setText(f"{'▾' if opened else '▸'}  {self.title}")
        self.content.setVisible(opened)
        self.toggled.emit(opened)
