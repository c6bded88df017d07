"""The WattiVahti source: incremental or ranged sync, one chunk of whole days at a time.

Where a run starts: the cursor (newest reading committed, kept in the buffer file with
the points) minus ``overlap``; without a cursor, the newest point of this metering point
in the bucket; without that, ``initial_days`` ago. Requests always cover whole local days
so that the autumn repeated hour comes back complete (see localtime.py). Each chunk's
points and its cursor are committed in one transaction, so a sync killed at any moment
resumes at the first chunk it had not committed: no gap, and the overlap only rewrites
identical points.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import requests

from wattkeeper import __version__
from wattkeeper.influx import InfluxError
from wattkeeper.point import FieldValue, Point
from wattkeeper.source import Batch, SourceContext, SourceError
from wattkeeper.sources.wattivahti.api import (
    CONSUMPTION,
    PRODUCTION,
    PortalClient,
    PortalError,
    Series,
)
from wattkeeper.sources.wattivahti.auth import Authenticator, read_refresh_token
from wattkeeper.sources.wattivahti.config import WattiVahtiSection
from wattkeeper.sources.wattivahti.localtime import HELSINKI, day_windows
from wattkeeper.sources.wattivahti.summary import complete_periods

MEASUREMENT = "wattivahti"
HOUR = timedelta(hours=1)
QUARTER = timedelta(minutes=15)
# HTTP statuses of a PT15MIN answer that mean "not for this period" rather than "try
# later" (gateway errors, 429 and timeouts stay errors).
_NO_QUARTERS_STATUSES = {400, 404, 422, 500}


def _ceil(t: datetime, step: timedelta) -> datetime:
    """``t`` rounded up to a multiple of ``step`` (UTC; Helsinki offsets are whole hours)."""
    s = int(step.total_seconds())
    ts = int(t.timestamp())
    return datetime.fromtimestamp(-(-ts // s) * s, UTC)


class _Committer(Protocol):
    """The buffer's transactional append (points + state), for per-chunk commits."""

    def append(self, lines: list[str], state: dict[str, Any] | None = None) -> int: ...


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _from_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


Window = tuple[datetime, datetime]


class WattiVahtiSource:
    """Polling source; in oneshot mode one poll is a whole sync."""

    def __init__(self, ctx: SourceContext, sync_range: Window | None = None) -> None:
        self.ctx = ctx
        self.cfg: WattiVahtiSection = ctx.config.source
        self.log = ctx.log
        self.sync_range = sync_range
        # Fail at start (exit 78) rather than at the first poll when there is no token.
        read_refresh_token(self.cfg.refresh_token_file, ctx.config.file)
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"wattkeeper/{__version__}"
        self.auth = Authenticator(
            self.session,
            token_url=self.cfg.token_url,
            client_id=self.cfg.client_id,
            scope=self.cfg.scope,
            token_file=self.cfg.refresh_token_file,
            config_file=ctx.config.file,
            timeout=self.cfg.timeout,
            log=ctx.log,
        )
        self.client = PortalClient(
            self.session, self.auth, self.cfg.api_url, self.cfg.timeout, ctx.log
        )
        self.mp = self.cfg.metering_point
        self.cursor_key = f"wattivahti.cursor.{self.mp}"
        self.pt15_key = f"wattivahti.pt15min_since.{self.mp}"
        self._plan: list[Window] = []
        self.finished = False
        # The newest complete day and hour seen in this run, for the live view.
        self._complete: dict[str, Point] = {}

    # -- Source protocol ------------------------------------------------------------------

    def next_delay(self) -> float:
        return 0.0 if self._plan else self.cfg.interval

    def poll(self) -> Batch:
        if not self._plan:
            self._plan = self._make_plan()
            if not self._plan:
                self.finished = True
                return Batch()
        if not self.ctx.once:
            # Daemon: one chunk per poll, so the main loop keeps talking to systemd.
            batch = self._fetch_window(*self._plan[0])
            self._plan.pop(0)
            return batch
        committer = self._committer()
        rejected = 0
        while True:
            batch = self._fetch_window(*self._plan[0])
            self._plan.pop(0)
            rejected += batch.rejected
            if not self._plan:
                self.finished = True
                batch.rejected = rejected
                return batch
            if committer is not None:
                committer.append([p.to_line() for p in batch.points], batch.state)
            else:  # pragma: no cover - every core state store is the buffer
                rest = self._fetch_rest()
                rest.points[:0] = batch.points
                rest.state = {**batch.state, **rest.state}
                rest.rejected += rejected
                return rest

    def _fetch_rest(self) -> Batch:
        out = Batch()
        while self._plan:
            b = self._fetch_window(*self._plan.pop(0))
            out.points += b.points
            out.state.update(b.state)
            out.rejected += b.rejected
        self.finished = True
        return out

    def check(self) -> str:
        now = datetime.now(UTC)
        start, stop = day_windows(now - timedelta(days=1), now, 1)[0]
        series = self.client.fetch(self.mp, CONSUMPTION, start, stop, "PT15MIN")
        return (
            f"token refreshed ({self.cfg.refresh_token_file} rotated); metering point "
            f"{self.mp}: {len(series.readings)} quarter-hours on "
            f"{start.astimezone(HELSINKI).date()}"
        )

    def close(self) -> None:
        self.session.close()

    # -- planning -------------------------------------------------------------------------

    def _committer(self) -> _Committer | None:
        state: Any = self.ctx.state
        return state if callable(getattr(state, "append", None)) else None

    @property
    def _sync_key(self) -> str:
        assert self.sync_range is not None
        start, end = self.sync_range
        return f"wattivahti.sync.{self.mp}.{_iso(start)}.{_iso(end)}"

    def _make_plan(self) -> list[Window]:
        days = self.cfg.chunk_days
        if self.sync_range is not None:
            start, end = self.sync_range
            done = self.ctx.state.get_state(self._sync_key)
            if done:
                resumed = _from_iso(done)
                if resumed >= end:
                    self.log.info("range %s..%s already synced", _iso(start), _iso(end))
                    return []
                self.log.info("resuming the interrupted sync at %s", _iso(resumed))
                start = max(start, resumed)
            plan = day_windows(start, end, days)
        else:
            now = datetime.now(UTC)
            start = self._incremental_start(now)
            plan = day_windows(start, now, days)
        self.log.info(
            "syncing metering point %s from %s to %s in %d request window(s)",
            self.mp,
            plan[0][0].astimezone(HELSINKI).date(),
            plan[-1][1].astimezone(HELSINKI).date(),
            len(plan),
        )
        return plan

    def _incremental_start(self, now: datetime) -> datetime:
        overlap = timedelta(seconds=self.cfg.overlap)
        cursor = self.ctx.state.get_state(self.cursor_key)
        if cursor:
            return _from_iso(cursor) - overlap
        newest = self._newest_in_bucket()
        if newest is not None:
            self.log.info("no local cursor; newest point in the bucket is %s", _iso(newest))
            return newest - overlap
        self.log.info("first run: fetching the last %d days", self.cfg.initial_days)
        return now - timedelta(days=self.cfg.initial_days)

    def _newest_in_bucket(self) -> datetime | None:
        """The state is lost (new buffer file): ask InfluxDB where we were."""
        cfg = self.ctx.config.influxdb
        flux = (
            f'from(bucket: "{cfg.bucket}") |> range(start: 0) '
            f'|> filter(fn: (r) => r._measurement == "{MEASUREMENT}" '
            f'and r.metering_point == "{self.mp}" and r._field == "consumption_wh") '
            '|> last() |> keep(columns: ["_time"])'
        )
        try:
            rows = self.ctx.influx.query(flux)
        except InfluxError as exc:
            if exc.result.status in (401, 403, 404):
                self.log.warning(
                    "cannot read bucket %s to find where the last sync stopped (%s); "
                    "starting %d days back",
                    cfg.bucket,
                    exc,
                    self.cfg.initial_days,
                )
                return None
            raise SourceError(f"cannot ask InfluxDB for the newest point: {exc}") from None
        times = []
        for row in rows:
            try:
                times.append(_from_iso(row["_time"]))
            except (KeyError, ValueError):
                continue
        return max(times, default=None)

    # -- fetching -------------------------------------------------------------------------

    def _fetch_window(self, start: datetime, stop: datetime) -> Batch:
        """One request window (whole local days) -> points and the cursor after it.

        No request reaches past now, rounded up to its resolution: no public client asks
        the portal about the future (wattivahti-influx stops at now; WattiVahtiLogger
        asks for yesterday), so what the portal would answer is unknown.
        """
        now = datetime.now(UTC)
        q_stop = min(stop, _ceil(now, QUARTER))
        h_stop = min(stop, _ceil(now, HOUR))
        if q_stop <= start:
            return Batch()
        known = self.ctx.state.get_state(self.pt15_key)
        known_at = _from_iso(known) if known else None
        no_quarters_known = not known_at or known_at > start
        quarter = self._quarters(self.mp, CONSUMPTION, start, q_stop, no_quarters_known)
        earliest = min((r.utc for r in quarter.readings), default=stop)
        # Hourly data fills only what lies before the quarter-hour data; after the portal
        # has once shown quarter-hours, an empty answer is a gap to retry, not PT1H.
        hourly_until = min(earliest, known_at) if known_at else earliest
        series = [quarter]
        hourly: Series | None = None
        if hourly_until > start:
            hourly = self.client.fetch(self.mp, CONSUMPTION, start, h_stop, "PT1H")
            hourly.readings = [r for r in hourly.readings if r.utc + HOUR <= hourly_until]
            series.append(hourly)
        fields: dict[datetime, dict[str, FieldValue]] = {}

        def put(s: Series, name: str) -> None:
            for r in s.readings:
                f = fields.setdefault(r.utc, {"resolution": s.resolution})
                if f["resolution"] == s.resolution:
                    f[name] = r.wh

        for s in series:
            put(s, "consumption_wh")
        rejected = sum(s.rejected for s in series)
        if self.cfg.production:
            pmp = self.cfg.production_point
            prod = self._quarters(pmp, PRODUCTION, start, q_stop, hourly is not None)
            prod.readings = [r for r in prod.readings if r.utc >= hourly_until]
            put(prod, "production_wh")
            rejected += prod.rejected
            if hourly is not None:
                ph = self.client.fetch(pmp, PRODUCTION, start, h_stop, "PT1H")
                ph.readings = [r for r in ph.readings if r.utc + HOUR <= hourly_until]
                put(ph, "production_wh")
                rejected += ph.rejected
        if self.sync_range is not None:
            lo, hi = self.sync_range
            fields = {t: f for t, f in fields.items() if lo <= t < hi}
        for summary in complete_periods(fields, self.mp):
            known_p = self._complete.get(summary.measurement) if summary else None
            if summary and (known_p is None or summary.time_ns >= known_p.time_ns):
                self._complete[summary.measurement] = summary
        points = [
            Point.at(MEASUREMENT, t, f, {"metering_point": self.mp})
            for t, f in sorted(fields.items())
            if len(f) > 1
        ]
        state: dict[str, Any] = {}
        if quarter.readings and (not known or earliest < _from_iso(known)):
            state[self.pt15_key] = _iso(earliest)
        if self.sync_range is not None:
            state[self._sync_key] = _iso(q_stop)
        elif fields:
            newest = max(fields)
            cursor = self.ctx.state.get_state(self.cursor_key)
            if not cursor or newest > _from_iso(cursor):
                state[self.cursor_key] = _iso(newest)
        self.log.log(
            logging.INFO if points else logging.DEBUG,
            "%s..%s: %d quarter-hours, %d hours%s",
            start.astimezone(HELSINKI).date(),
            (stop - timedelta(seconds=1)).astimezone(HELSINKI).date(),
            sum(1 for f in fields.values() if f["resolution"] == "PT15MIN"),
            sum(1 for f in fields.values() if f["resolution"] == "PT1H"),
            f", {rejected} rejected" if rejected else "",
        )
        return Batch(
            points=points, state=state, rejected=rejected, live=list(self._complete.values())
        )

    def _quarters(
        self,
        mp: str,
        mtype: int,
        start: datetime,
        stop: datetime,
        may_fall_back: bool,
    ) -> Series:
        """The PT15MIN series; an error answer for a period without known quarter-hours
        counts as an empty answer (so PT1H fills it), like the seed's fallback does for
        an empty one (vuorinet/wattivahti-influx, sync.py)."""
        try:
            return self.client.fetch(mp, mtype, start, stop, "PT15MIN")
        except PortalError as exc:
            if exc.status not in _NO_QUARTERS_STATUSES or not may_fall_back:
                raise
            self.log.warning(
                "%s; this period has no quarter-hours yet: falling back to PT1H, as for an "
                "empty answer",
                exc,
            )
            return Series("PT15MIN")
