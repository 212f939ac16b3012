"""Every modal dialog of the window goes through here: questions, warnings, file and folder pickers,
a number to type.

A screenshot (`grpo-studio gui RUN --screenshot FILE.png`) runs with nobody in front of it, so in that
mode (`set_headless(True)`) no dialog opens: its message goes to stderr and the application exits
non-zero instead (2 for a warning: the run file or folder cannot be opened as given; 1 for a question
or a picker: the window would have waited for an answer). A dialog opened some other way (one this
module does not know of) is caught by `ModalGuard` the moment it shows, and ends the same way.
"""

from __future__ import annotations

import sys
from typing import Any

import shiboken6
from PySide6.QtCore import QCoreApplication, QEvent, QObject, QTimer
from PySide6.QtWidgets import QDialog, QFileDialog, QInputDialog, QMessageBox, QWidget

EXIT_WARNING, EXIT_QUESTION = 2, 1

_headless = False
exit_code: int | None = None  # the first refused dialog's code, in headless mode


def set_headless(on: bool) -> None:
    """Screenshot mode on or off (off again for tests that drive the window)."""
    global _headless, exit_code
    _headless, exit_code = on, None


def _refuse(code: int, title: str, text: str, question: bool = False) -> None:
    """Say what the dialog would have said, and end the application with `code` (the first one counts)."""
    global exit_code
    body = " ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    if question:
        print(f"error: the window would ask \"{title}\": {body} (a screenshot opens no dialog)", file=sys.stderr)
    else:
        print(f"error: {title}: {body}", file=sys.stderr)
    sys.stderr.flush()
    if exit_code is None:
        exit_code = code
    _end_app(exit_code)


def _end_app(code: int) -> None:
    # Leaves every event loop that runs, a dialog's own included (and makes any later one return at once:
    # this is the end of the application); `run_app` checks `exit_code` when none ran yet.
    QCoreApplication.exit(code)


def ask(parent: QWidget | None, title: str, text: str, buttons: Any = None, default: Any = None) -> Any:
    """A question; the answer's StandardButton (headless: Cancel or No, after saying it)."""
    b = QMessageBox.StandardButton
    buttons = buttons or (b.Yes | b.No)
    if _headless:
        _refuse(EXIT_QUESTION, title, text, question=True)
        return b.Cancel if buttons & b.Cancel else b.No
    return QMessageBox.question(parent, title, text, buttons, default or b.No)


def warn(parent: QWidget | None, title: str, text: str) -> None:
    if _headless:
        _refuse(EXIT_WARNING, title, text)
        return
    QMessageBox.warning(parent, title, text)


def inform(parent: QWidget | None, title: str, text: str) -> None:
    if _headless:
        _refuse(EXIT_QUESTION, title, text)
        return
    QMessageBox.information(parent, title, text)


def about(parent: QWidget | None, title: str, text: str) -> None:
    if _headless:
        _refuse(EXIT_QUESTION, title, text)
        return
    QMessageBox.about(parent, title, text)


def open_file(parent: QWidget | None, caption: str, start: str, filters: str) -> str:
    """A file to open; "" when none was chosen."""
    if _headless:
        _refuse(EXIT_QUESTION, caption, f"a file to open would be asked for (from {start})", question=True)
        return ""
    return QFileDialog.getOpenFileName(parent, caption, start, filters)[0]


def save_file(parent: QWidget | None, caption: str, start: str, filters: str) -> str:
    if _headless:
        _refuse(EXIT_QUESTION, caption, f"a file to save to would be asked for (from {start})", question=True)
        return ""
    return QFileDialog.getSaveFileName(parent, caption, start, filters)[0]


def existing_dir(parent: QWidget | None, caption: str, start: str) -> str:
    if _headless:
        _refuse(EXIT_QUESTION, caption, f"a folder would be asked for (from {start})", question=True)
        return ""
    return QFileDialog.getExistingDirectory(parent, caption, start)


def get_int(parent: QWidget | None, title: str, label: str, value: int, minimum: int, maximum: int
            ) -> tuple[int, bool]:
    if _headless:
        _refuse(EXIT_QUESTION, title, label, question=True)
        return value, False
    return QInputDialog.getInt(parent, title, label, value, minimum, maximum)


class ModalGuard(QObject):
    """Headless mode's safety net, installed on the application: a dialog that shows anyway (opened by
    code that does not come through this module) is refused like the others, then closed, so its own
    event loop ends and nothing waits."""

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if _headless and event.type() == QEvent.Type.Show and isinstance(obj, QDialog) and obj.isModal():
            if isinstance(obj, QMessageBox):
                title, text = obj.windowTitle() or "a message", obj.text() + "\n" + obj.informativeText()
            else:
                title, text = obj.windowTitle() or type(obj).__name__, "a dialog would wait for an answer"
            _refuse(EXIT_QUESTION, title, text, question=not isinstance(obj, QMessageBox))
            # exit() ended the dialog's own event loop, if it has one; one opened without (open()) is closed.
            QTimer.singleShot(0, lambda: shiboken6.isValid(obj) and obj.isVisible() and obj.reject())
        return False


def install_guard(app: QObject) -> ModalGuard:
    guard = ModalGuard(app)
    app.installEventFilter(guard)
    return guard
