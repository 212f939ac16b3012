"""Training progress on the terminal: one line per logged step, plus checkpoints, warnings and the end."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def _num(x: float | None, digits: int = 3) -> str:
    if x is None or x != x:
        return "-"
    return f"{x:.{digits}g}"


class TerminalReporter:
    """An event listener that prints what a person watching a terminal wants to know."""

    def __init__(self, stream: TextIO | None = None, verbose: bool = False):
        self.stream = stream or sys.stdout
        self.verbose = verbose
        self.reward_names: list[str] = []
        self.first_step: int | None = None
        self.first_time = 0.0

    def print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def __call__(self, event: Any) -> None:
        handler = getattr(self, f"on_{event.kind}", None)
        if handler:
            handler(event)

    def on_started(self, e: Any) -> None:
        self.reward_names = e.reward_names
        where = f"resuming at step {e.resumed_from_step}" if e.resumed_from_step else "from step 0"
        self.print(f"training {e.model} on {e.device}, {e.max_steps} steps, {where}")
        self.print(f"  trainable parameters: {e.trainable_params:,} of {e.total_params:,}")
        self.print(f"  rewards: {', '.join(e.reward_names)}")
        self.print(f"  run folder: {e.run_dir}")

    def on_metrics(self, e: Any) -> None:
        v = e.values
        now = time.time()
        if self.first_step is None:
            self.first_step, self.first_time = e.step, now
        eta = ""
        if e.step > self.first_step:
            per_step = (now - self.first_time) / (e.step - self.first_step)
            eta = f" | ETA {format_duration(per_step * (e.max_steps - e.step))}"
        parts = [f"step {e.step:>{len(str(e.max_steps))}}/{e.max_steps}",
                 f"reward {_num(v.get('reward'))} ±{_num(v.get('reward_std'), 2)}"]
        per_func = [f"{n.removesuffix('_reward')} {_num(v.get(f'rewards/{n}/mean'), 2)}" for n in self.reward_names
                    if f"rewards/{n}/mean" in v]
        if per_func:
            parts.append(" ".join(per_func))
        if "kl" in v:
            parts.append(f"kl {_num(v['kl'], 2)}")
        parts.append(f"loss {_num(v.get('loss'), 2)}")
        parts.append(f"len {_num(v.get('completions/mean_length'), 3)}")
        if "perf/step_seconds" in v:
            parts.append(f"{v['perf/step_seconds']:.2f} s/step")
        self.print(" | ".join(parts) + eta)

    def on_checkpoint(self, e: Any) -> None:
        self.print(f"  saved checkpoint at step {e.step}")

    def on_alarm(self, e: Any) -> None:
        self.print(f"  ALARM ({e.code}) at step {e.step}: {e.message}")
        if e.advice:
            self.print(f"    try: {e.advice}")

    def on_log(self, e: Any) -> None:
        if e.level in ("warning", "error"):
            self.print(f"  {e.level}: {e.message}")
        elif self.verbose or e.level == "info":
            self.print(f"  {e.message}")

    def on_finished(self, e: Any) -> None:
        if e.stopped:
            self.print(f"stopped at step {e.step} after {format_duration(e.seconds)}; resume with --resume")
        else:
            self.print(f"finished {e.step} steps in {format_duration(e.seconds)}")
        self.print(f"  adapter: {e.adapter_dir}")

    def on_failed(self, e: Any) -> None:
        print(f"error: {e.reason}", file=sys.stderr, flush=True)
        if e.hint:
            print(f"  hint: {e.hint}", file=sys.stderr, flush=True)
        if self.verbose and e.details:
            print(e.details, file=sys.stderr, flush=True)
