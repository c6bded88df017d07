"""WattiVahti's live view: the last complete local day and hour, never a partial one.

The portal's data is hours late, so a "current" value would be wrong in Home Assistant;
what is true is the newest day (Helsinki time, 23 to 25 hours) and the newest hour whose
every quarter-hour (or hourly value) has arrived. These go to the live view only (as
``Batch.live`` points); InfluxDB keeps the readings themselves.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from wattkeeper.point import FieldValue, Point
from wattkeeper.sensors import Sensor

from .localtime import local_date, local_midnight

DAY = "wattivahti_day"
HOUR = "wattivahti_hour"
_LENGTH = {"PT15MIN": timedelta(minutes=15), "PT1H": timedelta(hours=1)}
_FIELDS = ("consumption_wh", "production_wh")


def complete_periods(
    fields: dict[datetime, dict[str, FieldValue]], mp: str
) -> tuple[Point | None, Point | None]:
    """The newest complete local day and UTC hour in one window's readings, as points."""
    covered: dict[tuple[str, datetime], timedelta] = {}
    sums: dict[tuple[str, datetime], dict[str, float]] = {}
    for start, f in fields.items():
        length = _LENGTH.get(str(f.get("resolution")))
        if length is None or not isinstance(f.get("consumption_wh"), float):
            continue
        hour = start.replace(minute=0, second=0, microsecond=0)
        day = local_midnight(local_date(start))
        for period in (("hour", hour), ("day", day)):
            covered[period] = covered.get(period, timedelta()) + length
            acc = sums.setdefault(period, {})
            for name in _FIELDS:
                value = f.get(name)
                if isinstance(value, float):
                    acc[name] = acc.get(name, 0.0) + value
    best: dict[str, datetime] = {}
    for (kind, start), got in covered.items():
        end = start + timedelta(hours=1) if kind == "hour" else _next_midnight(start)
        if got >= end - start and (kind not in best or start > best[kind]):
            best[kind] = start
    tags = {"metering_point": mp}
    day_start = best.get("day")
    hour_start = best.get("hour")
    return (
        Point.at(DAY, day_start, dict(sums[("day", day_start)]), tags) if day_start else None,
        Point.at(HOUR, hour_start, dict(sums[("hour", hour_start)]), tags) if hour_start else None,
    )


def _next_midnight(midnight_utc: datetime) -> datetime:
    return local_midnight(local_date(midnight_utc) + timedelta(days=1))


SENSORS = (
    Sensor("consumption_last_day", "Consumption, last complete day", DAY, "consumption_wh",
           unit="kWh", scale=0.001, precision=2, with_time=True, device_class="energy"),
    Sensor("consumption_last_hour", "Consumption, last complete hour", HOUR, "consumption_wh",
           unit="Wh", precision=0, with_time=True, device_class="energy"),
    Sensor("production_last_day", "Production, last complete day", DAY, "production_wh",
           unit="kWh", scale=0.001, precision=2, with_time=True, device_class="energy"),
    Sensor("production_last_hour", "Production, last complete hour", HOUR, "production_wh",
           unit="Wh", precision=0, with_time=True, device_class="energy"),
)  # fmt: skip
