"""Fault injection for the reliability tests: fail on purpose at a named point of a run.

Set `GRPO_STUDIO_FAULT=ACTION:POINT[:N]` in the environment of a training process and it fails the
N-th time (default: the first) it passes POINT, so a test can kill a run exactly during a
checkpoint save instead of sleeping and hoping:

    kill     SIGKILL this process (what a power cut, an OOM kill or `kill -9` does)
    enospc   raise OSError(ENOSPC), as a full disk does
    fill     fill the disk under the run folder until it is full, then carry on (the next write
             meets a real ENOSPC); for tests on a small filesystem
    pause    write FAULT_PAUSED in the folder of the point and wait until that file is deleted (a
             test holds a live run)

Points, in the order a run passes them: `folder_opened`, `step_end` (after a step's metrics were
stored), `checkpoint_begin`, `save_model` (inside every model save: checkpoints and the final
adapter), `checkpoint_written` (staged, not yet in place), `checkpoint_renamed`,
`adapter_written` (final adapter staged), `adapter_swapped` (the old adapter moved aside, the new
one not yet in place), `finished` (adapter in place, before the store says finished),
`export_written` (an export staged, not yet in place), `store_write` (inside a store transaction).

Never set in normal use; unset, each point costs one dictionary lookup.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from pathlib import Path

ENV = "GRPO_STUDIO_FAULT"
_seen: dict[str, int] = {}  # passes per point, counted since the variable last changed
_spec = ""


def fault_point(name: str, where: str | Path | None = None) -> None:
    """Fail here if GRPO_STUDIO_FAULT asks for this point. `where` is the path a write goes to."""
    global _spec
    spec = os.environ.get(ENV, "")
    if spec != _spec:  # unset and set again counts as a change too
        _spec = spec
        _seen.clear()
    if not spec:
        return
    parts = spec.split(":")
    if len(parts) < 2 or parts[1] != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] != (int(parts[2]) if len(parts) > 2 and parts[2] else 1):
        return
    action = parts[0]
    if action == "kill":
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
        time.sleep(60)  # the signal is delivered asynchronously; never run past the point meanwhile
    elif action == "enospc":
        raise OSError(errno.ENOSPC, "No space left on device (injected)", str(where or name))
    elif action == "fill" and where is not None:
        _fill_disk(Path(where))
    elif action == "pause" and where is not None:
        folder = Path(where) if Path(where).is_dir() else Path(where).parent
        flag = folder / "FAULT_PAUSED"
        flag.write_text(str(os.getpid()))
        while flag.exists():
            time.sleep(0.05)


def _fill_disk(where: Path) -> None:
    folder = where if where.is_dir() else where.parent
    fd = os.open(folder / "FAULT_FILLER", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for size in (1 << 16, 1 << 10, 1):  # big blocks, then the last bytes
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                continue
    finally:
        os.close(fd)
