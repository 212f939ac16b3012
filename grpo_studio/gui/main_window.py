"""The main window: menus, toolbar, the page list on the left, and what ties the pages together
(the open run file, the training run, its samples).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMainWindow,
    QMessageBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from grpo_studio.config import ConfigError
from grpo_studio.engine.events import STOPPED_BEFORE_TRAINING
from grpo_studio.engine.run_home import is_builtin
from grpo_studio.engine.run_lock import lock_holder
from grpo_studio.engine.store import RunFolder
from grpo_studio.gui import dialogs
from grpo_studio.gui.document import RunDocument
from grpo_studio.gui.install_notice import InstallNotice
from grpo_studio.gui.menus import build_menus, make_actions
from grpo_studio.gui.pages import LazyPages
from grpo_studio.gui.preferences import Preferences
from grpo_studio.gui.problems_bar import ProblemsBar, view_of_field
from grpo_studio.gui.run_controller import RunController
from grpo_studio.gui.run_snapshot import output_dir_for, write_snapshot
from grpo_studio.gui.style import icon
from grpo_studio.gui.tasks import TaskRunner

APP_NAME = "GRPO Studio"
RUN_FILES = "Run files (*.toml);;All files (*)"
PAGES = [("settings", "Settings"), ("dataset", "Dataset"), ("rewards", "Rewards"), ("training", "Training"),
         ("samples", "Samples"), ("evaluate", "Evaluate"), ("playground", "Playground"), ("runs", "Runs")]


def builtin_note(path: Path | None) -> str:
    """The title's note for a run file that ships with the app (not saved over: Save asks where)."""
    if not is_builtin(path):
        return ""
    from grpo_studio.resource_paths import demo_run_file

    return " (built-in demo)" if Path(path).resolve() == demo_run_file().resolve() else " (built-in example)"


def _bar_holder(bar: QWidget) -> QWidget:
    """A bar above the pages, in the pages' margins, taking no room while it hides (its `shown` signal)."""
    holder = QWidget()
    box = QVBoxLayout(holder)
    box.setContentsMargins(24, 12, 24, 0)
    box.addWidget(bar)
    holder.setVisible(False)
    bar.shown.connect(holder.setVisible)
    return holder


class MainWindow(QMainWindow):
    runShown = Signal(object)  # the run folder whose curves and samples are on screen
    checkFinished = Signal(object)  # a CheckReport (engine/child_messages.py)

    def __init__(self, prefs: Preferences | None = None):
        super().__init__()
        self.prefs = prefs or Preferences()
        self.doc = RunDocument(self)
        self.controller = RunController(self)
        self.export_dialog: Any = None
        self.check_task = TaskRunner(self)  # Check (F7), in a child process
        self._snapshot_dir: Path | None = None
        self._shown_run: Path | None = None  # the run on the Training page (Evaluate and Playground use it)
        self._own_run: Path | None = None  # the run this window trains, while it does
        self._close_after_run = False
        self.setWindowIcon(icon("app"))
        self.resize(1280, 800)
        self.setMinimumSize(960, 640)

        self.actions = make_actions(self)
        self.recent_menu = build_menus(self, self.actions, PAGES)
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        self._build_body()
        self._connect()
        self._restore_window()
        self._update_title()
        self._update_actions()

    # ---- construction ----------------------------------------------------------------------
    def _build_body(self) -> None:
        self.nav = QListWidget()
        self.nav.setObjectName("navigation")
        self.nav.setFixedWidth(170)
        for key, title in PAGES:
            self.nav.addItem(title)
        self.stack = QStackedWidget()
        self.pages = LazyPages(self.stack, {"settings": self._make_settings, "dataset": self._make_dataset,
                                            "rewards": self._make_rewards, "training": self._make_training,
                                            "samples": self._make_samples, "evaluate": self._make_evaluate,
                                            "playground": self._make_playground, "runs": self._make_runs})
        self.problems_bar = ProblemsBar(self.doc)
        self.problems_bar.fieldClicked.connect(self.focus_field)
        right = QWidget()
        right_box = QVBoxLayout(right)
        right_box.setContentsMargins(0, 0, 0, 0)
        right_box.setSpacing(0)
        self.install_notice = InstallNotice(self.prefs)
        right_box.addWidget(_bar_holder(self.install_notice))
        right_box.addWidget(_bar_holder(self.problems_bar))
        right_box.addWidget(self.stack, 1)
        body = QWidget()
        box = QHBoxLayout(body)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(0)
        box.addWidget(self.nav)
        box.addWidget(right, 1)
        self.setCentralWidget(body)
        self.nav.currentRowChanged.connect(lambda row: self.pages.show(PAGES[row][0]))
        self.state_label = QLabel("Idle")
        self.problem_label = QLabel()
        self.problem_label.setStyleSheet("color: #c62828;")
        self.vram_label = QLabel()
        self.vram_label.setObjectName("cardSubtitle")
        self.vram_label.setToolTip("Estimated peak GPU memory of this run (Settings page: the breakdown)")
        self.statusBar().addPermanentWidget(self.problem_label)
        self.statusBar().addPermanentWidget(self.vram_label)
        self.statusBar().addPermanentWidget(self.state_label)

    def _connect(self) -> None:
        self.doc.modifiedChanged.connect(self._update_title)
        self.doc.pathChanged.connect(self._update_title)
        self.doc.pathChanged.connect(self._refresh_runs)
        self.doc.problemsChanged.connect(self._update_problem_count)
        self.controller.event.connect(self._on_event)
        self.controller.stateChanged.connect(self._on_state)
        self.controller.runEnded.connect(self._on_run_ended)
        self._update_problem_count()

    # ---- pages, built when first needed (gui/pages.py) -------------------------------------
    settings_view = property(lambda self: self.pages.get("settings"))
    dataset_view = property(lambda self: self.pages.get("dataset"))
    rewards_view = property(lambda self: self.pages.get("rewards"))
    training_view = property(lambda self: self.pages.get("training"))
    samples_view = property(lambda self: self.pages.get("samples"))
    evaluate_view = property(lambda self: self.pages.get("evaluate"))
    playground_view = property(lambda self: self.pages.get("playground"))
    runs_view = property(lambda self: self.pages.get("runs"))

    def _make_settings(self) -> QWidget:
        from grpo_studio.gui.settings_form import SettingsView

        view = SettingsView(self.doc)
        view.vram.updated.connect(self._show_vram)
        return view

    def _make_dataset(self) -> QWidget:
        from grpo_studio.gui.dataset_panel import DatasetView

        return DatasetView(self.doc)

    def _make_rewards(self) -> QWidget:
        from grpo_studio.gui.reward_editor import RewardsView

        return RewardsView(self.doc)

    def _make_training(self) -> QWidget:
        from grpo_studio.gui.training_view import TrainingView

        view = TrainingView()
        self.controller.logLine.connect(view.append_output)
        view.runDirChanged.connect(lambda _: self._update_actions())
        view.runDirChanged.connect(self._run_shown)
        view.liveChanged.connect(self._on_live_changed)
        view.samplesStored.connect(lambda step: self.samples_view.samples_arrived(step))
        return view

    def _make_samples(self) -> QWidget:
        from grpo_studio.gui.samples_browser import SamplesBrowser

        return SamplesBrowser()

    def _make_evaluate(self) -> QWidget:
        from grpo_studio.gui.evaluate_page import EvaluateView

        view = EvaluateView()
        view.set_run(self._shown_run)
        view.set_training(self.controller.is_active())
        return view

    def _make_playground(self) -> QWidget:
        from grpo_studio.gui.playground_page import PlaygroundView

        view = PlaygroundView()
        view.set_run(self._shown_run)
        view.set_training(self.controller.is_active())
        return view

    def _make_runs(self) -> QWidget:
        from grpo_studio.gui.runs_panel import RunsView

        view = RunsView()
        view.openRequested.connect(self.open_run)
        view.resumeRequested.connect(self.resume)
        view.exportRequested.connect(self.export)
        view.compareRequested.connect(self.compare_runs)
        view.set_sources([output_dir_for(self.doc.config, self.doc.path)], self.prefs.recent_runs())
        view.set_busy(self.controller.is_active())
        view.own_run = self._own_run
        return view

    def after_first_paint(self) -> None:
        """Work the first screen does not need, started once the window is on screen."""
        self.install_notice.check()  # the CUDA build of torch on a computer without an NVIDIA GPU
        self.pages.build_rest()  # the other pages, one by one, so the first switch to each is quick

    # ---- pages -----------------------------------------------------------------------------
    def show_view(self, key: str) -> None:
        self.nav.setCurrentRow([k for k, _ in PAGES].index(key))

    def current_view(self) -> str:
        return PAGES[self.nav.currentRow()][0]

    def focus_field(self, path: str) -> None:
        view = view_of_field(path)
        self.show_view(view)
        if view == "settings":
            self.settings_view.focus_field(path)
        elif view == "dataset" and path in self.dataset_view.rows:
            self.dataset_view.rows[path].editor.input_widget().setFocus()
        elif view == "rewards" and self.rewards_view.editor.error_line:
            self.rewards_view.editor.go_to_line(self.rewards_view.editor.error_line)

    # ---- files -----------------------------------------------------------------------------
    def open_initial(self, path: str | Path | None) -> None:
        """Open what the command line named: a run file, a run folder, or nothing (a new run)."""
        if path is None:
            self.doc.new()
        else:
            self.open_path(Path(path), remember=False)
        self._refresh_runs()

    def open_path(self, path: Path, remember: bool = True) -> bool:
        path = Path(path).expanduser()
        if path.is_dir():
            return self.open_run(path, load_config=True)
        try:
            self.doc.load(path)
        except ConfigError as exc:
            self._show_load_error(path, exc)
            return False
        if remember and not is_builtin(self.doc.path):
            self.prefs.add_recent_file(self.doc.path)
        note = self.doc.reward_note  # a reward file it could not read: said where the user looks, not hidden
        self.statusBar().showMessage(note or f"Opened {path}", 15000 if note else 5000)
        return True

    def _show_load_error(self, path: Path, exc: ConfigError) -> None:
        lines = "\n".join(f"• {p}" for p in exc.problems)
        self.tell("Cannot open the run file", f"{path} has problems:\n\n{lines}")

    def maybe_save(self) -> bool:
        """True when it is fine to drop the open file (saved, discarded, or unchanged)."""
        if not self.doc.is_modified():
            return True
        buttons = QMessageBox.StandardButton
        why = f"\n\n{self.doc.reward_note}." if self.doc.reward_note and self.doc.reward_modified() else ""
        answer = self.ask("Unsaved changes", f"Save the changes to {self.doc.display_name}?{why}",
                          buttons.Save | buttons.Discard | buttons.Cancel, buttons.Save)
        if answer == QMessageBox.StandardButton.Save:
            return self.save()
        return answer == QMessageBox.StandardButton.Discard

    def new_run(self) -> None:
        if self.maybe_save():
            self.doc.new()
            self.show_view("settings")

    def open_dialog(self) -> None:
        if not self.maybe_save():
            return
        start = str(self.doc.base_dir or Path.home())
        chosen = dialogs.open_file(self, "Open a run file", start, RUN_FILES)
        if chosen:
            self.open_path(Path(chosen))

    def open_run_dialog(self) -> None:
        self.runs_view.browse()

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        recent = self.prefs.recent_files()
        for path in recent:
            action = self.recent_menu.addAction(str(path))
            action.triggered.connect(lambda checked=False, p=path: self.maybe_save() and self.open_path(p))
        if not recent:
            self.recent_menu.addAction("No recent files").setEnabled(False)
        else:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear list").triggered.connect(self.prefs.clear_recent_files)

    def save(self) -> bool:
        if self.doc.path is None or is_builtin(self.doc.path):
            return self.save_as()
        return self._save_to(self.doc.path)

    def save_as(self) -> bool:
        start = str(self.doc.path.parent / "run.toml") if self.doc.path and not is_builtin(self.doc.path) \
            else str(Path.home() / "run.toml")
        chosen = dialogs.save_file(self, "Save the run file", start, RUN_FILES)
        if not chosen:
            return False
        target = Path(chosen)
        if target.suffix != ".toml":
            target = target.with_suffix(".toml")
        conflicts = self.doc.save_conflicts(target)
        if conflicts:
            answer = self.ask("Replace reward file?",
                              f"{conflicts[0]} exists with other code. Replace it with the code in the editor?")
            if answer != QMessageBox.StandardButton.Yes:
                return False
        return self._save_to(target)

    def _save_to(self, path: Path) -> bool:
        try:
            self.doc.save(path)
        except OSError as exc:
            self.tell("Cannot save", f"{path}: {exc.strerror or exc}")
            return False
        self.prefs.add_recent_file(self.doc.path)
        unsaved = [p for p in self.doc.field_errors]
        note = f" (invalid values not saved: {', '.join(unsaved)})" if unsaved else ""
        self.statusBar().showMessage(f"Saved {self.doc.path}{note}", 6000)
        return True

    def _update_title(self, *_: Any) -> None:
        name = self.doc.display_name + builtin_note(self.doc.path)
        self.setWindowTitle(f"{name}[*] — {APP_NAME}")
        self.setWindowModified(self.doc.is_modified())

    def _show_vram(self, view: Any) -> None:
        from grpo_studio.gui.vram_card import format_bytes

        if view.status == "estimate":
            where = " (CPU run here)" if view.device == "cpu" or view.gpu is False else ""
            self.vram_label.setText(f"Peak GPU memory ≈ {format_bytes(view.total)}{where}")
        else:
            self.vram_label.setText("")

    def _update_problem_count(self) -> None:
        n = len(self.doc.problems())
        self.problem_label.setText(f"{n} problem{'s' if n != 1 else ''} to fix before training" if n else "")

    # ---- runs ------------------------------------------------------------------------------
    def _refresh_runs(self) -> None:
        """Every run the user made (noted by the engine, from the window or the command line), those
        in this run file's runs folder, and run folders opened from elsewhere."""
        runs = self.pages.peek("runs")
        if runs is not None:  # else it reads them when it is built
            runs.set_sources([output_dir_for(self.doc.config, self.doc.path)], self.prefs.recent_runs())

    def open_run(self, run_dir: Path, load_config: bool = False) -> bool:
        """Show a past run's curves and samples (and, from the command line, edit its settings)."""
        folder = RunFolder(Path(run_dir).resolve())
        if not folder.is_run():
            self.tell("Not a run folder", f"{folder.path} has no config.toml: open a run folder that training "
                                          "made, or a run file (.toml).")
            return False
        if self.controller.is_active():
            self.statusBar().showMessage("A run is training: open other runs when it has ended.", 6000)
            return False
        if load_config:
            try:
                self.doc.load(folder.config)
            except ConfigError as exc:
                self._show_load_error(folder.config, exc)
        self.training_view.show_run(folder.path)  # read in the background; a damaged store says so there
        # Trained by another process right now? Its samples follow it (the Training page says who).
        self.samples_view.set_run(folder.path, live=lock_holder(folder.path) is not None)
        self.prefs.add_recent_run(folder.path)
        self.show_view("training")
        self.runShown.emit(folder.path)
        self._update_actions()
        return True

    def train(self) -> None:
        if self.controller.is_active():
            return
        problems = self.doc.problems()
        if problems:
            self.problems_bar.show_blocking()
            first = next(iter(problems))
            self.focus_field(first)
            self.statusBar().showMessage(f"Cannot train yet: {first}: {problems[first]}", 10000)
            return
        try:
            saved = self.doc.reward_path() if not self.doc.reward_modified() else None
            run_file = write_snapshot(self.doc.config, self.doc.path, self.doc.reward_source,
                                      saved_reward_file=saved)
        except OSError as exc:
            self.tell("Cannot start training", f"Could not write the run snapshot: {exc}")
            return
        self._snapshot_dir = run_file.parent
        self.training_view.begin_live()
        self.samples_view.set_run(None, live=True)
        self.controller.start(run_file)
        self.show_view("training")
        self.statusBar().showMessage("Training started: loading the model and data…", 5000)

    def check(self) -> None:
        """Validate in a child process; findings are marked at their fields like any other problem."""
        from grpo_studio.gui.run_check import run_check

        if self.check_task.is_running():
            return
        self.actions["check"].setEnabled(False)
        self.statusBar().showMessage("Checking the dataset, reward file and model…")
        seen = self.doc.config.model_copy(deep=True), self.doc.reward_source
        path = self.doc.path
        self.check_task.start(lambda state: run_check(seen[0], path, seen[1], state=state),
                              lambda result: self._check_done(result, seen),
                              lambda exc, details: self._check_done(None, seen, f"{exc}"))

    def _check_done(self, result: Any, seen: tuple, error: str = "") -> None:
        from grpo_studio.gui.run_check import problems_by_field

        self.actions["check"].setEnabled(True)
        if result is None:
            self.statusBar().showMessage(f"The check could not run: {error}", 10000)
            return
        if (self.doc.config, self.doc.reward_source) != seen:
            self.statusBar().showMessage("The settings changed during the check: check again (F7).", 8000)
            return
        reward_file = Path(self.doc.config.rewards.file).name
        data_file = Path(self.doc.config.data.source).name
        found = problems_by_field(result.problems, reward_file, data_file)
        self.doc.set_found_problems("check", found)
        for line in result.problems:
            self.rewards_view.mark_runtime_error(line, "(found by the check)")
        warnings = f" · {len(result.warnings)} warning(s): {result.warnings[0]}" if result.warnings else ""
        if found:
            self.problems_bar.show_blocking()
            self.statusBar().showMessage(f"Check: {len(found)} problem(s){warnings}", 15000)
        else:
            facts = result.facts
            summary = [f"{facts['rows']:,} training rows" if "rows" in facts else "",
                       "rewards: " + ", ".join(facts["rewards"]) if facts.get("rewards") else ""]
            summary = "; ".join(s for s in summary if s) or "nothing blocks training"
            self.problems_bar.show_check(summary, result.warnings)  # above the page, not only in the status bar
            self.statusBar().showMessage("Check passed: " + summary + warnings, 15000)
        self.checkFinished.emit(result)

    def test_rewards(self) -> None:
        """Ctrl+B from any page: the Rewards page's test bench, run on what it holds. (A shortcut on the
        bench's button worked only once its tab had been shown.)"""
        self.show_view("rewards")
        self.rewards_view.show_bench()
        bench = self.rewards_view.bench
        if bench.run_button.isEnabled():
            bench.run()

    def _trained_elsewhere(self, run_dir: Path, doing: str) -> bool:
        """Another process trains this run now: say so instead of `doing` anything to it."""
        holder = lock_holder(run_dir)
        if holder is None:
            return False
        who = holder.describe() if holder.pid else "another process"
        self.statusBar().showMessage(f"{run_dir.name} is being trained by {who}: {doing} when it has ended.", 10000)
        return True

    def resume(self, run_dir: Path | None = None) -> None:
        run_dir = Path(run_dir) if run_dir else self.training_view.run_dir
        if run_dir is None or self.controller.is_active() or self._trained_elsewhere(run_dir, "resume it"):
            return
        from grpo_studio.gui.runs_panel import read_run

        info = read_run(run_dir)
        overrides: list[str] = []
        if info.status == "finished" and info.max_steps:
            steps, ok = dialogs.get_int(self, "Train further", "This run finished. Train it up to step:",
                                        info.max_steps * 2, info.max_steps + 1, 10_000_000)
            if not ok:
                return
            overrides.append(f"grpo.max_steps={steps}")
        view = self.training_view
        if view.run_dir is None or view.run_dir.resolve() != run_dir.resolve() or view.is_loading():
            view.show_run(run_dir)  # the curves so far (read in the background); the resumed steps continue them
        view.begin_resume()
        self.samples_view.set_run(run_dir, live=True)
        self.controller.start(run_dir, resume=True, overrides=overrides)
        self.show_view("training")

    def stop(self) -> None:
        if self.controller.state == "stopping":
            answer = self.ask(
                "Kill the run?", "The run is finishing its step to save a checkpoint. Kill it now "
                "instead? (The newest complete checkpoint stays resumable.)")
            if answer == QMessageBox.StandardButton.Yes:
                self.controller.kill()
            return
        self.controller.stop()
        self.training_view.set_stopping()
        self.statusBar().showMessage("Stopping after this step; a checkpoint will be saved…")

    def _run_shown(self, run_dir: Path | None) -> None:
        """The run on the Training page is the one Evaluate and the Playground work on (a page not built
        yet takes it when it is built)."""
        self._shown_run = run_dir
        for key in ("evaluate", "playground"):
            if self.pages.peek(key) is not None:
                self.pages.peek(key).set_run(run_dir)

    def evaluate(self) -> None:
        """F8: the Evaluate page, evaluating the shown run when it can."""
        self.show_view("evaluate")
        self.evaluate_view.start()

    def compare_runs(self, run_dirs: list[Path] | None = None) -> None:
        """Overlay several runs on the Training plots (the runs selected on the Runs page by default)."""
        if run_dirs is None or isinstance(run_dirs, bool):  # from the action: the Runs page's selection
            run_dirs = [r.path for r in self.runs_view.selected_runs()]
        if len(run_dirs) < 2:
            self.show_view("runs")
            self.statusBar().showMessage("Select two or more runs (Ctrl+click or Shift+click), then Compare.", 8000)
            return
        if self.controller.is_active():
            self.statusBar().showMessage("A run is training: compare runs when it has ended.", 6000)
            return
        from grpo_studio.gui.run_overlay import MAX_RUNS

        self.show_view("training")  # first: plots laid out while hidden keep their legends in the wrong place
        self.training_view.show_comparison([Path(d) for d in run_dirs[:MAX_RUNS]])
        if len(run_dirs) > MAX_RUNS:
            self.statusBar().showMessage(f"Comparing the first {MAX_RUNS} of the {len(run_dirs)} runs selected: "
                                         "more curves than that on one plot cannot be told apart.", 10000)

    def export(self, run_dir: Path | None = None) -> None:
        from grpo_studio.gui.export_dialog import ExportDialog

        run_dir = Path(run_dir) if run_dir else self.training_view.run_dir
        if run_dir is None or self._trained_elsewhere(run_dir, "export it"):
            return
        self.export_dialog = ExportDialog(run_dir, self)
        self.export_dialog.open()

    def _on_event(self, event: Any) -> None:
        self.training_view.handle_event(event)
        if event.kind == "opened":
            self.samples_view.set_run(Path(event.run_dir), live=True)
            self.prefs.add_recent_run(Path(event.run_dir))
            self._set_own_run(Path(event.run_dir).resolve())
        elif event.kind in ("samples", "samples_stored"):
            self.samples_view.samples_arrived(event.step)
        elif event.kind == "metrics":
            self.state_label.setText(f"Training · step {event.step} / {event.max_steps}")

    def _on_state(self, state: str) -> None:
        self.state_label.setText({"idle": "Idle", "running": "Training…", "stopping": "Stopping…"}[state])
        if self.pages.peek("runs") is not None:
            self.runs_view.set_busy(state != "idle")
        for key in ("evaluate", "playground"):
            if self.pages.peek(key) is not None:
                self.pages.peek(key).set_training(state != "idle")
        self._update_actions()

    def _on_run_ended(self, final: Any) -> None:
        self.samples_view.run_ended()
        self._set_own_run(None)
        if self._snapshot_dir is not None:
            shutil.rmtree(self._snapshot_dir, ignore_errors=True)
            self._snapshot_dir = None
        if final.kind == "failed" and final.reason == STOPPED_BEFORE_TRAINING:
            self.statusBar().showMessage("Stopped before the first step: nothing was trained.", 15000)
        elif final.kind == "failed":
            if self.rewards_view.mark_runtime_error(final.reason):
                self.statusBar().showMessage(f"Training failed in the reward code: {final.reason}", 15000)
            else:
                self.statusBar().showMessage(f"Training failed: {final.reason}", 15000)
        elif final.stopped:
            self.statusBar().showMessage(f"Stopped at step {final.step}; Resume continues from its checkpoint.")
        else:
            self.statusBar().showMessage(f"Finished {final.step} steps.")
        self._refresh_runs()
        self._update_actions()
        if self._close_after_run:
            QTimer.singleShot(0, self.close)

    def _set_own_run(self, run_dir: Path | None) -> None:
        """The run this window trains (the Runs page tells it from runs trained elsewhere)."""
        self._own_run = run_dir
        if self.pages.peek("runs") is not None:
            self.runs_view.own_run = run_dir

    def _on_live_changed(self) -> None:
        """The shown run's training process (another one) was found, or has ended."""
        if self.training_view.holder is None:
            self.samples_view.run_ended()
            if self.pages.peek("runs") is not None:
                self.runs_view.update_liveness()
        elif not self.samples_view.live:  # followed again (another process took the run over): live again
            self.samples_view.set_run(self.training_view.run_dir, live=True)
        if not self.controller.is_active():
            following = self.training_view.holder is not None
            self.state_label.setText("Following a run trained elsewhere" if following else "Idle")
        self._update_actions()

    def _update_actions(self) -> None:
        active = self.controller.is_active()
        shown = self.pages.peek("training")
        run_dir = shown.run_dir if shown is not None else None
        self.actions["train"].setEnabled(not active)
        self.actions["stop"].setEnabled(active)  # this window's own run only: never another process's
        resumable = False
        exportable = False
        # A run another process trains is shown read-only: nothing that writes to it until that process ends.
        if run_dir is not None and not active and self.training_view.holder is None:
            folder = RunFolder(run_dir)
            newest = folder.newest_checkpoint()
            resumable = newest is not None or (self.training_view.status in ("stopped", "failed", "interrupted")
                                               and self.training_view.trained_steps())
            exportable = newest is not None or (folder.adapter / "adapter_config.json").is_file()
        self.actions["resume"].setEnabled(resumable)
        self.actions["export"].setEnabled(exportable)
        self.actions["open_run"].setEnabled(not active)

    # ---- window ----------------------------------------------------------------------------
    def ask(self, title: str, text: str, buttons: Any = None, default: Any = None) -> Any:
        """A question box; one place, so tests (and a future 'don't ask again') can answer it. In a
        screenshot nothing is asked: the question goes to stderr and the app exits (dialogs.py)."""
        return dialogs.ask(self, title, text, buttons, default)

    def tell(self, title: str, text: str) -> None:
        dialogs.warn(self, title, text)

    def about(self) -> None:
        from grpo_studio import __version__

        dialogs.about(self, f"About {APP_NAME}",
                      f"<b>{APP_NAME}</b> {__version__}<br>Improve a language model's reasoning with GRPO "
                      "(TRL + PEFT LoRA) on your own workstation.")

    def _restore_window(self) -> None:
        geometry, state = self.prefs.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        page = self.prefs.value("window/page", "settings")
        self.show_view(page if page in self.pages.keys else "settings")

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self._close_after_run:
            if not self.maybe_save():
                event.ignore()
                return
            if self.controller.is_active():
                answer = self.ask(
                    "A run is training", "Stop the run (it saves a checkpoint to resume from) and close?")
                if answer == QMessageBox.StandardButton.Yes:
                    self._close_after_run = True
                    self.controller.stop()
                    self.training_view.set_stopping()
                    self.statusBar().showMessage("Closing when the run has saved its checkpoint…")
                event.ignore()
                return
        elif self.controller.is_active():
            event.ignore()  # still saving its checkpoint; _on_run_ended closes the window
            return
        self.prefs.save_window_state(self.saveGeometry(), self.saveState())
        self.prefs.set_value("window/page", self.current_view())
        self.check_task.shutdown()
        self.install_notice.task.shutdown()
        if self.pages.peek("training") is not None:  # first: ending a follow would refresh the other pages
            self.training_view.shutdown()
        if self.export_dialog is not None:  # an export still running is cancelled, its half folder removed
            self.export_dialog.shutdown()
        for key, shut in (("samples", lambda v: v.model.close()), ("dataset", lambda v: v.shutdown()),
                          ("rewards", lambda v: v.bench.shutdown()), ("settings", lambda v: v.vram.shutdown()),
                          ("evaluate", lambda v: v.shutdown()), ("playground", lambda v: v.shutdown())):
            if self.pages.peek(key) is not None:  # a page never built has nothing to close
                shut(self.pages.peek(key))
        event.accept()
