"""The run store's format version (run.db), and the migrations that keep old run folders readable.

run.db records its version in SQLite's `PRAGMA user_version` (0: written before versions existed,
read as version 1). When a stored event's field is renamed, or a table changes, STORE_VERSION goes
up by one and a `Migration` is added:

    MIGRATIONS[1] = Migration(events=lambda e: rename_event_field(e, "started", "max_steps", "total_steps"))

`events` turns one stored event (its JSON payload as a dict) of the old version into the new one;
readers apply it as they read, so a folder opened read-only (the Runs page, a reopened run, eval)
reads as current. A writer (a resumed run) upgrades the file in place first, `database` included
(for changes to the tables), so old and new events never mix. A store from a newer GRPO Studio is
refused with a message that says so.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any, Callable

STORE_VERSION = 1


@dataclass
class Migration:
    """From one version to the next: each stored event, and (optionally) the tables."""

    events: Callable[[dict[str, Any]], dict[str, Any]] = lambda payload: payload
    database: Callable[[sqlite3.Connection], None] | None = None


MIGRATIONS: dict[int, Migration] = {}


class StoreVersionError(Exception):
    """A run store this version of GRPO Studio cannot read."""


def rename_event_field(payload: dict[str, Any], kind: str, old: str, new: str) -> dict[str, Any]:
    """
    >>> rename_event_field({"kind": "started", "max_steps": 3}, "started", "max_steps", "total_steps")
    {'kind': 'started', 'total_steps': 3}
    """
    if payload.get("kind") == kind and old in payload:
        payload[new] = payload.pop(old)
    return payload


def stored_version(db: sqlite3.Connection, where: Any = "run.db") -> int:
    """The store's version; raises StoreVersionError for one written by a newer GRPO Studio."""
    version = db.execute("PRAGMA user_version").fetchone()[0] or 1
    if version > STORE_VERSION:
        raise StoreVersionError(f"{where} was written by a newer GRPO Studio (run store version {version}; this "
                                f"version reads up to {STORE_VERSION}): update GRPO Studio to open it")
    return version


def current_payload(payload: dict[str, Any], version: int) -> dict[str, Any]:
    """A stored event of `version` as the current version writes it."""
    while version < STORE_VERSION:
        payload = MIGRATIONS[version].events(payload)
        version += 1
    return payload


def mark_current(db: sqlite3.Connection) -> None:
    """A new store is written in the current format."""
    db.execute(f"PRAGMA user_version = {STORE_VERSION}")


def upgrade_in_place(db: sqlite3.Connection, version: int) -> None:
    """Bring an older store up to date (in one transaction), before anything new is written to it."""
    if version >= STORE_VERSION:
        mark_current(db)
        return
    with db:
        rows = db.execute("SELECT id, payload FROM events").fetchall()
        db.executemany("UPDATE events SET payload = ? WHERE id = ?",
                       [(json.dumps(current_payload(json.loads(p), version)), i) for i, p in rows])
        for v in range(version, STORE_VERSION):
            if MIGRATIONS[v].database is not None:
                MIGRATIONS[v].database(db)
    mark_current(db)
