"""Folders written so that a failure leaves the old state or nothing, and a full disk said plainly.

A checkpoint, the final adapter and an export are written into a staging folder beside their
destination (`.NAME.partial`, same filesystem), flushed to disk, and renamed into place in one
step. A crash, a `kill -9` or a full disk while writing leaves the destination as it was (or
absent), plus a hidden staging folder that the next attempt clears; it never leaves a half-written
folder under the real name, so a retry works.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Iterator

from grpo_studio.engine.faults import fault_point

_DISK_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_DISK_FULL_TEXTS = ("no space left on device", "os error 28", "database or disk is full", "disk quota exceeded")
# Writers that lose the errno on the way: PyTorch's zip writer ("[enforce fail at inline_container.cc...]
# unexpected pos") and SQLite's I/O errors. They mean a full disk only when the disk is (nearly) full.
_AMBIGUOUS_TEXTS = ("inline_container.cc", "file write failed", "disk i/o error")
_NEARLY_FULL_BYTES = 64 * 2**20


def staging_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.partial")


def process_staging_path(dest: Path, pid: int) -> Path:
    """The staging folder of an export written by process `pid` (the GGUF export: one per process, so
    a cancelled one's leftovers are told apart from a new one's)."""
    return dest.with_name(f".{dest.name}.partial-{pid}")


def free_bytes(path: str | Path) -> int | None:
    """Bytes a normal user may still write on the filesystem of `path` (or of its nearest existing parent)."""
    p = Path(path)
    for candidate in (p, *p.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]


def disk_full_message(exc: BaseException, where: str | Path) -> str | None:
    """`disk full at PATH (N MB free)` when `exc` means the disk is full, else None.

    PATH is the file the OS named, else `where` (the folder being written)."""
    path: str | Path = where
    full = False
    for e in _chain(exc):
        text = str(e).lower()
        if isinstance(e, OSError) and e.errno in _DISK_FULL_ERRNOS:
            full, path = True, e.filename or where
            break
        if isinstance(e, sqlite3.Error) and getattr(e, "sqlite_errorname", "") == "SQLITE_FULL":
            full = True
            break
        if any(t in text for t in _DISK_FULL_TEXTS):
            full = True
            break
        if any(t in text for t in _AMBIGUOUS_TEXTS):
            free = free_bytes(where)
            full = free is not None and free < _NEARLY_FULL_BYTES
            break
    if not full:
        return None
    free = free_bytes(path)
    left = f"{free / 2**20:.0f} MB free" if free is not None else "free space unknown"
    return f"disk full at {path} ({left})"


def fsync_tree(folder: Path) -> None:
    """Flush every file of a folder (and the folder) to disk, so a rename publishes complete files."""
    for root, _dirs, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(root))


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return  # Windows cannot open a directory for fsync; NTFS journals the rename itself
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories
    finally:
        os.close(fd)


def prepare_staging(dest: Path, staging: Path | None = None) -> Path:
    """An empty staging folder beside `dest` (what a crashed earlier attempt left there is cleared):
    `staging`, or by default staging_path(dest)."""
    staging = staging or staging_path(dest)
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def publish(staging: Path, dest: Path, *, replace: bool, point: str = "") -> None:
    """Move a complete staging folder to `dest` in one rename.

    replace=False: `dest` must be absent or an empty folder. replace=True: an existing `dest` is
    moved aside first and deleted after; a crash in between leaves no `dest`, never a mixed one."""
    fsync_tree(staging)
    if point:
        fault_point(point, dest)
    old = dest.with_name(f".{dest.name}.old")
    if dest.exists():
        if not replace:
            dest.rmdir()  # empty (checked by the caller); fails loudly otherwise
        else:
            if old.exists():
                shutil.rmtree(old)
            os.replace(dest, old)
            fault_point(point.replace("_written", "_swapped") if point else "swapped", dest)
    os.replace(staging, dest)
    _fsync_dir(dest.parent)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_folder(dest: str | Path, *, replace: bool = False, point: str = "",
                  staging: Path | None = None) -> Iterator[Path]:
    """Write a folder in a staging place and rename it to `dest` once the block succeeds.

        with staged_folder(out) as tmp:
            model.save_pretrained(tmp)

    On any failure the staging folder is removed and `dest` is untouched; the error propagates.
    `staging`: where to stage instead of staging_path(dest) (process_staging_path for the GGUF export)."""
    dest = Path(dest)
    if not replace and dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(errno.EEXIST, "already exists and is not empty", str(dest))
    staging = prepare_staging(dest, staging)
    try:
        yield staging
        publish(staging, dest, replace=replace, point=point)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


class SpaceReserve:
    """A small file a run keeps beside its store and deletes when the disk fills up, so that the
    failure can still be recorded (SQLite needs a few pages free to say "failed")."""

    SIZE = 1 << 20

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / ".space-reserve"
        self.created = False

    def create(self) -> None:
        self.created = True
        try:
            with open(self.path, "wb") as f:
                if hasattr(os, "posix_fallocate"):
                    os.posix_fallocate(f.fileno(), 0, self.SIZE)  # real blocks, not a sparse hole
                else:
                    f.write(b"\0" * self.SIZE)
        except OSError:
            self.release()  # no room even for this: the run will say so soon enough

    def release(self) -> None:
        """Delete the reserve (a no-op unless this object made it: other processes leave it alone)."""
        if not self.created:
            return
        self.created = False
        try:
            self.path.unlink()
        except OSError:
            pass
