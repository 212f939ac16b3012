"""The window's actions (with their shortcuts and tips), menus and toolbar, in one place."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMenu, QToolBar

from grpo_studio.gui.style import icon


def make_actions(window: Any) -> dict[str, QAction]:
    """Every command of the window; menus, toolbar and pages share these (one enabled state each)."""

    def make(key: str, text: str, slot, shortcut: Any = None, tip: str = "", icon_name: str = "") -> QAction:
        action = QAction(icon(icon_name or key), text, window)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        plain = text.replace("&", "").rstrip("…")
        action.setStatusTip(tip or plain)
        action.setToolTip(plain + (f" ({QKeySequence(shortcut).toString()})" if shortcut else ""))
        action.triggered.connect(slot)
        action.setObjectName(f"action_{key}")
        return action

    keys = QKeySequence.StandardKey
    return {
        "new": make("new", "&New", window.new_run, keys.New, "Start a new run file"),
        "open": make("open", "&Open…", window.open_dialog, keys.Open, "Open a run file"),
        "open_run": make("open_run", "Open Run &Folder…", window.open_run_dialog, "Ctrl+Shift+O",
                         "Open a past run to see its curves and samples", "open"),
        "save": make("save", "&Save", window.save, keys.Save, "Save the run file and the reward file"),
        "save_as": make("save_as", "Save &As…", window.save_as, keys.SaveAs, "Save under a new name", "save"),
        "quit": make("quit", "&Quit", window.close, keys.Quit, "Close the window", "none"),
        "check": make("check", "&Check", window.check, "F7",
                      "Check the dataset, reward file and model the way training will, without training"),
        "bench": make("bench", "Test &Rewards", window.test_rewards, "Ctrl+B",
                      "Run the reward functions on real rows in the Rewards page's test bench", "check"),
        "train": make("train", "&Train", window.train, "F5", "Start training what the window shows"),
        "stop": make("stop", "St&op", window.stop, "Shift+F5", "Finish this step, save a checkpoint and stop"),
        "resume": make("resume", "&Resume", window.resume, "Ctrl+F5",
                       "Continue the shown run from its newest checkpoint"),
        "evaluate": make("evaluate", "E&valuate", window.evaluate, "F8",
                         "Compare the base model with the shown run's adapter on the held-out prompts"),
        "compare": make("compare", "Co&mpare Runs", window.compare_runs, "Ctrl+Shift+C",
                        "Overlay the runs selected on the Runs page on the Training plots", "none"),
        "export": make("export", "&Export…", window.export, "Ctrl+E",
                       "Export the shown run: adapter, merged model or GGUF, and push it to the hub"),
    }


def build_menus(window: QMainWindow, actions: dict[str, QAction], pages: list[tuple[str, str]]) -> QMenu:
    """Menus and the toolbar; returns the Open Recent menu, which the window fills when it opens."""
    bar = window.menuBar()
    file_menu = bar.addMenu("&File")
    file_menu.addAction(actions["new"])
    file_menu.addAction(actions["open"])
    recent = file_menu.addMenu("Open &Recent")
    file_menu.addAction(actions["open_run"])
    file_menu.addSeparator()
    file_menu.addAction(actions["save"])
    file_menu.addAction(actions["save_as"])
    file_menu.addSeparator()
    file_menu.addAction(actions["quit"])
    run_menu = bar.addMenu("&Run")
    for key in ("check", "bench", "train", "stop", "resume"):
        run_menu.addAction(actions[key])
    run_menu.addSeparator()
    for key in ("evaluate", "compare", "export"):
        run_menu.addAction(actions[key])
    view_menu = bar.addMenu("&View")
    for i, (key, title) in enumerate(pages, 1):
        action = view_menu.addAction(title)
        action.setShortcut(QKeySequence(f"Ctrl+{i}"))
        action.triggered.connect(lambda checked=False, k=key: window.show_view(k))
    help_menu = bar.addMenu("&Help")
    help_menu.addAction("&About GRPO Studio").triggered.connect(window.about)

    tools = QToolBar("Main")
    tools.setObjectName("main_toolbar")
    tools.setMovable(False)
    tools.setIconSize(QSize(20, 20))
    tools.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    for group in (("new", "open", "save"), ("check", "train", "stop", "resume"), ("evaluate", "export")):
        if tools.actions():
            tools.addSeparator()
        for key in group:
            tools.addAction(actions[key])
    window.addToolBar(tools)
    return recent
