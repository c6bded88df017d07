"""The durable buffer: every reading lives in SQLite until InfluxDB has answered 2xx.

One file per agent, WAL mode. Points are stored as encoded line protocol, in insertion
order. A poll's points and its source cursor go in one transaction, so a crash leaves
either both or neither. Rows leave only by ``ack`` (after a 2xx), by ``dead_letter``
(after InfluxDB rejected exactly that line) or by ``_enforce_bounds`` (buffer full: the
oldest go first and are counted).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("wattkeeper.buffer")

SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    line TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letter (
    id INTEGER PRIMARY KEY,
    line TEXT NOT NULL,
    status INTEGER NOT NULL,
    error TEXT NOT NULL,
    created REAL NOT NULL,
    rejected REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

COUNTERS = ("points_written", "points_dropped", "points_dead", "points_taken")
# State key of the late-delivery marker not yet sent: [start_ns, stop_ns, points].
LATE_KEY = "delivery.late"
LateRange = tuple[int, int, int]


def _rollback(db: sqlite3.Connection) -> None:
    """Roll back if a transaction is open: on SQLITE_FULL SQLite has already done so, and
    a second ROLLBACK would raise and hide the real error."""
    if db.in_transaction:
        db.execute("ROLLBACK")


class BufferCorrupt(Exception):
    """The buffer file is not a usable SQLite database."""


@dataclass(frozen=True)
class BufferStats:
    pending: int
    pending_bytes: int
    dead_lettered: int
    oldest_created: float | None
    counters: dict[str, int]

    def oldest_age(self, now: float | None = None) -> float | None:
        if self.oldest_created is None:
            return None
        return max(0.0, (now or time.time()) - self.oldest_created)


# (id, line): plain tuples straight from sqlite3, because building 5000 objects per batch
# was a fifth of the delivery time in the drain benchmark.
Row = tuple[int, str]


class Buffer:
    """Thread-safe SQLite queue of line-protocol points, bounded by rows and bytes."""

    def __init__(
        self,
        path: Path,
        *,
        max_rows: int = 2_000_000,
        max_bytes: int = 512 * 1000**2,
        synchronous: str = "full",
        on_drop: Any = None,
    ) -> None:
        self.path = path
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self._on_drop = on_drop
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._open(path, synchronous)
        self._rows, self._bytes = self._db.execute(
            "SELECT count(*), coalesce(sum(length(CAST(line AS BLOB))), 0) FROM points"
        ).fetchone()

    @staticmethod
    def _open(path: Path, synchronous: str) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
            ok = db.execute("PRAGMA quick_check").fetchone()[0]
            if ok != "ok":
                db.close()
                raise BufferCorrupt(f"integrity check failed: {ok}")
            db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise BufferCorrupt(str(exc)) from exc
        return db

    @classmethod
    def open_or_recover(cls, path: Path, **kwargs: Any) -> Buffer:
        """Open the buffer; a corrupt file is moved aside (kept for forensics), not fatal."""
        try:
            return cls(path, **kwargs)
        except BufferCorrupt as exc:
            aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
            for suffix in ("", "-wal", "-shm"):
                p = Path(str(path) + suffix)
                if p.exists():
                    p.rename(Path(str(aside) + suffix))
            log.error(
                "buffer %s is corrupt (%s); moved it to %s and started a fresh buffer",
                path,
                exc,
                aside,
            )
            return cls(path, **kwargs)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writing ------------------------------------------------------------------------

    def append(self, lines: Iterable[str], state: dict[str, Any] | None = None) -> int:
        """Commit lines (and source state) in one transaction; return how many were dropped."""
        now = time.time()
        rows = [(line, now) for line in lines]
        added = sum(len(line.encode()) for line, _ in rows)
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT INTO points(line, created) VALUES (?, ?)", rows)
                if state:
                    db.executemany(
                        "INSERT INTO state(key, value) VALUES (?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        [(k, json.dumps(v)) for k, v in state.items()],
                    )
                self._bump("points_taken", len(rows))
                self._rows += len(rows)
                self._bytes += added
                dropped = self._enforce_bounds()
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)
                self._rows, self._bytes = db.execute(
                    "SELECT count(*), coalesce(sum(length(CAST(line AS BLOB))), 0) FROM points"
                ).fetchone()
                raise
        if dropped and self._on_drop is not None:
            self._on_drop(dropped)
        return dropped

    def _enforce_bounds(self) -> int:
        """Delete the oldest rows until both bounds hold (inside the caller's transaction)."""
        if self._rows <= self.max_rows and self._bytes <= self.max_bytes:
            return 0
        excess_rows = max(0, self._rows - self.max_rows)
        excess_bytes = max(0, self._bytes - self.max_bytes)
        drop_n = 0
        drop_bytes = 0
        last_id = None
        cur = self._db.execute("SELECT id, length(CAST(line AS BLOB)) FROM points ORDER BY id")
        for row_id, nbytes in cur:
            if drop_n >= excess_rows and drop_bytes >= excess_bytes:
                break
            drop_n += 1
            drop_bytes += nbytes
            last_id = row_id
        cur.close()
        if last_id is None:
            return 0
        self._db.execute("DELETE FROM points WHERE id <= ?", (last_id,))
        self._rows -= drop_n
        self._bytes -= drop_bytes
        self._bump("points_dropped", drop_n)
        return drop_n

    def _bump(self, name: str, n: int) -> None:
        if n:
            self._db.execute(
                "INSERT INTO counters(name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (name, n),
            )

    # -- delivering -----------------------------------------------------------------------

    def peek(self, limit: int) -> list[Row]:
        """The oldest ``limit`` rows, in order."""
        with self._lock:
            rows: list[Row] = self._db.execute(
                "SELECT id, line FROM points ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return rows

    def peek_after(self, after_id: int, limit: int) -> list[Row]:
        """The ``limit`` rows following ``after_id`` (the next batch, while one is in flight)."""
        with self._lock:
            rows: list[Row] = self._db.execute(
                "SELECT id, line FROM points WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
            ).fetchall()
        return rows

    def ack(
        self, rows: list[Row], nbytes: int | None = None, late: LateRange | None = None
    ) -> None:
        """InfluxDB answered 2xx for these rows: delete them.

        ``rows`` is a contiguous slice of a ``peek`` result; ids only grow, so the id range
        holds exactly these rows (or fewer, if some were dropped meanwhile). ``nbytes``, the
        bytes of their lines if the caller knows it, spares reading every line again.
        ``late``, the reading-time range of those of them that arrived late, is added to
        the pending late marker in the same transaction: a crash cannot separate the two.
        """
        if not rows:
            return
        lo, hi = rows[0][0], rows[-1][0]
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if nbytes is None:
                    n, nbytes = db.execute(
                        "SELECT count(*), coalesce(sum(length(CAST(line AS BLOB))), 0) "
                        "FROM points WHERE id BETWEEN ? AND ?",
                        (lo, hi),
                    ).fetchone()
                n = db.execute("DELETE FROM points WHERE id BETWEEN ? AND ?", (lo, hi)).rowcount
                self._bump("points_written", n)
                if late is not None:
                    self._merge_late(late)
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)
                raise
            if n == len(rows):
                self._rows -= n
                self._bytes -= nbytes
            else:  # the bounds dropped some of them meanwhile (and counted their bytes)
                self._rows, self._bytes = db.execute(
                    "SELECT count(*), coalesce(sum(length(CAST(line AS BLOB))), 0) FROM points"
                ).fetchone()

    def _merge_late(self, late: LateRange) -> None:
        """Widen the pending late marker by ``late`` (inside the caller's transaction)."""
        row = self._db.execute("SELECT value FROM state WHERE key = ?", (LATE_KEY,)).fetchone()
        if row is not None:
            start, stop, n = json.loads(row[0])
            late = (min(start, late[0]), max(stop, late[1]), n + late[2])
        self._db.execute(
            "INSERT INTO state(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (LATE_KEY, json.dumps(list(late))),
        )

    def pending_late(self) -> LateRange | None:
        """The late marker to send: reading-time range and count of late points acked."""
        value = self.get_state(LATE_KEY)
        return None if value is None else (int(value[0]), int(value[1]), int(value[2]))

    def clear_late(self, sent: LateRange) -> None:
        """The marker ``sent`` was delivered: forget it, unless it grew meanwhile."""
        with self._lock:
            self._db.execute(
                "DELETE FROM state WHERE key = ? AND value = ?", (LATE_KEY, json.dumps(list(sent)))
            )

    def dead_letter(self, row: Row, status: int, error: str) -> None:
        """InfluxDB permanently rejected exactly this line: keep it aside, out of the queue."""
        now = time.time()
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                got = db.execute(
                    "DELETE FROM points WHERE id = ? RETURNING created, length(CAST(line AS BLOB))",
                    (row[0],),
                ).fetchone()
                if got is not None:
                    db.execute(
                        "INSERT OR REPLACE INTO dead_letter(id, line, status, error, created, "
                        "rejected) VALUES (?, ?, ?, ?, ?, ?)",
                        (row[0], row[1], status, error[:2000], got[0], now),
                    )
                    self._bump("points_dead", 1)
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)
                raise
            if got is not None:
                self._rows -= 1
                self._bytes -= got[1]

    # -- state and inspection ----------------------------------------------------------

    def get_state(self, key: str, default: Any = None) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_state(self, state: dict[str, Any]) -> None:
        self.append([], state)

    @property
    def pending(self) -> int:
        return int(self._rows)

    def stats(self) -> BufferStats:
        with self._lock:
            oldest = self._db.execute("SELECT min(created) FROM points").fetchone()[0]
            dead = self._db.execute("SELECT count(*) FROM dead_letter").fetchone()[0]
            counters = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
        return BufferStats(
            pending=int(self._rows),
            pending_bytes=int(self._bytes),
            dead_lettered=dead,
            oldest_created=oldest,
            counters={name: int(counters.get(name, 0)) for name in COUNTERS},
        )

    def dead_letters(self, limit: int = 20) -> list[tuple[int, str, int, str]]:
        with self._lock:
            return list(
                self._db.execute(
                    "SELECT id, line, status, error FROM dead_letter ORDER BY id LIMIT ?",
                    (limit,),
                )
            )

    def connection(self) -> tuple[sqlite3.Connection, threading.Lock]:
        """The raw connection and its lock, for sources that keep local history here."""
        return self._db, self._lock
