"""One light look for the whole window: Fusion style, a calm palette, a few stylesheet rules.

Colours used by more than one widget (error red, warning amber, curve colours) live here so
every view marks a problem the same way.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QColor, QFont, QIcon, QPalette
from PySide6.QtWidgets import QApplication, QHBoxLayout, QLabel

ACCENT = "#2f6fde"
TEXT = "#1f2430"
MUTED = "#667085"
BORDER = "#d5d9e0"
WINDOW = "#f3f4f7"
SURFACE = "#ffffff"
ERROR = "#c62828"
ERROR_BG = "#fdecea"
WARNING = "#8a5a00"
WARNING_BG = "#fff4d6"
OK = "#1f7a45"
OK_BG = "#e7f5ec"

# Curve colours for plots: distinguishable, and readable on white.
CURVE_COLORS = ["#2f6fde", "#e8772e", "#1f9d55", "#c23b8a", "#7a5af5", "#00a3a3", "#b8860b", "#d64545"]

STYLESHEET = f"""
QMainWindow, QDialog {{ background: {WINDOW}; }}
QToolBar {{ background: {SURFACE}; border: none; border-bottom: 1px solid {BORDER}; spacing: 4px; padding: 4px 8px; }}
QToolBar QToolButton {{ padding: 4px 8px; border-radius: 5px; }}
QToolBar QToolButton:hover {{ background: #e8edf7; }}
QToolBar QToolButton:disabled {{ color: #a0a6b0; }}
QStatusBar {{ background: {SURFACE}; border-top: 1px solid {BORDER}; }}
QStatusBar QLabel {{ padding: 0 8px; }}

QListWidget#navigation {{
    background: {SURFACE}; border: none; border-right: 1px solid {BORDER}; outline: 0;
    font-size: 10.5pt; padding-top: 8px;
}}
QListWidget#navigation::item {{ padding: 9px 16px; border-radius: 6px; margin: 2px 8px; color: {TEXT}; }}
QListWidget#navigation::item:selected {{ background: #e3ebfb; color: {ACCENT}; font-weight: 600; }}
QListWidget#navigation::item:hover:!selected {{ background: #f0f3f8; }}

QFrame#card {{ background: {SURFACE}; border: 1px solid {BORDER}; border-radius: 8px; }}
QLabel#cardTitle {{ font-size: 11.5pt; font-weight: 600; color: {TEXT}; }}
QLabel#cardSubtitle, QLabel.muted {{ color: {MUTED}; }}
QLabel#pageTitle {{ font-size: 15pt; font-weight: 600; color: {TEXT}; }}
QLabel#fieldError {{ color: {ERROR}; font-size: 9pt; }}
QLabel#fieldLabel {{ color: {TEXT}; }}

QLineEdit, QPlainTextEdit, QTextEdit, QSpinBox, QDoubleSpinBox, QComboBox, QTextBrowser {{
    border: 1px solid {BORDER}; border-radius: 4px; padding: 3px 5px; background: {SURFACE};
    selection-background-color: #b9cff5; selection-color: {TEXT};
}}
QLineEdit:focus, QPlainTextEdit:focus, QSpinBox:focus, QDoubleSpinBox:focus, QComboBox:focus {{
    border: 1px solid {ACCENT};
}}
*[invalid="true"] {{ border: 1px solid {ERROR}; background: {ERROR_BG}; }}

QSpinBox, QDoubleSpinBox {{ padding-right: 20px; }}
QSpinBox::up-button, QDoubleSpinBox::up-button {{
    subcontrol-origin: border; subcontrol-position: top right; width: 18px;
    border-left: 1px solid {BORDER}; border-top-right-radius: 4px; background: #f7f8fa;
}}
QSpinBox::down-button, QDoubleSpinBox::down-button {{
    subcontrol-origin: border; subcontrol-position: bottom right; width: 18px;
    border-left: 1px solid {BORDER}; border-bottom-right-radius: 4px; background: #f7f8fa;
}}
QSpinBox::up-button:hover, QSpinBox::down-button:hover {{ background: #e8edf7; }}
QSpinBox::up-arrow, QDoubleSpinBox::up-arrow {{ image: url({{icons}}/arrow-up.svg); width: 9px; height: 9px; }}
QSpinBox::down-arrow, QDoubleSpinBox::down-arrow {{ image: url({{icons}}/arrow-down.svg); width: 9px; height: 9px; }}
QComboBox {{ padding-right: 22px; }}
QComboBox::drop-down {{ subcontrol-origin: padding; subcontrol-position: center right; width: 20px; border: none; }}
QComboBox::down-arrow {{ image: url({{icons}}/arrow-down.svg); width: 10px; height: 10px; }}
QComboBox QAbstractItemView {{ border: 1px solid {BORDER}; selection-background-color: #e3ebfb;
                               selection-color: {TEXT}; background: {SURFACE}; }}
QCheckBox::indicator {{ width: 16px; height: 16px; border: 1px solid #aab1bd; border-radius: 4px;
                        background: {SURFACE}; }}
QCheckBox::indicator:checked {{ background: {ACCENT}; border-color: {ACCENT}; image: url({{icons}}/checkmark.svg); }}
QCheckBox::indicator:hover {{ border-color: {ACCENT}; }}

QPushButton {{ padding: 5px 12px; border: 1px solid {BORDER}; border-radius: 5px; background: {SURFACE}; }}
QPushButton:hover {{ background: #eef2f9; }}
QPushButton:default, QPushButton#primary {{ background: {ACCENT}; color: white; border-color: {ACCENT}; }}
QPushButton#primary:disabled {{ background: #9db8ea; border-color: #9db8ea; }}
QPushButton#filterChip {{ border-radius: 13px; padding: 4px 12px; }}
QPushButton#filterChip:checked {{ background: #e3ebfb; color: {ACCENT}; border-color: {ACCENT}; }}

QFrame#banner[level="error"] {{ background: {ERROR_BG}; border: 1px solid #f1b5b0; border-radius: 6px; }}
QFrame#banner[level="warning"] {{ background: {WARNING_BG}; border: 1px solid #f0d58c; border-radius: 6px; }}
QFrame#banner[level="info"] {{ background: {OK_BG}; border: 1px solid #a8dbbd; border-radius: 6px; }}
QFrame#banner[level="live"] {{ background: #e8effc; border: 1px solid #b9cff5; border-radius: 6px; }}

QTableView {{ background: {SURFACE}; border: 1px solid {BORDER}; gridline-color: #eceef2;
              selection-background-color: #cfdcf6; selection-color: {TEXT}; }}
QHeaderView::section {{ background: #f7f8fa; border: none; border-bottom: 1px solid {BORDER};
                        border-right: 1px solid #eceef2; padding: 4px 6px; font-weight: 600; }}
QProgressBar {{ border: 1px solid {BORDER}; border-radius: 5px; background: {SURFACE}; text-align: center;
                height: 18px; }}
QProgressBar::chunk {{ background: {ACCENT}; border-radius: 4px; }}
QSplitter::handle {{ background: {WINDOW}; }}
QTabBar#groupTabs::tab {{ padding: 4px 4px 4px 10px; margin-right: 2px; border: 1px solid {BORDER}; border-bottom: none;
                         border-top-left-radius: 5px; border-top-right-radius: 5px; background: #f7f8fa;
                         color: {MUTED}; }}
QTabBar#groupTabs::tab:selected {{ background: {SURFACE}; color: {TEXT}; font-weight: 600; }}
QTabBar#groupTabs::close-button {{ image: url({{icons}}/close.svg); subcontrol-position: right; width: 14px;
                                  height: 14px; margin: 0 2px 0 4px; }}
QTabBar#groupTabs::close-button:hover {{ background: #e8edf7; border-radius: 3px; }}
QScrollArea {{ border: none; background: transparent; }}
QScrollArea > QWidget > QWidget#scrollContent {{ background: transparent; }}
"""


def icons_dir() -> Path:
    from grpo_studio.resource_paths import resources_dir

    return resources_dir() / "icons"


def icon(name: str) -> QIcon:
    """An icon from resources/icons (an empty icon when the file is missing, never an error)."""
    path = icons_dir() / f"{name}.svg"
    return QIcon(str(path)) if path.is_file() else QIcon()


def apply_style(app: QApplication, with_stylesheet: bool = True) -> None:
    """Fusion, the palette and the font; and the stylesheet, unless the caller applies it later with
    apply_stylesheet (a window built first and styled once starts about twice as fast: with a
    stylesheet in force, every widget is re-polished each time it is added to a parent)."""
    app.setStyle("Fusion")
    palette = QPalette()
    palette.setColor(QPalette.ColorRole.Window, QColor(WINDOW))
    palette.setColor(QPalette.ColorRole.WindowText, QColor(TEXT))
    palette.setColor(QPalette.ColorRole.Base, QColor(SURFACE))
    palette.setColor(QPalette.ColorRole.AlternateBase, QColor("#f7f8fa"))
    palette.setColor(QPalette.ColorRole.Text, QColor(TEXT))
    palette.setColor(QPalette.ColorRole.Button, QColor(SURFACE))
    palette.setColor(QPalette.ColorRole.ButtonText, QColor(TEXT))
    palette.setColor(QPalette.ColorRole.Highlight, QColor(ACCENT))
    palette.setColor(QPalette.ColorRole.HighlightedText, QColor("#ffffff"))
    palette.setColor(QPalette.ColorRole.ToolTipBase, QColor("#fffef5"))
    palette.setColor(QPalette.ColorRole.ToolTipText, QColor(TEXT))
    palette.setColor(QPalette.ColorRole.PlaceholderText, QColor("#9aa1ad"))
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor("#a0a6b0"))
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor("#a0a6b0"))
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.WindowText, QColor("#a0a6b0"))
    app.setPalette(palette)
    font = app.font()
    if font.pointSizeF() < 10:
        font.setPointSizeF(10)
    app.setFont(font)
    app.setWindowIcon(icon("app"))
    if with_stylesheet:
        apply_stylesheet(app)


def apply_stylesheet(app: QApplication) -> None:
    # Qt stylesheets take file URLs with forward slashes, also on Windows.
    app.setStyleSheet(STYLESHEET.replace("{icons}", icons_dir().as_posix()))


def monospace_font(size: float = 10) -> QFont:
    font = QFont("monospace")
    font.setStyleHint(QFont.StyleHint.Monospace)
    font.setFixedPitch(True)
    font.setPointSizeF(size)
    return font


def set_invalid(widget, invalid: bool) -> None:
    """Mark a widget with the error border (the stylesheet's [invalid="true"] rule)."""
    if bool(widget.property("invalid")) == invalid:
        return
    widget.setProperty("invalid", invalid)
    widget.style().unpolish(widget)
    widget.style().polish(widget)


def title_row(title: str, subtitle: QLabel) -> QHBoxLayout:
    """A page's heading row: its name, then a line of context (the run, the file) taking the rest."""
    row = QHBoxLayout()
    label = QLabel(title)
    label.setObjectName("pageTitle")
    row.addWidget(label)
    row.addSpacing(12)
    subtitle.setObjectName("cardSubtitle")
    row.addWidget(subtitle, 1)
    return row
