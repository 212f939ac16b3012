"""Training view and samples browser fed from a hand-made run store: no training needed."""

from __future__ import annotations

from grpo_studio.engine.events import Alarm, Failed, Metrics, Sample, Samples, Started
from grpo_studio.engine.store import RunStore
from grpo_studio.gui.samples_model import PAGE
from grpo_studio.gui.samples_browser import SamplesBrowser
from grpo_studio.gui.training_view import TrainingView


def make_store(run_dir, steps=50, per_step=32):
    run_dir.mkdir(parents=True)
    (run_dir / "config.toml").write_text("")
    with RunStore(run_dir) as store:
        store.record(Started(run_dir=str(run_dir), max_steps=steps, reward_names=["correct_reward", "short_reward"]))
        for step in range(1, steps + 1):
            store.record(Metrics(step=step, max_steps=steps, values={"reward": step / steps, "loss": 0.1}))
            store.record(Samples(step=step, samples=[
                Sample(group=i // 8, prompt=f"question {step}-{i // 8}", completion=f"answer {i} of step {step}",
                       answer="42", rewards={"correct_reward": float(i % 2), "short_reward": -0.1},
                       total=float(i % 2) - 0.1, advantage=0.5 if i % 2 else -0.5, length=10 + i, truncated=False)
                for i in range(per_step)]))
    return run_dir


def query(qtbot, browser, action, *args):
    """Do what starts a samples query and wait for its rows (queries run off the GUI thread)."""
    with qtbot.waitSignal(browser.model.loaded, timeout=10_000):
        action(*args)


def test_samples_are_paged_from_the_store_not_loaded_whole(qtbot, tmp_path):
    run_dir = make_store(tmp_path / "run")
    browser = SamplesBrowser()
    qtbot.addWidget(browser)
    query(qtbot, browser, browser.set_run, run_dir)
    model = browser.model
    assert model.total == 50 * 32 and model.rowCount() == PAGE  # one page in memory
    with qtbot.waitSignal(model.rowsInserted, timeout=10_000):
        model.fetchMore()
    assert model.rowCount() == 2 * PAGE
    browser.step_min.setValue(10)
    browser.step_max.setValue(12)
    browser.total_min.setText("0.5")
    query(qtbot, browser, browser.apply_filters)
    assert model.total == 3 * 16 and {r.step for r in model.rows} == {10, 11, 12}
    assert all(r.total > 0.5 for r in model.rows)
    query(qtbot, browser, browser.order.setCurrentText, "Newest step first")
    assert model.rows[0].step == 12
    browser.search.setText("answer 3 of step 11")
    query(qtbot, browser, browser.apply_filters)
    assert [(r.step, r.completion) for r in model.rows] == [(11, "answer 3 of step 11")]
    assert "answer 3 of step 11" in browser.detail.toPlainText() and "42" in browser.detail.toPlainText()


def test_groups_are_shaded_as_blocks_and_can_be_listed_alone(qtbot, tmp_path):
    browser = SamplesBrowser()
    qtbot.addWidget(browser)
    query(qtbot, browser, browser.set_run, make_store(tmp_path / "run", steps=2))
    shades = browser.model.shades[:24]
    assert shades[:8] == [False] * 8 and shades[8:16] == [True] * 8 and shades[16:24] == [False] * 8
    query(qtbot, browser, browser.show_group, (2, 3))
    assert browser.model.total == 8 and browser.group_bar.isVisibleTo(browser)
    query(qtbot, browser, browser.show_group, None)
    assert browser.model.total == 64


def test_alarms_and_failures_show_what_to_do(qtbot, tmp_path):
    view = TrainingView()
    qtbot.addWidget(view)
    view.handle_event(Started(run_dir=str(tmp_path), max_steps=10))
    view.handle_event(Alarm(step=4, code="no_spread", message="every completion of a group gets the same reward",
                            advice="make the reward tell completions apart"))
    assert view.banner.isVisibleTo(view) and "Step 4: every completion" in view.banner.title.text()
    assert view.banner.hint.text() == "make the reward tell completions apart"
    assert "every completion of a group gets the same reward" in view.log.toPlainText()
    view.handle_event(Failed(reason="out of GPU memory: CUDA out of memory", hint="Lower the batch size",
                             details="Traceback ..."))
    assert "Training failed: out of GPU memory" in view.banner.title.text()
    assert view.banner.details_button.isVisibleTo(view)


def test_reopened_store_fills_plots_and_progress(qtbot, tmp_path):
    run_dir = make_store(tmp_path / "run", steps=20, per_step=8)
    view = TrainingView()
    qtbot.addWidget(view)
    view.show()
    with qtbot.waitSignal(view.runLoaded, timeout=10_000):
        view.show_run(run_dir)  # read on a worker thread
    assert view.data.get("reward").n == 20 and view.progress.value() == 20
    assert view.status == "interrupted"  # started, never finished: said so, not hidden
    view.plots.redraw()
    plot = view.plots.plots["reward"]
    assert plot.show_values_at(10).startswith("step 10\nTotal reward: ")
    assert plot.getPlotItem().vb.viewRange()[0][1] >= 20  # the whole run in view


def test_gpu_memory_replaces_throughput_when_there_is_a_gpu(qtbot, tmp_path):
    view = TrainingView()
    qtbot.addWidget(view)
    view.show()
    view.handle_event(Metrics(step=1, max_steps=5, values={"reward": 0.1, "perf/tokens_per_second": 900.0}))
    view.plots.redraw()
    slot = view.plots.plots["gpu"]
    assert slot.shown_spec.title == "Throughput (tokens/s)"
    view.handle_event(Metrics(step=2, max_steps=5, values={"reward": 0.2, "perf/gpu_memory_gib": 7.5}))
    view.plots.redraw()
    assert slot.shown_spec.title == "Peak GPU memory (GiB)"
    assert list(slot.curves) == ["perf/gpu_memory_gib"]


def test_refcount_guard_gives_back_lost_references(qapp):
    import ctypes
    import sys

    from grpo_studio.gui import refcount_guard

    guard = refcount_guard.RefcountGuard()
    before = sys.getrefcount(None)
    lost = 1000
    for _ in range(lost):  # what a buggy binding does: drop references it never took
        ctypes.pythonapi.Py_DecRef(ctypes.py_object(None))
    assert sys.getrefcount(None) <= before - lost + 10
    assert guard.top_up() >= lost - 10
    assert sys.getrefcount(None) >= before - 10
    guard.timer.stop()


def test_a_reopened_run_lists_its_old_alarms_quietly_and_queues_live_events(qtbot, tmp_path):
    run_dir = make_store(tmp_path / "run", steps=20, per_step=2)
    with RunStore(run_dir) as store:
        store.record(Alarm(step=12, code="no_spread", message="most groups have no reward spread",
                           advice="make the reward tell completions apart"))
    view = TrainingView()
    qtbot.addWidget(view)
    view.show()
    with qtbot.waitSignal(view.runLoaded, timeout=10_000):
        view.show_run(run_dir)
        # A resumed run's first live step may come before the store is read: it waits, then follows.
        view.handle_event(Metrics(step=21, max_steps=40, values={"reward": 2.0}))
        assert view.is_loading() and view.data.get("reward") is None
    assert list(view.data.get("reward").steps)[-2:] == [20, 21]
    assert not view.banner.isVisibleTo(view)  # history, not news
    assert view.past_alarms_label.isVisibleTo(view)
    assert "1 alarm during this run" in view.past_alarms_label.text() and "step 12" in view.past_alarms_label.text()
    assert "make the reward tell completions apart" in view.log.toPlainText()


def test_multi_line_log_messages_stay_whole(qtbot):
    view = TrainingView()
    qtbot.addWidget(view)
    view.append_log("info", "first")
    blocks = view.log.document().blockCount()
    view.append_log("error", "Traceback (most recent call last):\n  File \"rewards.py\", line 3\nZeroDivisionError")
    assert view.log.document().blockCount() == blocks + 1  # one message, one block: never trimmed in half
    assert view.log.toPlainText().splitlines()[-3:] == [
        view.log.toPlainText().splitlines()[-3][:9] + "Traceback (most recent call last):",
        '  File "rewards.py", line 3', "ZeroDivisionError"]
    assert view.log.document().lastBlock().blockFormat().leftMargin() > 0  # continuation lines hang indented


def test_plots_keep_their_step_labels_under_a_long_banner(qtbot):
    view = TrainingView()
    qtbot.addWidget(view)
    view.resize(1060, 690)  # the page in a 1280 x 800 window
    view.show()
    view.handle_event(Started(run_dir="/tmp/run", max_steps=40))
    for step in range(1, 11):
        view.handle_event(Metrics(step=step, max_steps=40, values={"reward": step / 10, "learning_rate": 1e-3}))
    view.handle_event(Alarm(step=8, code="no_spread", message="most groups have no reward spread: " * 4,
                            advice="make the reward tell completions apart: partial credit, harder prompts. " * 2))
    qtbot.wait(50)
    grid = view.plots
    assert view.plot_area.height() >= grid.minimumSizeHint().height()  # not squeezed: nothing clipped
    lr = grid.plots["lr"]
    lr.redraw(view.data, 0.0)
    low, high = lr.getPlotItem().vb.viewRange()[1]
    assert low < 1e-3 < high and high - low > 1e-5  # a constant curve gets a readable range, not float noise


def test_legends_sit_under_the_plot_and_never_cover_the_curves(qtbot):
    view = TrainingView()
    qtbot.addWidget(view)
    view.resize(1060, 690)  # the page in a 1280 x 800 window
    view.show()
    names = ["correctness_reward", "format_reward", "a_much_longer_reward_function_name_reward", "length_reward"]
    view.handle_event(Started(run_dir="/tmp/run", max_steps=40, reward_names=names))
    for step in range(1, 11):
        view.handle_event(Metrics(step=step, max_steps=40, values={
            **{f"rewards/{n}/mean": step / (10 + i) for i, n in enumerate(names)},
            "completions/mean_length": 30.0 + step, "completions/max_length": 60.0}))
    qtbot.wait(50)
    view.plots.redraw()
    for key, expected in (("rewards", 4), ("length", 2)):
        plot = view.plots.plots[key]
        legend, item = plot.legend, plot.getPlotItem()
        qtbot.waitUntil(lambda: legend.sceneBoundingRect().top() > item.vb.sceneBoundingRect().top())  # laid out
        assert len(legend.items) == expected
        assert legend.sceneBoundingRect().height() <= 2 * 20  # two rows at most: the plot keeps its height
        assert not legend.sceneBoundingRect().intersects(item.vb.sceneBoundingRect())  # below the plot area
        assert legend.sceneBoundingRect().bottom() <= plot.sceneRect().bottom() + 1  # and inside the widget
        assert legend.sceneBoundingRect().width() <= plot.width()  # wrapped, not wider than the plot
    rewards = view.plots.plots["rewards"]
    shown = [label.text for _, label in rewards.legend.items]
    assert shown[1:] == ["correctness", "format", "length"]  # sorted, without the _reward everybody has
    assert "…" in shown[0] and shown[0].startswith("a_")  # shortened in the middle to fit
    assert rewards.legend.columnCount == 2
    assert "a_much_longer_reward_function_name_reward: " in rewards.show_values_at(5)  # the hover says it whole


def test_a_run_that_failed_before_step_1_says_so_and_offers_no_resume(qtbot, tmp_path):
    from grpo_studio.engine.events import Opened
    from grpo_studio.gui.runs_panel import read_run

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.toml").write_text("")
    with RunStore(run_dir) as store:
        store.record(Opened(run_dir=str(run_dir)))
        store.record(Failed(reason="model.name: cannot load 'Qwen/Qwen2.5-0.5B-Instruct'"))
    view = TrainingView()
    qtbot.addWidget(view)
    view.show()
    with qtbot.waitSignal(view.runLoaded, timeout=10_000):
        view.show_run(run_dir)
    assert view.status == "failed" and view.progress.text() == "failed before step 1"  # not "step 0 / 1"
    assert not view.trained_steps()
    info = read_run(run_dir)
    assert info.status_text == "failed before step 1" and not info.resumable
