"""The window's pages, each built the first time it is needed, so the first paint builds only the page
it shows (building all six took most of a second and imported numpy and pyqtgraph for plots nobody
had opened yet). The rest are built one by one once the window is on screen (`build_rest`), each in
its own turn of the event loop, so clicks keep being answered meanwhile.
"""

from __future__ import annotations

from typing import Callable

import shiboken6
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QStackedWidget, QWidget

PREBUILD_GAP_MS = 50


class LazyPages:
    def __init__(self, stack: QStackedWidget, builders: dict[str, Callable[[], QWidget]]):
        self.stack = stack
        self.keys = list(builders)
        self.builders = builders
        self.built: dict[str, QWidget] = {}
        for _ in self.keys:
            self.stack.addWidget(QWidget())  # a placeholder until the page is built

    def get(self, key: str) -> QWidget:
        """The page, built now if it was not yet."""
        page = self.built.get(key)
        if page is None:
            page = self.builders[key]()
            index = self.keys.index(key)
            placeholder = self.stack.widget(index)
            was_current = self.stack.currentWidget() is placeholder
            self.stack.insertWidget(index, page)
            self.stack.removeWidget(placeholder)
            placeholder.deleteLater()
            self.built[key] = page
            if was_current:
                self.stack.setCurrentWidget(page)
        return page

    def peek(self, key: str) -> QWidget | None:
        """The page if it was built, without building it."""
        return self.built.get(key)

    def show(self, key: str) -> None:
        self.stack.setCurrentWidget(self.get(key))

    def build_rest(self) -> None:
        """Build the pages not built yet, one per turn of the event loop."""
        if not shiboken6.isValid(self.stack):
            return  # the window closed before every page was built: nothing left to build for
        missing = [k for k in self.keys if k not in self.built]
        if missing:
            self.get(missing[0])
            if len(missing) > 1:
                QTimer.singleShot(PREBUILD_GAP_MS, self.stack, self.build_rest)  # ends with the stack
