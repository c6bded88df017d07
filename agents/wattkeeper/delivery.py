"""Delivery: move points from the buffer to InfluxDB, never losing or blocking on one.

The oldest rows go first, up to ``batch_size`` per request. A 2xx deletes the rows. A
transient failure (no answer, 5xx, 429, 401/403/404 that an operator can fix) keeps them
and backs off. A permanent rejection (400/413/422) is bisected until the offending lines
are isolated; those go to the dead-letter table and everything else flows on.

Points that reach InfluxDB later than ``late_after`` after their reading time (a backlog
after an outage, a backfill, a portal's day-old readings) may land in windows the
downsampling tasks have already aggregated. Their reading-time range is committed with
their ack, and a small ``wattkeeper_late`` marker point carrying it follows them into
the bucket, so that the next run of every tier re-aggregates those windows.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import operator
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from wattkeeper.backoff import Backoff
from wattkeeper.buffer import Buffer, LateRange, Row
from wattkeeper.influx import InfluxClient, WriteResult
from wattkeeper.point import _escape_key

log = logging.getLogger("wattkeeper.delivery")

# The timestamp of a line: its last 19 characters, for every nanosecond time between
# 2001 and 2286, where compared as text they order like numbers. (A line without a
# timestamp is stamped on arrival and is never late; nor is a reading from before 2001.)
_TAIL = operator.itemgetter(slice(-19, None))
_LINE = operator.itemgetter(1)  # of a buffer row (id, line)
LATE_MEASUREMENT = "wattkeeper_late"
MARKER_GAP = 10.0  # seconds between two markers of a running agent


class Flush(Enum):
    EMPTY = "empty"  # everything delivered
    FAILED = "failed"  # a transient failure; rows kept
    DEADLINE = "deadline"  # time ran out with rows left


class TransientFailure(Exception):
    def __init__(self, result: WriteResult) -> None:
        super().__init__(result.describe())
        self.result = result


@dataclass
class DeliveryStatus:
    """What the runner reports (STATUS=, metrics, alerts) about delivery."""

    connected: bool = True
    last_success: float | None = None
    last_error: str = ""


class _Request:
    """One write in flight on a daemon thread.

    Not a ThreadPoolExecutor: its workers are joined at interpreter exit, so a request
    hanging on an unresponsive InfluxDB would hold a stopping agent past flush_timeout.
    """

    def __init__(self, post: Callable[[bytes, float], WriteResult], body: bytes, timeout: float):
        self._result: WriteResult | None = None
        self._done = threading.Event()
        threading.Thread(target=self._run, args=(post, body, timeout), daemon=True).start()

    def _run(
        self, post: Callable[[bytes, float], WriteResult], body: bytes, timeout: float
    ) -> None:
        try:
            self._result = post(body, timeout)
        except Exception as exc:  # post never raises for network trouble; be safe anyway
            self._result = WriteResult(0, type(exc).__name__, str(exc))
        self._done.set()

    def wait(self, timeout: float | None) -> WriteResult | None:
        if timeout is not None and timeout <= 0 and not self._done.is_set():
            return None
        return self._result if self._done.wait(timeout) else None


@dataclass(slots=True)
class _Batch:
    """Rows on their way out: their gzip'd body, the bytes their lines hold, and the
    tail (timestamp text) of their oldest line."""

    rows: list[Row]
    body: bytes
    nbytes: int
    oldest: str = ""


def late_range(lines: list[str], cutoff_ns: int) -> LateRange | None:
    """Reading-time range [start, stop) and count of the lines stamped before
    ``cutoff_ns`` (lines without a timestamp are stamped on arrival: never late).

    A backlog after an outage is late from end to end: then this is two C-level passes
    over the lines' tails, not a Python loop per line.
    """
    cut = str(cutoff_ns).zfill(19)
    tails = list(map(_TAIL, lines))
    late = tails if max(tails, default=cut) < cut else [t for t in tails if t < cut]
    if not late:
        return None
    if all(map(str.isdigit, late)):
        return (int(min(late)), int(max(late)) + 1, len(late))
    times = []  # some timestamp shorter than 19 digits: read each line's own
    for line in lines:
        tail = line[line.rfind(" ") + 1 :]
        if tail.isdigit() and int(tail) < cutoff_ns:
            times.append(int(tail))
    return (min(times), max(times) + 1, len(times)) if times else None


class Deliverer:
    """Drains the buffer into InfluxDB; runs in its own thread in the agent."""

    def __init__(
        self,
        buffer: Buffer,
        client: InfluxClient,
        *,
        batch_size: int = 5000,
        batch_bytes: int = 8_000_000,
        backoff: Backoff | None = None,
        on_lost: Callable[[str], object] | None = None,
        on_restored: Callable[[int], object] | None = None,
        late_after: float = 0.0,
        marker_tags: dict[str, str] | None = None,
        marker_every: float = 30.0,
    ) -> None:
        self.buffer = buffer
        self.client = client
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes
        self.backoff = backoff or Backoff()
        self.status = DeliveryStatus()
        self._on_lost = on_lost
        self._on_restored = on_restored
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._delivered_since_lost = 0
        self._retry_after: float | None = None
        self._lost_since = 0.0
        self._last_warned = 0.0
        self._line_bytes = 0.0  # mean size of the lines last sent, to size the next read
        # Late markers (the agent's config turns them on); tags tell agents sharing a
        # bucket apart.
        self.late_after = late_after
        self._marker_head = LATE_MEASUREMENT + "".join(
            f",{_escape_key(k)}={_escape_key(v)}"
            for k, v in sorted((marker_tags or {}).items())
            if v
        )
        self.marker_every = marker_every
        self._marker_sent_at = -1e9  # monotonic
        self._late_since: float | None = (
            time.monotonic() if late_after > 0 and buffer.pending_late() else None
        )

    # -- one pass ---------------------------------------------------------------------

    def flush(self, deadline: float | None = None) -> Flush:
        """Deliver until the buffer is empty, a transient failure, the deadline or ``stop``.

        Pipelined: while InfluxDB works on batch N+1, batch N is acknowledged in SQLite and
        batch N+2 is read and compressed, so InfluxDB never waits on the buffer. One
        request is in flight at a time, oldest first; batch N+1 goes out only after batch
        N's 2xx, and a batch leaves the buffer only after its own 2xx.
        """
        try:
            self._send_marker(deadline)  # one left by the last pass (or a crash)
        except TransientFailure as exc:
            self._mark_failed(exc.result)
            return Flush.FAILED
        except sqlite3.Error as exc:  # sent, but a full disk refuses to forget it: again later
            log.error("cannot update the buffer %s: %s", self.buffer.path, exc)
            self._retry_after = None
            return Flush.FAILED
        batch = self._prepare(self.buffer.peek(self._peek_limit()))
        if not batch.rows:
            return Flush.EMPTY
        if self._out_of_time(deadline):
            return Flush.DEADLINE
        inflight = self._send(batch, deadline)
        while True:
            nxt = self._prepare(self.buffer.peek_after(batch.rows[-1][0], self._peek_limit()))
            result = inflight.wait(None if deadline is None else deadline - time.monotonic())
            if result is None:  # the deadline passed with the request unanswered: rows stay
                return Flush.DEADLINE
            following: _Request | None = None
            try:
                if result.ok:
                    marker_due = self._marker_due()
                    if nxt.rows and not marker_due and not self._out_of_time(deadline):
                        following = self._send(nxt, deadline)
                    self.buffer.ack(batch.rows, batch.nbytes, self._late(batch, result))
                    self._mark_ok(len(batch.rows))
                    if following is None and (marker_due or not nxt.rows):
                        self._send_marker(deadline)  # between requests, never beside one
                else:
                    # Anything but a 2xx leaves the fast path: retry or bisect this batch.
                    self._handle_refusal(batch.rows, result, deadline)
                    nxt = self._prepare(self.buffer.peek(self._peek_limit()))
                    if not nxt.rows:
                        self._send_marker(deadline)
            except TransientFailure as exc:
                self._mark_failed(exc.result)
                return Flush.FAILED
            except sqlite3.Error as exc:
                # Delivered but not yet deleted (a full disk refuses even a DELETE in WAL
                # mode): the rows stay and go out again later, overwriting the same points.
                log.error("cannot update the buffer %s: %s", self.buffer.path, exc)
                self._retry_after = None
                if following is not None:  # never two requests at once, even across passes
                    following.wait(None if deadline is None else deadline - time.monotonic())
                return Flush.FAILED
            if not nxt.rows:
                return Flush.EMPTY
            if following is None:
                if self._out_of_time(deadline):
                    return Flush.DEADLINE
                following = self._send(nxt, deadline)
            batch, inflight = nxt, following

    def _out_of_time(self, deadline: float | None) -> bool:
        """``stop`` ends an open-ended pass; a pass with a deadline runs to its deadline."""
        if deadline is None:
            return self._stop.is_set()
        return time.monotonic() >= deadline

    def _send(self, batch: _Batch, deadline: float | None) -> _Request:
        return _Request(self.client.post, batch.body, self._timeout(deadline))

    def _peek_limit(self) -> int:
        """Rows to read for the next batch: ``batch_size``, or fewer when the rows are so
        wide that ``batch_bytes`` cuts first (reading 5000 Luxtronik points of 20 kB each
        to send 400 was most of the agent's CPU in the wide drain benchmark)."""
        if self._line_bytes <= 0:
            return self.batch_size
        return max(1, min(self.batch_size, int(self.batch_bytes / self._line_bytes * 1.25) + 1))

    def _prepare(self, rows: list[Row]) -> _Batch:
        """Rows cut at ``batch_bytes`` (InfluxDB refuses bodies over 25 MB by default), and
        their request body. Sizes are summed in C (``map(len)``); only a batch that must
        be cut is measured line by line (a Python loop over 5000 lines per batch was a
        tenth of the narrow drain's CPU, and joining 5000 wide lines to send 400 most of
        the wide one's)."""
        lines = [line for _, line in rows]
        if len(lines) > 1 and sum(map(len, lines)) > self.batch_bytes:
            rows, lines = self._fit(rows, lines)
        raw = ("\n".join(lines) + "\n").encode() if lines else b""
        if len(raw) - len(lines) > self.batch_bytes and len(lines) > 1:
            rows, lines = self._fit(rows, lines)  # multi-byte characters pushed it over
            raw = ("\n".join(lines) + "\n").encode()
        body = self.client.compress(raw) if lines else b""
        nbytes = len(raw) - len(lines)  # the lines' own bytes, as the buffer counts them
        if lines:
            self._line_bytes = nbytes / len(lines)
        # Computed while the previous batch is in flight, so the check for late points
        # costs the normal path one C-level pass over the lines.
        oldest = min(map(_TAIL, lines)) if lines and self.late_after > 0 else ""
        return _Batch(rows, body, nbytes, oldest)

    def _fit(self, rows: list[Row], lines: list[str]) -> tuple[list[Row], list[str]]:
        """The longest prefix within ``batch_bytes`` (at least one line)."""
        # len() is the byte count of an ASCII str, which str.isascii() tells at once.
        ends = itertools.accumulate(
            len(line) if line.isascii() else len(line.encode()) for line in lines
        )
        keep = max(1, bisect.bisect_right(list(ends), self.batch_bytes))
        return rows[:keep], lines[:keep]

    def _timeout(self, deadline: float | None) -> float:
        if deadline is None:
            return self.client.timeout
        return max(0.5, min(self.client.timeout, deadline - time.monotonic()))

    def _deliver(self, rows: list[Row], deadline: float | None) -> None:
        lines = [line for _, line in rows]
        result = self.client.write(lines, timeout=self._timeout(deadline))
        if result.ok:
            oldest = min(map(_TAIL, lines)) if self.late_after > 0 else ""
            self.buffer.ack(rows, late=self._late(_Batch(rows, b"", 0, oldest), result))
            self._mark_ok(len(rows))
            return
        self._handle_refusal(rows, result, deadline)

    def _handle_refusal(self, rows: list[Row], result: WriteResult, deadline: float | None) -> None:
        if not result.permanent:
            raise TransientFailure(result)
        if len(rows) == 1:
            row = rows[0]
            log.error(
                "InfluxDB rejected a point permanently (%s); moved it to the dead-letter "
                "table (row %d): %.200s",
                result.describe(),
                row[0],
                row[1],
            )
            self.buffer.dead_letter(row, result.status, result.describe())
            self._mark_ok(0)
            return
        # Bisect: deliver the halves separately, so that only the offending lines stay.
        mid = len(rows) // 2
        log.info(
            "InfluxDB rejected a batch of %d points (%s); splitting it to find the bad lines",
            len(rows),
            result.describe(),
        )
        self._deliver(rows[:mid], deadline)
        self._deliver(rows[mid:], deadline)

    # -- late markers ---------------------------------------------------------------

    def _cutoff_ns(self, result: WriteResult) -> int:
        """Points stamped before this arrived late: ``late_after`` before the answer, on
        the server's clock (the tasks' clock; the agent's may be off) when it tells."""
        if result.server_time is None:
            return int((time.time() - self.late_after) * 1e9)
        # The Date header is truncated to the second: err towards a marker too many.
        return int((result.server_time + 1 - self.late_after) * 1e9)

    def _late(self, batch: _Batch, result: WriteResult) -> LateRange | None:
        """The late points of a delivered batch, if any. On time: one comparison of two
        strings. A backlog late from end to end: one more C-level pass (its newest)."""
        if self.late_after <= 0 or not batch.oldest:
            return None
        cutoff = self._cutoff_ns(result)
        cut = str(cutoff).zfill(19)
        if batch.oldest >= cut:
            return None
        if self._late_since is None:
            self._late_since = time.monotonic()
        newest = max(map(_TAIL, map(_LINE, batch.rows)))
        if newest < cut and batch.oldest.isdigit() and newest.isdigit():
            return (int(batch.oldest), int(newest) + 1, len(batch.rows))
        return late_range([line for _, line in batch.rows], cutoff)

    def _marker_due(self) -> bool:
        """A long drain sends its marker every ``marker_every`` s, not only at its end."""
        return (
            self._late_since is not None
            and time.monotonic() - self._late_since >= self.marker_every
        )

    def _send_marker(self, deadline: float | None) -> None:
        """Write the pending marker (after the points it describes, which are acked);
        kept in the buffer until InfluxDB has it. No timestamp: the server stamps it on
        arrival, which is what the tasks look for since their last run.

        At most one every ``MARKER_GAP`` s while the agent runs (an agent whose clock is
        off marks every pass), and always in a last pass (``--once``, stopping)."""
        if self._late_since is None:
            return
        if deadline is None and time.monotonic() - self._marker_sent_at < MARKER_GAP:
            return
        late = self.buffer.pending_late()
        if late is None:
            self._late_since = None
            return
        start, stop, n = late
        line = f"{self._marker_head} start={start}i,stop={stop}i,points={n}i"
        result = self.client.write([line], timeout=self._timeout(deadline))
        if result.ok or result.permanent:
            self._marker_sent_at = time.monotonic()
            if not result.ok:
                log.error("InfluxDB refused the late marker (%s): %s", result.describe(), line)
            self.buffer.clear_late(late)
            self._late_since = None if self.buffer.pending_late() is None else time.monotonic()
            log.debug("late marker sent: %d points from %d to %d", n, start, stop)
            return
        raise TransientFailure(result)

    def _mark_ok(self, n: int) -> None:
        self.backoff.reset()
        self.status.last_success = time.time()
        self._delivered_since_lost += n
        if not self.status.connected:
            self.status.connected = True
            self.status.last_error = ""
            log.info("InfluxDB is reachable again")
            if self._on_restored is not None:
                self._on_restored(self._delivered_since_lost)

    def _mark_failed(self, result: WriteResult) -> None:
        self._retry_after = result.retry_after
        reason = result.describe()
        if result.status in (429, 503) and result.retry_after is not None:
            reason += f" (server asks to retry after {result.retry_after:.0f}s)"
        elif result.status in (401, 403):
            reason += " (check the token file and that the token may write this bucket)"
        elif result.status == 404:
            reason += " (check influxdb.org and influxdb.bucket)"
        if self.status.connected:
            self.status.connected = False
            self._delivered_since_lost = 0
            log.warning(
                "cannot deliver to InfluxDB %s: %s; keeping %d points in the buffer",
                self.client.url,
                reason,
                self.buffer.pending,
            )
            if self._on_lost is not None:
                self._on_lost(reason)
            self._lost_since = time.monotonic()
            self._last_warned = self._lost_since
        elif reason != self.status.last_error or time.monotonic() - self._last_warned > 300:
            # Changed reasons at once, the same one as a reminder every 5 minutes.
            self._last_warned = time.monotonic()
            log.warning(
                "InfluxDB still unavailable after %.0fs: %s; %d points in the buffer",
                self._last_warned - self._lost_since,
                reason,
                self.buffer.pending,
            )
        else:
            log.debug("InfluxDB still unavailable: %s", reason)
        self.status.last_error = reason

    # -- background loop ----------------------------------------------------------------

    def notify(self) -> None:
        """New rows are in the buffer: deliver soon."""
        self._wake.set()

    def run(self, idle: float = 5.0) -> None:
        """Deliver until ``stop``; back off after failures, sleep when empty."""
        while not self._stop.is_set():
            outcome = self.flush()
            if outcome is Flush.FAILED:
                delay = self.backoff.next_delay(self._retry_after)
                self._stop.wait(delay)
            else:
                self._wake.wait(idle)
                self._wake.clear()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
