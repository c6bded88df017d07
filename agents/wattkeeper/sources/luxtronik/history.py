"""Recent readings in the agent's own SQLite file, so CSV reports need no InfluxDB.

One row per poll: the poll time, a reference to the list of columns (which changes only
when the firmware does) and the values as zlib-compressed JSON. A week of 30 s polls of
1800 values stays well under 100 MB this way, where a row per value would not.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from wattkeeper.sources.luxtronik.reader import Value, Values, iter_values

SCHEMA = """
CREATE TABLE IF NOT EXISTS luxtronik_columns (
    id INTEGER PRIMARY KEY,
    names TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS luxtronik_history (
    t_ns INTEGER PRIMARY KEY,
    columns_id INTEGER NOT NULL,
    vals BLOB NOT NULL
);
"""

Column = tuple[str, str]  # (group, name)
NS_PER_DAY = 86_400 * 10**9


@dataclass(frozen=True)
class HistoryRow:
    t_ns: int
    columns_id: int
    values: list[Value | None]


class History:
    """The luxtronik_* tables in a SQLite connection shared with the buffer (and its lock)."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock | None = None) -> None:
        self.db = db
        self.lock = lock or threading.Lock()
        self._column_ids: dict[str, int] = {}
        with self.lock:
            db.executescript(SCHEMA)

    def record(self, t_ns: int, values: Values, keep_days: int) -> int:
        """Store one poll and prune rows older than ``keep_days`` before it; return pruned."""
        pairs = list(iter_values(values))
        key = json.dumps([[g, n] for g, n, _ in pairs], separators=(",", ":"))
        blob = zlib.compress(json.dumps([v for _, _, v in pairs]).encode(), 6)
        with self.lock:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                cid = self._column_ids.get(key)
                if cid is None:
                    db.execute("INSERT OR IGNORE INTO luxtronik_columns(names) VALUES (?)", (key,))
                    cid = int(
                        db.execute(
                            "SELECT id FROM luxtronik_columns WHERE names = ?", (key,)
                        ).fetchone()[0]
                    )
                db.execute(
                    "INSERT OR REPLACE INTO luxtronik_history(t_ns, columns_id, vals) "
                    "VALUES (?, ?, ?)",
                    (t_ns, cid, blob),
                )
                pruned = db.execute(
                    "DELETE FROM luxtronik_history WHERE t_ns < ?", (t_ns - keep_days * NS_PER_DAY,)
                ).rowcount
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._column_ids[key] = cid
        return int(pruned)

    def count(self) -> int:
        with self.lock:
            return int(self.db.execute("SELECT count(*) FROM luxtronik_history").fetchone()[0])

    def columns(self, start_ns: int, end_ns: int) -> dict[int, list[Column]]:
        """The column lists used by rows in (start, end], by id, oldest first."""
        with self.lock:
            rows = self.db.execute(
                "SELECT c.id, c.names FROM luxtronik_columns c WHERE c.id IN ("
                " SELECT DISTINCT columns_id FROM luxtronik_history WHERE t_ns > ? AND t_ns <= ?"
                ") ORDER BY c.id",
                (start_ns, end_ns),
            ).fetchall()
        return {int(cid): [(g, n) for g, n in json.loads(names)] for cid, names in rows}

    def rows(self, start_ns: int, end_ns: int, batch: int = 500) -> Iterator[HistoryRow]:
        """Rows in (start, end], in time order, read in batches (the agent keeps writing)."""
        after = start_ns
        while True:
            with self.lock:
                got = self.db.execute(
                    "SELECT t_ns, columns_id, vals FROM luxtronik_history "
                    "WHERE t_ns > ? AND t_ns <= ? ORDER BY t_ns LIMIT ?",
                    (after, end_ns, batch),
                ).fetchall()
            for t_ns, cid, blob in got:
                yield HistoryRow(int(t_ns), int(cid), json.loads(zlib.decompress(blob)))
            if len(got) < batch:
                return
            after = int(got[-1][0])


def open_history(path: str) -> History:
    """Open the history of a buffer file from another process (the report command)."""
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    db.execute("PRAGMA busy_timeout=30000")
    return History(db)
