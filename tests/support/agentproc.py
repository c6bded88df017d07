"""Helpers for tests that run the agent as a real process and look at its buffer."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path


def buffer_state(path: Path, key: str, default: object = None) -> object:
    """Read a source cursor straight from the buffer file (as a crash would leave it)."""
    if not path.exists():
        return default
    db = sqlite3.connect(path, timeout=30)
    try:
        row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
    except sqlite3.OperationalError:
        return default
    finally:
        db.close()
    return default if row is None else json.loads(row[0])


def buffer_rows(path: Path, like: str = "%") -> int:
    db = sqlite3.connect(path, timeout=30)
    try:
        return int(
            db.execute("SELECT count(*) FROM points WHERE line LIKE ?", (like,)).fetchone()[0]
        )
    finally:
        db.close()


def wait_for(cond: Callable[[], bool], timeout: float, what: str, step: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
