"""The run store: one SQLite database per run folder with every metric, sample and event.

The training worker writes; the GUI and the CLI read, while the run goes on or long after.
WAL mode lets readers in other processes see committed rows without blocking the writer, and
every event is committed on its own, so a crash loses at most the step in flight.

Its format version is SQLite's user_version; older stores are migrated (store_versions.py).

Layout of a run folder (see `RunFolder`):
    config.toml      the run file as trained (paths made absolute, reward file copied beside it)
    rewards.py       the reward functions as trained
    run.db           this store
    checkpoints/     resumable trainer checkpoints (checkpoint-N)
    adapter/         the final LoRA adapter + tokenizer (PEFT format)
"""

from __future__ import annotations

import functools
import json
import math
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from grpo_studio.engine.error_text import first_line
from grpo_studio.engine.events import (
    Checkpoint,
    Failed,
    Finished,
    Metrics,
    Samples,
    Started,
    event_from_dict,
)
from grpo_studio.engine.faults import fault_point
from grpo_studio.engine.store_versions import (
    StoreVersionError,
    current_payload,
    mark_current,
    stored_version,
    upgrade_in_place,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS metrics (
    step INTEGER NOT NULL, name TEXT NOT NULL, value REAL, time REAL NOT NULL,
    PRIMARY KEY (step, name)
);
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    step INTEGER NOT NULL, grp INTEGER NOT NULL,
    prompt TEXT NOT NULL, completion TEXT NOT NULL, answer TEXT,
    rewards TEXT NOT NULL, total REAL, advantage REAL, length INTEGER, truncated INTEGER
);
CREATE INDEX IF NOT EXISTS samples_step ON samples (step, grp);
CREATE INDEX IF NOT EXISTS samples_total ON samples (total);
-- The window's reads of long runs (a run folder opened for writing gets them too): one metric's curve
-- without reading the others, and samples by total reward in exactly the two orders it pages through.
CREATE INDEX IF NOT EXISTS metrics_by_name ON metrics (name, step, value);
CREATE INDEX IF NOT EXISTS samples_by_total ON samples (total, step);
CREATE INDEX IF NOT EXISTS samples_by_total_desc ON samples (total DESC, step);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, kind TEXT NOT NULL, step INTEGER,
    payload TEXT NOT NULL
);
"""


TABLES = ("meta", "metrics", "samples", "events")


class StoreError(Exception):
    """The run store cannot be opened, read or written. One line that names the file, made for people:

        /runs/x/run.db: damaged or not a GRPO Studio run store (database disk image is malformed).
        Checkpoints and the adapter are separate files and not affected; to resume, move run.db
        aside (a new one starts empty)

    Every failure of RunStore (open, read, write) is raised as this type, never as sqlite3's."""

    def __init__(self, path: str | Path, problem: str, todo: str = ""):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}" + (f". {todo}" if todo else ""))


_DAMAGED_TODO = ("Checkpoints and the adapter are separate files and not affected; to resume, move run.db aside "
                 "(a new one starts empty)")
F = TypeVar("F", bound=Callable[..., Any])


def _as_store_error(path: Path, exc: BaseException, writing: bool = False) -> StoreError:
    text = first_line(exc)
    if isinstance(exc, sqlite3.DatabaseError) and any(
            t in text for t in ("malformed", "not a database", "no such table", "no such column", "file is not")):
        return StoreError(path, f"damaged or not a GRPO Studio run store ({text})", _DAMAGED_TODO)
    if isinstance(exc, ValueError):  # a row that does not decode (JSON, or an event this version does not know)
        return StoreError(path, f"a stored record does not decode ({text})", _DAMAGED_TODO)
    return StoreError(path, f"cannot {'write' if writing else 'read'} the run store ({text})")


def _store_errors(method: F) -> F:
    """sqlite3 errors (and undecodable rows) out of a RunStore method come out as one StoreError."""
    writing = method.__name__ in ("record", "set_meta", "truncate_after")

    @functools.wraps(method)
    def wrapper(self: "RunStore", *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.Error, ValueError) as exc:
            raise _as_store_error(self.path, exc, writing) from exc

    return wrapper  # type: ignore[return-value]


@dataclass
class SampleRow:
    id: int
    step: int
    group: int
    prompt: str
    completion: str
    answer: str | None
    rewards: dict[str, float | None]
    total: float | None
    advantage: float | None
    length: int | None
    truncated: bool | None


def _finite_or_none(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


class RunStore:
    """Read and write one run's database. Cheap to open; safe to read from another process.

    Any failure (a damaged, truncated or foreign file, a full disk) raises StoreError, a one-line
    message naming the file. `check=True` also reads every page once (PRAGMA quick_check): a
    resumed run does that before it appends to a store that may have been damaged meanwhile."""

    def __init__(self, path: str | Path, readonly: bool = False, check: bool = False):
        path = Path(path)
        if path.is_dir():
            path = path / "run.db"
        self.path = path
        self.readonly = readonly
        if readonly and not path.exists():
            raise StoreError(path, "no run store here (the run has not started, or run.db was moved)")
        self.db: sqlite3.Connection | None = None
        try:
            self._open(check)
        except (sqlite3.Error, ValueError) as exc:
            self.close()
            raise _as_store_error(path, exc, writing=not readonly) from exc
        except OSError as exc:
            self.close()
            raise StoreError(path, f"cannot open the run store ({exc.strerror or exc})") from exc
        except StoreVersionError:
            self.close()
            raise

    def _open(self, check: bool) -> None:
        path = self.path
        new = False
        if self.readonly:
            self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10, check_same_thread=False)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            new = not path.exists()
            self.db = sqlite3.connect(path, timeout=30, check_same_thread=False)
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        ours = set(TABLES)
        if (self.readonly or tables) and not ours <= tables:
            missing = ", ".join(sorted(ours - tables))
            raise sqlite3.DatabaseError(f"no such table: {missing}")
        if check:
            problems = [r[0] for r in self.db.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise sqlite3.DatabaseError(f"database disk image is malformed: {problems[0]}")
        # Older stores are migrated as they are read; one from a newer GRPO Studio is refused.
        self.version = 0 if new else stored_version(self.db, self.path)
        if not self.readonly:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            self.db.commit()
            if new:
                mark_current(self.db)
            else:
                upgrade_in_place(self.db, self.version)  # before anything is written: never old and new mixed
            self.version = stored_version(self.db)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- writing ------------------------------------------------------------------------
    @_store_errors
    def set_meta(self, **values: Any) -> None:
        with self.db:
            self.db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                [(k, json.dumps(v)) for k, v in values.items()],
            )

    @_store_errors
    def record(self, event: Any) -> None:
        """Store one event (the store is itself an event listener)."""
        with self.db:
            if isinstance(event, Metrics):
                self.db.executemany(
                    "INSERT OR REPLACE INTO metrics (step, name, value, time) VALUES (?, ?, ?, ?)",
                    [(event.step, k, _finite_or_none(v), event.time) for k, v in event.values.items()],
                )
                self._meta_in_tx(last_step=event.step, updated=event.time)
                fault_point("store_write", self.path)  # inside the transaction: a kill here must lose nothing
                return
            if isinstance(event, Samples):
                self.db.executemany(
                    "INSERT INTO samples (step, grp, prompt, completion, answer, rewards, total, advantage, length,"
                    " truncated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            event.step,
                            s.group,
                            s.prompt,
                            s.completion,
                            s.answer,
                            json.dumps({k: _finite_or_none(v) for k, v in s.rewards.items()}),
                            _finite_or_none(s.total),
                            _finite_or_none(s.advantage),
                            s.length,
                            None if s.truncated is None else int(s.truncated),
                        )
                        for s in event.samples
                    ],
                )
                return
            step = getattr(event, "step", None)
            self.db.execute(
                "INSERT INTO events (time, kind, step, payload) VALUES (?, ?, ?, ?)",
                (event.time, event.kind, step, event.model_dump_json()),
            )
            if isinstance(event, Started):
                self._meta_in_tx(status="running", max_steps=event.max_steps, started=event.time,
                                 reward_names=event.reward_names, model=event.model, device=event.device)
            elif isinstance(event, Finished):
                self._meta_in_tx(status="stopped" if event.stopped else "finished", last_step=event.step,
                                 updated=event.time)
            elif isinstance(event, Failed):  # an abort the user asked for is a stop, not a failure
                self._meta_in_tx(status="stopped" if event.interrupted else "failed", failure=event.reason,
                                 updated=event.time)
            elif isinstance(event, Checkpoint):
                self._meta_in_tx(last_checkpoint=event.path, last_checkpoint_step=event.step)

    def _meta_in_tx(self, **values: Any) -> None:
        self.db.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            [(k, json.dumps(v)) for k, v in values.items()],
        )

    @_store_errors
    def truncate_after(self, step: int) -> None:
        """Forget what was logged after `step`: a resumed run replays those steps from a checkpoint."""
        with self.db:
            self.db.execute("DELETE FROM metrics WHERE step > ?", (step,))
            self.db.execute("DELETE FROM samples WHERE step > ?", (step,))
            self.db.execute("DELETE FROM events WHERE step > ? AND kind IN ('checkpoint', 'alarm')", (step,))
            self._meta_in_tx(last_step=step)

    # ---- reading ------------------------------------------------------------------------
    @_store_errors
    def meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM meta")}

    @_store_errors
    def metric_names(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT name FROM metrics ORDER BY name")]

    @_store_errors
    def metrics(self, names: Iterable[str] | None = None, after_step: int = -1) -> dict[str, tuple[list, list]]:
        """{name: (steps, values)} in step order; None values (non-finite) come back as NaN."""
        sql = "SELECT name, step, value FROM metrics WHERE step > ?"
        args: list[Any] = [after_step]
        if names is not None:
            names = list(names)
            sql += f" AND name IN ({','.join('?' * len(names))})"
            args += names
        out: dict[str, tuple[list, list]] = {}
        for name, step, value in self.db.execute(sql + " ORDER BY name, step", args):
            steps, values = out.setdefault(name, ([], []))
            steps.append(step)
            values.append(float("nan") if value is None else value)
        return out

    @_store_errors
    def last_step(self) -> int:
        row = self.db.execute("SELECT MAX(step) FROM metrics").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    @_store_errors
    def sample_steps(self) -> list[int]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT step FROM samples ORDER BY step")]

    @_store_errors
    def count_samples(self, **filters: Any) -> int:
        where, args = self._sample_filter(**filters)
        return self.db.execute(f"SELECT COUNT(*) FROM samples {where}", args).fetchone()[0]

    @_store_errors
    def samples(self, *, limit: int = 200, offset: int = 0, order: str = "step", **filters: Any) -> list[SampleRow]:
        """Samples matching the filters, a page at a time (never the whole run in memory)."""
        where, args = self._sample_filter(**filters)
        order_sql = {
            "step": "step, grp, id",
            "-step": "step DESC, grp, id",
            "total": "total, step, id",
            "-total": "total DESC, step, id",
        }[order]
        # The page's ids first, then its rows: sorting and skipping carry a few numbers per sample, not
        # its texts (a page deep into a sorted or filtered run took 0.5 s instead of 0.1 s).
        rows = self.db.execute(
            "SELECT id, step, grp, prompt, completion, answer, rewards, total, advantage, length, truncated "
            f"FROM (SELECT id AS page_id FROM samples {where} ORDER BY {order_sql} LIMIT ? OFFSET ?) "
            f"JOIN samples ON id = page_id ORDER BY {order_sql}",
            [*args, limit, offset],
        )
        return [
            SampleRow(
                id=r[0], step=r[1], group=r[2], prompt=r[3], completion=r[4], answer=r[5],
                rewards=json.loads(r[6]), total=r[7], advantage=r[8], length=r[9],
                truncated=None if r[10] is None else bool(r[10]),
            )
            for r in rows
        ]

    @staticmethod
    def _sample_filter(
        step_min: int | None = None,
        step_max: int | None = None,
        total_min: float | None = None,
        total_max: float | None = None,
        text: str | None = None,
        step: int | None = None,
        group: int | None = None,
    ) -> tuple[str, list[Any]]:
        clauses, args = [], []
        for sql, value in (
            ("step >= ?", step_min), ("step <= ?", step_max), ("total >= ?", total_min),
            ("total <= ?", total_max), ("step = ?", step), ("grp = ?", group),
        ):
            if value is not None:
                clauses.append(sql)
                args.append(value)
        if text:
            clauses.append("(prompt LIKE ? ESCAPE '\\' OR completion LIKE ? ESCAPE '\\' OR answer LIKE ? ESCAPE '\\')")
            pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            args += [pattern] * 3
        return ("WHERE " + " AND ".join(clauses)) if clauses else "", args

    @_store_errors
    def events(self, kinds: Iterable[str] | None = None) -> list[Any]:
        sql, args = "SELECT payload FROM events", []
        if kinds is not None:
            kinds = list(kinds)
            sql += f" WHERE kind IN ({','.join('?' * len(kinds))})"
            args = kinds
        return [event_from_dict(current_payload(json.loads(r[0]), self.version))
                for r in self.db.execute(sql + " ORDER BY id", args)]


class RunFolder:
    """Names of the things inside one run folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __fspath__(self) -> str:
        return str(self.path)

    config = property(lambda self: self.path / "config.toml")
    rewards = property(lambda self: self.path / "rewards.py")
    database = property(lambda self: self.path / "run.db")
    checkpoints = property(lambda self: self.path / "checkpoints")
    adapter = property(lambda self: self.path / "adapter")
    stop_request = property(lambda self: self.path / "STOP")
    log_file = property(lambda self: self.path / "train.log")

    def is_run(self) -> bool:
        return self.config.is_file()

    def complete_checkpoints(self) -> list[tuple[int, Path]]:
        """Checkpoints the trainer finished writing (trainer_state.json is written last), oldest first."""
        found = []
        if self.checkpoints.is_dir():
            for d in self.checkpoints.iterdir():
                if d.name.startswith("checkpoint-") and (d / "trainer_state.json").is_file():
                    try:
                        found.append((int(d.name.split("-", 1)[1]), d))
                    except ValueError:
                        continue
        return sorted(found)

    def newest_checkpoint(self) -> tuple[int, Path] | None:
        found = self.complete_checkpoints()
        return found[-1] if found else None

    def request_stop(self) -> None:
        """Ask a running worker to finish its step, save a checkpoint and exit."""
        self.stop_request.write_text(f"{time.time()}\n")
