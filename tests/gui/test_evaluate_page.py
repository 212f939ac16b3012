"""The Evaluate page: base vs. adapter in a child process with progress and Cancel, the result
stored with the run and shown again when the run is reopened, prompts filterable by what training
did to them."""

from __future__ import annotations

import time

import tiny
from PySide6.QtCore import Qt

from conftest import shot
from grpo_studio.engine.eval_compare import Answer, Comparison, ModelScore, PromptComparison, change_of, load_eval


def answer(text: str, correct: bool) -> Answer:
    return Answer(completion=text, correct=correct, format_ok=None, length=len(text), truncated=False,
                  rewards={"correctness_reward": float(correct)})


def made_up_comparison(verdicts: list[tuple[bool, bool]]) -> Comparison:
    prompts = [PromptComparison(index=i, prompt=f"{i}+{i}=", answer=str(2 * i), base=answer(f"base says {i}", b),
                                tuned=answer(f"tuned says {i}", t), change=change_of(b, t))
               for i, (b, t) in enumerate(verdicts)]
    n = len(prompts)

    def score(label, side):
        correct = sum(getattr(p, side).correct for p in prompts)
        return ModelScore(label=label, model="m", adapter=None if side == "base" else "/a", accuracy=correct / n,
                          correct=correct, n=n, format_rate=None, mean_length=3.0, truncated_rate=0.0,
                          rewards={"correctness_reward": correct / n}, seconds=1.0)

    counts = {c: sum(p.change == c for p in prompts) for c in ("fixed", "broken", "both_right", "both_wrong")}
    return Comparison(name="base-vs-adapter", run_dir=None, created=time.time(), limit=0,
                      correctness="correctness_reward >= 1", format_rule=None, base=score("base", "base"),
                      tuned=score("adapter", "tuned"), counts=counts, prompts=prompts)


def test_prompts_filter_by_what_training_did(qtbot):
    from grpo_studio.gui.eval_results import BASE, TUNED, EvalResults

    view = EvalResults()
    qtbot.addWidget(view)
    view.resize(1000, 600)
    view.show()
    view.activateWindow()
    qtbot.waitUntil(view.isActiveWindow)  # for the Alt+N shortcuts
    view.show_comparison(made_up_comparison([(False, True), (True, False), (True, True), (False, False),
                                             (False, True)]))
    assert "40.0% → 60.0%" in view.headline.text() and "+20.0 points" in view.headline.text()
    assert view.filter_key == "fixed" and view.visible_rows() == [0, 4]  # what training fixed comes first
    assert view.filter_buttons["fixed"].text() == "Fixed by training (2)"
    assert [t.toPlainText() for t in view.answer_texts] == ["base says 0", "tuned says 0"]
    assert view.table.item(0, BASE).text() == "✗ base says 0" and view.table.item(0, TUNED).text() == "✓ tuned says 0"
    qtbot.keyClick(view, Qt.Key.Key_2, Qt.KeyboardModifier.AltModifier)  # Broken by training
    assert view.filter_key == "broken" and view.visible_rows() == [1]
    assert view.answer_texts[0].toPlainText() == "base says 1"
    view.set_filter("all")
    view.search.setText("says 3")
    assert view.visible_rows() == [3]
    view.search.setText("nowhere")
    assert view.visible_rows() == [] and "No prompt in this filter" in view.detail_prompt.text()


def test_evaluate_in_a_child_process_stored_and_shown_when_reopened(window, run_file, tmp_path, qtbot):
    from grpo_studio.gui.eval_results import BASE, TUNED, one_line
    from grpo_studio.gui.main_window import MainWindow

    run_dir = tiny.make_run_folder(run_file, tmp_path / "runs" / "tiny-1", checkpoint_step=2)
    with qtbot.waitSignal(window.training_view.runLoaded, timeout=30000):
        window.open_run(run_dir)
    window.show_view("evaluate")
    view = window.evaluate_view
    assert "No evaluation of this run yet" in view.empty.text() and view.evaluate_button.isEnabled()
    assert [view.adapter.itemText(i) for i in range(view.adapter.count())] == ["adapter", "checkpoint-2"]
    view.limit.setValue(6)

    window.actions["evaluate"].trigger()  # F8; Cancel ends the child at once and stores nothing
    assert view.running() and view.cancel_button.isVisible() and not view.evaluate_button.isEnabled()
    qtbot.waitUntil(lambda: view.task.state is not None and view.task.state.child is not None, timeout=30000)
    process = view.task.state.child.proc
    view.cancel_button.click()
    qtbot.waitUntil(lambda: process.poll() is not None, timeout=30000)
    assert process.poll() is not None and not (run_dir / "evals").exists()
    assert "Cancelled" in view.status.text() and view.evaluate_button.isEnabled()

    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    progress, outcomes = [], []
    view.task.progressed.connect(lambda text, fraction: progress.append(text))
    view.task.finished.connect(outcomes.append)
    with qtbot.waitSignal(view.evaluated, timeout=240000) as done:
        qtbot.keyClick(view, Qt.Key.Key_F8)
    comparison = done.args[0]
    stored = run_dir / "evals" / "base-vs-adapter-first6.json"
    assert load_eval(stored) == comparison and comparison.tuned.n == 6
    assert outcomes[-1].result.kind == "eval_stored"
    assert any(text.startswith("base model:") for text in progress)
    assert any(text.startswith("adapter:") for text in progress)
    results = view.results
    assert view.pages.currentWidget() is results and results.table.rowCount() == 6
    for row, p in enumerate(comparison.prompts):
        assert one_line(p.base.completion) in results.table.item(row, BASE).text()
        assert one_line(p.tuned.completion) in results.table.item(row, TUNED).text()
    assert f"{comparison.base.accuracy:.1%} → {comparison.tuned.accuracy:.1%}" in results.headline.text()
    assert "stored with the run" in view.status.text() and not view.cancel_button.isVisible()
    qtbot.wait(200)  # the layout of the numbers just put in the card
    shot(window, "evaluate-tiny")

    again = MainWindow()  # reopened later: the stored result is shown without evaluating again
    qtbot.addWidget(again)
    again.resize(1280, 800)
    again.show()
    with qtbot.waitSignal(again.evaluate_view.evaluated, timeout=30000) as shown:
        again.open_run(run_dir)
        again.show_view("evaluate")
    assert shown.args[0] == comparison and again.evaluate_view.results.table.rowCount() == 6
    again.close()

    config = run_dir / "config.toml"  # a refusal is one red line, and the page stays usable
    config.write_text(config.read_text().replace("learning_rate = 0.001", 'learning_rate = "fast"'))
    with qtbot.waitSignal(view.failed, timeout=60000) as failed:
        view.start()
    assert failed.args[0].startswith("grpo.learning_rate:") and "Evaluation failed" in view.status.text()
    assert view.evaluate_button.isEnabled()


def test_adapter_picker_keeps_the_choice_when_the_run_gains_checkpoints(run_file, tmp_path, qtbot):
    import shutil

    from grpo_studio.gui.evaluate_page import EvaluateView

    view = EvaluateView()
    qtbot.addWidget(view)
    view.show()
    run_dir = tiny.make_run_folder(run_file, tmp_path / "runs" / "a", checkpoint_step=2)
    view.set_run(run_dir)
    view.adapter.setCurrentText("checkpoint-2")
    view.set_training(True)  # training goes on in this run and saves checkpoint-4
    shutil.copytree(run_dir / "checkpoints" / "checkpoint-2", run_dir / "checkpoints" / "checkpoint-4")
    view.set_training(False)
    assert sorted(view.adapter.itemText(i) for i in range(view.adapter.count())) == \
        ["adapter", "checkpoint-2", "checkpoint-4"]
    assert view.adapter.currentText() == "checkpoint-2"
    view.resize(1100, 700)
    shot(view, "evaluate-picker-kept")

    other = tiny.make_run_folder(run_file, tmp_path / "runs" / "b", checkpoint_step=2)
    view.set_run(other)  # another run starts at its final adapter
    assert view.adapter.currentText() == "adapter"
