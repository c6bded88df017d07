"""The agent runtime: poll the source, commit to the buffer, deliver, report.

Threads: the main thread polls (or, for a streaming source, commits what the source
pushed) and talks to systemd; a delivery thread drains the buffer to InfluxDB; alerts
go out from their own thread. SIGTERM stops polling, gives delivery ``flush_timeout``
seconds, and exits 0: whatever is left stays safe in the buffer.
"""

from __future__ import annotations

import logging
import queue
import signal
import sqlite3
import threading
import time
from datetime import UTC, datetime
from types import FrameType
from typing import Any, cast

from wattkeeper.alerts import Alerter, Event
from wattkeeper.backoff import Backoff
from wattkeeper.buffer import Buffer
from wattkeeper.config import EX_CONFIG, EX_TEMPFAIL, AgentConfig
from wattkeeper.delivery import Deliverer, Flush
from wattkeeper.influx import InfluxClient
from wattkeeper.journal import SECRETS
from wattkeeper.mqtt.live import STATE_KEY, LiveView
from wattkeeper.point import Point
from wattkeeper.sdnotify import Notifier
from wattkeeper.source import (
    Batch,
    Source,
    SourceContext,
    SourceError,
    SourceFatal,
    SourcePlugin,
    StreamingSource,
)
from wattkeeper.staleness import NEWEST_KEY, Staleness

log = logging.getLogger("wattkeeper.agent")

# At most this much line protocol is held in memory while the buffer cannot be written.
HELD_BYTES = 32 * 1000**2
# A oneshot agent polls once per run: its failed runs in a row are kept here, so that
# failure_threshold and the recovery alert mean for a timer what they mean for a daemon.
FAILURES_KEY = "agent.consecutive_failures"
# Seconds a oneshot run waits, at its end, for the live view (MQTT) to publish its values.
LIVE_VIEW_LAST_WORD = 5.0


class QueueSink:
    """Bounded in-memory queue between a streaming source's threads and the buffer.

    ``put`` never blocks: an edge callback must not wait on disk. Overflow is counted.
    """

    def __init__(self, maxsize: int = 100_000) -> None:
        self._q: queue.SimpleQueue[Point] = queue.SimpleQueue()
        self.maxsize = maxsize
        self.overflow = 0
        self._size = 0
        self._lock = threading.Lock()

    def put(self, point: Point) -> bool:
        with self._lock:
            if self._size >= self.maxsize:
                self.overflow += 1
                return False
            self._size += 1
        self._q.put(point)
        return True

    def drain(self, limit: int = 50_000) -> list[Point]:
        out: list[Point] = []
        try:
            while len(out) < limit:
                out.append(self._q.get_nowait())
        except queue.Empty:
            pass
        with self._lock:
            self._size -= len(out)
        return out


def _fmt_time(ts: float | None) -> str:
    if ts is None:
        return "never"
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%SZ")


class Agent:
    """One source, one buffer, one InfluxDB bucket."""

    def __init__(self, cfg: AgentConfig, plugin: SourcePlugin, *, once: bool = False) -> None:
        self.cfg = cfg
        self.plugin = plugin
        self.once = once
        self.name = plugin.name
        SECRETS.add(cfg.influxdb.token)
        SECRETS.add(cfg.alerts.slack_webhook_url)
        SECRETS.add(cfg.mqtt.password)
        self.alerter = Alerter(
            cfg.alerts.slack_webhook_url,
            agent=f"wattkeeper-{self.name}@{cfg.agent.host}",
            min_interval=cfg.alerts.min_interval,
            timeout=cfg.alerts.timeout,
        )
        self.buffer = Buffer.open_or_recover(
            cfg.buffer_path,
            max_rows=cfg.buffer.max_rows,
            max_bytes=cfg.buffer.max_bytes,
            synchronous=cfg.buffer.synchronous,
            on_drop=self._on_drop,
        )
        self.influx = InfluxClient.from_section(cfg.influxdb)
        self.deliverer = Deliverer(
            self.buffer,
            self.influx,
            batch_size=cfg.influxdb.batch_size,
            batch_bytes=cfg.influxdb.batch_bytes,
            backoff=Backoff(cfg.influxdb.retry_initial, cfg.influxdb.retry_max),
            on_lost=lambda why: self.alerter.alert(
                Event.INFLUX_LOST,
                f"Cannot write to {cfg.influxdb.url}: {why}. Points are kept in the buffer.",
            ),
            on_restored=self._on_restored,
            late_after=cfg.influxdb.late_after,
            marker_tags={"host": cfg.agent.host},
        )
        self.notifier = Notifier()
        self._stop = threading.Event()
        self.poll_errors = 0
        self.consecutive_failures = 0
        self.last_poll_ok: float | None = None
        self.sink = QueueSink()
        # Readings taken while the buffer could not be written (a full disk): held in
        # memory, in order and without repeats, and committed by the next commit that
        # works together with the newest source state, so a cursor never passes them.
        self._held: dict[str, None] = {}
        self._held_bytes = 0
        self._held_state: dict[str, Any] = {}
        self.held_dropped = 0
        self._write_failing_since: float | None = None
        self._write_warned = 0.0
        self._sink_lost_reported = 0
        self._source_lost_reported = 0
        self.source: Source | None = None
        stale_after = cfg.agent.stale_after
        self.staleness = Staleness(
            self.buffer.get_state(NEWEST_KEY),
            plugin.stale_after if stale_after is None else stale_after,
            plugin.stale_subject,
            self.alerter,
        )
        # The optional live view in Home Assistant ([mqtt]); see wattkeeper.mqtt.
        self.live: LiveView | None = None
        self.publisher: Any = None

    # -- event hooks ------------------------------------------------------------------

    def _on_drop(self, n: int) -> None:
        log.error(
            "buffer full (%d rows / %d bytes max): dropped the %d oldest points",
            self.cfg.buffer.max_rows,
            self.cfg.buffer.max_bytes,
            n,
        )
        self.alerter.alert(
            Event.POINTS_DROPPED,
            f"The buffer {self.cfg.buffer_path} is full; the {n} oldest points were dropped. "
            "InfluxDB has been unreachable for long, or the buffer bounds are too small.",
        )

    def _on_restored(self, delivered: int) -> None:
        self.alerter.alert(Event.INFLUX_RESTORED, f"Writing to {self.cfg.influxdb.url} again.")
        if self.buffer.pending == 0:
            self.alerter.alert(
                Event.BUFFER_FLUSHED, f"{delivered} buffered points delivered; buffer empty."
            )

    def request_stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        if signum is not None and not self._stop.is_set():
            log.info("received %s, stopping", signal.Signals(signum).name)
        self._stop.set()

    # -- lifecycle ----------------------------------------------------------------------

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        try:
            ctx = SourceContext(
                config=self.cfg,
                state=self.buffer,
                log=logging.getLogger(f"wattkeeper.{self.name}"),
                influx=self.influx,
                once=self.once,
            )
            self.source = self.plugin.factory(ctx)
            self._open_live_view()
        except SourceFatal as exc:
            try:
                return self._fatal(exc)
            finally:
                self._close()
        log.info(
            "started: %s -> %s bucket %s; %d points waiting in %s",
            self.name,
            self.cfg.influxdb.url,
            self.cfg.influxdb.bucket,
            self.buffer.pending,
            self.cfg.buffer_path,
        )
        try:
            if self.once:
                return self._run_once()
            return self._run_forever()
        except SourceFatal as exc:
            return self._fatal(exc)
        finally:
            self._close()

    def _fatal(self, exc: SourceFatal) -> int:
        where = f"{exc.key} in {self.cfg.file}: " if exc.key else ""
        log.error("cannot run the %s source: %s%s", self.name, where, exc)
        # Also when it happens after days of running (an API key revoked): systemd will not
        # restart the agent (exit 78), so this alert is how the user learns of it.
        self.alerter.alert(
            Event.SOURCE_FAILING,
            f"Stopped: {where}{exc}. It stays stopped until the configuration is fixed "
            f"and the agent restarted.",
        )
        self.notifier.send("STATUS=configuration error: " + str(exc)[:200], "ERRNO=78")
        return EX_CONFIG

    def _open_live_view(self) -> None:
        """Start publishing to MQTT if [mqtt] is set; paho is imported only then."""
        if not self.cfg.mqtt.url:
            return
        try:
            from wattkeeper.mqtt.publisher import open_live_view
        except ImportError as exc:
            raise SourceFatal(
                f"[mqtt] needs paho-mqtt ({exc}): pip install 'wattkeeper[mqtt]'", key="mqtt.url"
            ) from None
        try:
            self.live, self.publisher = open_live_view(
                self.cfg, self.plugin, self.buffer.get_state(STATE_KEY), lambda: self.buffer.pending
            )
        except ValueError as exc:
            raise SourceFatal(str(exc), key="mqtt.sensors") from None
        self.publisher.start()

    def _stop_live_view(self, timeout: float) -> None:
        if self.publisher is not None:
            self.publisher.stop(timeout)
            self.publisher = None

    def _close(self) -> None:
        self._stop_live_view(2.0)
        if self.source is not None:
            try:
                self.source.close()
            except Exception:  # pragma: no cover - best effort on the way out
                log.debug("source close failed", exc_info=True)
        self.alerter.close()
        self.influx.close()
        self.buffer.close()

    def _run_once(self) -> int:
        assert self.source is not None
        try:
            self.consecutive_failures = int(self.buffer.get_state(FAILURES_KEY, 0) or 0)
        except (sqlite3.Error, TypeError, ValueError):
            self.consecutive_failures = 0
        ok = self._poll_once()
        try:
            self.buffer.set_state({FAILURES_KEY: self.consecutive_failures})
        except sqlite3.Error as exc:  # a full disk: the count restarts, nothing else is lost
            log.warning("cannot store the failure count in the buffer: %s", exc)
        self._write_metrics()
        deadline = time.monotonic() + self.cfg.agent.flush_timeout
        outcome = self.deliverer.flush(deadline)
        pending = self.buffer.pending
        # The live view's last word (a oneshot's newest values): a bounded wait of its own,
        # not what the flush left over (a slow flush must not silence Home Assistant).
        self._stop_live_view(LIVE_VIEW_LAST_WORD)
        self._report_unstored()
        if outcome is Flush.EMPTY and pending == 0 and not self._held:
            log.info("delivered everything; buffer empty")
            return 0 if ok else EX_TEMPFAIL
        log.warning("%d points kept in the buffer for a later run", pending)
        return EX_TEMPFAIL

    def _run_forever(self) -> int:
        assert self.source is not None
        delivery = threading.Thread(target=self.deliverer.run, name="delivery", daemon=True)
        delivery.start()
        streaming = self.plugin.streaming
        if streaming:
            cast(StreamingSource, self.source).start(self.sink)
        self.alerter.alert(
            Event.AGENT_STARTED,
            f"{self.buffer.pending} points waiting in the buffer.",
        )
        self.notifier.ready(self._status_line())
        next_poll = time.monotonic()
        next_metrics = time.monotonic() + self.cfg.agent.metrics_interval
        next_commit = time.monotonic() + self.cfg.buffer.commit_interval
        backoff = Backoff(5.0, 600.0)
        tick = 1.0
        if self.notifier.watchdog_interval:
            tick = min(tick, self.notifier.watchdog_interval)
        while not self._stop.is_set():
            now = time.monotonic()
            if streaming:
                if now >= next_commit:
                    self._commit_stream()
                    next_commit = now + self.cfg.buffer.commit_interval
            elif now >= next_poll:
                if self._poll_once():
                    backoff.reset()
                    delay = self.source.next_delay()
                else:
                    delay = max(self.source.next_delay(), backoff.next_delay(self._retry_after))
                next_poll = time.monotonic() + delay
            if now >= next_metrics:
                self._write_metrics()
                next_metrics = now + self.cfg.agent.metrics_interval
            if (streaming or self.last_poll_ok is not None) and not getattr(
                self.source, "behind", False
            ):
                # Judged once a poll worked (a failing source has its own alert), and not
                # while a source with a cursor is still catching up.
                self.staleness.check()
            if delivery.is_alive():
                self.notifier.watchdog()
            self.notifier.status(self._status_line())
            wake = min(next_commit if streaming else next_poll, next_metrics)
            self._stop.wait(max(0.0, min(tick, wake - time.monotonic())))
        return self._shutdown(delivery)

    def _shutdown(self, delivery: threading.Thread) -> int:
        self.notifier.stopping()
        if self.plugin.streaming and self.source is not None:
            cast(StreamingSource, self.source).stop()
            self._commit_stream()
        elif self._held:
            self._commit(Batch())  # a last try for readings held while the disk was full
        # The whole shutdown is bounded by flush_timeout, even if the delivery thread is
        # stuck in a request to an InfluxDB that does not answer: its rows are not acked,
        # so they stay in the buffer for the next start.
        deadline = time.monotonic() + self.cfg.agent.flush_timeout
        self.deliverer.stop()
        delivery.join(max(0.0, deadline - time.monotonic()))
        if not delivery.is_alive():
            self.deliverer.flush(deadline)
        self._stop_live_view(min(2.0, max(0.1, deadline - time.monotonic())))
        self._report_unstored()
        pending = self.buffer.pending
        if pending:
            log.warning(
                "stopped with %d points safe in the buffer %s", pending, self.cfg.buffer_path
            )
            self.alerter.alert(
                Event.AGENT_STOPPED,
                f"Stopped with {pending} points in the buffer; they go out at the next start.",
            )
        else:
            log.info("stopped; buffer empty")
        return 0

    # -- polling ------------------------------------------------------------------------

    _retry_after: float | None = None

    def _poll_once(self) -> bool:
        """One poll, committed; returns False if it failed (counted, alerted)."""
        assert self.source is not None
        self._retry_after = None
        try:
            batch = self.source.poll()
        except SourceError as exc:
            self._retry_after = exc.retry_after
            self._poll_failed(str(exc))
            return False
        except SourceFatal:
            raise
        except Exception as exc:  # a bug in a source must not kill the agent
            log.exception("poll failed unexpectedly")
            self._poll_failed(f"{type(exc).__name__}: {exc}")
            return False
        newest = self.staleness.note(batch)
        if not self._commit(batch):
            self._poll_failed("the buffer cannot be written and no more readings can be held")
            return False
        self.staleness.committed(newest)
        if batch.rejected:
            self.poll_errors += batch.rejected
        if self.consecutive_failures >= self.cfg.agent.failure_threshold:
            self.alerter.alert(
                Event.SOURCE_RECOVERED,
                f"Polling works again after {self.consecutive_failures} failures.",
            )
        self.consecutive_failures = 0
        self.last_poll_ok = time.time()
        log.debug("poll: %d points committed", len(batch.points))
        return True

    def _encode(self, points: list[Point]) -> list[str]:
        """Line protocol for each point; a point InfluxDB could not store (NaN, infinity,
        no fields) is refused here, counted and logged, and the others go on."""
        lines = []
        for p in points:
            try:
                lines.append(p.to_line())
            except (ValueError, TypeError) as exc:
                self.poll_errors += 1
                log.warning("refused a %s reading: %s", p.measurement, exc)
        return lines

    def _commit(self, batch: Batch) -> bool:
        """Store a poll's readings with its state. On a buffer that cannot be written (a
        full disk), hold them in memory instead; False only if they had to be dropped."""
        lines = self._encode(batch.points)
        live = self.live.prepare([*batch.points, *batch.live]) if self.live else None
        if live is not None:
            batch.state = {**batch.state, **live.state}
        every, state = lines, batch.state
        if self._held:
            every = list({**self._held, **dict.fromkeys(lines)})
            state = {**self._held_state, **batch.state}
        try:
            self.buffer.append(every, state)
        except sqlite3.Error as exc:
            # Nothing of this poll is in the buffer, nor its cursor: hold it, say so.
            kept = self._hold(lines, batch.state)
            self._cannot_write(exc)
            if kept and live is not None and self.live is not None:
                self.live.accept(live)  # held with its state: committed with the next commit
            return kept
        if self._write_failing_since is not None:
            log.warning(
                "the buffer %s takes writes again: %d held readings stored",
                self.cfg.buffer_path,
                len(self._held),
            )
            self._write_failing_since = None
        self._held, self._held_bytes, self._held_state = {}, 0, {}
        if live is not None and self.live is not None:
            self.live.accept(live)
        if every:
            self.deliverer.notify()
        return True

    def _cannot_write(self, exc: sqlite3.Error) -> None:
        """One error when the buffer stops taking writes, then a reminder a minute."""
        now = time.monotonic()
        if self._write_failing_since is None:
            self._write_failing_since = self._write_warned = now
        elif now - self._write_warned < 60:
            return
        self._write_warned = now
        log.error(
            "cannot write to the buffer %s: %s; polling goes on, %d readings held in memory%s",
            self.cfg.buffer_path,
            exc,
            len(self._held),
            f", {self.held_dropped} dropped (memory limit)" if self.held_dropped else "",
        )
        self.alerter.alert(Event.DISK_FULL, f"Cannot write the buffer: {exc}")

    def _hold(self, lines: list[str], state: dict[str, Any]) -> bool:
        """Keep a poll that could not be committed, unless memory is full: then the newest
        readings go (counted as dropped) and their source state with them, so a source
        with a cursor asks for them again."""
        new = [line for line in lines if line not in self._held]
        nbytes = sum(len(line) for line in new)
        if len(self._held) + len(new) > self.sink.maxsize or self._held_bytes + nbytes > HELD_BYTES:
            if not self.held_dropped:
                log.error(
                    "the readings held while the buffer cannot be written reached the "
                    "limit (%d readings, %d MB): new readings are dropped and counted",
                    self.sink.maxsize,
                    HELD_BYTES // 1000**2,
                )
            self.held_dropped += len(new)
            return not new
        self._held.update(dict.fromkeys(new))
        self._held_bytes += nbytes
        self._held_state.update(state)
        return True

    def _report_unstored(self) -> None:
        if self._held:
            log.error(
                "exiting with %d readings that could not be written to the buffer %s: lost",
                len(self._held),
                self.cfg.buffer_path,
            )

    def _commit_stream(self) -> None:
        points = self.sink.drain()
        if points or self._held:
            batch = Batch(points=points)
            newest = self.staleness.note(batch)
            if self._commit(batch):
                self.staleness.committed(newest)
        lost = self.sink.overflow + self.held_dropped
        if lost > self._sink_lost_reported:
            log.error(
                "in-memory queue overflowed: %d readings lost so far",
                lost,
            )
            self._sink_lost_reported = lost
        source_lost = self._source_lost()
        if source_lost > self._source_lost_reported:
            log.error("the source reports %d readings missed so far", source_lost)
            self._source_lost_reported = source_lost

    def _source_lost(self) -> int:
        if self.plugin.streaming and self.source is not None:
            return cast(StreamingSource, self.source).lost()
        return 0

    def _poll_failed(self, reason: str) -> None:
        self.poll_errors += 1
        self.consecutive_failures += 1
        log.warning("poll failed (%d in a row): %s", self.consecutive_failures, reason)
        if self.consecutive_failures == self.cfg.agent.failure_threshold:
            self.alerter.alert(
                Event.SOURCE_FAILING,
                f"{self.consecutive_failures} polls in a row failed; last error: {reason}",
            )

    # -- reporting ----------------------------------------------------------------------

    def _status_line(self) -> str:
        st = self.deliverer.status
        return (
            f"buffer {self.buffer.pending} points; "
            f"last delivery {_fmt_time(st.last_success)}; "
            f"last poll {_fmt_time(self.last_poll_ok)}"
            + ("" if st.connected else f"; InfluxDB unavailable: {st.last_error[:80]}")
            + (f"; buffer not writable, {len(self._held)} held" if self._held else "")
            + self.staleness.status()
        )

    def _write_metrics(self) -> None:
        stats = self.buffer.stats()
        c = stats.counters
        lost = self.sink.overflow + self.held_dropped + self._source_lost()
        # The spec wants floats here (Grafana and Flux math treat them alike).
        fields: dict[str, float | int | str | bool] = {
            "buffer_rows": float(stats.pending),
            "points_written": float(c["points_written"]),
            "points_dropped": float(c["points_dropped"] + lost),
            "points_dead": float(c["points_dead"]),
            "poll_errors": float(self.poll_errors),
            "stale_seconds": float(round(self.staleness.seconds())),
            # Age of the oldest reading still waiting for InfluxDB (0: nothing waits).
            "oldest_pending_seconds": float(stats.oldest_age() or 0.0),
        }
        if self.deliverer.status.last_success is not None:
            fields["last_success_unixtime"] = float(int(self.deliverer.status.last_success))
        point = Point(
            "wattkeeper_agent",
            fields,
            time.time_ns(),
            {"source": self.name, "host": self.cfg.agent.host},
        )
        self._commit(Batch(points=[point]))
