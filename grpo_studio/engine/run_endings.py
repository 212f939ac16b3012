"""How a failed run ends without leaving a mess: half-written saves cleared, the failure recorded
(even on a full disk), and a new run that never reached step 1 removed.

The rule for run folders (README, "Reliability"): a *new* run that fails, is interrupted or is
refused before its first step is stored leaves no run folder behind, so that the retry with the same
`--output` finds the place free and the runs list does not fill with empty failures. Resumed runs
are never removed. A folder left by a process killed before step 1 (nothing could clean up) is
recognised by `never_trained` and taken over by the next new run with the same `--output`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from grpo_studio.engine.events import EventBus, Failed, Log
from grpo_studio.engine.run_lock import RunLock, lock_holder
from grpo_studio.engine.safe_files import staging_path
from grpo_studio.engine.store import RunFolder, RunStore, StoreError


def never_trained(folder: RunFolder, *, locked: bool = False) -> bool:
    """A run folder whose run never reached step 1 (killed while loading, say) and that no process
    trains now: nothing in it is worth keeping, so a new run may take its place. `locked`: the
    caller holds the folder's lock (then nobody else trains it)."""
    if not folder.is_run() or folder.complete_checkpoints() or folder.adapter.exists():
        return False
    if not locked and lock_holder(folder.path) is not None:
        return False
    if not folder.database.is_file():
        return True
    try:
        with RunStore(folder.database, readonly=True) as store:
            return store.last_step() == 0 and store.count_samples() == 0
    except StoreError:
        return False  # unreadable: may hold data; never delete it on a guess


def clear_folder(path: Path, keep: tuple[str, ...] = ()) -> None:
    """Delete what a folder holds (but the names in `keep`), not the folder itself."""
    for child in path.iterdir():
        if child.name in keep:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def clear_staging(folder: RunFolder) -> None:
    """Remove what a failed save left half-written; put the previous adapter back if a swap was cut short."""
    shutil.rmtree(folder.checkpoints / ".staging", ignore_errors=True)
    shutil.rmtree(staging_path(folder.adapter), ignore_errors=True)
    old = folder.adapter.with_name(f".{folder.adapter.name}.old")
    if old.is_dir() and not folder.adapter.exists():
        os.replace(old, folder.adapter)


def end_with_failure(folder: RunFolder, store: RunStore | None, record: Any, bus: EventBus, failed: Failed, *,
                     new_run: bool, made_dir: bool, lock: RunLock | None) -> Failed:
    """Clear half-written staging folders (they may be what filled the disk), then record the failure,
    or, for a new run that never reached step 1, remove its folder (`made_dir`: the folder itself,
    else only what is in it) and say so. `record` is the store's listener on `bus`."""
    clear_staging(folder)
    try:
        failed.step = store.last_step() if store is not None else 0
    except StoreError:
        failed.step = 0
    if store is not None and new_run and failed.step == 0 and not folder.complete_checkpoints():
        bus.remove(record)
        store.close()
        if lock is not None:
            lock.release()  # Windows cannot delete a locked file
        if made_dir:
            shutil.rmtree(folder.path, ignore_errors=True)
        else:
            clear_folder(folder.path)
        bus(Log(message=f"nothing was trained, so the run folder {folder.path} was removed"))
        bus(failed)
        return failed
    try:
        bus(failed)
    except Exception as exc:  # noqa: BLE001 - the store could not record the end (the disk is still full?)
        bus.remove(record)
        bus(Log(level="error", message=f"could not record the failure in {folder.database}: {exc}"))
    return failed
