"""Alerts to a Slack incoming webhook, rate-limited per kind, never in the way.

Messages are queued and sent from a daemon thread with a short timeout: a slow or
failing webhook can delay nothing but other alerts.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from enum import Enum

import requests

log = logging.getLogger("wattkeeper.alerts")


class Event(Enum):
    """The alert kinds (those of the Octopus monitor seed, plus a few of our own)."""

    SOURCE_FAILING = ("error", "source failing")
    SOURCE_RECOVERED = ("info", "source recovered")
    INFLUX_LOST = ("warning", "InfluxDB lost")
    INFLUX_RESTORED = ("info", "InfluxDB restored")
    BUFFER_FLUSHED = ("info", "buffer flushed")
    AGENT_STARTED = ("info", "agent started")
    AGENT_STOPPED = ("warning", "agent stopped with points buffered")
    POINTS_DROPPED = ("error", "points dropped")
    POINTS_DEAD = ("error", "points rejected by InfluxDB")
    DISK_FULL = ("error", "disk almost full")
    SOURCE_STALE = ("warning", "no new readings")
    SOURCE_FRESH = ("info", "readings again")

    @property
    def severity(self) -> str:
        return self.value[0]

    @property
    def title(self) -> str:
        return self.value[1]


_ICON = {"error": ":red_circle:", "warning": ":warning:", "info": ":large_green_circle:"}


class Alerter:
    def __init__(
        self,
        webhook_url: str | None,
        *,
        agent: str,
        min_interval: float = 3600.0,
        timeout: float = 5.0,
    ) -> None:
        self.url = webhook_url
        self.agent = agent
        self.min_interval = min_interval
        self.timeout = timeout
        self._last: dict[Event, float] = {}
        self._queue: queue.Queue[str | None] = queue.Queue(maxsize=100)
        self.sent = 0
        self.suppressed = 0
        self.failed = 0
        self._thread: threading.Thread | None = None
        if self.url:
            self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
            self._thread.start()

    def alert(self, event: Event, detail: str) -> bool:
        """Queue an alert unless one of this kind went out within ``min_interval``."""
        if not self.url:
            return False
        now = time.monotonic()
        last = self._last.get(event)
        if last is not None and now - last < self.min_interval:
            self.suppressed += 1
            return False
        self._last[event] = now
        text = f"{_ICON[event.severity]} *{self.agent}: {event.title}*\n{detail}"
        try:
            self._queue.put_nowait(text)
        except queue.Full:
            self.suppressed += 1
            return False
        return True

    def _run(self) -> None:
        session = requests.Session()
        while True:
            text = self._queue.get()
            if text is None:
                return
            try:
                resp = session.post(str(self.url), json={"text": text}, timeout=self.timeout)
                if resp.status_code >= 300:
                    self.failed += 1
                    log.warning(
                        "Slack webhook answered HTTP %d; alert not delivered", resp.status_code
                    )
                else:
                    self.sent += 1
            except requests.RequestException as exc:
                self.failed += 1
                log.warning(
                    "Slack webhook unreachable (%s); alert not delivered", type(exc).__name__
                )

    def close(self, wait: float = 2.0) -> None:
        """Give queued alerts a moment to go out (the stop alert, typically)."""
        if self._thread is None:
            return
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            return
        self._thread.join(wait)

    def check(self) -> str:
        """Reach the webhook without posting a message (Slack answers 400 to an empty body)."""
        if not self.url:
            return "not configured"
        resp = requests.post(str(self.url), json={}, timeout=self.timeout)
        if resp.status_code >= 500:
            raise RuntimeError(f"HTTP {resp.status_code}")
        if resp.status_code in (403, 404, 410):
            raise RuntimeError(f"HTTP {resp.status_code}: webhook revoked or wrong URL")
        return f"reachable (HTTP {resp.status_code})"
