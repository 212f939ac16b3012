"""Training from the window: the worker process streams metrics into the plots and samples into the
browser; Stop ends with a checkpoint; Resume continues the curves; failures show their cause."""

from __future__ import annotations

import json
import subprocess
import sys

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from conftest import shot
from grpo_studio.engine.store import RunFolder, RunStore

RUN_TIMEOUT_MS = 180_000


def test_train_streams_metrics_into_plots_and_samples_into_the_browser(opened, qtbot):
    seen = []
    opened.controller.event.connect(lambda e: seen.append(e.kind))
    opened.actions["train"].trigger()
    assert opened.controller.is_active() and opened.current_view() == "training"
    assert not opened.actions["train"].isEnabled() and opened.actions["stop"].isEnabled()

    # Curves grow while the run is going, not just at its end.
    data = opened.training_view.data
    qtbot.waitUntil(lambda: data.get("reward") is not None and data.get("reward").n >= 1, timeout=RUN_TIMEOUT_MS)
    with qtbot.waitSignal(opened.controller.runEnded, timeout=RUN_TIMEOUT_MS) as ended:
        pass
    final = ended.args[0]
    assert final.kind == "finished" and not final.stopped and final.step == 3
    assert seen.index("started") < seen.index("metrics") < seen.index("finished")
    assert seen.count("metrics") == 3 and seen.count("samples_stored") == 3  # the samples stay in the store

    opened.training_view.plots.redraw()
    reward_plot = opened.training_view.plots.plots["reward"]
    xs, ys = reward_plot.curves["reward"][1].getOriginalDataset()
    assert list(xs) == [1, 2, 3] and len(ys) == 3
    per_function = opened.training_view.plots.plots["rewards"]
    assert set(per_function.curves) == {"rewards/correctness_reward/mean", "rewards/length_reward/mean"}
    assert reward_plot.show_values_at(2.2).startswith("step 2\nTotal reward: ")
    assert opened.training_view.progress.value() == 3
    assert opened.training_view.progress.text() == "step 3 / 3"
    assert "step 3" not in opened.training_view.progress_text.text()  # said once, on the bar
    shot(opened, "training-finished")

    run_dir = opened.training_view.run_dir
    assert run_dir is not None and (run_dir / "adapter" / "adapter_config.json").is_file()
    browser = opened.samples_view
    opened.show_view("samples")
    qtbot.waitUntil(lambda: browser.model.rowCount() > 0, timeout=10000)
    assert browser.latest.isChecked() and {r.step for r in browser.model.rows} == {3}
    assert browser.model.headers()[4:6] == ["correctness", "length"]
    assert "Completion" in browser.detail.toPlainText() and "Ground truth" in browser.detail.toPlainText()
    shot(opened, "samples-live")
    with qtbot.waitSignal(browser.model.loaded, timeout=10000):  # samples are queried off the GUI thread
        browser.latest.setChecked(False)
    assert browser.model.total == 24  # 3 steps x 8 completions, all from the store
    assert opened.actions["export"].isEnabled()
    assert opened.runs_view.select(run_dir)  # listed on the Runs page


def test_stop_ends_with_a_checkpoint_and_resume_continues_the_curves(opened, qtbot):
    opened.doc.set_field("grpo.max_steps", 500)
    opened.doc.set_field("run.save_steps", 1000)  # only the stop saves a checkpoint
    opened.actions["train"].trigger()
    data = opened.training_view.data
    qtbot.waitUntil(lambda: data.get("reward") is not None and data.get("reward").n >= 2, timeout=RUN_TIMEOUT_MS)
    opened.training_view.plots.redraw()  # what the redraw timer shows a moment later
    qtbot.wait(300)  # and the axes' second layout pass, which makes room for longer tick labels
    shot(opened, "training-live")
    with qtbot.waitSignal(opened.controller.runEnded, timeout=RUN_TIMEOUT_MS) as ended:
        opened.actions["stop"].trigger()
        assert opened.controller.state == "stopping"
    final = ended.args[0]
    assert final.kind == "finished" and final.stopped and 2 <= final.step < 500
    run_dir = opened.training_view.run_dir
    assert RunFolder(run_dir).newest_checkpoint()[0] == final.step
    assert opened.training_view.status == "stopped"
    assert opened.actions["resume"].isEnabled()
    stopped_at = final.step

    resumed = []
    opened.controller.event.connect(lambda e: e.kind == "started" and resumed.append(e.resumed_from_step))
    opened.actions["resume"].trigger()
    assert data.get("reward").n == stopped_at  # the curves so far stay on screen
    qtbot.waitUntil(lambda: data.get("reward").n >= stopped_at + 1, timeout=RUN_TIMEOUT_MS)
    assert resumed == [stopped_at]

    # Closing the window while it trains: unsaved edits are asked about first, then the run is
    # stopped with a checkpoint, and the window closes once the worker has saved it.
    answers = {"Unsaved changes": QMessageBox.StandardButton.Discard,
               "A run is training": QMessageBox.StandardButton.Yes}
    opened.ask = lambda title, *args, **kwargs: answers[title]
    with qtbot.waitSignal(opened.controller.runEnded, timeout=RUN_TIMEOUT_MS) as ended:
        opened.close()
        assert opened.isVisible() and opened.controller.state == "stopping"
    qtbot.waitUntil(lambda: not opened.isVisible(), timeout=10000)
    final = ended.args[0]
    assert final.kind == "finished" and final.stopped
    assert RunFolder(run_dir).newest_checkpoint()[0] == final.step
    steps = list(data.get("reward").steps)
    assert steps == list(range(1, final.step + 1))  # one unbroken curve across the resume
    assert opened.training_view.run_dir == run_dir


def test_reopening_a_run_shows_its_curves_and_samples(window, trained_run, qtbot):
    with qtbot.waitSignal(window.training_view.runLoaded, timeout=10_000):
        assert window.open_path(trained_run)  # a run folder: its settings, curves and samples
    assert window.current_view() == "training"
    assert window.doc.path == trained_run / "config.toml"
    window.training_view.plots.redraw()
    xs, _ = window.training_view.plots.plots["reward"].curves["reward"][1].getOriginalDataset()
    assert list(xs) == [1, 2, 3]
    assert window.training_view.status == "finished"
    with RunStore(trained_run, readonly=True) as store:
        stored = store.count_samples()
    browser = window.samples_view
    qtbot.waitUntil(lambda: not browser.model.busy, timeout=10000)  # samples are queried off the GUI thread
    assert not browser.latest.isChecked() and browser.model.total == stored == 24
    browser.search.setText("zzz-not-there")
    with qtbot.waitSignal(browser.model.loaded, timeout=10000):
        browser.apply_filters()
    assert browser.model.total == 0
    browser.search.clear()
    with qtbot.waitSignal(browser.model.loaded, timeout=10000):
        browser.show_group((2, 1))
    assert browser.model.total == 4 and {(r.step, r.group) for r in browser.model.rows} == {(2, 1)}
    shot(window, "training-reopened")


def test_screenshot_of_a_run_folder_paints_its_curves(trained_run, tmp_path):
    out = tmp_path / "training.png"
    code = ("import sys; from grpo_studio.gui.app import run_app; "
            f"rc = run_app({str(trained_run)!r}, screenshot={str(out)!r}, view='training'); "
            "import json; print(json.dumps(sorted(m for m in ('torch', 'transformers', 'trl', 'datasets') "
            "if m in sys.modules))); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []  # no heavy library on the way to the window
    from PySide6.QtGui import QImage

    image = QImage(str(out))
    assert (image.width(), image.height()) == (1280, 800)


def export(qtbot, dialog, timeout=60000) -> str:
    with qtbot.waitSignal(dialog.finished_export, timeout=timeout) as ended:
        dialog.start()
    return ended.args[0]


def test_export_dialog_writes_the_adapter(window, trained_run, tmp_path, qtbot):
    from grpo_studio.gui.export_dialog import ExportDialog

    dialog = ExportDialog(trained_run, window)
    qtbot.addWidget(dialog)
    assert dialog.merged.isEnabled()  # the tiny base model is a local folder
    dest = tmp_path / "exported"
    dialog.dest.setText(str(dest))
    assert export(qtbot, dialog) == "done"
    assert (dest / "adapter_config.json").is_file() and (dest / "grpo_studio_run.toml").is_file()
    assert dialog.progress.value() == 100 and "Exported to" in dialog.status.text()
    dialog.dest.setText(str(dest))  # not empty any more: the engine says so, the dialog shows it
    assert export(qtbot, dialog) == "failed"
    assert "already exists and is not empty" in dialog.status.text()

    dialog.merged.setChecked(True)  # the base model with the adapter folded in, in a child process
    merged = tmp_path / "merged"
    dialog.dest.setText(str(merged))
    dialog.dtype.setCurrentText("float32")
    assert export(qtbot, dialog, timeout=120000) == "done"
    assert (merged / "config.json").is_file() and list(merged.glob("*.safetensors"))


def test_cancel_ends_the_merged_export_process_and_leaves_no_half_folder(window, trained_run, tmp_path, qtbot):
    from grpo_studio.gui.export_dialog import ExportDialog

    dialog = ExportDialog(trained_run, window)
    qtbot.addWidget(dialog)
    dialog.merged.setChecked(True)
    merged = tmp_path / "merged"
    dialog.dest.setText(str(merged))
    dialog.show()
    dialog.start()
    assert dialog.cancel_button.isVisible() and not dialog.close_button.isVisible()
    dialog.reject()  # closing mid-export is refused: Cancel is the way out
    qtbot.waitUntil(lambda: dialog.task.state is not None and dialog.task.state.child is not None, timeout=10000)
    assert dialog.task.state.child.running()
    process = dialog.task.state.child.proc
    assert process.pid != __import__("os").getpid()  # the merge runs in a child, not in the window
    shot(dialog, "export-running")
    with qtbot.waitSignal(dialog.finished_export, timeout=10000) as ended:
        qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    assert ended.args[0] == "cancelled" and dialog.status.text() == "Export cancelled."
    qtbot.waitUntil(lambda: process.poll() is not None, timeout=10000)  # ended, not left running
    assert dialog.export_button.isEnabled() and dialog.close_button.isVisible()
    qtbot.waitUntil(lambda: not merged.exists(), timeout=30000)  # the half-written folder is removed
    qtbot.waitUntil(lambda: not (tmp_path / ".merged.partial").exists(), timeout=30000)  # and its staging


def test_bad_model_path_fails_with_a_clear_message_and_the_window_keeps_working(opened, qtbot):
    opened.doc.set_field("model.name", "/no/such/model")
    with qtbot.waitSignal(opened.controller.runEnded, timeout=RUN_TIMEOUT_MS) as ended:
        opened.actions["train"].trigger()
    assert ended.args[0].kind == "failed"
    banner = opened.training_view.banner
    assert banner.isVisible()
    assert "model.name: folder not found: /no/such/model" in banner.title.text()
    assert opened.actions["train"].isEnabled() and not opened.controller.is_active()
    assert "Training failed" in opened.statusBar().currentMessage()
    assert opened.training_view.progress.text() == "failed before step 1"
    assert not opened.actions["resume"].isEnabled()  # nothing trained, nothing to resume: Train again


def test_reward_exception_is_marked_in_the_editor(opened, qtbot):
    editor = opened.rewards_view.editor
    editor.setPlainText(editor.toPlainText().replace("return [-len(c) / 32 for c in completions]",
                                                     "return [1 / 0 for c in completions]"))
    line = next(i for i, text in enumerate(editor.toPlainText().splitlines(), 1) if "1 / 0" in text)
    with qtbot.waitSignal(opened.controller.runEnded, timeout=RUN_TIMEOUT_MS) as ended:
        opened.actions["train"].trigger()
    final = ended.args[0]
    assert final.kind == "failed" and "ZeroDivisionError" in final.reason
    assert "length_reward raised ZeroDivisionError" in opened.training_view.banner.title.text()
    assert editor.error_line == line  # the unsaved edit that was trained is the one marked
    assert opened.doc.is_modified()  # nothing the user typed was lost


def test_export_from_the_window_prints_no_library_noise(trained_run, tmp_path):
    """The window's export runs in a child process whose stderr reaches the terminal and the log: no
    progress bars, deprecation notes or optional-kernel notices there (`Loading weights: 100%|...`,
    `FutureWarning`, `kernels-community`)."""
    from grpo_studio.engine.child_messages import ExportRequest
    from grpo_studio.engine.child_tasks import run_task

    outcome = run_task(ExportRequest(run_dir=str(trained_run), dest=str(tmp_path / "merged"), kind="merged",
                                     dtype="float32"), timeout_s=300)
    assert outcome.returncode == 0 and (tmp_path / "merged" / "config.json").is_file(), outcome.log_tail
    for noise in ("Loading weights", "Warning", "kernels-community", "it/s]"):
        assert noise not in outcome.log_tail, outcome.log_tail


def test_stop_works_while_the_worker_waits_on_the_hub(opened, qtbot, monkeypatch, tmp_path):
    """Stop at any moment: here the worker sits in a model download that would hang for a minute."""
    from hub_server import HangingHub

    from grpo_studio.engine.events import STOPPED_BEFORE_TRAINING

    server = HangingHub()  # answers the hub probe, then never answers a download
    try:
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            monkeypatch.delenv(name, raising=False)  # the worker inherits the window's environment
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        opened.doc.set_field("model.name", "someone/slow-model")
        opened.actions["train"].trigger()
        qtbot.waitUntil(lambda: server.downloads > 0, timeout=RUN_TIMEOUT_MS)
        assert opened.actions["stop"].isEnabled()
        with qtbot.waitSignal(opened.controller.runEnded, timeout=10_000) as ended:
            opened.actions["stop"].trigger()
        assert ended.args[0].reason == STOPPED_BEFORE_TRAINING
        assert opened.statusBar().currentMessage() == "Stopped before the first step: nothing was trained."
        view = opened.training_view
        assert view.progress.text() == "stopped before step 1" and view.banner.property("level") == "info"
        assert not opened.actions["resume"].isEnabled() and opened.actions["train"].isEnabled()
        shot(opened, "stopped-while-loading")
    finally:
        server.close()
