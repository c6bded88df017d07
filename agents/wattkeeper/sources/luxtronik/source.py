"""The Luxtronik polling source: one connection per poll, three points, local history."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from wattkeeper.alerts import Alerter, Event
from wattkeeper.buffer import Buffer
from wattkeeper.point import FieldValue, Point
from wattkeeper.source import Batch, SourceContext, SourceError
from wattkeeper.sources.luxtronik.config import LuxtronikSection
from wattkeeper.sources.luxtronik.diskguard import DiskGuard
from wattkeeper.sources.luxtronik.history import History
from wattkeeper.sources.luxtronik.reader import GROUPS, Reader, ReadError, Values

MEASUREMENT = "luxtronik"


def refused_hint(port: int) -> str:
    """What to do when the controller refuses the connection (nothing listens)."""
    return (
        f"connection refused: nothing listens on port {port}. Firmware 3.90 and later "
        "switch this interface off by default, also when an older controller is updated: "
        "switch the web interface on in the heat pump's own menu, on its display (since "
        "3.90 it is switched on separately from the web server on port 80; "
        "BenPru/luxtronik#262), then run `wattkeeper check` again. Controllers with "
        "firmware older than V1.73 use port 8888 (luxtronik.port)"
    )


@contextlib.contextmanager
def controller_lock(path: Path, timeout: float) -> Iterator[None]:
    """Hold an exclusive lock while connected, so `wattkeeper check` and the running agent
    never open two connections to a controller that serves only one."""
    fh: IO[bytes] | None = None
    try:
        fh = path.open("ab")  # held for the duration of the block
    except OSError:
        fh = None  # no lock file possible (read-only dir): the agent still works alone
    try:
        if fh is not None:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise SourceError(
                            f"another wattkeeper process holds the controller ({path})"
                        ) from None
                    time.sleep(0.1)
        yield
    finally:
        if fh is not None:
            fh.close()


class LuxtronikSource:
    def __init__(self, ctx: SourceContext) -> None:
        self.cfg: LuxtronikSection = ctx.config.source
        self.log = ctx.log
        self.buffer_path = ctx.config.buffer_path
        self.reader = Reader(self.cfg.host, self.cfg.port, self.cfg.timeout)
        self.where = f"{self.cfg.host}:{self.cfg.port}"
        self.lock_path = self.buffer_path.with_name("luxtronik.lock")
        self._started: float | None = None  # monotonic start of the last poll
        self._closed: float | None = None  # monotonic end of the last connection
        self.rejected_polls = 0
        self._raw_seen: dict[str, int] = {}
        alerts = ctx.config.alerts
        self.alerter = Alerter(
            alerts.slack_webhook_url,
            agent=f"wattkeeper-luxtronik@{ctx.config.agent.host}",
            min_interval=alerts.min_interval,
            timeout=alerts.timeout,
        )
        self.guard = DiskGuard(
            self.buffer_path,
            self.cfg.disk_max_percent,
            self.log,
            on_full=lambda msg: self.alerter.alert(Event.DISK_FULL, msg),
        )
        self.history: History | None = None
        if isinstance(ctx.state, Buffer):
            db, lock = ctx.state.connection()
            self.history = History(db, lock)

    # -- timing ---------------------------------------------------------------------------

    def next_delay(self) -> float:
        now = time.monotonic()
        delay = 0.0
        if self._started is not None:
            delay = self.cfg.interval - (now - self._started)
        return max(delay, self._spacing_left(now), 0.0)

    def _spacing_left(self, now: float) -> float:
        if self._closed is None:
            return 0.0
        return max(0.0, self.cfg.min_spacing - (now - self._closed))

    # -- reading ----------------------------------------------------------------------------

    def _wait_spacing(self) -> None:
        wait = self._spacing_left(time.monotonic())
        if wait:
            time.sleep(wait)

    def _read(self) -> Values:
        with controller_lock(self.lock_path, self.cfg.timeout):
            try:
                return self.reader.read()
            except (ReadError, OSError) as exc:
                if isinstance(exc, TimeoutError):
                    reason = "timed out"
                elif isinstance(exc, ConnectionRefusedError):
                    reason = refused_hint(self.cfg.port)
                else:
                    reason = str(exc)
                raise SourceError(f"Luxtronik controller {self.where}: {reason}") from exc
            finally:
                self._closed = time.monotonic()

    def poll(self) -> Batch:
        self._wait_spacing()
        self._started = time.monotonic()
        t_ns = time.time_ns() // 1_000_000 * 1_000_000  # the poll time: the controller has none
        values = self._read()
        total = sum(len(v) for v in values.values())
        if total < self.cfg.min_values:
            self.rejected_polls += 1
            raise SourceError(
                f"Luxtronik controller {self.where} returned only {total} values "
                f"(luxtronik.min_values = {self.cfg.min_values}); poll rejected "
                f"({self.rejected_polls} rejected so far)"
            )
        points = []
        for group in GROUPS:
            fields: dict[str, FieldValue] = dict(values.get(group, {}))
            if fields:
                points.append(Point(MEASUREMENT, fields, t_ns, {"group": group}))
        self._keep_history(t_ns, values)
        self._log_poll(total)
        when = datetime.fromtimestamp(t_ns / 1e9, UTC).isoformat()
        state = {
            "luxtronik.last_poll": when,
            "luxtronik.values": total,
            "luxtronik.raw_values": len(self.reader.raw_values),
        }
        return Batch(points=points, state=state)

    def _log_poll(self, total: int) -> None:
        """One line per poll (DEBUG); INFO when the values written raw change."""
        raw = self.reader.raw_values
        detail = ""
        if raw:
            codes = ", ".join(f"{name}={code}" for name, code in sorted(raw.items()))
            detail = f"; {len(raw)} written raw, codes python-luxtronik has no name for: {codes}"
        level = logging.INFO if raw != self._raw_seen else logging.DEBUG
        self._raw_seen = dict(raw)
        self.log.log(level, "poll: %d values from %s%s", total, self.where, detail)

    def _keep_history(self, t_ns: int, values: Values) -> None:
        if self.history is None or not self.guard.allows_writing():
            return
        try:
            self.history.record(t_ns, values, self.cfg.history_days)
        except sqlite3.Error as exc:
            # The history is a convenience; the buffer (and InfluxDB) must not suffer for it.
            self.log.error("cannot write the luxtronik history in %s: %s", self.buffer_path, exc)

    def check(self) -> str:
        self._wait_spacing()
        values = self._read()
        counts = ", ".join(f"{len(values[g])} {g}" for g in GROUPS)
        version = values["calculations"].get("ID_WEB_SoftStand", "?")
        return f"Luxtronik controller {self.where}: firmware {version}; {counts}"

    def close(self) -> None:
        self.alerter.close()
