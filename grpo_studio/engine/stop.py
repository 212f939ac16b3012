"""Stop at any moment, also before the first step.

Once training runs, a stop request (Ctrl-C, SIGTERM, a STOP file in the run folder) is honoured by
the trainer's callback: finish the step, save a checkpoint, exit. Before the first step there is no
step to finish, and the main thread may sit for minutes in a download, a hub retry or a model load
that never looks at a flag. So until the run reports `started`, a stop request interrupts the main
thread at once: the signal handler raises KeyboardInterrupt (a blocking socket read or back-off
sleep returns with EINTR and the exception propagates), and a STOP file is turned into such a
signal by a small watcher thread. `train()` then ends with STOPPED_BEFORE_TRAINING.
"""

from __future__ import annotations

import _thread
import signal
import threading
from pathlib import Path
from typing import Any, Callable

from grpo_studio.engine.events import STOPPED_BEFORE_TRAINING  # noqa: F401 - the reason train() reports
from grpo_studio.engine.store import RunFolder

POLL_S = 0.2


class StopRequest:
    """A stop flag for `train(stop_requested=...)` that also interrupts the loading phase."""

    def __init__(self, on_request: Callable[[bool], None] | None = None):
        self.requested = False
        self.training = False  # the run reported `started`: the callback stops it after a step
        self.run_dir: Path | None = None
        self.on_request = on_request or (lambda during_loading: None)
        self._main = threading.main_thread().ident
        self._done = threading.Event()

    def __call__(self) -> bool:
        return self.requested

    def install(self, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> None:
        for signum in signals:
            signal.signal(signum, self.handle_signal)

    def handle_signal(self, signum: int, frame: Any) -> None:
        already = self.requested
        self.requested = True
        self.on_request(not self.training)
        if not self.training or (already and signum == signal.SIGINT):
            raise KeyboardInterrupt  # nothing to finish yet (or Ctrl-C twice): stop now

    def listener(self, inner: Callable[[Any], None] | None) -> Callable[[Any], None]:
        """Wrap the run's event listener to learn the run folder and when training has started."""

        def listen(event: Any) -> None:
            if event.kind == "opened":
                self.run_dir = Path(event.run_dir)
            elif event.kind == "started":
                self.training = True
            if inner is not None:
                inner(event)

        return listen

    def watch_stop_file(self) -> None:
        """A STOP file (the window's Stop) before the first step: interrupt the main thread as a signal would."""
        threading.Thread(target=self._watch, name="stop-file-watch", daemon=True).start()

    def _watch(self) -> None:
        while not self._done.wait(POLL_S):
            if self.training:
                return  # from here on the trainer's callback reads the STOP file after each step
            if self.run_dir is not None and RunFolder(self.run_dir).stop_request.exists() and not self.requested:
                if hasattr(signal, "pthread_kill"):
                    signal.pthread_kill(self._main, signal.SIGTERM)  # wakes a blocking call in the main thread
                else:  # Windows: raised at the main thread's next bytecode
                    self.requested = True
                    _thread.interrupt_main()
                return

    def close(self) -> None:
        self._done.set()
