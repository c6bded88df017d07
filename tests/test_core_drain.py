"""The drain's fast path against a real InfluxDB: byte-capped batches, one request at a
time in order, the ack overlapped with the next request, exact buffer bookkeeping."""

from __future__ import annotations

import gzip
import threading
from pathlib import Path
from typing import Any

from conftest import Target

from wattkeeper.buffer import Buffer
from wattkeeper.delivery import Deliverer, Flush
from wattkeeper.influx import InfluxClient, WriteResult

BASE_NS = 1_700_000_000 * 10**9


def _lines(n: int, start: int = 0) -> list[str]:
    # Non-ASCII tag values: the byte cap must count bytes, not characters.
    return [
        f'drain,site=Jyväskylä_ÄÖ seq={float(i)},pad="{"é" * 40}" {BASE_NS + i * 10**9}'
        for i in range(start, start + n)
    ]


def _recount(buf: Buffer) -> tuple[int, int]:
    db, lock = buf.connection()
    with lock:
        n, nbytes = db.execute(
            "SELECT count(*), coalesce(sum(length(CAST(line AS BLOB))), 0) FROM points"
        ).fetchone()
    return int(n), int(nbytes)


class Recorder:
    """Wraps the real post: records each body and fails if two requests ever overlap."""

    def __init__(self, client: InfluxClient) -> None:
        self._post = client.post
        self.bodies: list[bytes] = []
        self.overlaps = 0
        self._inflight = 0
        self._lock = threading.Lock()
        client.post = self.post  # type: ignore[method-assign]

    def post(self, body: bytes, timeout: float | None = None) -> WriteResult:
        with self._lock:
            self._inflight += 1
            self.overlaps += self._inflight > 1
            self.bodies.append(gzip.decompress(body))
        try:
            return self._post(body, timeout)
        finally:
            with self._lock:
                self._inflight -= 1


def _count(target: Target) -> int:
    return target.count("drain", "seq")


def test_batches_are_cut_by_bytes_sent_in_order_one_at_a_time(
    target: Target, tmp_path: Path
) -> None:
    buf = Buffer(tmp_path / "b.sqlite")
    lines = _lines(600)
    buf.append(lines)
    client = InfluxClient(
        target.server.url, target.server.org, target.bucket, target.token_file.read_text().strip()
    )
    rec = Recorder(client)
    cap = 20_000  # bytes of line protocol per request
    assert Deliverer(buf, client, batch_size=500, batch_bytes=cap).flush() is Flush.EMPTY
    assert rec.overlaps == 0
    sent = [body.decode().splitlines() for body in rec.bodies]
    assert [line for body in sent for line in body] == lines  # oldest first, each once
    for body in sent:
        assert sum(len(line.encode()) for line in body) <= cap or len(body) == 1
    assert len(sent) > 600 * len(lines[0].encode()) // cap  # really cut by bytes, not rows
    assert buf.pending == 0 and buf.stats().pending_bytes == 0 == _recount(buf)[1]
    assert buf.stats().counters["points_written"] == 600
    assert _count(target) == 600


def test_bookkeeping_stays_exact_when_the_bound_drops_rows_in_flight(
    target: Target, tmp_path: Path
) -> None:
    """Rows dropped by the buffer's bound between a peek and its ack: the ack deletes
    fewer rows than it was given and must not count the dropped ones twice."""
    buf = Buffer(tmp_path / "b.sqlite", max_rows=300)
    buf.append(_lines(300))
    client = InfluxClient(
        target.server.url, target.server.org, target.bucket, target.token_file.read_text().strip()
    )
    real_post = client.post

    def post_then_overflow(body: bytes, timeout: float | None = None) -> WriteResult:
        result = real_post(body, timeout)
        if buf.stats().counters["points_taken"] < 400:
            buf.append(_lines(100, start=300))  # drops the 100 oldest, some in this batch
        return result

    client.post = post_then_overflow  # type: ignore[method-assign]
    assert Deliverer(buf, client, batch_size=150).flush() is Flush.EMPTY
    stats = buf.stats()
    assert (stats.pending, stats.pending_bytes) == _recount(buf) == (0, 0)
    c = stats.counters
    assert c["points_taken"] == 400
    assert c["points_written"] + c["points_dropped"] == 400 and c["points_dropped"] == 100


def test_an_ack_that_cannot_be_written_keeps_the_rows(target: Target, tmp_path: Path) -> None:
    """A 2xx whose DELETE fails (a full disk): the rows stay and go out again later; the
    request started meanwhile is waited for, so two passes never overlap."""
    buf = Buffer(tmp_path / "b.sqlite")
    buf.append(_lines(40))
    client = InfluxClient(
        target.server.url, target.server.org, target.bucket, target.token_file.read_text().strip()
    )
    rec = Recorder(client)
    deliverer = Deliverer(buf, client, batch_size=10)
    real_ack = buf.ack
    calls = 0

    def failing_ack(
        rows: list[tuple[int, str]], nbytes: int | None = None, late: Any = None
    ) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            import sqlite3

            raise sqlite3.OperationalError("database or disk is full")
        real_ack(rows, nbytes, late)

    buf.ack = failing_ack  # type: ignore[method-assign]
    assert deliverer.flush() is Flush.FAILED
    assert buf.pending == 30  # the first batch left; the second stayed
    assert deliverer.flush() is Flush.EMPTY
    assert rec.overlaps == 0
    assert buf.pending == 0 and _recount(buf) == (0, 0)
    assert _count(target) == 40  # the re-sent batch overwrote itself
