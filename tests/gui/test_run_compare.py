"""Run comparison: several runs picked on the Runs page, their curves overlaid on the Training plots
(each run named, in its own colour), the settings that differ between their frozen run files beside
them; and back to one run."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt

from conftest import shot
from grpo_studio.config import load_run
from grpo_studio.config.metadata import all_field_specs
from grpo_studio.engine import metric_names as m
from grpo_studio.engine.events import Finished, Metrics, Started
from grpo_studio.engine.run import freeze_run_file
from grpo_studio.engine.store import RunFolder, RunStore

CORRECT = "rewards/correctness_reward/mean"
LENGTH = "rewards/length_reward/mean"


def stored_run(run_file, folder, overrides, rewards, steps=6):
    """A finished run folder with these settings and these reward curves (no training)."""
    folder.mkdir(parents=True)
    freeze_run_file(load_run(run_file, overrides), RunFolder(folder))
    with RunStore(folder) as store:
        store.record(Started(run_dir=str(folder), max_steps=steps))
        for step in range(1, steps + 1):
            store.record(Metrics(step=step, max_steps=steps,
                                 values={m.REWARD: rewards(step), CORRECT: rewards(step) / 2, LENGTH: -0.1}))
        store.record(Finished(step=steps, seconds=1.0))
    return folder


def test_two_runs_overlaid_on_the_training_plots(window, run_file, tmp_path, qtbot):
    runs = tmp_path / "runs"
    a = stored_run(run_file, runs / "tiny-a", [], lambda s: 0.1 * s)
    b = stored_run(run_file, runs / "tiny-b", ["grpo.learning_rate=5e-4"], lambda s: 0.05 * s)
    window.runs_view.set_sources([runs], [])
    window.show_view("runs")
    table = window.runs_view.table
    assert table.rowCount() == 2 and not window.runs_view.compare_button.isEnabled()
    table.selectAll()
    assert window.runs_view.compare_button.isEnabled()
    qtbot.mouseClick(window.runs_view.compare_button, Qt.MouseButton.LeftButton)
    view = window.training_view
    assert window.current_view() == "training" and view.comparing() and not view.splitter.isVisible()
    comparison = view.comparison
    with qtbot.waitSignal(comparison.loaded, timeout=30000):
        pass
    keys = {"A": next(d for d in comparison.run_dirs if d.name == table.item(0, 0).text()),
            "B": next(d for d in comparison.run_dirs if d.name == table.item(1, 0).text())}
    slope = {a: 0.1, b: 0.05}
    reward = comparison.grid.plots["reward"]
    reward.redraw(comparison.data, 0.0)
    assert list(reward.curves) == ["A\treward", "B\treward"] and reward.legend_names == ["A", "B"]
    for key in "AB":
        xs, ys = reward.curves[f"{key}\treward"][1].getOriginalDataset()
        assert np.allclose(ys, slope[keys[key]] * xs)  # each run's own values, under its own letter
    hover = reward.show_values_at(6)
    assert f"A: {6 * slope[keys['A']]:.4g}" in hover and f"B: {6 * slope[keys['B']]:.4g}" in hover
    by_function = comparison.grid.plots["rewards"]
    by_function.redraw(comparison.data, 0.0)
    assert by_function.legend_names == ["A correctness", "A length", "B correctness", "B length"]
    pens = [by_function.curves[n][1].opts["pen"] for n in by_function.curves]
    assert pens[0].color() == pens[1].color() != pens[2].color()  # colour: the run; line style: the function
    assert pens[0].style() != pens[1].style()
    for key in "AB":
        assert f"<b>{key}</b> {keys[key].name}" in comparison.key.text()
    assert "6 steps · finished" in comparison.key.text()
    tree = comparison.tree
    assert tree.topLevelItemCount() == 1 and tree.topLevelItem(0).text(0) == "grpo.learning_rate"
    lines = [tree.topLevelItem(0).child(i).text(0) for i in range(2)]
    assert lines == [f"{k}   {'0.001' if keys[k] == a else '0.0005'}" for k in "AB"]
    help_text = next(s.help for s in all_field_specs() if s.path == "grpo.learning_rate")
    assert tree.topLevelItem(0).toolTip(0) == help_text  # what the setting means, from the settings tree
    qtbot.wait(400)  # the plots' second layout pass (legends under the axes, room for the labels)
    shot(window, "compare-two-runs-tiny")

    qtbot.mouseClick(comparison.back, Qt.MouseButton.LeftButton)
    assert not view.comparing() and view.splitter.isVisible() and view.progress.isVisible()

    window.runs_view.table.selectRow(0)  # one run selected: the action says what to do
    window.actions["compare"].trigger()
    assert window.current_view() == "runs" and "Select two or more runs" in window.statusBar().currentMessage()
