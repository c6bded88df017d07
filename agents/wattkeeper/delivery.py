"""Delivery: move points from the buffer to InfluxDB, never losing or blocking on one.

The oldest rows go first, up to ``batch_size`` per request. A 2xx deletes the rows. A
transient failure (no answer, 5xx, 429, 401/403/404 that an operator can fix) keeps them
and backs off. A permanent rejection (400/413/422) is bisected until the offending lines
are isolated; those go to the dead-letter table and everything else flows on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from wattkeeper.backoff import Backoff
from wattkeeper.buffer import Buffer, Row
from wattkeeper.influx import InfluxClient, WriteResult

log = logging.getLogger("wattkeeper.delivery")


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


class Deliverer:
    """Drains the buffer into InfluxDB; runs in its own thread in the agent."""

    def __init__(
        self,
        buffer: Buffer,
        client: InfluxClient,
        *,
        batch_size: int = 5000,
        backoff: Backoff | None = None,
        on_lost: Callable[[str], object] | None = None,
        on_restored: Callable[[int], object] | None = None,
    ) -> None:
        self.buffer = buffer
        self.client = client
        self.batch_size = batch_size
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

    # -- one pass ---------------------------------------------------------------------

    def flush(self, deadline: float | None = None) -> Flush:
        """Deliver until the buffer is empty, a transient failure, the deadline or ``stop``."""
        while True:
            if self._stop.is_set() and deadline is None:
                return Flush.DEADLINE
            if deadline is not None and time.monotonic() >= deadline:
                return Flush.DEADLINE if self.buffer.pending else Flush.EMPTY
            rows = self.buffer.peek(self.batch_size)
            if not rows:
                return Flush.EMPTY
            try:
                self._deliver(rows, deadline)
            except TransientFailure as exc:
                self._mark_failed(exc.result)
                return Flush.FAILED

    def _timeout(self, deadline: float | None) -> float:
        if deadline is None:
            return self.client.timeout
        return max(0.5, min(self.client.timeout, deadline - time.monotonic()))

    def _deliver(self, rows: list[Row], deadline: float | None) -> None:
        result = self.client.write([r.line for r in rows], timeout=self._timeout(deadline))
        if result.ok:
            self.buffer.ack(rows)
            self._mark_ok(len(rows))
            return
        if not result.permanent:
            raise TransientFailure(result)
        if len(rows) == 1:
            row = rows[0]
            log.error(
                "InfluxDB rejected a point permanently (%s); moved it to the dead-letter "
                "table (row %d): %.200s",
                result.describe(),
                row.id,
                row.line,
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
