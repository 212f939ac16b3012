"""A past run's store read whole, off the GUI thread (no Qt).

Reopening a long run means hundreds of thousands of metric rows: reading them and turning them into
arrays happens on a worker thread, and the Training page applies the result in one go.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class StoredRun:
    run_dir: Path
    meta: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # name: (steps, values)
    events: list[Any] = field(default_factory=list)  # opened, log, started, alarm, checkpoint, finished...


def read_stored_run(run_dir: Path) -> StoredRun:
    """Runs on a worker thread. Raises OSError / sqlite3.Error for an unreadable store."""
    from grpo_studio.engine.store import RunStore

    with RunStore(Path(run_dir), readonly=True) as store:
        meta = store.meta()
        raw = store.metrics()
        events = store.events()  # metrics and samples live in tables of their own, not here
    # One value per (step, name) in the store, in step order: arrays as they are.
    metrics = {name: (np.asarray(steps, dtype=np.float64), np.asarray(values, dtype=np.float64))
               for name, (steps, values) in raw.items()}
    return StoredRun(Path(run_dir), meta, metrics, events)
