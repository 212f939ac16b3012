"""A run's store read off the GUI thread (no Qt): whole, when a run is opened, and then what it added
since, while another process still trains it.

Reopening a long run means hundreds of thousands of metric rows: reading them and turning them into
arrays happens on a worker thread, and the Training page applies the result in one go. A run that a
live process trains (it holds the run's lock: engine/run_lock.py) is followed by reading only what was
added since the last read (`read_more`).

The queries here read the store's tables directly instead of going through RunStore's list-of-lists
readers, for speed on long runs (arrays per metric from the `metrics_by_name` index, see
`metric_arrays`); RunStore still opens, owns and closes the database.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grpo_studio.engine.run_lock import LockHolder, lock_holder


@dataclass
class StoredRun:
    run_dir: Path
    meta: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # name: (steps, values)
    events: list[Any] = field(default_factory=list)  # opened, log, started, alarm, checkpoint, finished...
    holder: LockHolder | None = None  # the live process that trains this run, if one does
    last_event_id: int = 0  # where `read_more` goes on from
    last_sample_step: int = 0


def read_stored_run(run_dir: Path) -> StoredRun:
    """Runs on a worker thread. Raises OSError / sqlite3.Error (or the store's own error) for an unreadable
    store. The lock is probed first: a run that ends while it is read is then seen as live once more and
    its end comes with the next `read_more`, never missed."""
    from grpo_studio.engine.store import RunStore

    holder = lock_holder(run_dir)
    if holder is not None and not (Path(run_dir) / "run.db").is_file():
        return StoredRun(Path(run_dir), holder=holder)  # its process is starting: followed until the store comes
    with RunStore(Path(run_dir), readonly=True) as store:
        db = store.db
        db.execute("BEGIN")  # one snapshot: metrics, events and meta of the same moment
        try:
            meta = store.meta()
            metrics = metric_arrays(db)
            events, last_id = events_after(store, 0)
            last_sample = last_sample_step(db)
        finally:
            db.execute("COMMIT")
    return StoredRun(Path(run_dir), meta, metrics, events, holder, last_id, last_sample)


@dataclass
class RunUpdate:
    """What a followed run added since the last read."""

    meta: dict[str, Any]
    metrics: dict[str, tuple[np.ndarray, np.ndarray]]
    events: list[Any]
    holder: LockHolder | None
    last_event_id: int
    last_sample_step: int


def read_more(store: Any, run_dir: Path, after_step: int, after_event_id: int) -> RunUpdate:
    """The steps after `after_step` and the events after `after_event_id` (a worker thread, a store kept
    open by the caller). Lock first, for the reason `read_stored_run` gives."""
    holder = lock_holder(run_dir)
    db = store.db
    db.execute("BEGIN")
    try:
        meta = store.meta()
        metrics = metric_arrays(db, after_step)
        events, last_id = events_after(store, after_event_id)
        last_sample = last_sample_step(db)
    finally:
        db.execute("COMMIT")
    return RunUpdate(meta, metrics, events, holder, last_id or after_event_id, last_sample)


def metric_arrays(db: Any, after_step: int = -1) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{name: (steps, values)} as float arrays in step order; NULL (a non-finite value) comes back as NaN.

    With the `metrics_by_name` index (stores written since it was added) each metric is one index range,
    which SQLite hands over as two comma-separated strings that numpy parses: no Python object per row.
    (A row at a time made 580,000 tuples for a 20,000-step run, and the garbage collections they set off
    held the interpreter lock, and with it the window, for 100 ms at a time.) An older store is read in
    one pass in its own order and sorted here, as it used to be."""
    indexed = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'metrics_by_name'").fetchone()
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if indexed:
        names = [r[0] for r in db.execute("SELECT DISTINCT name FROM metrics")]
        for name in names:
            steps_text, values_text = db.execute(
                "SELECT group_concat(step), group_concat(ifnull(value, 'nan')) FROM metrics "
                "WHERE name = ? AND step > ?", (name, after_step)).fetchone()
            if steps_text is None:
                continue
            steps = np.fromstring(steps_text, dtype=np.float64, sep=",")
            values = np.fromstring(values_text, dtype=np.float64, sep=",")
            if len(steps) > 1 and not np.all(steps[1:] > steps[:-1]):  # the index's order, but SQL does not promise it
                order = np.argsort(steps, kind="stable")
                steps, values = steps[order], values[order]
            out[name] = (steps, values)
        return out
    # 9e999 is infinity in SQLite: NULLs become a number numpy takes, then NaN (the store holds no infinities).
    grouped: dict[str, list] = {}
    for name, step, value in db.execute("SELECT name, step, ifnull(value, 9e999) FROM metrics WHERE step > ? "
                                        "ORDER BY name, step", (after_step,)):
        grouped.setdefault(name, []).append((step, value))
    return {name: _arrays(rows) for name, rows in grouped.items()}


def _arrays(rows: list) -> tuple[np.ndarray, np.ndarray]:
    both = np.array(rows, dtype=np.float64)
    values = both[:, 1]
    values[np.isinf(values)] = np.nan
    return both[:, 0].copy(), values.copy()


def events_after(store: Any, after_id: int) -> tuple[list[Any], int]:
    """The events stored after id `after_id`, oldest first, and the newest id (0 when there are none);
    each as the current version writes it, like RunStore.events (an older store's events migrated)."""
    from grpo_studio.engine.events import event_from_dict
    from grpo_studio.engine.store_versions import current_payload

    rows = store.db.execute("SELECT id, payload FROM events WHERE id > ? ORDER BY id", (after_id,)).fetchall()
    events = [event_from_dict(current_payload(json.loads(payload), store.version)) for _, payload in rows]
    return events, (rows[-1][0] if rows else 0)


def last_sample_step(db: Any) -> int:
    row = db.execute("SELECT MAX(step) FROM samples").fetchone()
    return int(row[0]) if row and row[0] is not None else 0
