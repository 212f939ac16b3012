"""What the window remembers between launches: its size and layout, recent run files and run folders.

Stored with QSettings (the platform's usual place). `GRPO_STUDIO_SETTINGS=/path/file.ini` points it
at a file instead, which tests use so they never touch the user's settings.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

MAX_RECENT = 10


class Preferences:
    def __init__(self, path: str | Path | None = None, ephemeral: bool = False):
        path = path or os.environ.get("GRPO_STUDIO_SETTINGS")
        if path:
            self.settings = QSettings(str(path), QSettings.Format.IniFormat)
        else:
            self.settings = QSettings("GRPO Studio", "GRPO Studio")
        self.ephemeral = ephemeral  # screenshots and checks read settings but never write them

    def _list(self, key: str) -> list[str]:
        value = self.settings.value(key, [])
        if isinstance(value, str):
            return [value] if value else []
        return [str(v) for v in (value or [])]

    def _push(self, key: str, item: str) -> None:
        if self.ephemeral:
            return
        items = [item] + [x for x in self._list(key) if x != item]
        self.settings.setValue(key, items[:MAX_RECENT])
        self.settings.sync()

    def recent_files(self) -> list[Path]:
        return [Path(p) for p in self._list("recent_files") if Path(p).is_file()]

    def add_recent_file(self, path: Path) -> None:
        self._push("recent_files", str(Path(path).resolve()))

    def clear_recent_files(self) -> None:
        if not self.ephemeral:
            self.settings.setValue("recent_files", [])

    def recent_runs(self) -> list[Path]:
        return [Path(p) for p in self._list("recent_runs") if (Path(p) / "config.toml").is_file()]

    def add_recent_run(self, path: Path) -> None:
        self._push("recent_runs", str(Path(path).resolve()))

    def window_state(self) -> tuple[QByteArray | None, QByteArray | None]:
        return self.settings.value("window/geometry"), self.settings.value("window/state")

    def save_window_state(self, geometry: QByteArray, state: QByteArray) -> None:
        if self.ephemeral:
            return
        self.settings.setValue("window/geometry", geometry)
        self.settings.setValue("window/state", state)
        self.settings.sync()

    def value(self, key: str, default=None):
        return self.settings.value(key, default)

    def set_value(self, key: str, value) -> None:
        if not self.ephemeral:
            self.settings.setValue(key, value)
