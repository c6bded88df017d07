"""The Octopus Home Mini source: windows of telemetry from a cursor, within the budget.

The cursor (``next_start``: one second after the last complete reading committed) is
stored in the same SQLite transaction as the points, so after a stop, a reboot or an
outage the next poll asks for exactly what is missing, in windows of ``backfill_window``,
as far back as the API allows. The group still filling is never taken: it comes again,
complete, at a later poll. A window that stays empty at the grouping in use is asked
again one grouping coarser (some Home Minis no longer serve TEN_SECONDS) before it is
given up.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from wattkeeper.point import Point
from wattkeeper.source import Batch, SourceContext, SourceError, SourceFatal

from .budget import CallBudget
from .client import RATE_LIMIT_CODES, KrakenClient, KrakenError, ServerClock
from .config import GROUPING_SECONDS, OctopusSection
from .discovery import ACCOUNT_QUERY, choose_device, parse_account
from .history import TOO_FAR_BACK, Search, oldest_accepted
from .parsing import (
    TELEMETRY_FIELDS,
    MalformedAnswer,
    ParsedTelemetry,
    format_time,
    parse_telemetry,
)
from .schema import SCHEMAS

UNAUTHORIZED = "KT-CT-1111"
UNKNOWN_DEVICE = "KT-GB-4050"  # the device is not known: its meter was replaced
NO_HOME_MINI = "KT-GB-4056"  # the meter has no Home Mini to read it
PAIRING_HELP = "https://octopus.energy/blog/octopus-home-mini/"
# The longest a single poll keeps catching up (windows) before committing.
MAX_WINDOWS_PER_POLL = 24

TELEMETRY_QUERY = (
    "query Telemetry($deviceId: String!, $start: DateTime!, $end: DateTime!, "
    "$grouping: TelemetryGrouping!) {\n"
    "  smartMeterTelemetry(deviceId: $deviceId, start: $start, end: $end, grouping: $grouping)"
    " { " + " ".join(TELEMETRY_FIELDS) + " }\n}"
)


def _iso(ts: float) -> str:
    return format_time(datetime.fromtimestamp(ts, UTC))


class OctopusSource:
    """Polls smartMeterTelemetry for one Home Mini."""

    def __init__(self, ctx: SourceContext) -> None:
        self.cfg: OctopusSection = ctx.config.source
        self.ctx = ctx
        self.log = ctx.log
        self.state = ctx.state
        self._set_state = getattr(ctx.state, "set_state", None)
        history = self.state.get_state("octopus.budget", [])
        self.budget = CallBudget(
            self.cfg.calls_per_hour,
            self.cfg.budget_period,
            history=history if isinstance(history, list) else [],
            persist=self._persist_budget,
        )
        self.clock = ServerClock(self.cfg.use_server_clock)
        self.client = KrakenClient(
            self.cfg.api_url,
            self.cfg.api_key,
            self.budget,
            timeout=self.cfg.timeout,
            clock=self.clock,
            log=self.log,
        )
        # The grouping asked for: the configured one, or a coarser one the Home Mini
        # still serves (until the agent restarts).
        self.grouping: str = self.cfg.grouping
        self.to_point = SCHEMAS[self.cfg.schema]
        self.device_id: str | None = self.cfg.device_id
        self._cooldown_until = 0.0
        self._rate_limited = 0
        self._coarser_tried: float | None = None  # window start the coarser ones were tried at
        self._replaced: set[str] = set()  # devices found unknown (KT-GB-4050) in this run
        self.behind = False

    @property
    def step(self) -> int:
        return GROUPING_SECONDS[self.grouping]

    # -- state ------------------------------------------------------------------------

    def _persist_budget(self, calls: list[float]) -> None:
        if self._set_state is not None:
            self._set_state({"octopus.budget": [round(t, 3) for t in calls]})

    def _key(self, name: str) -> str:
        return f"octopus.{self.device_id}.{name}"

    # -- scheduling -------------------------------------------------------------------

    def next_delay(self) -> float:
        delay = self.budget.steady_interval
        if self.behind and self.budget.available() > self._reserve():
            delay = 1.0
        cooldown = self._cooldown_until - time.monotonic()
        # A poll that must renew the token first makes two calls: wait for both slots,
        # rather than fail half-way for want of the second.
        token = self.client.token
        renew = token is None or not token.fresh(self.clock.now() + delay)
        return max(delay, cooldown, self.budget.wait_time(2 if renew else 1))

    def _reserve(self) -> int:
        return max(1, self.budget.limit // 10)

    def _rate_limited_backoff(self, exc: KrakenError) -> KrakenError:
        """KT-GB-4042, KT-CT-1199 or HTTP 429: wait longer each time, up to a quarter of
        the period."""
        self._rate_limited += 1
        wait = min(
            self.budget.period / 4, self.budget.steady_interval * 2 ** min(self._rate_limited, 8)
        )
        wait = max(wait, exc.retry_after or 0.0)
        self._cooldown_until = time.monotonic() + wait
        return KrakenError(f"{exc}; backing off {wait:.0f}s", exc.code, retry_after=wait)

    # -- discovery --------------------------------------------------------------------

    def _device(self) -> str:
        if self.device_id:
            return self.device_id
        cached = self.state.get_state("octopus.discovered")
        if isinstance(cached, dict) and cached.get("account") == self.cfg.account_number:
            self.device_id = str(cached["device"])
            return self.device_id
        try:
            data = self.client.query(
                "Account", ACCOUNT_QUERY, {"accountNumber": self.cfg.account_number}
            )
        except KrakenError as exc:
            if exc.code == UNAUTHORIZED:
                # Still refused with a fresh token: this key may not read this account.
                raise SourceFatal(
                    f"Octopus refuses account {self.cfg.account_number} to this API key "
                    f"({UNAUTHORIZED} Unauthorized): check the account number (on your "
                    "Octopus dashboard, like A-1234ABCD) and that the API key is of the same "
                    "login",
                    key="octopus.account_number",
                ) from None
            raise
        devices = parse_account(data)
        self.device_id = choose_device(devices, self.cfg.account_number)
        self.log.info(
            "account %s: Home Mini device %s%s",
            self.cfg.account_number,
            self.device_id,
            f" (export meter {', '.join(devices.exports)})" if devices.exports else "",
        )
        self._save(
            {"octopus.discovered": {"account": self.cfg.account_number, "device": self.device_id}}
        )
        return self.device_id

    def _save(self, state: dict[str, Any]) -> None:
        if self._set_state is not None:
            self._set_state(state)

    # -- polling ----------------------------------------------------------------------

    def _fetch(self, device: str, start: float, end: float, grouping: str | None = None) -> Any:
        try:
            data = self.client.query(
                "Telemetry",
                TELEMETRY_QUERY,
                {
                    "deviceId": device,
                    "start": _iso(start),
                    "end": _iso(end),
                    "grouping": grouping or self.grouping,
                },
            )
        except KrakenError as exc:
            if exc.code == UNAUTHORIZED:
                raise self._device_refused(device) from None
            if exc.code == NO_HOME_MINI:
                raise self._no_home_mini(device) from None
            if exc.code == UNKNOWN_DEVICE and self.cfg.device_id:
                raise SourceFatal(
                    f"Octopus does not know device {device} ({UNKNOWN_DEVICE}: was the meter "
                    "replaced?): remove octopus.device_id to find the new one from the "
                    "account, or set it to the new meter's device id",
                    key="octopus.device_id",
                ) from None
            raise
        if "smartMeterTelemetry" not in data:
            raise MalformedAnswer("answer has no data.smartMeterTelemetry")
        return data["smartMeterTelemetry"]

    def _device_refused(self, device: str) -> Exception:
        """Telemetry of this device refused with a fresh token: wrong id, or a new meter."""
        if self.cfg.device_id:
            return SourceFatal(
                f"Octopus refuses telemetry of device {device} to this API key "
                f"({UNAUTHORIZED} Unauthorized): check the device id, or remove octopus.device_id "
                "to find it from the account",
                key="octopus.device_id",
            )
        self.device_id = None
        self._save({"octopus.discovered": None})
        return SourceError(
            f"Telemetry: device {device} refused ({UNAUTHORIZED}); "
            "looking for the account's device again at the next poll"
        )

    def _no_home_mini(self, device: str) -> SourceFatal:
        return SourceFatal(
            f"Octopus has no Home Mini readings for device {device} ({NO_HOME_MINI}): the "
            "meter has no Home Mini paired. Pair it in the Octopus app (Home Mini: "
            f"{PAIRING_HELP}), then restart the agent",
            key="octopus.device_id" if self.cfg.device_id else "octopus.account_number",
        )

    def _meter_replaced(self, device: str, cursor: Any, batch: Batch) -> str:
        """KT-GB-4050 for a discovered device: discover again, once. The new device
        continues from the old one's cursor, so the time since the swap is fetched."""
        if device in self._replaced:
            raise SourceFatal(
                f"Octopus does not know device {device} ({UNKNOWN_DEVICE}) although account "
                f"{self.cfg.account_number} lists it: check in the Octopus app that the Home "
                "Mini is paired with the new meter, then restart the agent",
                key="octopus.account_number",
            )
        self._replaced.add(device)
        self.device_id = None
        self._save({"octopus.discovered": None})
        new = self._device()
        if new == device:
            return self._meter_replaced(device, cursor, batch)
        self.log.warning(
            "device %s is unknown to Octopus (%s: the meter was replaced?); "
            "continuing with the account's device %s",
            device,
            UNKNOWN_DEVICE,
            new,
        )
        if cursor is not None and self.state.get_state(self._key("next_start")) is None:
            batch.state[self._key("next_start")] = cursor
        return new

    def _start(self, stored: Any, now: float) -> float:
        """Where the next window starts: the cursor, within max_backfill."""
        if stored is None:
            self.log.info("no cursor yet: starting %s before now", _dur(self.cfg.initial_backfill))
            start = now - self.cfg.initial_backfill
        else:
            start = float(stored)
        oldest = now - self.cfg.max_backfill
        if start < oldest:
            self.log.warning(
                "readings from %s to %s cannot be recovered (older than max_backfill %s)",
                _iso(start),
                _iso(oldest),
                _dur(self.cfg.max_backfill),
            )
            start = oldest
        return start

    def poll(self) -> Batch:
        if time.monotonic() < self._cooldown_until:
            raise SourceError(
                "rate limited by the API; waiting",
                retry_after=self._cooldown_until - time.monotonic(),
            )
        try:
            device = self._device()
            self.client.ensure_token()  # also learns the server's clock
        except KrakenError as exc:
            raise self._classify(exc) from None
        batch = Batch()
        cursor_key = self._key("next_start")
        stored = self.state.get_state(cursor_key)
        self.behind = False
        n = 0
        while n < MAX_WINDOWS_PER_POLL:
            now = self.clock.now()
            start = self._start(stored, now)
            end = min(start + self.cfg.backfill_window, now)
            if end - start < 1.0:
                break
            try:
                start, end, grouping, parsed = self._window(device, start, end, now, batch)
            except KrakenError as exc:
                if exc.code == UNKNOWN_DEVICE and device == self.device_id:
                    try:
                        device = self._meter_replaced(device, stored, batch)
                    except KrakenError as again:
                        return self._partial(batch, self._classify(again), n)
                    cursor_key = self._key("next_start")
                    continue
                return self._partial(batch, self._classify(exc), n)
            except MalformedAnswer as exc:
                return self._partial(batch, SourceError(f"Telemetry: malformed answer: {exc}"), n)
            n += 1
            self._rate_limited = 0
            step = GROUPING_SECONDS[grouping]
            # A group still filling (its end after now, on the server's clock as known
            # before the call: never ahead of it) is not a reading yet. A TEN_SECONDS
            # reading is one reading of the Home Mini, never partial.
            complete = [
                r
                for r in parsed.readings
                if grouping == "TEN_SECONDS" or r.read_at.timestamp() + step <= now
            ]
            for r in complete:
                point = self.to_point(r, device)
                if point is not None:
                    batch.points.append(point)
            self._count_rejected(batch, parsed.rejected)
            if complete:
                last = complete[-1].read_at.timestamp()
                next_start = max(start, last + 1.0)
                batch.state[self._key("last_read_at")] = _iso(last)
                batch.newest = max(batch.newest or 0.0, last + step)
            elif end <= now - self.cfg.settle and not parsed.readings:
                self.log.info(
                    "no readings from %s to %s (Home Mini offline?)", _iso(start), _iso(end)
                )
                next_start = end
            else:
                # Nothing (complete) yet in a recent window: it may still be on its way.
                stored = start
                batch.state[cursor_key] = start
                break
            stored = next_start
            batch.state[cursor_key] = next_start
            # Behind: this window was cut at backfill_window and more is waiting.
            self.behind = end < now and now - next_start > max(self.cfg.settle, 2 * self.step)
            if not self.behind or self.budget.available() <= self._reserve():
                break
        return batch

    def _window(
        self, device: str, start: float, end: float, now: float, batch: Batch
    ) -> tuple[float, float, str, ParsedTelemetry]:
        """One window's readings and the grouping they came at; the window is a later
        one if the API refused its start as too far back."""
        try:
            rows = self._fetch(device, start, end)
        except KrakenError as exc:
            if exc.code != TOO_FAR_BACK:
                raise
            start, end, rows = self._recoverable(device, start, batch)
        parsed = parse_telemetry(rows)
        if parsed.readings:
            return start, end, self.grouping, parsed
        # Empty: asked again one grouping coarser, once the window's readings are overdue
        # (its start older than twice settle), and once more before it is given up.
        given_up = end <= now - self.cfg.settle
        overdue = start <= now - 2 * self.cfg.settle and self._coarser_tried != start
        if given_up or overdue:
            self._coarser_tried = start
            return start, end, *self._coarser(device, start, end)
        return start, end, self.grouping, parsed

    def _coarser(self, device: str, start: float, end: float) -> tuple[str, ParsedTelemetry]:
        """Ask an empty window at each coarser grouping in turn; the first that has
        readings is used from then on (said once in the log)."""
        order = list(GROUPING_SECONDS)
        for grouping in order[order.index(self.grouping) + 1 :]:
            # The same window, no wider: a group found beyond it would prove nothing (the
            # Home Mini may have been offline for exactly this window).
            parsed = parse_telemetry(self._fetch(device, start, end, grouping))
            if parsed.readings:
                self.log.warning(
                    "the Home Mini sent no %s readings from %s to %s, but %s ones: "
                    "asking for %s from now on (until the agent restarts)",
                    self.grouping,
                    _iso(start),
                    _iso(end),
                    grouping,
                    grouping,
                )
                self.grouping = grouping
                return grouping, parsed
        return self.grouping, ParsedTelemetry()

    def _count_rejected(self, batch: Batch, rejected: list[tuple[str, str, str]]) -> None:
        if not rejected:
            return
        batch.rejected += len(rejected)
        shown = "; ".join(f"{f}={v} at {t}" for t, f, v in rejected[:3])
        self.log.warning(
            "%d value(s) are not numbers and were not written: %s", len(rejected), shown
        )

    def _recoverable(self, device: str, refused: float, batch: Batch) -> tuple[float, float, Any]:
        """After KT-GB-4051 at ``refused``: the oldest start the API still accepts, its
        window's end and its rows; what lies before is logged as lost."""
        search = Search(refused)
        w = self.cfg.backfill_window
        try:
            accepted = oldest_accepted(
                lambda a, b: self._fetch(device, a, b),
                self.clock.now,
                search,
                w,
                max(float(self.step), w / 16),
            )
        except KrakenError:
            # Out of budget (or another failure) mid-search: what was refused stays lost.
            batch.state[self._key("next_start")] = search.refused + 1.0
            self._log_lost(refused, search.refused + 1.0)
            raise
        self._log_lost(refused, accepted[0])
        return accepted

    def _log_lost(self, start: float, end: float) -> None:
        self.log.warning(
            "readings from %s to %s cannot be recovered: the API refuses a start that far "
            "back (%s)",
            _iso(start),
            _iso(end),
            TOO_FAR_BACK,
        )

    def _classify(self, exc: KrakenError) -> KrakenError:
        if exc.code in RATE_LIMIT_CODES or exc.status == 429:
            return self._rate_limited_backoff(exc)
        return exc

    def _partial(self, batch: Batch, exc: SourceError, windows: int) -> Batch:
        """Keep what earlier windows (or a KT-GB-4051 search) gathered; else the poll fails."""
        if not batch.state:
            raise exc
        self.log.warning("catch-up stopped after %d window(s): %s", windows, exc)
        self.behind = True
        self._cooldown_until = max(
            self._cooldown_until, time.monotonic() + self.budget.steady_interval
        )
        return batch

    def check(self) -> str:
        device = self._device()
        now = self.clock.now()
        rows = parse_telemetry(self._fetch(device, now - 600, now))
        return (
            f"{self.cfg.api_url} account {self.cfg.account_number}: device {device}, "
            f"{len(rows.readings)} readings in the last 10 min "
            f"({self.budget.available()} of {self.budget.limit} calls left in the budget)"
        )

    def close(self) -> None:
        self.client.close()


def _dur(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def make_source(ctx: SourceContext) -> OctopusSource:
    return OctopusSource(ctx)


__all__ = ["OctopusSource", "Point", "make_source"]
