"""The training worker process that the window starts and supervises.

    python -m grpo_studio.engine.worker RUN.toml|RUN_DIR [--output DIR] [--resume] [--set k=v ...]

Events go out as JSON lines on this process's original stdout, which is reserved for them: at start
the worker moves file descriptor 1 to a private copy and points 1 at stderr, so anything a library
prints (Python or C) lands in the log on stderr and can never corrupt the event stream
(`child_process.ParentLink`). Sampled completions stay in the run store; the stream only says that
a step's samples are stored (`samples_stored`).

Stopping: a `STOP` file in the run folder, or SIGTERM / Ctrl-C, finishes the current step, saves a
checkpoint and exits 130. A crash of this process (CUDA error, OOM kill, segfault) costs the run,
never the window: the supervisor sees the exit code and the last events.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any


def window_listener(link: Any) -> Any:
    """Events for the window: everything, except that sampled completions are announced, not sent (the
    window reads them from the run store, a page at a time)."""
    from grpo_studio.engine.events import SamplesStored

    def send(event: Any) -> None:
        if event.kind == "samples":
            event = SamplesStored(step=event.step, count=len(event.samples), time=event.time)
        link.send(event)

    return send


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="grpo_studio.engine.worker")
    parser.add_argument("run")
    parser.add_argument("--output")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)

    from grpo_studio.engine.child_process import ParentLink

    link = ParentLink.claim()
    from grpo_studio.engine.library_noise import quiet_libraries
    from grpo_studio.engine.run import train

    quiet_libraries()
    stop = {"requested": False}

    def on_signal(signum: int, frame: Any) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    result = train(args.run, output=args.output, resume=args.resume, listener=window_listener(link),
                   stop_requested=lambda: stop["requested"], overrides=args.overrides)
    if result.kind == "finished":
        return 130 if result.stopped else 0
    return 2 if result.input_error else 1


if __name__ == "__main__":
    sys.exit(main())
