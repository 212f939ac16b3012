"""How fast the window stays on a long run: GUI-thread latencies on a store like issue 9's.

    PYTHONPATH=$PWD QT_QPA_PLATFORM=offscreen python tests/gui/measure_long_run.py [--repeat 30]

Builds (once, then reused) a run folder of 20,000 steps x 29 metrics and 51,200 sampled completions
of about 2 KB, written through the engine's RunStore, and times what the window does with it:

- open: from asking for the run until its curves are painted (and the longest GUI-thread stall on the way)
- redraw: a full redraw of every plot, painted
- smoothing: moving the smoothing slider, painted
- live step: one metrics event arriving for a run that is shown, up to the redraw the timer makes, painted
- sort / filter / page: samples by total reward, a text search, scrolling to the next page, each until
  its rows are in the table, painted

For every action it reports, at p50 / p99 / max: the GUI thread's longest stall (the longest time its
event loop could not run, measured by a 1 ms heartbeat timer, so work that hops to a thread and back
counts only for what it does on the GUI thread); the GUI thread's CPU time during the action (all of
its work, less the heartbeat's own: on a busy machine a stall is longer than the work, this is not);
and for the samples actions the time until the result shows. Target (issue 9): every GUI-thread p99
< 50 ms, the run shown within 2 s.

Nothing here depends on how the window does it, so the same script measures an older checkout
(PYTHONPATH=that checkout) on the same machine and store for a before/after comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

STEPS = 20_000
SAMPLES = 51_200
PER_STEP = 8  # completions stored per sampled step (2 prompt groups x 4)
METRICS = ['clip_ratio/high_max', 'clip_ratio/high_mean', 'clip_ratio/low_mean', 'clip_ratio/low_min',
           'clip_ratio/region_mean', 'completions/clipped_ratio', 'completions/max_length',
           'completions/max_terminated_length', 'completions/mean_length', 'completions/mean_terminated_length',
           'completions/min_length', 'completions/min_terminated_length', 'entropy', 'epoch',
           'frac_reward_zero_std', 'grad_norm', 'learning_rate', 'loss', 'num_tokens', 'perf/generation_seconds',
           'perf/step_seconds', 'perf/tokens_per_second', 'reward', 'reward_std', 'rewards/correctness_reward/mean',
           'rewards/correctness_reward/std', 'rewards/format_reward/mean', 'rewards/format_reward/std', 'step_time']
RARE_WORD = "zanzibar"  # in about one completion of 200: a text search that must look at every row
WORDS = ("the of and to in is that it for as with was on be by this are we from at an or have which one "
         "number answer total each step first then so add carry sum result digits times minus plus equals "
         "therefore apples hours price left more less half twice per cost").split()


REWARDS = '''def correctness_reward(completions, answer, **kwargs):
    return [1.0 if c.strip().endswith(a) else 0.0 for c, a in zip(completions, answer)]


def format_reward(completions, **kwargs):
    return [0.5 * ("####" in c) for c in completions]
'''


# ---- the store ---------------------------------------------------------------------------------
class _OneTransaction:
    """RunStore commits every event on its own (`with self.db:`); building 70,000 events that way
    takes minutes. This stands in for its connection and lets the whole build be one transaction."""

    def __init__(self, db):
        self._db = db

    def __getattr__(self, name):
        return getattr(self._db, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def build_store(run_dir: Path) -> None:
    import numpy as np

    from grpo_studio.engine.events import Finished, Log, Metrics, Opened, Sample, Samples, Started
    from grpo_studio.engine.store import RunStore

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.toml").write_text('[model]\nname = "long-run-benchmark"\n')
    (run_dir / "rewards.py").write_text(REWARDS)
    rng = np.random.default_rng(0)
    words = np.array(WORDS)
    t0 = time.time() - STEPS * 2.0
    store = RunStore(run_dir)
    real = store.db
    store.db = _OneTransaction(real)
    try:
        store.record(Opened(run_dir=str(run_dir), resume=False, time=t0))
        store.record(Log(level="info", message="loading model on cuda (bfloat16, 4bit)", time=t0 + 1))
        store.record(Started(run_dir=str(run_dir), max_steps=STEPS, resumed_from_step=0, device="cuda (bfloat16)",
                             model="Qwen/Qwen2.5-0.5B-Instruct", reward_names=["correctness_reward", "format_reward"],
                             trainable_params=8_798_208, total_params=502_830_976, time=t0 + 2))
        base = rng.normal(size=(STEPS, len(METRICS))).cumsum(axis=0) * 0.01
        for step in range(1, STEPS + 1):
            values = dict(zip(METRICS, (float(v) for v in base[step - 1])))
            store.record(Metrics(step=step, max_steps=STEPS, values=values, time=t0 + 2 * step))
        sampled_steps = np.linspace(1, STEPS, SAMPLES // PER_STEP).astype(int)
        pyrng = random.Random(0)
        for n, step in enumerate(sampled_steps):
            batch = []
            for i in range(PER_STEP):
                completion = " ".join(words[rng.integers(0, len(words), 380)])  # about 2 KB
                if pyrng.random() < 0.005:
                    completion += f" {RARE_WORD}"
                prompt = "Solve the problem and end with #### and the answer.\n" + " ".join(
                    words[rng.integers(0, len(words), 60)])
                correct, fmt = float(pyrng.random() < 0.4), pyrng.choice([0.0, 0.5, 1.0])
                batch.append(Sample(group=i // 4, prompt=prompt, completion=completion, answer=str(n % 97),
                                    rewards={"correctness_reward": correct, "format_reward": fmt},
                                    total=correct + fmt, advantage=pyrng.gauss(0, 1),
                                    length=380 + i, truncated=False))
            store.record(Samples(step=int(step), samples=batch, time=t0 + 2 * int(step)))
        store.record(Finished(step=STEPS, stopped=False, seconds=STEPS * 2.0, adapter_dir=str(run_dir / "adapter"),
                              time=t0 + 2 * STEPS + 1))
        real.commit()
    finally:
        store.db = real
        store.close()


# ---- measuring ---------------------------------------------------------------------------------
class StallMeter:
    """The GUI thread's cost of an action: the longest gap between ticks of a 1 ms timer."""

    def __init__(self):
        from PySide6.QtCore import QElapsedTimer, Qt, QTimer

        self.clock = QElapsedTimer()
        self.clock.start()
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(1)
        self.timer.timeout.connect(self._tick)
        self.last = 0.0
        self.worst = 0.0
        self.own_cpu_per_ms = 0.0  # the meter's own CPU time per ms of wall time (calibrate)

    def calibrate(self, app, seconds: float = 1.0) -> None:
        """What the heartbeat itself costs the GUI thread, measured while the window does nothing; taken
        off every CPU figure (a long action, a text search, would otherwise count thousands of ticks)."""
        self.start()
        t = time.perf_counter()
        settle(app, seconds)
        self.stop()
        self.own_cpu_per_ms = self.cpu_ms / ((time.perf_counter() - t) * 1000)

    def _tick(self):
        now = self.clock.nsecsElapsed() / 1e6
        self.worst = max(self.worst, now - self.last)
        self.last = now

    def start(self):
        self.worst = 0.0
        self.last = self.clock.nsecsElapsed() / 1e6
        self.cpu = time.thread_time()
        self.wall = time.perf_counter()
        self.timer.start()

    def stop(self) -> float:
        self._tick()
        self.timer.stop()
        wall_ms = (time.perf_counter() - self.wall) * 1000
        # The GUI thread's CPU time meanwhile, less what the heartbeat itself took.
        self.cpu_ms = max(0.0, (time.thread_time() - self.cpu) * 1000 - self.own_cpu_per_ms * wall_ms)
        return self.worst


def spin_until(app, condition, timeout_s: float = 60.0) -> float:
    """Run the event loop until `condition()`; returns the seconds it took."""
    start = time.perf_counter()
    while not condition():
        app.processEvents()
        if time.perf_counter() - start > timeout_s:
            raise TimeoutError("the window did not settle")
        time.sleep(0.0005)
    return time.perf_counter() - start


def settle(app, seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.001)


def paint(widgets) -> None:
    for w in widgets:
        w.repaint()


def stats(values: list[float]) -> dict:
    import numpy as np

    a = np.asarray(values)
    return {"n": len(a), "p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "max": float(a.max())}


def measure(run_dir: Path, repeat: int) -> dict:
    from PySide6.QtWidgets import QApplication

    from grpo_studio.engine.events import Metrics
    from grpo_studio.gui.main_window import MainWindow
    from grpo_studio.gui.preferences import Preferences
    from grpo_studio.gui.style import apply_style

    app = QApplication.instance() or QApplication([])
    apply_style(app)
    window = MainWindow(Preferences(ephemeral=True))
    window.resize(1280, 800)
    window.show()
    window.show_view("training")
    settle(app, 0.5)
    tv = window.training_view
    meter = StallMeter()
    meter.calibrate(app)
    results: dict = {}

    def drawn():
        """Every plot shows the data and smoothing there are now (the redraw timer's work is done)."""
        grid = tv.plots
        return not tv.is_loading() and all(p._drawn_version == tv.data.version and p._smoothing == grid.smoothing
                                           for p in grid.plots.values())

    def until_drawn(action) -> tuple[float, float]:
        """Do `action` the way the window gets it, let the window redraw as it does (its timer) and paint;
        the GUI thread's longest stall on the way and its CPU time in all, in ms."""
        meter.start()
        t = time.perf_counter()
        action()
        direct = (time.perf_counter() - t) * 1000
        spin_until(app, drawn)
        settle(app, 0.03)  # the paint of what the last redraw changed
        return max(direct, meter.stop()), meter.cpu_ms

    def drawn_series(label, runs):
        stalls, cpu = zip(*runs)
        results[f"{label}: GUI-thread stall (ms)"] = stats(list(stalls))
        results[f"{label}: GUI-thread CPU (ms)"] = stats(list(cpu))

    # Open the run: until its curves are painted. Opened a few times (the page cache warm after the first).
    opens, open_stalls, open_cpu = [], [], []
    for _ in range(3):
        meter.start()
        t = time.perf_counter()
        window.open_run(run_dir)
        spin_until(app, lambda: not tv.is_loading() and tv.data.get("reward") is not None
                   and tv.data.get("reward").n == STEPS and drawn())
        settle(app, 0.03)
        opens.append(time.perf_counter() - t - 0.03)
        open_stalls.append(meter.stop())
        open_cpu.append(meter.cpu_ms)
        settle(app, 0.3)
    results["open until curves painted (s)"] = stats(opens)
    results["open: GUI-thread stall (ms)"] = stats(open_stalls)
    results["open: GUI-thread CPU (ms)"] = stats(open_cpu)

    def full_redraw():
        tv.data.version += 1  # as if every array changed: the redraw timer redraws every plot

    drawn_series("full plot redraw", [until_drawn(full_redraw) for _ in range(repeat)])

    values = [10, 35, 60, 85, 95, 0, 50]

    def smoothing_change(i=[0]):
        i[0] += 1
        tv.smoothing.setValue(values[i[0] % len(values)])

    drawn_series("smoothing change", [until_drawn(smoothing_change) for _ in range(repeat)])

    rng = random.Random(1)

    def live_step(step=[STEPS]):
        step[0] += 1
        tv.handle_event(Metrics(step=step[0], max_steps=2 * STEPS, values={n: rng.random() for n in METRICS}))

    drawn_series("live step arriving", [until_drawn(live_step) for _ in range(repeat)])

    # Samples: every action until its rows are in the table and painted.
    window.show_view("samples")
    sv = window.samples_view
    model = sv.model
    settle(app, 0.3)
    spin_until(app, lambda: not getattr(model, "busy", False) and model.rowCount() > 0)

    def samples_action(action, done) -> tuple[float, float, float]:
        meter.start()
        t = time.perf_counter()
        action()
        spin_until(app, lambda: not getattr(model, "busy", False) and done())
        paint([sv.table.viewport()])
        shown = time.perf_counter() - t
        return meter.stop(), shown * 1000, meter.cpu_ms

    def series(label, runs):
        stalls, shown, cpu = zip(*runs)
        results[f"{label}: GUI-thread stall (ms)"] = stats(list(stalls))
        results[f"{label}: GUI-thread CPU (ms)"] = stats(list(cpu))
        results[f"{label}: until shown (ms)"] = stats(list(shown))

    orders = ["Total reward, high first", "Total reward, low first"]

    def sort(i=[0]):
        i[0] += 1
        sv.order.setCurrentText(orders[i[0] % 2])

    first_total = lambda: model.rowCount() > 0  # noqa: E731
    series("sort samples by total reward", [samples_action(sort, first_total) for _ in range(repeat)])

    words = [RARE_WORD, "carry", RARE_WORD[:4], "twice"]
    search_runs = []
    for i in range(max(4, repeat // 3)):
        word = words[i % len(words)]
        filter_delay = getattr(sys.modules.get("grpo_studio.gui.samples_browser"), "FILTER_DELAY_MS", 0) / 1000

        def search(word=word):
            sv.search.setText(word)
            spin_until(app, lambda: not sv._filter_timer.isActive(), 5)  # the typing pause, not the window's cost

        def found(word=word):
            return model.rowCount() > 0 and word in model.sample(0).completion

        stall, shown, cpu = samples_action(search, found)
        search_runs.append((stall, shown - filter_delay * 1000, cpu))
    series("text filter", search_runs)
    sv.search.setText("")
    spin_until(app, lambda: not sv._filter_timer.isActive(), 5)
    spin_until(app, lambda: not getattr(model, "busy", False) and model.rowCount() > 0)

    sv.order.setCurrentText(orders[0])
    spin_until(app, lambda: not getattr(model, "busy", False) and model.rowCount() > 0)
    page_runs = []
    for _ in range(repeat):
        before = model.rowCount()

        def scroll():
            sv.table.scrollToBottom()  # the view asks the model for the next page (fetchMore)

        page_runs.append(samples_action(scroll, lambda before=before: model.rowCount() > before))
    series("next page of samples (sorted by total)", page_runs)
    window.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=Path(tempfile.gettempdir()) / "grpo-studio-long-run",
                        help="the run folder to build (once) and measure")
    parser.add_argument("--rebuild", action="store_true", help="build the store again")
    parser.add_argument("--repeat", type=int, default=30, help="times each action is measured")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("GRPO_STUDIO_DATA_DIR", tempfile.mkdtemp(prefix="grpo-studio-bench-data-"))
    os.environ.setdefault("GRPO_STUDIO_SETTINGS", str(Path(tempfile.mkdtemp()) / "settings.ini"))
    run_dir = args.store.resolve()
    if args.rebuild or not (run_dir / "run.db").is_file():
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)
        t = time.perf_counter()
        build_store(run_dir)
        print(f"built {run_dir} in {time.perf_counter() - t:.1f} s "
              f"({(run_dir / 'run.db').stat().st_size / 1e6:.0f} MB)", file=sys.stderr)
    import grpo_studio

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    results = measure(run_dir, args.repeat)
    print(f"grpo_studio from {Path(grpo_studio.__file__).parent}; {STEPS:,} steps x {len(METRICS)} metrics, "
          f"{SAMPLES:,} samples; load average {load:.1f} at the start, {os.cpu_count()} CPUs")
    print(f"{'action':64} {'p50':>9} {'p99':>9} {'max':>9}")
    for name, s in results.items():
        print(f"{name:64} {s['p50']:9.2f} {s['p99']:9.2f} {s['max']:9.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
