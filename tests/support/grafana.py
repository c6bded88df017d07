"""What Grafana does to a panel's Flux query before InfluxDB sees it, for the tests.

1. The frontend (InfluxDB datasource, Flux mode: ``applyTemplateVariables``) runs
   ``templateSrv.replace(query, scopedVars)`` with no format: ``$var``, ``${var}``,
   ``${var:fmt}`` and ``[[var]]`` become the variable's current value (a single value is
   inserted as it is); ``$__interval`` and ``$__interval_ms`` are left for the backend;
   unknown names are left alone.
2. The backend (pkg/tsdb/influxdb/flux/macros.go, ``interpolate``) replaces every
   ``word.timeRangeStart`` / ``word.timeRangeStop`` by the range in UTC, RFC 3339 with
   nanoseconds (Go's ``time.RFC3339Nano``, so no trailing zeros), ``word.windowPeriod`` by
   the query interval as Go prints a ``time.Duration`` ("1m0s"), ``word.bucket``,
   ``word.defaultBucket`` and ``word.organization`` by the datasource's settings, then
   ``$__interval_ms`` and ``$__interval``.
3. The interval is ``(to - from) / maxDataPoints`` rounded like the frontend's
   ``rangeutil.roundInterval`` (maxDataPoints is the panel's width in pixels unless set).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

# templateSrv's variable regex (public/app/features/variables/utils.ts, variableRegex).
_VARIABLE = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\${(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?}"
)
_MACRO = re.compile(r"([a-zA-Z]+)\.([a-zA-Z]+)")
_BACKEND_VARIABLES = {"__interval", "__interval_ms"}

# rangeutil.roundInterval: (upper bound of the raw interval in ms, the interval used).
_ROUND = [
    (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000),
    (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000),
    (45000, 30000), (90000, 60000), (210000, 120000), (450000, 300000), (750000, 600000),
    (1050000, 900000), (1500000, 1200000), (2700000, 1800000), (5400000, 3600000),
    (9000000, 7200000), (16200000, 10800000), (32400000, 21600000), (86400000, 43200000),
    (604800000, 86400000), (1814400000, 604800000), (3628800000, 2592000000),
]  # fmt: skip
_YEAR_MS = 31536000000
# A dashboard panel of half the screen's width, in pixels (maxDataPoints when unset).
PANEL_WIDTH = 900


def round_interval(ms: float) -> int:
    for upper, value in _ROUND:
        if ms < upper:
            return value
    return _YEAR_MS


def interval_ms(start: datetime, stop: datetime, max_data_points: int = PANEL_WIDTH) -> int:
    return round_interval((stop - start) / timedelta(milliseconds=1) / max_data_points)


def go_duration(ms: int) -> str:
    """time.Duration.String() for whole milliseconds: 1m0s, 2h0m0s, 500ms, 10s."""
    if ms < 1000:
        return f"{ms}ms" if ms else "0s"
    seconds, millis = divmod(ms, 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    s = f"{secs}.{millis:03d}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{s}"
    if minutes:
        return f"{minutes}m{s}"
    return s


def rfc3339nano(t: datetime) -> str:
    """Go's time.RFC3339Nano in UTC: fractional seconds without trailing zeros."""
    t = t.astimezone(UTC)
    base = t.strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{t.microsecond:06d}".rstrip("0")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


def frontend(query: str, variables: dict[str, str], start: datetime, stop: datetime) -> str:
    """templateSrv.replace with the dashboard's variables and the global time variables."""
    scoped = {
        **variables,
        "__from": str(int(start.timestamp() * 1000)),
        "__to": str(int(stop.timestamp() * 1000)),
    }

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(4)
        if name in _BACKEND_VARIABLES or name not in scoped:
            return m.group(0)
        return scoped[name]

    return _VARIABLE.sub(sub, query)


def backend(
    query: str, start: datetime, stop: datetime, interval: int, bucket: str = "", org: str = ""
) -> str:
    """The Flux datasource's interpolate(): macros, then $__interval_ms and $__interval."""
    values = {
        "timeRangeStart": rfc3339nano(start),
        "timeRangeStop": rfc3339nano(stop),
        "windowPeriod": go_duration(interval),
        "bucket": f'"{bucket}"',
        "defaultBucket": f'"{bucket}"',
        "organization": f'"{org}"',
    }
    flux = query
    for match in _MACRO.finditer(query):
        if match.group(2) in values:
            flux = flux.replace(match.group(0), values[match.group(2)])
    flux = flux.replace("$__interval_ms", str(interval))
    return flux.replace("$__interval", go_duration(interval))


def interpolate(
    query: str,
    variables: dict[str, str],
    start: datetime,
    stop: datetime,
    max_data_points: int = PANEL_WIDTH,
) -> str:
    """The Flux InfluxDB receives for ``query`` on a dashboard showing [start, stop)."""
    interval = interval_ms(start, stop, max_data_points)
    return backend(frontend(query, variables, start, stop), start, stop, interval)


def panel_range(
    panel: dict[str, object], start: datetime, stop: datetime, now: datetime
) -> tuple[datetime, datetime]:
    """A panel's own range: a relative ``timeFrom`` ("30d") replaces the dashboard's."""
    time_from = panel.get("timeFrom")
    if not time_from:
        return start, stop
    m = re.fullmatch(r"(\d+)([smhdwy])", str(time_from))
    assert m, f"timeFrom {time_from!r} not understood"
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}[m.group(2)]
    return now - timedelta(seconds=int(m.group(1)) * unit), now
