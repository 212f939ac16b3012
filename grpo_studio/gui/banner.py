"""A coloured box at the top of a page: a failure (red), a health alarm (amber), who trains the run shown
(blue, "live"), or how it ended ("info"); what happened, what to try, and details to unfold."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from grpo_studio.gui.style import ACCENT, ERROR, OK, WARNING, monospace_font

TITLE_COLORS = {"error": ERROR, "warning": WARNING, "live": ACCENT, "info": OK}


class Banner(QFrame):
    """What happened, what to try; `level` picks the colours (stylesheet: QFrame#banner[level=...])."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("banner")
        box = QVBoxLayout(self)
        box.setContentsMargins(14, 10, 14, 10)
        box.setSpacing(4)
        top = QHBoxLayout()
        self.title = QLabel()
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.title.setWordWrap(True)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        top.addWidget(self.title, 1)
        self.details_button = QPushButton("Details")
        self.details_button.setCheckable(True)
        self.details_button.toggled.connect(lambda on: self.details.setVisible(on))
        top.addWidget(self.details_button, 0, Qt.AlignmentFlag.AlignTop)
        close = QToolButton()
        close.setText("✕")
        close.setToolTip("Hide this message")
        close.clicked.connect(self.hide)
        top.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        box.addLayout(top)
        self.hint = QLabel()
        self.hint.setTextFormat(Qt.TextFormat.PlainText)
        self.hint.setWordWrap(True)
        self.hint.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.addWidget(self.hint)
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.details.setFont(monospace_font(9))
        self.details.setMaximumHeight(180)
        self.details.hide()
        box.addWidget(self.details)
        self.hide()

    def show_message(self, level: str, title: str, hint: str = "", details: str = "") -> None:
        self.setProperty("level", level)
        self.style().unpolish(self)
        self.style().polish(self)
        color = TITLE_COLORS.get(level, WARNING)
        self.title.setText(f"<b style='color:{color}'>{html.escape(title)}</b>")
        self.hint.setText(hint)
        self.hint.setVisible(bool(hint))
        self.details.setPlainText(details)
        self.details_button.setVisible(bool(details.strip()))
        self.details_button.setChecked(False)
        self.show()
