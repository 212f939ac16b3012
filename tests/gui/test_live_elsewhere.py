"""A run that another process trains (here the command line) is shown live and read-only: listed as
training on the Runs page, followed on the Training and Samples pages, never resumed or exported until
that process ends, and then said to have ended, with Resume and Export offered again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import shot
from grpo_studio.engine.run_lock import lock_holder
from grpo_studio.engine.store import RunFolder, RunStore


def train_elsewhere(run_file: Path, run_dir: Path, *settings: str) -> subprocess.Popen:
    """The command line, in a process of its own (it takes RUN_DIR/run.lock as it makes the run folder)."""
    sets = [arg for s in settings for arg in ("--set", s)]
    return subprocess.Popen([sys.executable, "-m", "grpo_studio.cli", "train", str(run_file), "--output",
                             str(run_dir), *sets], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def stored_steps(run_dir: Path) -> int:
    try:
        with RunStore(run_dir, readonly=True) as store:
            return store.last_step()
    except Exception:  # noqa: BLE001 - not created yet
        return 0


@pytest.fixture
def elsewhere(run_file, tmp_path):
    run_dir = tmp_path / "trained-elsewhere"
    proc = train_elsewhere(run_file, run_dir, "grpo.max_steps=500", "run.save_steps=1000")
    yield proc, run_dir
    if proc.poll() is None:
        proc.kill()
    proc.wait(30)


def test_a_run_trained_by_another_process_is_followed_read_only_until_it_ends(window, elsewhere, qtbot):
    proc, run_dir = elsewhere
    qtbot.waitUntil(lambda: proc.poll() is None and lock_holder(run_dir) is not None and stored_steps(run_dir) >= 1,
                    timeout=120_000)

    # Runs page: listed as training elsewhere; it can be opened, not resumed or exported.
    window.show_view("runs")
    runs = window.runs_view
    qtbot.waitUntil(lambda: runs.select(run_dir), timeout=10_000)
    row = runs.table.currentRow()
    assert runs.table.item(row, 1).text() == "training elsewhere"
    assert f"pid {proc.pid}" in runs.table.item(row, 1).toolTip() and f"pid {proc.pid}" in runs.detail.text()
    assert runs.open_button.isEnabled() and not runs.resume_button.isEnabled() and not runs.export_button.isEnabled()
    qtbot.wait(100)  # the layout of the line under the table, which just got its text
    shot(window, "runs-live-elsewhere")

    # Opened: followed live, read-only.
    view = window.training_view
    with qtbot.waitSignal(view.liveChanged, timeout=30_000):
        runs.open_button.click()
    assert view.holder is not None and view.holder.pid == proc.pid
    assert view.live_banner.isVisibleTo(view) and f"Trained by pid {proc.pid} on " in view.live_banner.title.text()
    assert window.state_label.text() == "Following a run trained elsewhere"
    assert "read-only" in view.run_label.text()
    for action in ("resume", "export", "stop"):
        assert not window.actions[action].isEnabled(), action
    shown = view.data.get("reward").n
    qtbot.waitUntil(lambda: view.data.get("reward").n > shown, timeout=60_000)  # the curves grow with its store
    assert view.progress.value() == view.data.get("reward").n
    samples = window.samples_view
    assert samples.latest.isChecked()  # the newest step's completions, as for a run of this window
    qtbot.waitUntil(lambda: samples.model.rowCount() and samples.model.rows[0].step > shown, timeout=30_000)
    view.plots.redraw()
    qtbot.wait(400)  # the axes' second layout pass, which makes room for their labels
    shot(window, "training-live-elsewhere")
    window.show_view("samples")
    qtbot.wait(100)
    shot(window, "samples-live-elsewhere")
    window.show_view("training")

    # A comparison meanwhile lets the run go (its updates would write over the comparison's label and
    # banners); back to one run, it is followed again.
    view.show_comparison([run_dir, run_dir])
    assert view.holder is None and not view.live_banner.isVisibleTo(view)
    qtbot.wait(1500)  # more than the follower's period
    assert view.run_label.text().startswith("comparing 2 runs")
    with qtbot.waitSignal(view.liveChanged, timeout=30_000):
        view.end_comparison()
    assert view.holder is not None and view.holder.pid == proc.pid and view.live_banner.isVisibleTo(view)
    assert window.samples_view.live

    # Resume (from the menu, the Runs page or a stale button) is refused: nothing stored is touched.
    window.resume(run_dir)
    assert not window.controller.is_active() and "is being trained by pid" in window.statusBar().currentMessage()
    window.export(run_dir)
    assert window.export_dialog is None

    # The other process stops (its own Stop: finish the step, save a checkpoint): the page says it ended.
    with qtbot.waitSignal(view.liveChanged, timeout=120_000):
        RunFolder(run_dir).request_stop()
    assert proc.wait(60) == 130, proc.stderr.read()[-2000:]
    assert view.holder is None and "has ended: it stopped at step" in view.live_banner.title.text()
    assert view.status == "stopped" and "read-only" not in view.run_label.text()
    assert window.actions["resume"].isEnabled() and window.actions["export"].isEnabled()
    assert not window.actions["stop"].isEnabled()
    final = stored_steps(run_dir)
    assert view.data.get("reward").n == final and list(view.data.get("reward").steps) == list(range(1, final + 1))
    assert not samples.live
    with qtbot.waitSignal(samples.model.loaded, timeout=10_000):
        samples.latest.setChecked(False)
    assert samples.model.total == 8 * final  # every step's completions, all from the store
    window.show_view("runs")
    qtbot.waitUntil(lambda: runs.select(run_dir) and runs.resume_button.isEnabled(), timeout=10_000)
    assert runs.table.item(runs.table.currentRow(), 1).text() == "stopped (resumable)"
