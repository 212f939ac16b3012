"""A guard against PySide6 6.12.0's lost references on CPython 3.10 and 3.11.

PySide6/shiboken6 6.12.0 (abi3 wheels) give back `None`, `True` and `False` from void calls and
signal emits without taking a reference for them. From CPython 3.12 on these objects are immortal
and nothing happens; on 3.10 and 3.11 every such call drops one reference that was never taken:
`widget.update()` costs one reference of None, a pyqtgraph `setData` about eleven, `signal.emit()`
one of True or False. Live plots make thousands of such calls a second, so within minutes the
count reaches zero and the interpreter aborts ("Fatal Python error: none_dealloc"). PySide6 6.11.3
does not do this (measured); pyproject.toml keeps 3.10/3.11 installs below 6.12.

Where the bad combination is installed anyway, this guard gives the references back: it holds a
reserve of references at start, and a timer tops the counts up to where they started whenever they
fall below. It touches nothing else and does nothing on unaffected versions.
"""

from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QObject, QTimer

RESERVE = 200_000  # references held from the start: far more than any burst between two checks
CHECK_MS = 100


def affected() -> bool:
    import PySide6

    version = tuple(int(p) for p in PySide6.__version__.split(".")[:2])
    return sys.version_info < (3, 12) and version == (6, 12)


class RefcountGuard(QObject):
    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.targets = (None, True, False)
        # A list holds one reference per slot: a reserve taken in one cheap C loop.
        self._reserve = [obj for obj in self.targets for _ in range(RESERVE)]
        self.baseline = {id(obj): sys.getrefcount(obj) for obj in self.targets}
        self.restored = 0
        self._incref = ctypes.pythonapi.Py_IncRef
        self._incref.argtypes = [ctypes.py_object]
        self._incref.restype = None
        self.timer = QTimer(self)
        self.timer.setInterval(CHECK_MS)
        self.timer.timeout.connect(self.top_up)
        self.timer.start()

    def top_up(self) -> int:
        """Give back what was lost since the last check; returns how many references that was."""
        given = 0
        for obj in self.targets:
            missing = self.baseline[id(obj)] - sys.getrefcount(obj)
            for _ in range(max(0, missing)):
                self._incref(obj)
            given += max(0, missing)
        self.restored += given
        return given


_guard: RefcountGuard | None = None


def install(app: QObject) -> RefcountGuard | None:
    """Start the guard once per process, only where the bug exists."""
    global _guard
    if _guard is None and affected():
        _guard = RefcountGuard(app)
    return _guard
