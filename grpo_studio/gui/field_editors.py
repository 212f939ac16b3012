"""One editor widget per kind of setting (int, float, bool, choice, text, list, table of values).

An editor shows a value and reports what the user typed through `edited(value)`, or through
`invalid(reason)` when the text cannot even be read as that kind (e.g. "1e-" for a float).
Ranges, choices and the real validation come from the config (`FieldSpec` + `RunDocument`).
"""

from __future__ import annotations

import math
import tomllib
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QTextCursor, QTextOption
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QSizePolicy,
    QSpinBox,
    QWidget,
)

from grpo_studio.config import FieldSpec

INT32_MAX = 2**31 - 1
NUMBER_WIDTH = 130  # ints and floats share one width so columns of numbers line up

# Settings whose text is long enough to need several lines.
MULTILINE_FIELDS = {"data.system_prompt", "data.prompt_template"}


class _NoWheelUnlessFocused(QObject):
    """Scrolling a long form must not change the spin box or combo the mouse passes over."""

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Wheel and isinstance(obj, QWidget) and not obj.hasFocus():
            event.ignore()
            return True
        return False


_wheel_guard = None


def guard_wheel(widget: QWidget) -> None:
    global _wheel_guard
    if _wheel_guard is None:
        _wheel_guard = _NoWheelUnlessFocused()
    widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
    widget.installEventFilter(_wheel_guard)


class FieldEditor(QWidget):
    edited = Signal(object)  # a value to apply
    invalid = Signal(str)  # the text is not readable as this kind of value

    def __init__(self, spec: FieldSpec, parent: QWidget | None = None):
        super().__init__(parent)
        self.spec = spec
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(6)

    def set_value(self, value: Any) -> None:
        raise NotImplementedError

    def input_widget(self) -> QWidget:
        """The widget that gets focus, tooltips and the error border."""
        raise NotImplementedError

    def _add(self, widget: QWidget, stretch: int = 1) -> None:
        self._layout.addWidget(widget, stretch)


class IntEditor(FieldEditor):
    def __init__(self, spec: FieldSpec, parent: QWidget | None = None):
        super().__init__(spec, parent)
        self.box = QSpinBox()
        low = spec.minimum if spec.minimum is not None else 0
        high = spec.maximum if spec.maximum is not None else INT32_MAX
        low = int(math.floor(low)) + (1 if spec.exclusive_minimum else 0)
        high = int(math.ceil(high)) - (1 if spec.exclusive_maximum else 0)
        self.box.setRange(max(low, -INT32_MAX), min(high, INT32_MAX))
        self.box.setGroupSeparatorShown(True)
        self.box.setFixedWidth(NUMBER_WIDTH)
        self.box.setAlignment(Qt.AlignmentFlag.AlignRight)
        guard_wheel(self.box)
        self.box.valueChanged.connect(lambda v: self.edited.emit(int(v)))
        self._add(self.box, 0)
        self._layout.addStretch(1)

    def set_value(self, value: Any) -> None:
        self.box.blockSignals(True)
        self.box.setValue(int(value))
        self.box.blockSignals(False)

    def input_widget(self) -> QWidget:
        return self.box


def format_number(value: float) -> str:
    """Short and exact: 5e-06, 0.2, 32 (not 32.0 or 5.000000e-06)."""
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


class FloatEditor(FieldEditor):
    """A line edit, not a spin box: learning rates like 5e-6 need scientific notation."""

    def __init__(self, spec: FieldSpec, parent: QWidget | None = None):
        super().__init__(spec, parent)
        self.line = QLineEdit()
        self.line.setFixedWidth(NUMBER_WIDTH)
        self.line.setAlignment(Qt.AlignmentFlag.AlignRight)
        self.line.textEdited.connect(self._typed)
        self._add(self.line, 0)
        self._layout.addStretch(1)

    def _typed(self, text: str) -> None:
        try:
            value = float(text.strip().replace(",", "."))
        except ValueError:
            self.invalid.emit("not a number" if text.strip() else "needs a number")
            return
        self.edited.emit(value)

    def set_value(self, value: Any) -> None:
        text = format_number(value)
        if self.line.text().strip():
            try:
                if float(self.line.text().replace(",", ".")) == float(value):
                    return  # keep what the user typed ("1e-3" stays "1e-3", not "0.001")
            except ValueError:
                pass
        self.line.setText(text)

    def input_widget(self) -> QWidget:
        return self.line


class BoolEditor(FieldEditor):
    def __init__(self, spec: FieldSpec, parent: QWidget | None = None):
        super().__init__(spec, parent)
        self.check = QCheckBox()
        self.check.toggled.connect(lambda on: self.edited.emit(bool(on)))
        self._add(self.check)

    def set_value(self, value: Any) -> None:
        self.check.blockSignals(True)
        self.check.setChecked(bool(value))
        self.check.blockSignals(False)

    def input_widget(self) -> QWidget:
        return self.check


class ChoiceEditor(FieldEditor):
    def __init__(self, spec: FieldSpec, parent: QWidget | None = None):
        super().__init__(spec, parent)
        self.combo = QComboBox()
        self.combo.setMinimumWidth(160)
        guard_wheel(self.combo)
        for choice in spec.choices:
            self.combo.addItem(str(choice), choice)
        self.combo.activated.connect(lambda i: self.edited.emit(self.combo.itemData(i)))
        self._add(self.combo, 0)
        self._layout.addStretch(1)

    def set_value(self, value: Any) -> None:
        i = self.combo.findData(value)
        self.combo.blockSignals(True)
        self.combo.setCurrentIndex(i)
        self.combo.blockSignals(False)

    def input_widget(self) -> QWidget:
        return self.combo


class WrapLine(QPlainTextEdit):
    """One line of text that wraps instead of scrolling out of sight: a long hub id, path or list of
    module names shows whole, on a second (or third) line, where a QLineEdit in a narrow form column
    cut it. Enter is not a newline (values are single-line); it moves on, like Tab."""

    textEdited = Signal(str)  # typed by the user (not setText), as QLineEdit's
    MAX_LINES = 3
    _one_line: int | None = None  # a styled QLineEdit's height

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setTabChangesFocus(True)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        # Break at a space, "/" or "," where there is one (a path, a hub id, a list), anywhere otherwise.
        self.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.document().setDocumentMargin(1)  # the stylesheet's padding, as a line edit's, does the rest
        self._programmatic = False
        self.textChanged.connect(self._changed)
        self._fit_height()

    def text(self) -> str:
        return self.toPlainText()

    def setText(self, text: str) -> None:
        self._programmatic = True
        try:
            self.setPlainText(text)
        finally:
            self._programmatic = False
        self.moveCursor(QTextCursor.MoveOperation.Start)

    def keyPressEvent(self, event) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.focusNextChild()
            return
        super().keyPressEvent(event)

    def insertFromMimeData(self, source) -> None:
        self.insertPlainText(" ".join(source.text().split("\n")))  # a pasted value stays one line

    def _changed(self) -> None:
        self._fit_height()
        if not self._programmatic:
            self.textEdited.emit(self.toPlainText())

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit_height()

    def changeEvent(self, event) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.StyleChange:  # the window is styled after it is built
            WrapLine._one_line = None
            self._fit_height()

    def _fit_height(self) -> None:
        """One line as high as a QLineEdit beside it; one line more for each wrapped line."""
        layout = self.document().documentLayout()
        if self.toPlainText() or not self.placeholderText():
            lines = round(layout.documentSize().height())
        else:  # Qt paints the placeholder word-wrapped: room for all of it
            width = max(40, self.viewport().width() - 2 * int(self.document().documentMargin()))
            shown = self.fontMetrics().boundingRect(0, 0, width, 10_000, Qt.TextFlag.TextWordWrap,
                                                    self.placeholderText())
            lines = -(-shown.height() // self.fontMetrics().lineSpacing())
        lines = max(1, min(self.MAX_LINES, lines))
        if WrapLine._one_line is None:
            probe = QLineEdit()
            probe.ensurePolished()  # with the stylesheet's padding and border
            WrapLine._one_line = probe.sizeHint().height()
        height = WrapLine._one_line + (lines - 1) * self.fontMetrics().lineSpacing()
        if self.height() != height:
            self.setFixedHeight(height)


class TextEditor(FieldEditor):
    def __init__(self, spec: FieldSpec, parent: QWidget | None = None, placeholder: str = ""):
        super().__init__(spec, parent)
        self.line = WrapLine()
        self.line.setPlaceholderText(placeholder)
        self.line.textEdited.connect(lambda text: self.edited.emit(self.parse(text)))
        self._add(self.line)

    def parse(self, text: str) -> Any:
        return text

    def show(self, value: Any) -> str:
        return "" if value is None else str(value)

    def set_value(self, value: Any) -> None:
        text = self.show(value)
        if self.line.text() == text:
            return
        try:
            if self.parse(self.line.text()) == value:
                return  # same value, maybe typed differently: keep the user's text and cursor
        except ValueError:
            pass
        self.line.setText(text)

    def input_widget(self) -> QWidget:
        return self.line


class MultilineEditor(FieldEditor):
    def __init__(self, spec: FieldSpec, parent: QWidget | None = None, lines: int = 3):
        super().__init__(spec, parent)
        self.text = QPlainTextEdit()
        self.text.setTabChangesFocus(True)
        height = self.text.fontMetrics().lineSpacing() * lines + 14
        self.text.setFixedHeight(height)
        self.text.textChanged.connect(lambda: self.edited.emit(self.text.toPlainText()))
        self._add(self.text)

    def set_value(self, value: Any) -> None:
        if self.text.toPlainText() == (value or ""):
            return
        self.text.blockSignals(True)
        self.text.setPlainText(value or "")
        self.text.blockSignals(False)

    def input_widget(self) -> QWidget:
        return self.text


class ListEditor(TextEditor):
    """Comma-separated names; lora.target_modules also takes the word "all-linear"."""

    def __init__(self, spec: FieldSpec, parent: QWidget | None = None):
        super().__init__(spec, parent, placeholder="name, name, ...")

    def parse(self, text: str) -> Any:
        stripped = text.strip()
        if stripped == "all-linear" and self.spec.path == "lora.target_modules":
            return "all-linear"
        return [part.strip() for part in stripped.split(",") if part.strip()]

    def show(self, value: Any) -> str:
        return value if isinstance(value, str) else ", ".join(value)


def toml_inline(value: Any) -> str:
    """A value as TOML inline text (tomli_w writes tables as sections, a form needs one line)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return format_number(value) if isinstance(value, float) else str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_inline(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_inline(v)}" for k, v in value.items()) + "}"
    return str(value)


class TableEditor(TextEditor):
    """grpo.extra: any other GRPOConfig field, written as a TOML inline table."""

    def __init__(self, spec: FieldSpec, parent: QWidget | None = None):
        super().__init__(spec, parent, placeholder="{repetition_penalty = 1.1}")
        self.line.textEdited.disconnect()
        self.line.textEdited.connect(self._typed)

    def parse(self, text: str) -> Any:
        text = text.strip() or "{}"
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"not a TOML table like {{key = value}}: {exc}") from None
        if not isinstance(value, dict):
            raise ValueError("write a table: {key = value, ...}")
        return value

    def _typed(self, text: str) -> None:
        try:
            self.edited.emit(self.parse(text))
        except ValueError as exc:
            self.invalid.emit(str(exc))

    def show(self, value: Any) -> str:
        return toml_inline(value) if value else ""


def make_editor(spec: FieldSpec) -> FieldEditor:
    if spec.path in MULTILINE_FIELDS:
        return MultilineEditor(spec)
    kind = {
        "int": IntEditor, "float": FloatEditor, "bool": BoolEditor, "choice": ChoiceEditor,
        "str": TextEditor, "list": ListEditor, "dict": TableEditor,
    }.get(spec.kind)
    if kind is None:
        raise ValueError(f"{spec.path}: no form editor for kind {spec.kind!r}")
    return kind(spec)


class PathEditor(TextEditor):
    """Text for a hub id or a local path, with a button that picks a file or a folder.

    `to_setting` turns a picked absolute path into what the run file stores (relative to the run
    file when it lies beside it), `start_dir` says where the dialog opens."""

    def __init__(self, spec: FieldSpec, *, folder: bool, file_filter: str = "", placeholder: str = "",
                 start_dir=None, to_setting=None, parent: QWidget | None = None):
        super().__init__(spec, parent, placeholder=placeholder)
        from PySide6.QtWidgets import QToolButton

        from grpo_studio.gui.style import icon

        self.folder = folder
        self.file_filter = file_filter
        self.start_dir = start_dir or (lambda: "")
        self.to_setting = to_setting or (lambda path: path)
        self.button = QToolButton()  # an icon, not a "Folder…" button: the value gets the width
        self.button.setIcon(icon("open"))
        self.button.setAutoRaise(True)
        self.button.setToolTip("Pick a local folder…" if folder else "Pick a local file…")
        self.button.setAccessibleName("Browse")
        self.button.clicked.connect(self.browse)
        self._layout.addWidget(self.button, 0)

    def browse(self) -> None:
        from grpo_studio.gui import dialogs

        if self.folder:
            chosen = dialogs.existing_dir(self, self.spec.help, self.start_dir())
        else:
            chosen = dialogs.open_file(self, self.spec.help, self.start_dir(), self.file_filter)
        if chosen:
            value = self.to_setting(chosen)
            self.line.setText(value)
            self.edited.emit(value)
