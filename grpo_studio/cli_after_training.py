"""The command line after training: `eval --compare-base` (base vs. adapter) and what `export`
does beyond copying (GGUF, the hub). Kept apart from cli.py, which parses and dispatches."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- eval --compare-base ------------------------------------------------------------------------


def cmd_eval_compare(args: argparse.Namespace) -> int:
    """Base model vs. the run's adapter (or --adapter) on the held-out split; stored with a run folder."""
    from grpo_studio.config import ConfigError, load_run
    from grpo_studio.engine.data import DataError
    from grpo_studio.engine.eval_compare import compare_run, compare_with_base
    from grpo_studio.engine.evaluate import EvalError
    from grpo_studio.engine.library_noise import quiet_libraries
    from grpo_studio.engine.model import ModelError
    from grpo_studio.engine.rewards import RewardError
    from grpo_studio.engine.store import RunFolder

    quiet_libraries()
    path = Path(args.run)

    def progress(done: int, total: int) -> None:
        if args.json:  # for programs (the window runs this in a child process): JSON lines on stderr
            print(json.dumps({"done": done, "total": total}), file=sys.stderr, flush=True)
        elif done:
            model = "base model" if done <= total // 2 else "with the adapter"
            print(f"\r  generating {done}/{total} ({model})", end="" if done < total else "\n", file=sys.stderr,
                  flush=True)

    try:
        if path.is_dir():
            if not RunFolder(path).is_run():
                _err(f"{path}: not a run folder (no config.toml)")
                return EXIT_BAD_INPUT
            result = compare_run(path, args.adapter, limit=args.limit, overrides=args.overrides, progress=progress)
        else:
            if not args.adapter:
                _err("--compare-base with a run file needs --adapter DIR (or give the run folder instead)")
                return EXIT_BAD_INPUT
            run = load_run(path, args.overrides)
            result = compare_with_base(run, args.adapter, label=Path(args.adapter).name, limit=args.limit,
                                       progress=progress)
    except ConfigError as exc:
        for problem in exc.problems:
            _err(str(problem))
        return EXIT_BAD_INPUT
    except (DataError, RewardError, ModelError, EvalError) as exc:
        _err(str(exc))
        return EXIT_BAD_INPUT
    if args.json:
        print(result.model_dump_json())
    else:
        print_comparison(result, show=args.show)
    return EXIT_OK


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def print_comparison(c: Any, show: int = 0, stream: TextIO | None = None) -> None:
    out = stream or sys.stdout

    def line(text: str = "") -> None:
        print(text, file=out)

    b, t = c.base, c.tuned
    line(f"{b.model}: base vs. {t.label} ({t.adapter})")
    line(f"held-out prompts: {t.n}; correct = {c.correctness}; well formatted = {c.format_rule or 'not measured'}")
    width = max(8, len(t.label))
    first = max([14] + [len(name) + 7 for name in t.rewards])

    def row(name: str, base: str, tuned: str, note: str = "") -> None:
        line(f"  {name:<{first}}{base:>{width}}  {tuned:>{width}}{'  ' + note if note else ''}")

    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    row("", "base", t.label)
    row("accuracy", _pct(b.accuracy), _pct(t.accuracy), f"({c.gain_points():+.1f} points)")
    row("format rate", _pct(b.format_rate), _pct(t.format_rate))
    row("mean length", f"{b.mean_length:.1f}", f"{t.mean_length:.1f}", "tokens")
    row("truncated", _pct(b.truncated_rate), _pct(t.truncated_rate))
    for name in t.rewards:
        row(f"mean {name}", num(b.rewards.get(name)), num(t.rewards.get(name)))
    n = c.counts
    line(f"fixed by training: {n['fixed']}, broken: {n['broken']}, both right: {n['both_right']}, "
         f"both wrong: {n['both_wrong']}")
    for change in ("fixed", "broken"):
        for p in [p for p in c.prompts if p.change == change][:show]:
            line(f"  [{change}] {p.prompt!r} (answer {p.answer!r})")
            line(f"      base:  {p.base.completion!r}")
            line(f"      tuned: {p.tuned.completion!r}")
    if c.run_dir:
        line(f"saved: {Path(c.run_dir) / 'evals' / (c.name + '.json')}")
