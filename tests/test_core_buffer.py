"""The SQLite buffer: atomic commits, exact bounds, dead letters, recovery from corruption."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from wattkeeper.buffer import Buffer, BufferCorrupt


def lines(start: int, n: int, width: int = 0) -> list[str]:
    pad = "x" * width
    # Fixed width, so that byte bounds translate into exact row counts.
    return [f'm,t=a v={i:06d}.0,p="{pad}" {10**9 + i}' for i in range(start, start + n)]


def test_append_peek_ack_in_order(tmp_path: Path) -> None:
    buf = Buffer(tmp_path / "b.sqlite")
    buf.append(lines(0, 10))
    rows = buf.peek(4)
    assert [r[1] for r in rows] == lines(0, 4)
    buf.ack(rows)
    assert buf.pending == 6
    assert [r[1] for r in buf.peek(100)] == lines(4, 6)
    st = buf.stats()
    assert st.counters["points_written"] == 4 and st.counters["points_taken"] == 10


def test_wal_mode_and_full_sync(tmp_path: Path) -> None:
    buf = Buffer(tmp_path / "b.sqlite")
    db, _ = buf.connection()
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_state_commits_with_points_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    buf = Buffer(path)
    buf.append(lines(0, 3), {"cursor": "2024-01-01T00:00:00Z"})
    buf.close()
    again = Buffer(path)
    assert again.pending == 3
    assert again.get_state("cursor") == "2024-01-01T00:00:00Z"


def test_failed_append_takes_neither_points_nor_state(tmp_path: Path) -> None:
    buf = Buffer(tmp_path / "b.sqlite")
    buf.append(lines(0, 2), {"cursor": 1})

    def bad_lines():  # fails halfway through the insert
        yield "ok 1"
        raise RuntimeError("source blew up")

    with pytest.raises(RuntimeError):
        buf.append(bad_lines(), {"cursor": 99})
    assert buf.pending == 2
    assert buf.get_state("cursor") == 1


def test_bound_by_rows_drops_oldest_and_counts_exactly(tmp_path: Path) -> None:
    dropped_events: list[int] = []
    buf = Buffer(tmp_path / "b.sqlite", max_rows=100, on_drop=dropped_events.append)
    total = 0
    for i in range(0, 1000, 37):
        buf.append(lines(i, 37))
        total += 37
    assert buf.pending == 100
    kept = [r[1] for r in buf.peek(1000)]
    assert kept == lines(total - 100, 100)  # the newest 100, in order
    st = buf.stats()
    assert st.counters["points_dropped"] == total - 100
    assert sum(dropped_events) == total - 100


def test_bound_by_bytes_drops_oldest_and_counts_exactly(tmp_path: Path) -> None:
    one = len(lines(0, 1, width=500)[0].encode())
    buf = Buffer(tmp_path / "b.sqlite", max_rows=10**6, max_bytes=20 * one + 10)
    buf.append(lines(0, 50, width=500))
    assert buf.pending == 20
    assert buf.stats().pending_bytes <= 20 * one + 10
    assert buf.stats().counters["points_dropped"] == 30
    assert buf.peek(1)[0][1] == lines(30, 1, width=500)[0]


def test_dead_letter_moves_exactly_one_row(tmp_path: Path) -> None:
    buf = Buffer(tmp_path / "b.sqlite")
    buf.append(lines(0, 3))
    bad = buf.peek(3)[1]
    buf.dead_letter(bad, 400, "HTTP 400 invalid: field type conflict")
    assert [r[1] for r in buf.peek(10)] == [lines(0, 1)[0], lines(2, 1)[0]]
    st = buf.stats()
    assert st.dead_lettered == 1 and st.counters["points_dead"] == 1
    assert buf.dead_letters()[0][1] == bad[1]


def test_counts_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    buf = Buffer(path, max_rows=5)
    buf.append(lines(0, 8))
    buf.close()
    again = Buffer(path, max_rows=5)
    assert again.pending == 5
    assert again.stats().counters["points_dropped"] == 3
    assert again.stats().pending_bytes == sum(len(x) for x in lines(3, 5))


def test_corrupt_file_is_moved_aside_and_a_fresh_buffer_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "b.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(BufferCorrupt):
        Buffer(path)
    buf = Buffer.open_or_recover(path)
    assert buf.pending == 0
    aside = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")
    assert "is corrupt" in caplog.text and "moved it to" in caplog.text
    buf.append(lines(0, 1))
    assert sqlite3.connect(path).execute("SELECT count(*) FROM points").fetchone()[0] == 1
