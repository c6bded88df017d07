"""The meterdata2 endpoint: one request, one series of readings with UTC instants.

Answer shape (mirrored by the simulator): getconsumptionsresult -> consumptiondata ->
{meteringpointcode, sum{quantity, unit, start, stop}, timeseries{start, stop,
resolution, values{tsv[{quantity, time, ...}]}}}. Quantities are kWh per interval,
times are naive Europe/Helsinki wall-clock starts of the interval, null quantities
mean "not measured yet".
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests

from wattkeeper.source import SourceError, SourceFatal
from wattkeeper.sources.wattivahti.auth import Authenticator
from wattkeeper.sources.wattivahti.localtime import HELSINKI, convert_series, parse_local

CONSUMPTION = 1
PRODUCTION = 6
RESOLUTIONS = ("PT15MIN", "PT1H")


@dataclass(frozen=True)
class Reading:
    utc: datetime
    wh: float


@dataclass
class Series:
    resolution: str
    readings: list[Reading] = field(default_factory=list)
    rejected: int = 0
    # Entries placed by the spring DST rule (localtime.convert_series).
    relabelled: int = 0


class PortalError(SourceError):
    """meterdata2 answered with an HTTP error status (kept, for the PT1H fallback)."""

    def __init__(self, message: str, status: int, retry_after: float | None = None) -> None:
        super().__init__(message, retry_after)
        self.status = status


def _wire_time(instant: datetime) -> str:
    """Request bounds as the web app sends them: local time with its offset."""
    return instant.astimezone(HELSINKI).isoformat(timespec="seconds")


def _dig(doc: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


class PortalClient:
    """Reads consumption/production series of one metering point."""

    def __init__(
        self,
        session: requests.Session,
        auth: Authenticator,
        api_url: str,
        timeout: float,
        log: logging.Logger,
    ) -> None:
        self.session = session
        self.auth = auth
        self.api_url = api_url
        self.timeout = timeout
        self.log = log
        self.requests = 0

    def fetch(
        self,
        metering_point: str,
        measurement_type: int,
        start: datetime,
        stop: datetime,
        resolution: str,
    ) -> Series:
        params = {
            "meteringPointCode": metering_point,
            "measurementType": str(measurement_type),
            "start": _wire_time(start),
            "stop": _wire_time(stop),
            "resultStep": resolution,
        }
        resp = self._get(params)
        if resp.status_code == 401:
            # The access token expired early or was revoked: one fresh token, one retry.
            self.auth.invalidate()
            resp = self._get(params)
        what = f"meterdata2 {params['start']}..{params['stop']} {resolution}"
        if resp.status_code == 403:
            raise SourceFatal(
                f"{what}: HTTP 403: this account may not read metering point {metering_point}",
                key="wattivahti.metering_point",
            )
        if resp.status_code != 200:
            retry = resp.headers.get("Retry-After")
            raise PortalError(
                f"{what}: HTTP {resp.status_code} {resp.reason or ''}".rstrip(),
                resp.status_code,
                retry_after=float(retry) if retry and retry.isdigit() else None,
            )
        try:
            doc = resp.json()
        except ValueError:
            ctype = resp.headers.get("Content-Type", "?")
            raise SourceError(f"{what}: answer is not JSON ({ctype})") from None
        return self._parse(doc, resolution, what)

    def _get(self, params: dict[str, str]) -> requests.Response:
        headers = {
            "Authorization": f"Bearer {self.auth.access_token()}",
            "Accept": "application/json",
        }
        self.requests += 1
        try:
            return self.session.get(
                self.api_url, params=params, headers=headers, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise SourceError(
                f"meterdata2 {self.api_url} unreachable: {type(exc).__name__}"
            ) from None

    def _parse(self, doc: Any, resolution: str, what: str) -> Series:
        if not isinstance(doc, dict) or "getconsumptionsresult" not in doc:
            raise SourceError(f"{what}: unexpected JSON (no getconsumptionsresult)")
        data = _dig(doc, "getconsumptionsresult", "consumptiondata")
        tsv = _dig(data, "timeseries", "values", "tsv")
        series = Series(resolution)
        if not isinstance(tsv, list):
            return series
        unit = str(_dig(data, "sum", "unit") or "kWh")
        entries: list[tuple[datetime, Any]] = []
        for item in tsv:
            if not isinstance(item, dict):
                series.rejected += 1
                continue
            t = item.get("time", item.get("t"))
            try:
                local = parse_local(str(t))
            except ValueError:
                series.rejected += 1
                self.log.warning("%s: entry with a bad time %r skipped", what, t)
                continue
            entries.append((local, item))
        relabelled: list[tuple[datetime, datetime, float]] = []  # local, utc, kWh
        for conv in convert_series(local for local, _ in entries):
            item = entries[conv.index][1]
            q = item.get("quantity", item.get("q"))
            if conv.utc is None:
                series.rejected += 1
                self.log.warning(
                    "%s: %s %s; skipped (%s kWh)", what, conv.local.isoformat(), conv.problem, q
                )
                continue
            if q is None:
                continue  # not measured yet
            if isinstance(q, bool) or not isinstance(q, int | float):
                series.rejected += 1
                self.log.warning("%s: %s quantity %r is not a number", what, conv.local, q)
                continue
            item_unit = str(item.get("unit") or unit)
            factor = 1.0 if item_unit.lower() == "wh" else 1000.0
            wh = round(float(q) * factor, 6)
            if not math.isfinite(wh):  # NaN, Infinity, or a kWh figure that overflows in Wh
                series.rejected += 1
                self.log.warning("%s: %s quantity %r is not a finite number", what, conv.local, q)
                continue
            if conv.spring_relabelled:
                relabelled.append((conv.local, conv.utc, wh / 1000))
            series.readings.append(Reading(conv.utc, wh))
        if relabelled:
            series.relabelled = len(relabelled)
            self.log.warning(
                "%s: %d entries labelled %s..%s (%.3f kWh) lie in or after the spring DST "
                "gap and were read in winter time (UTC+02:00), the portal's labelling of "
                "that night: placed at %s..%s",
                what,
                len(relabelled),
                relabelled[0][0].strftime("%Y-%m-%d %H:%M"),
                relabelled[-1][0].strftime("%H:%M"),
                sum(k for _, _, k in relabelled),
                relabelled[0][1].strftime("%H:%MZ"),
                relabelled[-1][1].strftime("%H:%MZ"),
            )
        return series
