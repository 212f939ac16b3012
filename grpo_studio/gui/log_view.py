"""The Training page's log: one paragraph per message, continuation lines indented under the text.

A message that wraps, or has lines of its own (a traceback, advice), stays one block with a hanging
indent: scrolled to the bottom, a pane that starts mid-message shows an indented continuation, never
a line that reads like a message of its own. A QTextEdit, not a QPlainTextEdit: the plain editor's
layout ignores indents. Old messages drop off whole (the document's block limit counts messages).
"""

from __future__ import annotations

import html
import time

from PySide6.QtGui import QFontMetricsF, QTextCursor
from PySide6.QtWidgets import QTextEdit, QWidget

from grpo_studio.gui.style import ERROR, MUTED, TEXT, WARNING, monospace_font

LOG_LINES = 5000
COLORS = {"error": ERROR, "warning": WARNING, "debug": MUTED, "output": MUTED}


class LogView(QTextEdit):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setReadOnly(True)
        self.setFont(monospace_font(9))
        self.document().setMaximumBlockCount(LOG_LINES)
        self.document().setDocumentMargin(4)
        self.setPlaceholderText("Messages from the run appear here.")
        self._indent = QFontMetricsF(self.font()).horizontalAdvance("00:00:00 ")

    def append_message(self, level: str, message: str, when: float | None = None) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(when)) if when else time.strftime("%H:%M:%S")
        self._append(stamp, message.rstrip("\n"), COLORS.get(level, TEXT))

    def append_output(self, line: str) -> None:
        """A line the worker printed (library output), muted."""
        self._append(time.strftime("%H:%M:%S"), line, MUTED)

    def _append(self, stamp: str, message: str, color: str) -> None:
        bar = self.verticalScrollBar()
        following = bar.value() >= bar.maximum() - 4  # keep following the end unless the user scrolled up
        text = html.escape(message).replace("\n", "<br>")
        self.append(f"<p style='margin:0; margin-left:{self._indent:.1f}px; text-indent:-{self._indent:.1f}px; "
                    f"white-space:pre-wrap;'>"
                    f"<span style='color:{MUTED}'>{stamp}</span> <span style='color:{color}'>{text}</span></p>")
        if following:
            self.moveCursor(QTextCursor.MoveOperation.End)
            bar.setValue(bar.maximum())
