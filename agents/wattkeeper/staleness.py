"""How old the newest reading is, for every source; an alert when readings stop coming.

A frozen Octopus Home Mini is the model (BottlecapDave/HomeAssistant-OctopusEnergy#1733;
its users asked for a warning after 30 minutes, PR #1849): the API answers every poll, but
nothing new arrives, so no poll fails and no other alert fires. ``stale_seconds`` in
``wattkeeper_agent`` is the age of the newest reading the source produced (or, before the
first one, of the agent's start); the newest reading's time is kept in the buffer's state
with the readings, so a restart does not forget it.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from wattkeeper.alerts import Alerter, Event
from wattkeeper.source import Batch

log = logging.getLogger("wattkeeper.agent")

# Buffer state: the Unix time the newest reading reaches.
NEWEST_KEY = "agent.newest_reading"


def _since(ts: float) -> str:
    """HH:MM UTC, with the date when it is not from the last hours."""
    t = datetime.fromtimestamp(ts, UTC)
    return t.strftime("%H:%M UTC" if time.time() - ts < 12 * 3600 else "%Y-%m-%d %H:%M UTC")


def newest_in(batch: Batch) -> float | None:
    """The time the newest reading of a batch reaches (see ``Batch.newest``)."""
    at = max((p.time_ns for p in batch.points), default=None)
    newest = None if at is None else at / 1e9
    if batch.newest is not None:
        newest = batch.newest if newest is None else max(newest, batch.newest)
    return newest


class Staleness:
    """The newest reading's time, its age, and the stale / fresh-again alerts."""

    def __init__(
        self, stored: object, stale_after: float | None, subject: str, alerter: Alerter
    ) -> None:
        self.newest = float(stored) if isinstance(stored, int | float) else None
        self.stale_after = stale_after or None  # 0: never alert
        self.subject = subject
        self.alerter = alerter
        self.started = time.time()
        self.since: float | None = None  # the newest reading's time, while stale

    def note(self, batch: Batch) -> float | None:
        """The newest time once this batch is committed; stored with it if it moved on."""
        at = newest_in(batch)
        if at is None or (self.newest is not None and at <= self.newest):
            return self.newest
        batch.state[NEWEST_KEY] = at
        return at

    def committed(self, newest: float | None) -> None:
        self.newest = newest

    def seconds(self) -> float:
        """Seconds since the newest reading (since the start while there was none)."""
        return max(0.0, time.time() - (self.newest if self.newest is not None else self.started))

    def check(self) -> None:
        """Alert once when the newest reading gets older than stale_after, once more when
        readings come again."""
        if not self.stale_after:
            return
        stale = self.seconds() >= self.stale_after
        if stale and self.since is None:
            self.since = self.newest if self.newest is not None else self.started
            since = _since(self.since)
            log.warning("no readings from %s since %s (stale_after %gs)", self.subject, since,
                        self.stale_after)  # fmt: skip
            self.alerter.alert(
                Event.SOURCE_STALE,
                f"No readings from {self.subject} since {since}, although polling works.",
            )
        elif not stale and self.since is not None:
            since, newest = _since(self.since), _since(self.newest or time.time())
            log.info("readings from %s again: the newest is from %s (none since %s before)",
                     self.subject, newest, since)  # fmt: skip
            self.alerter.alert(
                Event.SOURCE_FRESH,
                f"Readings from {self.subject} again: the newest is from {newest}; "
                f"none had come in since {since}.",
            )
            self.since = None

    def status(self) -> str:
        """A piece of systemd's STATUS= line while stale, else nothing."""
        if self.since is None:
            return ""
        return f"; no readings from {self.subject} since {_since(self.since)}"
