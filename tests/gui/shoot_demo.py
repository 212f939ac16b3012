"""Drive the real built-in demo in the window and save screenshots of each page (run by hand, not by pytest).

    OMP_NUM_THREADS=1 python tests/gui/shoot_demo.py [OUT_DIR]      (default: /tmp/grpo-studio-demo-shots)

Trains the demo for real (40 steps, about a minute on one CPU thread) in a throwaway data folder,
and saves: the window idle on the demo; training in progress with the curves rising; the finished
run; the samples browser; the reward editor with an error marked; the reward test bench with
results (and a function that raises); the VRAM estimate; the finished run reopened from its
folder; its evaluation against the base model; the playground; a second run compared with it;
and the Export dialog. Look at every one before a release: layouts that squeeze, clip or overlap show up here
first.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Runs of the built-in demo go to the user's data folder: a throwaway one here.
scratch = Path(tempfile.mkdtemp(prefix="grpo-studio-shots-"))
os.environ["XDG_DATA_HOME"] = str(scratch / "data")
os.environ["GRPO_STUDIO_SETTINGS"] = str(scratch / "settings.ini")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from PySide6.QtCore import QEventLoop, QTimer  # noqa: E402

from grpo_studio.resource_paths import demo_run_file  # noqa: E402
from grpo_studio.gui.app import make_app  # noqa: E402
from grpo_studio.gui.main_window import MainWindow  # noqa: E402
from grpo_studio.gui.preferences import Preferences  # noqa: E402

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/grpo-studio-demo-shots")


def wait(ms: int) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def wait_until(condition, timeout_s: float, what: str) -> None:
    deadline = time.time() + timeout_s
    while not condition():
        if time.time() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        wait(100)


def save(window: MainWindow, name: str) -> None:
    window.training_view._redraw()
    wait(300)
    path = OUT / f"{name}.png"
    window.grab().save(str(path))
    print(f"saved {path}", flush=True)


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    make_app()
    win = MainWindow(Preferences(ephemeral=True))
    win.ask = lambda *a, **k: __import__("PySide6.QtWidgets").QtWidgets.QMessageBox.StandardButton.Discard
    win.open_initial(demo_run_file())
    win.resize(1280, 800)
    win.show()
    wait_until(lambda: win.settings_view.vram.view is not None and not win.settings_view.vram.is_busy(), 20,
               "the VRAM estimate")
    save(win, "01-demo-idle-settings")

    # Training, with the curves rising.
    win.train()
    wait_until(lambda: win.training_view.step >= 20, 300, "step 20")
    save(win, "02-training-in-progress")
    wait_until(lambda: not win.controller.is_active(), 300, "the end of the run")
    save(win, "03-training-finished")
    run_dir = win.training_view.run_dir

    win.show_view("samples")
    wait(1500)
    table = win.samples_view.table if hasattr(win.samples_view, "table") else None
    if table is not None and win.samples_view.model.rowCount():
        table.selectRow(0)
    save(win, "04-samples")

    # The reward editor: a syntax error marked as it is typed.
    editor = win.rewards_view.editor
    original = editor.toPlainText()
    win.show_view("rewards")
    editor.setPlainText(original.replace("def format_reward(prompts, completions, **kwargs)",
                                         "def format_reward(prompts, completions, **kwargs"))
    wait(600)
    editor.go_to_line(editor.error_line)
    save(win, "05-reward-editor-syntax-error")

    # The test bench: typed completions for two rows, one group flat (nothing to learn).
    editor.setPlainText(original)
    wait(400)
    win.rewards_view.show_bench()
    bench = win.rewards_view.bench
    bench.typed.set_groups([
        (0, "<r>0+8=8;6+4=10;6+8+1=15</r><a>1508</a>\n<r>0+8=8;6+4=10;6+8=14</r><a>1408</a>\n1508"),
        (1, "<r>4+3=7;4+1=5;2+6=8</r><a>857</a>\n<r>4+3=7;4+1=5;2+6=8</r><a>857</a>"),
    ])
    wait(1500)
    bench.run()
    wait_until(lambda: bench.state not in ("running", "cancelling"), 120, "the bench")
    save(win, "06-reward-bench-results")
    # A function that raises: marked at its line, traceback under the finding.
    editor.setPlainText(original.replace("int(match.group(1))", "int(match.group(2))"))
    wait(400)
    bench.run()
    wait_until(lambda: bench.state not in ("running", "cancelling"), 120, "the bench")
    items = bench.results.findings
    items.setCurrentRow(0)
    bench.results._activate(items.item(0))
    save(win, "07-reward-bench-exception")
    # Sampled from the model.
    editor.setPlainText(original)
    bench.mode_generated.setChecked(True)
    bench.run()
    wait(1200)
    save(win, "08-reward-bench-running")
    wait_until(lambda: bench.state not in ("running", "cancelling"), 300, "the bench")
    save(win, "09-reward-bench-sampled")

    # The VRAM estimate of a real-sized setup: Qwen2.5-1.5B's config.json (no weights needed), 4-bit.
    import json

    from grpo_studio.engine.bench import ARCHS

    qwen = scratch / "Qwen2.5-1.5B-Instruct"
    qwen.mkdir()
    (qwen / "config.json").write_text(json.dumps({**ARCHS["qwen2.5-1.5b"], "model_type": "qwen2",
                                                  "max_position_embeddings": 32768}))
    win.show_view("settings")
    win.doc.set_field("model.name", str(qwen))
    win.doc.set_field("quantization.load_in", "4bit")
    win.doc.set_field("grpo.per_device_train_batch_size", 8)
    win.doc.set_field("grpo.max_completion_length", 512)
    win.doc.set_field("model.max_seq_length", 1024)
    wait_until(lambda: not win.settings_view.vram.is_busy(), 20, "the VRAM estimate")
    wait(300)
    save(win, "10-vram-estimate")

    # The finished run, reopened from its folder as the Runs page does.
    win.open_run(run_dir)
    wait_until(lambda: not win.training_view.is_loading(), 20, "the run to be read")
    save(win, "11-reopened-run")
    log = win.training_view.log.toPlainText().splitlines()
    print("log starts:", log[:3], flush=True)

    # After training: Evaluate (the whole held-out split), the Playground, a second run compared, Export.
    win.evaluate()
    wait_until(lambda: not win.evaluate_view.running(), 600, "the evaluation")
    save(win, "12-evaluate")
    c = win.evaluate_view.results.comparison
    print(f"evaluate: {c.base.accuracy:.1%} -> {c.tuned.accuracy:.1%}, counts {c.counts}", flush=True)
    win.show_view("playground")
    playground = win.playground_view
    wait_until(lambda: playground.info is not None, 300, "the playground's model")
    playground.row.setCurrentIndex(0)
    playground.row.activated.emit(0)
    playground.generate()
    wait_until(lambda: playground.generating is None, 120, "the playground's answers")
    save(win, "13-playground")
    win.open_path(demo_run_file(), remember=False)  # the demo again (the VRAM shot changed its model)
    win.doc.set_field("grpo.learning_rate", 3e-4)  # a second run to compare with
    win.doc.set_field("grpo.max_steps", 20)
    win.train()
    wait_until(lambda: not win.controller.is_active(), 600, "the second run")
    second = win.training_view.run_dir
    win.compare_runs([run_dir, second])
    wait(2500)
    save(win, "14-compare-two-runs")
    win.export(run_dir)
    dialog = win.export_dialog
    dialog.gguf.setChecked(True)
    dialog.gguf_type.setCurrentText("q8_0")
    wait(300)
    dialog.grab().save(str(OUT / "15-export-dialog.png"))
    dialog.reject()
    win.evaluate_view.shutdown()
    playground.shutdown()
    bench.shutdown()
    win.settings_view.vram.shutdown()
    win.dataset_view.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
