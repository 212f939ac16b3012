"""grpo-studio: the command line.

    grpo-studio [gui [RUN.toml | RUN_DIR]]   open the window (on the built-in demo by default)
    grpo-studio demo                         the built-in demo in the terminal: eval, train, eval
    grpo-studio train RUN.toml [--output DIR] [--set section.key=value ...] [--resume]
    grpo-studio validate RUN.toml [--set ...]
    grpo-studio rewards-check RUN.toml [--set ...] [--completions FILE.jsonl] [--prompts N] [--json]
    grpo-studio eval RUN.toml|RUN_DIR [--adapter DIR|NAME] [--compare-base] [--limit N] [--json]
    grpo-studio export RUN_DIR [--to DIR] [--merged | --gguf [TYPE]] [--push-to-hub REPO_ID [--private]]
    grpo-studio bench [--arch tiny|qwen2.5-0.5b|qwen2.5-1.5b|qwen2.5-7b] [--quant 4bit] [--steps N]
                      [--vram-limit GIB] [--lengths fixed|natural]

Exit codes: 0 success; 1 the run or command failed; 2 bad input (run file, dataset, reward file,
model path, arguments); 130 stopped on request (Ctrl-C): the checkpoint is saved, `--resume` continues.

Heavy libraries are imported only inside the commands, so `--help` answers at once.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from grpo_studio.resource_paths import demo_run_file, resources_dir  # noqa: F401 - resources_dir: API

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_STOPPED = 0, 1, 2, 130


def _add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a setting of the run file (repeatable), e.g. --set grpo.max_steps=50")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grpo-studio",
        description="Improve a language model's reasoning with GRPO: a desktop app and a headless trainer.",
        epilog="Exit codes: 0 ok, 1 failed, 2 bad input, 130 stopped (resumable).",
    )
    from grpo_studio import __version__

    parser.add_argument("--version", action="version", version=f"grpo-studio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("gui", help="open the window (default command)")
    p.add_argument("run", nargs="?", help="run file or run folder to open (default: the built-in demo)")
    p.add_argument("--screenshot", metavar="FILE.png", help="paint a view, save it as PNG and exit")
    p.add_argument("--view", choices=["settings", "rewards", "training", "samples"], default="settings",
                   help="which view --screenshot paints")

    p = sub.add_parser("train", help="train a run file headless (also under `accelerate launch`)")
    p.add_argument("run", help="run file (.toml), or a run folder with --resume")
    p.add_argument("--output", metavar="DIR", help="the run folder (default: run.output_dir/name-date-time)")
    p.add_argument("--resume", action="store_true",
                   help="continue the newest run of this run file (or --output DIR) from its newest checkpoint")
    p.add_argument("--verbose", "-v", action="store_true", help="print tracebacks and debug messages")
    _add_overrides(p)

    p = sub.add_parser("validate", help="check a run file, its dataset and reward file (no model weights)")
    p.add_argument("run", help="run file (.toml)")
    p.add_argument("--json", action="store_true", help="print the findings as JSON on stdout")
    _add_overrides(p)

    p = sub.add_parser(
        "rewards-check", help="run the reward functions on real rows and completions before training",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run every reward function of a run file on real dataset rows, the way training calls\n"
                    "them, and report per function: scores, mean, time per call, errors (FILE:LINE) and\n"
                    "warnings (a group whose completions all score the same; a function that never\n"
                    "rewards anything).",
        epilog="""completions: by default the run's model samples --prompts rows x grpo.num_generations completions.
With --completions FILE.jsonl, yours are used instead, one JSON object per line; lines with the
same row form a group:
  {"row": 0, "completion": "... #### 18"}        row = 0-based row of data.source (its prompt, answer...)
  {"question": "2+3?", "answer": "5", "completion": "5"}
                                                  no row: the line is a row of its own, in the
                                                  dataset's columns (data.prompt_column, answer_column)

Errors and warnings are printed one per line on stderr as FILE:LINE: message.
Exit codes: 0 every reward function ran cleanly (warnings allowed), 2 a function (or the input) erred.""")
    p.add_argument("run", help="run file (.toml)")
    p.add_argument("--completions", metavar="FILE.jsonl", help="completions to score instead of generated ones")
    p.add_argument("--prompts", type=int, default=4, metavar="N",
                   help="rows to generate completions for (default 4; without --completions)")
    p.add_argument("--json", action="store_true",
                   help="print the report as JSON on stdout (and progress as JSON lines on stderr)")
    _add_overrides(p)

    p = sub.add_parser("eval", help="greedy accuracy on the run's held-out split")
    p.add_argument("run", help="run file (.toml), or a run folder (evaluates its adapter)")
    p.add_argument("--adapter", metavar="DIR", help="LoRA adapter folder to apply to the base model (with a run "
                   "folder also 'adapter' or a checkpoint name, e.g. checkpoint-20)")
    p.add_argument("--base", action="store_true", help="with a run folder: evaluate the base model alone")
    p.add_argument("--compare-base", action="store_true",
                   help="score the base model and base + adapter on the same prompts, side by side; with a "
                        "run folder the result is stored in RUN_DIR/evals/")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="evaluate the first N held-out rows")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--show", type=int, default=0, metavar="N", help="print N example completions")
    _add_overrides(p)

    p = sub.add_parser("export", help="export a run's adapter (and a merged model)")
    p.add_argument("run_dir", help="run folder")
    p.add_argument("--to", metavar="DIR", help="destination (default: RUN_DIR/export-adapter or export-merged)")
    p.add_argument("--merged", action="store_true", help="write the base model with the adapter merged in")
    p.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16",
                   help="dtype of the merged model")
    p.add_argument("--gguf", nargs="?", const="f16", metavar="TYPE",
                   choices=["f32", "f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0"],
                   help="write the merged model as one GGUF file for llama.cpp / Ollama / LM Studio: f32, f16 "
                        "(default), bf16, q8_0, q5_1, q5_0, q4_1 or q4_0 (needs: pip install 'grpo-studio[gguf]')")
    p.add_argument("--push-to-hub", metavar="REPO_ID",
                   help="then upload the export with its model card to this Hugging Face model repo (created if "
                        "missing), with your stored login (`hf auth login`)")
    p.add_argument("--private", action="store_true", help="with --push-to-hub: create the repo private")

    p = sub.add_parser("settings", help="every run-file setting with its default, range and help")
    p.add_argument("section", nargs="?", help="only this section (model, lora, data, grpo, ...)")
    p.add_argument("--markdown", action="store_true", help="as a Markdown table")

    p = sub.add_parser("bench", help="seconds per GRPO step: plain TRL beside GRPO Studio's engine")
    p.add_argument("--arch", default="tiny", help="tiny, qwen2.5-0.5b, qwen2.5-1.5b or qwen2.5-7b (random weights)")
    p.add_argument("--quant", choices=["16bit", "4bit"], default="16bit", help="base weights: bf16, or bnb 4-bit")
    p.add_argument("--steps", type=int, default=3, metavar="N", help="measured steps after one warm-up step")
    p.add_argument("--arms", default="trl,studio",
                   help="comma-separated: trl, studio, studio-trlgen, studio-eager; a studio arm may add "
                        "+section.key=value overrides (studio+lora.gradient_checkpointing=false)")
    p.add_argument("--vram-limit", type=float, default=0.0, metavar="GIB",
                   help="cap each arm's GPU memory at GIB, to stand in for a smaller card (e.g. 16)")
    p.add_argument("--lengths", choices=["fixed", "natural"], default="fixed",
                   help="fixed: every completion has exactly the maximum length; natural: completions end at "
                        "EOS with a spread of lengths (mean near 40%% of the maximum)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--work", metavar="DIR", help="folder for the model, data and runs (default: a temp folder)")

    p = sub.add_parser("demo", help="the built-in demo in the terminal: eval, train, eval again")
    p.add_argument("--output", metavar="DIR", help="run folder for the demo run")
    _add_overrides(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    import multiprocessing

    multiprocessing.freeze_support()  # a frozen (installer) build starts reward processes through this entry
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # plain `grpo-studio` opens the window
        args = parser.parse_args(["gui"])
    handler = {"gui": cmd_gui, "train": cmd_train, "validate": cmd_validate, "eval": cmd_eval,
               "export": cmd_export, "demo": cmd_demo, "bench": cmd_bench,
               "rewards-check": cmd_rewards_check, "settings": cmd_settings}[args.command]
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_STOPPED
    except BrokenPipeError:  # `grpo-studio settings | head`: the reader left, nothing went wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _load(path: str, overrides: list[str]) -> Any:
    """The loaded run file, or None after printing every problem (one per line)."""
    from grpo_studio.config import ConfigError, load_run

    try:
        return load_run(path, overrides)
    except ConfigError as exc:
        for problem in exc.problems:
            _err(str(problem))
        return None


# ---- gui ------------------------------------------------------------------------------------


def cmd_gui(args: argparse.Namespace) -> int:
    from grpo_studio.gui.system_libraries import import_problem

    try:
        from grpo_studio.gui.app import run_app
    except ImportError as exc:  # PySide6 missing, or a system library Qt needs (libEGL, libfontconfig...)
        _err(import_problem(exc))
        return EXIT_BAD_INPUT
    return run_app(args.run, screenshot=args.screenshot, view=args.view)


# ---- train ----------------------------------------------------------------------------------


def stop_on_signal() -> Any:
    """First Ctrl-C (or SIGTERM): finish the step, save, exit; before the first step, stop at once
    (engine/stop.py). Second Ctrl-C: abort now."""
    from grpo_studio.engine.stop import StopRequest

    def say(during_loading: bool) -> None:
        # Straight to the file descriptor: a signal handler that prints while the main thread is inside
        # a print to stderr (a progress line, or the first Ctrl-C's message) fails with "reentrant call".
        text = ("\nstopping..." if during_loading else
                "\nstopping after this step and saving a checkpoint (Ctrl-C again to abort)...")
        try:
            os.write(sys.stderr.fileno(), (text + "\n").encode())
        except (OSError, ValueError, AttributeError):  # no stderr descriptor (a windowless launcher)
            pass

    stop = StopRequest(on_request=say)
    stop.install(tuple(s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None)) if s is not None))
    return stop


def cmd_train(args: argparse.Namespace) -> int:
    from grpo_studio.cli_report import TerminalReporter
    from grpo_studio.engine.library_noise import quiet_libraries
    from grpo_studio.engine.run import train

    quiet_libraries()
    stop = stop_on_signal()
    reporter = TerminalReporter(verbose=args.verbose)
    result = train(args.run, output=args.output, resume=args.resume, listener=stop.listener(reporter),
                   stop_requested=stop, overrides=args.overrides)
    return exit_code(result)


def exit_code(result: Any) -> int:
    from grpo_studio.engine.events import STOPPED_BEFORE_TRAINING

    if result.kind == "finished":
        return EXIT_STOPPED if result.stopped else EXIT_OK
    if result.interrupted or result.reason == STOPPED_BEFORE_TRAINING:
        return EXIT_STOPPED
    return EXIT_BAD_INPUT if result.input_error else EXIT_FAILED


# ---- validate -------------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    from grpo_studio.engine.checks import validate

    run = _load(args.run, args.overrides)
    if run is None:
        return EXIT_BAD_INPUT
    report = validate(run)
    if args.json:
        print(json.dumps({"ok": report.ok, "problems": report.problems, "warnings": report.warnings,
                          **report.facts}, indent=2))
    for line in report.problems:
        _err(line)
    for line in report.warnings:
        _err(f"warning: {line}")
    if report.ok and not args.json:
        facts = report.facts
        summary = [f"{args.run}: valid"]
        if "rows" in facts:
            summary.append(f"{facts['rows']} training rows")
        if "rewards" in facts:
            summary.append(f"rewards: {', '.join(facts['rewards'])}")
        if "vram_estimate_gib" in facts:
            summary.append(f"estimated peak GPU memory {facts['vram_estimate_gib']:.1f} GiB (one GPU, without the "
                           "CUDA context)")
        print("; ".join(summary))
    return EXIT_OK if report.ok else EXIT_BAD_INPUT


# ---- rewards-check --------------------------------------------------------------------------


def cmd_rewards_check(args: argparse.Namespace) -> int:
    from grpo_studio.engine.data import DataError
    from grpo_studio.engine.library_noise import quiet_libraries
    from grpo_studio.engine.reward_bench import read_completions, run_bench

    run = _load(args.run, args.overrides)
    if run is None:
        return EXIT_BAD_INPUT
    typed = None
    if args.completions:
        try:
            typed = read_completions(args.completions)
        except DataError as exc:
            _err(str(exc))
            return EXIT_BAD_INPUT
    quiet_libraries()

    def progress(message: str, fraction: float) -> None:
        if args.json:  # for programs (the window's bench panel): one JSON object a line on stderr
            print(json.dumps({"progress": round(fraction, 3), "message": message}), file=sys.stderr, flush=True)
        else:
            print(f"  {message}", file=sys.stderr, flush=True)

    report = run_bench(run, completions=typed, prompts=max(1, args.prompts), progress=progress)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        from grpo_studio.cli_report import print_bench

        print_bench(report)
    for error in report.errors:
        _err(str(error))
    for warning in report.warnings:
        _err(_as_warning(str(warning), warning.file, warning.line))
    return EXIT_OK if report.ok else EXIT_BAD_INPUT


def _as_warning(text: str, file: str | None, line: int | None) -> str:
    """`FILE:LINE: warning: message`, as compilers write warnings (editors jump to them)."""
    prefix = f"{file}:{line}: " if file and line else f"{file}: " if file else ""
    return f"{prefix}warning: {text[len(prefix):]}"


# ---- eval -----------------------------------------------------------------------------------


def cmd_eval(args: argparse.Namespace) -> int:
    from grpo_studio.engine.data import DataError
    from grpo_studio.engine.evaluate import EvalError, evaluate
    from grpo_studio.engine.library_noise import quiet_libraries
    from grpo_studio.engine.model import ModelError
    from grpo_studio.engine.rewards import RewardError
    from grpo_studio.engine.store import RunFolder

    if args.compare_base:
        from grpo_studio.cli_after_training import cmd_eval_compare

        return cmd_eval_compare(args)
    quiet_libraries()
    path, adapter = Path(args.run), args.adapter
    if path.is_dir():
        folder = RunFolder(path)
        if not folder.is_run():
            _err(f"{path}: not a run folder (no config.toml)")
            return EXIT_BAD_INPUT
        path = folder.config
        if adapter is not None and not Path(adapter).is_dir():  # a name: 'adapter', 'checkpoint-20'
            from grpo_studio.engine.eval_compare import resolve_adapter

            try:
                adapter = str(resolve_adapter(folder, adapter)[1])
            except EvalError as exc:
                _err(str(exc))
                return EXIT_BAD_INPUT
        if adapter is None and not args.base:
            from grpo_studio.engine.export import ExportError, adapter_source

            try:
                adapter = str(adapter_source(folder))
            except ExportError as exc:
                _err(str(exc))
                return EXIT_BAD_INPUT
    run = _load(str(path), args.overrides)
    if run is None:
        return EXIT_BAD_INPUT

    def progress(done: int, total: int) -> None:
        if not args.json:
            print(f"\r  generating {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)

    try:
        result = evaluate(run, adapter=adapter, limit=args.limit, progress=progress)
    except (DataError, RewardError, ModelError, EvalError) as exc:
        _err(str(exc))
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        what = f"{result.model}" + (f" + {result.adapter}" if result.adapter else "")
        print(f"{what}\naccuracy {result.accuracy:.1%} ({result.correct}/{result.n}, judged by "
              f"{result.correctness} >= {run.config.eval.threshold}) in {result.seconds:.1f}s")
        fmt = "not measured" if result.format_rate is None else f"{result.format_rate:.1%}"
        print(f"format rate {fmt}; mean length {result.mean_length:.1f} tokens; truncated {result.truncated_rate:.1%}")
        for name, mean in result.rewards.items():
            print(f"  mean {name}: {mean:.3f}")
        for ex in result.examples[: args.show]:
            mark = "ok " if ex["correct"] else "bad"
            print(f"  [{mark}] {ex['prompt']!r} -> {ex['completion']!r} (answer {ex['answer']!r})")
    return EXIT_OK


# ---- export ---------------------------------------------------------------------------------


def cmd_export(args: argparse.Namespace) -> int:
    from grpo_studio.engine.export import ExportError, export_run
    from grpo_studio.engine.library_noise import quiet_libraries

    quiet_libraries()
    run_dir = Path(args.run_dir)
    kind = "gguf" if args.gguf else "merged" if args.merged else "adapter"
    dest = Path(args.to) if args.to else run_dir / f"export-{kind}"

    def progress(what: str, fraction: float) -> None:
        print(f"  [{fraction:4.0%}] {what}", file=sys.stderr, flush=True)

    try:
        out = export_run(run_dir, dest, kind, dtype=args.dtype, gguf_type=args.gguf or "f16", progress=progress)
    except ExportError as exc:  # GgufError too
        _err(f"error: {exc}")
        return EXIT_FAILED if exc.failed else EXIT_BAD_INPUT
    print(out)
    if args.push_to_hub:
        from grpo_studio.engine.hub_push import HubPushError, push_export

        try:
            print(push_export(out if out.is_dir() else out.parent, args.push_to_hub, run_dir=run_dir,
                              private=args.private, progress=progress))
        except HubPushError as exc:
            _err(f"exported to {out}, but not pushed: {exc}")
            return EXIT_FAILED
    return EXIT_OK


# ---- settings ------------------------------------------------------------------------------------


def describe_range(spec: Any) -> str:
    if spec.choices:
        return " | ".join(str(c) for c in spec.choices)
    parts = []
    if spec.minimum is not None:
        parts.append(f"{'>' if spec.exclusive_minimum else '>='} {spec.minimum:g}")
    if spec.maximum is not None:
        parts.append(f"{'<' if spec.exclusive_maximum else '<='} {spec.maximum:g}")
    return ", ".join(parts)


def cmd_settings(args: argparse.Namespace) -> int:
    from grpo_studio.config import SECTIONS, all_field_specs

    if args.section and args.section not in SECTIONS:
        _err(f"error: no section {args.section!r}; sections: {', '.join(SECTIONS)}")
        return EXIT_BAD_INPUT
    specs = [s for s in all_field_specs() if not args.section or s.path.startswith(args.section + ".")]
    if args.markdown:
        print("| setting | default | range | what it does |\n|---|---|---|---|")
        for s in specs:
            default = json.dumps(s.default) if not isinstance(s.default, str) else f'"{s.default}"'
            print(f"| `{s.path}` | `{default}` | {describe_range(s)} | {s.help.replace('|', '/')} |")
        return EXIT_OK
    for s in specs:
        flag = " (advanced)" if s.advanced else ""
        rng = describe_range(s)
        print(f"{s.path} = {json.dumps(s.default)}{flag}\n    {s.help}" + (f"\n    range: {rng}" if rng else ""))
    return EXIT_OK


# ---- bench ---------------------------------------------------------------------------------------


def cmd_bench(args: argparse.Namespace) -> int:
    from grpo_studio.engine.bench import main as bench_main
    from grpo_studio.engine.library_noise import quiet_libraries

    quiet_libraries()
    return bench_main(args.arch, args.quant, args.steps, [a.strip() for a in args.arms.split(",") if a.strip()],
                      args.json, args.work, vram_limit_gib=args.vram_limit, lengths=args.lengths)


# ---- demo -----------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole loop in the terminal: held-out accuracy, a GRPO run, held-out accuracy again."""
    from grpo_studio.cli_report import TerminalReporter, format_duration
    from grpo_studio.engine.evaluate import evaluate
    from grpo_studio.engine.library_noise import quiet_libraries
    from grpo_studio.engine.run import train

    quiet_libraries()
    run = _load(str(demo_run_file()), args.overrides)
    if run is None:
        return EXIT_BAD_INPUT
    print(f"GRPO Studio demo: {run.path}")
    before = evaluate(run)
    print(f"held-out accuracy of the starter model: {before.accuracy:.1%} ({before.correct}/{before.n})")
    stop = stop_on_signal()
    result = train(run, output=args.output, listener=stop.listener(TerminalReporter()), stop_requested=stop)
    if result.kind != "finished":
        return exit_code(result)
    after = evaluate(run, adapter=result.adapter_dir)
    # The time the run itself reported ("finished 40 steps in ..."), not one of our own: one figure.
    print(f"held-out accuracy after GRPO: {after.accuracy:.1%} ({after.correct}/{after.n}); "
          f"before: {before.accuracy:.1%}; training took {format_duration(result.seconds)}")
    return exit_code(result)


if __name__ == "__main__":
    sys.exit(main())
