"""Start the window: `grpo-studio`, `grpo-studio gui [RUN.toml | RUN_DIR]`, and `--screenshot`.

Nothing here (or in the pages) imports torch, transformers or datasets: they load in the worker
process, or on a background thread when a page needs them (the dataset preview, an export), so
the window paints in about a second.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication

SCREENSHOT_SIZE = (1280, 800)
SCREENSHOT_TIMEOUT_MS = 120_000  # a screenshot that cannot paint by then says so and exits 1, never hangs


def process_start_time() -> float | None:
    """When this process started (epoch seconds), from /proc on Linux; None elsewhere."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of stat; the split above drops the first two
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
        return boot + start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration, AttributeError):
        return None


class FirstPaint(QObject):
    """Notes when the window is first painted (for the launch-time figure), then lets the window start
    what the first screen did not need."""

    def __init__(self, target: QObject, report: bool, then=None):
        super().__init__(target)
        self.report = report
        self.then = then
        self.seconds: float | None = None
        target.installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Paint and self.seconds is None:
            t0 = float(os.environ.get("GRPO_STUDIO_LAUNCH_T0", 0)) or process_start_time()
            self.seconds = time.time() - t0 if t0 else None
            if self.report and self.seconds is not None:
                print(f"first paint {self.seconds:.2f} s after launch", file=sys.stderr, flush=True)
            obj.removeEventFilter(self)
            if self.then is not None:
                QTimer.singleShot(0, self.then)  # after this paint has reached the screen
        return False


def _headless_if_needed() -> None:
    """Screenshots work without a display (CI, SSH): fall back to Qt's offscreen platform."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def platform_problem() -> str | None:
    """Why Qt would abort the process on start (missing xcb libraries, no display), said before it does."""
    if QApplication.instance() is not None:
        return None
    from grpo_studio.gui.system_libraries import platform_will_be_xcb, xcb_problem

    problem = xcb_problem()
    if problem is None and platform_will_be_xcb() and sys.platform.startswith("linux") \
            and not os.environ.get("DISPLAY"):
        problem = ("error: the window cannot start: no display (DISPLAY is not set). Run it in a desktop "
                   "session; `grpo-studio gui --screenshot FILE.png` paints a view without one.")
    return problem


def initial_run(run: str | None) -> Path | None:
    """The command line's run file or folder; else the built-in demo; else nothing (a new run)."""
    if run:
        return Path(run)
    from grpo_studio.resource_paths import demo_run_file

    demo = demo_run_file()
    return demo if demo.is_file() else None


def make_app(with_stylesheet: bool = True) -> QApplication:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("GRPO Studio")
    app.setOrganizationName("GRPO Studio")
    app.setDesktopFileName("grpo-studio")
    from grpo_studio.gui import refcount_guard
    from grpo_studio.gui.style import apply_style

    refcount_guard.install(app)  # PySide6 6.12.0 on CPython < 3.12 (see the module)
    apply_style(app, with_stylesheet=with_stylesheet)
    return app


def run_app(run: str | None = None, screenshot: str | None = None, view: str = "settings") -> int:
    if screenshot:
        _headless_if_needed()
    problem = platform_problem()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    path = initial_run(run)
    if path is not None and not path.exists():
        print(f"error: {path}: no such run file or run folder", file=sys.stderr)
        return 2
    styled = bool(QApplication.instance() and QApplication.instance().styleSheet())
    app = make_app(with_stylesheet=False)
    from grpo_studio.gui import dialogs
    from grpo_studio.gui.main_window import MainWindow
    from grpo_studio.gui.preferences import Preferences
    from grpo_studio.gui.style import apply_stylesheet

    if screenshot:  # nobody is there to answer a dialog: each says its message on stderr and ends the app
        dialogs.set_headless(True)
    window = MainWindow(Preferences(ephemeral=bool(screenshot)))
    if screenshot:
        window.modal_guard = dialogs.install_guard(app)
    paint = FirstPaint(window, report=bool(os.environ.get("GRPO_STUDIO_REPORT_FIRST_PAINT")),
                       then=window.after_first_paint)
    window.open_initial(path)
    if not styled:
        apply_stylesheet(app)  # once, on the built window (see style.apply_style)
    if screenshot:
        if dialogs.exit_code is not None:  # opening it already needed a dialog (said on stderr)
            return dialogs.exit_code
        return take_screenshot(app, window, Path(screenshot), view)
    window.show()
    window.paint_probe = paint
    code = app.exec()
    from PySide6.QtCore import QThreadPool

    QThreadPool.globalInstance().waitForDone(30000)  # no worker thread may outlive the interpreter
    return code


def take_screenshot(app: QApplication, window, target: Path, view: str) -> int:
    """Paint one view at a fixed size, save it as PNG, exit (documentation and checks). Never waits for a
    person: a dialog the window would open goes to stderr with a non-zero exit (dialogs.py)."""
    from grpo_studio.gui import dialogs

    window.resize(*SCREENSHOT_SIZE)
    window.show_view(view)
    window.show()
    result = {"ok": False}

    def grab() -> None:
        training, samples = window.pages.peek("training"), window.pages.peek("samples")  # (only pages built)
        if ((training is not None and training.is_loading()) or window.install_notice.pending
                or (samples is not None and samples.model.busy)):  # the store is still being read
            QTimer.singleShot(100, grab)
            return
        if training is not None:
            training._redraw()
        # The plots' axes widen for their tick labels on the paint after the first one; until then the
        # labels that do not fit are left out.
        QTimer.singleShot(400, save)

    def save() -> None:
        app.processEvents()  # layouts of what changed meanwhile (a status bar label that just got its text)
        target.parent.mkdir(parents=True, exist_ok=True)
        result["ok"] = window.grab().save(str(target))
        if not result["ok"]:
            print(f"error: could not write {target}", file=sys.stderr)
        app.quit()  # closes the window as a person would: unsaved edits would be asked about (refused here)

    def too_slow() -> None:
        print(f"error: the {view} view was not ready to paint after {SCREENSHOT_TIMEOUT_MS // 1000} s",
              file=sys.stderr)
        app.exit(1)

    QTimer.singleShot(300, grab)  # let layouts settle and the plots draw once
    QTimer.singleShot(SCREENSHOT_TIMEOUT_MS, too_slow)
    code = app.exec()
    if dialogs.exit_code is not None:
        return dialogs.exit_code
    return code or (0 if result["ok"] else 1)
