"""A note above the pages for someone who installed PyTorch's CUDA build on a computer without an
NVIDIA GPU: how big it is, and the command that switches to the CPU build.

The check reads package metadata (engine/torch_build.py, ~0.5 s, never imports torch) on a worker
thread after the window has painted, so it costs the first paint nothing.
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton, QVBoxLayout, QWidget

from grpo_studio.gui.tasks import TaskRunner

DISMISSED_KEY = "notices/torch_cuda_build_on_cpu"


def _find() -> tuple[str, str] | None:
    """(notice, switch command), or None: runs on a worker thread."""
    from grpo_studio.engine.torch_build import cpu_only_notice, installed_torch, switch_command

    build = installed_torch()
    notice = cpu_only_notice(build)
    return (notice, switch_command(build)) if notice and build is not None else None


class InstallNotice(QFrame):
    shown = Signal(bool)

    def __init__(self, prefs, parent: QWidget | None = None):
        super().__init__(parent)
        self.prefs = prefs
        self.pending = False
        self.command = ""
        self.task = TaskRunner(self)
        self.setObjectName("banner")
        self.setProperty("level", "warning")
        box = QHBoxLayout(self)
        box.setContentsMargins(14, 8, 10, 8)
        text_box = QVBoxLayout()
        text_box.setSpacing(4)
        self.text = QLabel()
        self.text.setWordWrap(True)
        text_box.addWidget(self.text)
        self.command_label = QLabel()
        self.command_label.setWordWrap(True)
        self.command_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.command_label.setStyleSheet("font-family: monospace;")
        text_box.addWidget(self.command_label)
        box.addLayout(text_box, 1)
        self.copy_button = QPushButton("Copy command")
        self.copy_button.setToolTip("Copy the command to the clipboard; run it in the environment GRPO Studio runs in")
        self.copy_button.clicked.connect(self.copy)
        box.addWidget(self.copy_button, 0, Qt.AlignmentFlag.AlignTop)
        never = QPushButton("Don't show again")
        never.clicked.connect(self.dismiss)
        box.addWidget(never, 0, Qt.AlignmentFlag.AlignTop)
        close = QToolButton()
        close.setText("✕")
        close.setToolTip("Hide for now")
        close.clicked.connect(self.hide)
        box.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    def setVisible(self, visible: bool) -> None:
        super().setVisible(visible)
        self.shown.emit(visible)

    def check(self) -> None:
        """Look (off the GUI thread) whether to show the note; unless the user said not to."""
        if self.prefs.value(DISMISSED_KEY, False) in (True, "true"):
            return
        self.pending = True
        self.task.start(lambda state: _find(), self._found, lambda exc, details: setattr(self, "pending", False))

    def _found(self, found: tuple[str, str] | None) -> None:
        self.pending = False
        if found is None:
            return
        notice, self.command = found
        lead, _, rest = notice.partition(" (")  # "PyTorch's CUDA build is installed" in bold
        self.text.setText(f"<b>{html.escape(lead)}</b> ({html.escape(rest)}")
        self.command_label.setText(self.command)
        self.show()

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.command)
        self.copy_button.setText("Copied")

    def dismiss(self) -> None:
        self.prefs.set_value(DISMISSED_KEY, True)
        self.hide()
