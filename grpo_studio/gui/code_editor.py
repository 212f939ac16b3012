"""A Python code editor: line numbers, highlighting, indentation that follows the code, error marks.

The highlighter keeps a per-line state for triple-quoted strings, so docstrings (everywhere in
reward files) are coloured as strings across lines; a line-by-line lexer would colour their words
as code.
"""

from __future__ import annotations

import keyword
import re

from PySide6.QtCore import QRect, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QKeyEvent,
    QPainter,
    QSyntaxHighlighter,
    QTextCharFormat,
    QTextCursor,
    QTextFormat,
)
from PySide6.QtWidgets import QPlainTextEdit, QTextEdit, QWidget

from grpo_studio.gui.style import ERROR, monospace_font

INDENT = "    "


def _fmt(color: str, bold: bool = False, italic: bool = False) -> QTextCharFormat:
    f = QTextCharFormat()
    f.setForeground(QColor(color))
    if bold:
        f.setFontWeight(QFont.Weight.DemiBold)
    f.setFontItalic(italic)
    return f


class PythonHighlighter(QSyntaxHighlighter):
    KEYWORD = _fmt("#0b4fb3", bold=True)
    BUILTIN = _fmt("#7a3e9d")
    STRING = _fmt("#1a7f37")
    COMMENT = _fmt("#8a8f98", italic=True)
    NUMBER = _fmt("#b35900")
    DEFINITION = _fmt("#a31515", bold=True)
    DECORATOR = _fmt("#996800")
    SELF = _fmt("#7a3e9d", italic=True)

    _builtins = ("abs all any bool dict enumerate float int isinstance len list max min print range "
                 "round set sorted str sum tuple zip map filter None True False").split()
    RULES = [
        (re.compile(r"\b(" + "|".join(keyword.kwlist) + r")\b"), KEYWORD, 0),
        (re.compile(r"\b(" + "|".join(_builtins) + r")\b"), BUILTIN, 0),
        (re.compile(r"\bself\b"), SELF, 0),
        (re.compile(r"\b\d+(\.\d*)?([eE][-+]?\d+)?\b"), NUMBER, 0),
        (re.compile(r"^\s*@[\w.]+"), DECORATOR, 0),
        (re.compile(r"\b(?:def|class)\s+(\w+)"), DEFINITION, 1),
    ]
    # One-line strings (with an optional prefix such as r or f) and comments; triple quotes are separate.
    STRING_OR_COMMENT = re.compile(
        r"""(?P<triple>[rRbBuUfF]{0,2}(?:\"\"\"|'''))"""
        r"""|(?P<string>[rRbBuUfF]{0,2}(?:"(?:[^"\\\n]|\\.)*"?|'(?:[^'\\\n]|\\.)*'?))"""
        r"""|(?P<comment>\#.*$)"""
    )
    # Block states: -1/0 = code; 1 = inside a triple-double-quoted string, 2 = triple-single.
    DELIMITERS = {1: '"""', 2: "'''"}

    def highlightBlock(self, text: str) -> None:
        for pattern, fmt, group in self.RULES:
            for m in pattern.finditer(text):
                self.setFormat(m.start(group), m.end(group) - m.start(group), fmt)
        self.setCurrentBlockState(0)
        pos = 0
        state = self.previousBlockState()
        if state in self.DELIMITERS:
            pos = self._close_triple(text, 0, state)
            if pos < 0:
                return
        while pos < len(text):
            m = self.STRING_OR_COMMENT.search(text, pos)
            if not m:
                break
            if m.group("triple"):
                quote = m.group("triple")[-3:]
                pos = self._close_triple(text, m.start(), 1 if quote == '"""' else 2, skip=len(m.group("triple")))
                if pos < 0:
                    return
            else:
                fmt = self.COMMENT if m.group("comment") else self.STRING
                self.setFormat(m.start(), m.end() - m.start(), fmt)
                pos = m.end()

    def _close_triple(self, text: str, start: int, state: int, skip: int = 0) -> int:
        """Colour a triple-quoted string from `start`; the end position, or -1 if it runs past the line."""
        end = text.find(self.DELIMITERS[state], start + skip)
        if end < 0:
            self.setFormat(start, len(text) - start, self.STRING)
            self.setCurrentBlockState(state)
            return -1
        end += 3
        self.setFormat(start, end - start, self.STRING)
        return end


class _LineNumbers(QWidget):
    def __init__(self, editor: "CodeEditor"):
        super().__init__(editor)
        self.editor = editor

    def sizeHint(self) -> QSize:
        return QSize(self.editor.gutter_width(), 0)

    def paintEvent(self, event) -> None:
        self.editor.paint_gutter(event)


class CodeEditor(QPlainTextEdit):
    """Plain-text Python editor. `mark_error(line, message)` marks one line (1-based) in red."""

    errorMarked = Signal(int, str)  # line (0 = none), message

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setFont(monospace_font(10.5))
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.setTabStopDistance(self.fontMetrics().horizontalAdvance(" ") * 4)
        self.highlighter = PythonHighlighter(self.document())
        self.error_line = 0
        self.error_message = ""
        self._gutter = _LineNumbers(self)
        self.blockCountChanged.connect(self._update_gutter_width)
        self.updateRequest.connect(self._scroll_gutter)
        self.cursorPositionChanged.connect(self._refresh_selections)
        self._update_gutter_width()
        self._refresh_selections()

    # ---- gutter ----------------------------------------------------------------------------
    def gutter_width(self) -> int:
        digits = max(3, len(str(max(1, self.blockCount()))))
        return 22 + self.fontMetrics().horizontalAdvance("9") * digits

    def _update_gutter_width(self) -> None:
        self.setViewportMargins(self.gutter_width(), 0, 0, 0)

    def _scroll_gutter(self, rect: QRect, dy: int) -> None:
        if dy:
            self._gutter.scroll(0, dy)
        else:
            self._gutter.update(0, rect.y(), self._gutter.width(), rect.height())

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        cr = self.contentsRect()
        self._gutter.setGeometry(QRect(cr.left(), cr.top(), self.gutter_width(), cr.height()))

    def paint_gutter(self, event) -> None:
        painter = QPainter(self._gutter)
        painter.fillRect(event.rect(), QColor("#f5f6f8"))
        block = self.firstVisibleBlock()
        number = block.blockNumber() + 1
        top = round(self.blockBoundingGeometry(block).translated(self.contentOffset()).top())
        height = self.fontMetrics().height()
        current = self.textCursor().blockNumber() + 1
        width = self._gutter.width()
        while block.isValid() and top <= event.rect().bottom():
            bottom = top + round(self.blockBoundingRect(block).height())
            if block.isVisible() and bottom >= event.rect().top():
                if number == self.error_line:
                    painter.setBrush(QColor(ERROR))
                    painter.setPen(Qt.PenStyle.NoPen)
                    painter.drawEllipse(4, top + height // 2 - 4, 8, 8)
                painter.setPen(QColor(ERROR if number == self.error_line else
                                      "#30343c" if number == current else "#9aa1ad"))
                painter.drawText(0, top, width - 8, height, Qt.AlignmentFlag.AlignRight, str(number))
            block = block.next()
            top = bottom
            number += 1

    # ---- error marks -----------------------------------------------------------------------
    def mark_error(self, line: int, message: str = "") -> None:
        """Mark `line` (1-based) as the error line; 0 clears the mark."""
        if (line, message) == (self.error_line, self.error_message):
            return
        self.error_line = line
        self.error_message = message
        self._refresh_selections()
        self._gutter.update()
        self.errorMarked.emit(line, message)

    def _refresh_selections(self) -> None:
        selections = []
        current = QTextEdit.ExtraSelection()
        current.format.setBackground(QColor("#f3f6fc"))
        current.format.setProperty(QTextFormat.Property.FullWidthSelection, True)
        current.cursor = self.textCursor()
        current.cursor.clearSelection()
        selections.append(current)
        if self.error_line:
            block = self.document().findBlockByNumber(self.error_line - 1)
            if block.isValid():
                line_mark = QTextEdit.ExtraSelection()
                line_mark.format.setBackground(QColor("#fde8e6"))
                line_mark.format.setProperty(QTextFormat.Property.FullWidthSelection, True)
                line_mark.cursor = QTextCursor(block)
                selections.append(line_mark)
                squiggle = QTextEdit.ExtraSelection()
                squiggle.format.setUnderlineStyle(QTextCharFormat.UnderlineStyle.WaveUnderline)
                squiggle.format.setUnderlineColor(QColor(ERROR))
                cursor = QTextCursor(block)
                cursor.movePosition(QTextCursor.MoveOperation.EndOfBlock, QTextCursor.MoveMode.KeepAnchor)
                squiggle.cursor = cursor
                selections.append(squiggle)
        self.setExtraSelections(selections)
        self._gutter.update()

    def go_to_line(self, line: int) -> None:
        block = self.document().findBlockByNumber(max(0, line - 1))
        if block.isValid():
            cursor = QTextCursor(block)
            self.setTextCursor(cursor)
            self.centerCursor()
            self.setFocus()

    # ---- typing ----------------------------------------------------------------------------
    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        cursor = self.textCursor()
        if key == Qt.Key.Key_Tab and not cursor.hasSelection():
            cursor.insertText(INDENT)
            return
        if key == Qt.Key.Key_Backtab or (key == Qt.Key.Key_Tab and cursor.hasSelection()):
            self._shift_selection(dedent=key == Qt.Key.Key_Backtab)
            return
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            text = cursor.block().text()[: cursor.positionInBlock()]
            indent = text[: len(text) - len(text.lstrip())]
            if text.rstrip().endswith(":"):
                indent += INDENT
            super().keyPressEvent(event)
            self.textCursor().insertText(indent)
            return
        if key == Qt.Key.Key_Backspace and not cursor.hasSelection():
            before = cursor.block().text()[: cursor.positionInBlock()]
            if before and not before.strip() and len(before) % 4 == 0:
                for _ in range(4):
                    cursor.deletePreviousChar()
                return
        super().keyPressEvent(event)

    def _shift_selection(self, dedent: bool) -> None:
        cursor = self.textCursor()
        start = self.document().findBlock(cursor.selectionStart())
        end = self.document().findBlock(cursor.selectionEnd())
        cursor.beginEditBlock()
        block = start
        while block.isValid():
            c = QTextCursor(block)
            if dedent:
                spaces = len(block.text()) - len(block.text().lstrip(" "))
                for _ in range(min(4, spaces)):
                    c.deleteChar()
            else:
                c.insertText(INDENT)
            if block == end:
                break
            block = block.next()
        cursor.endEditBlock()
