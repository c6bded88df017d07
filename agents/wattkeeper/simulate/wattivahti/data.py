"""The simulated meter: deterministic quantities, and series in the portal's JSON shape.

Quantities depend only on the UTC instant and the measurement type, so a test can compute
the exact value any point must have (and a point written at the wrong instant shows up
as a wrong value). Hourly values are the sum of their four quarter-hours.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

HELSINKI = ZoneInfo("Europe/Helsinki")
STEPS = {"PT15MIN": 900, "PT1H": 3600}


def quarter_kwh(measurement_type: int, instant: datetime) -> float:
    """kWh of the quarter-hour starting at ``instant`` (UTC)."""
    n = int(instant.timestamp()) // 900
    if measurement_type == 6:
        return round(((n * 53) % 61) * 0.001, 3)
    return round(0.040 + ((n * 37) % 101) * 0.001, 3)


def hour_kwh(measurement_type: int, instant: datetime) -> float:
    return round(
        sum(quarter_kwh(measurement_type, instant + timedelta(minutes=15 * i)) for i in range(4)),
        3,
    )


def value_kwh(measurement_type: int, instant: datetime, resolution: str) -> float:
    if resolution == "PT1H":
        return hour_kwh(measurement_type, instant)
    return quarter_kwh(measurement_type, instant)


def parse_bound(text: str) -> datetime:
    """start/stop as the web app sends them: local time with (or without) an offset."""
    dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=HELSINKI)
    return dt.astimezone(UTC)


def local_naive(instant: datetime) -> str:
    return instant.astimezone(HELSINKI).replace(tzinfo=None).isoformat(timespec="seconds")


def local_midnight(d: date) -> datetime:
    return datetime.combine(d, time(0), HELSINKI).astimezone(UTC)


def series(
    *,
    metering_point: str,
    measurement_type: int,
    start: datetime,
    stop: datetime,
    resolution: str,
    quarter_since: datetime,
    data_until: datetime,
    empty: bool = False,
) -> dict[str, Any]:
    """The meterdata2 answer for [start, stop).

    PT15MIN exists only from ``quarter_since`` on; instants from ``data_until`` on are
    not measured yet (quantity null). Entries are ordered by their naive local time, which
    turns the autumn repeated hour into consecutive pairs, as the real portal does.
    """
    step = STEPS[resolution]
    first = int(start.timestamp())
    first += -first % step
    entries: list[tuple[str, int, float | None]] = []
    t = first
    while t < stop.timestamp() and not empty:
        instant = datetime.fromtimestamp(t, UTC)
        t += step
        if resolution == "PT15MIN" and instant < quarter_since:
            continue
        q = value_kwh(measurement_type, instant, resolution) if instant < data_until else None
        entries.append((local_naive(instant), int(instant.timestamp()), q))
    entries.sort(key=lambda e: (e[0], e[1]))
    total = round(sum(q for _, _, q in entries if q is not None), 3)
    return {
        "getconsumptionsresult": {
            "consumptiondata": {
                "meteringpointcode": metering_point,
                "sum": {
                    "quantity": total,
                    "start": local_naive(start),
                    "stop": local_naive(stop),
                    "unit": "kWh",
                },
                "timeseries": {
                    "start": local_naive(start),
                    "stop": local_naive(stop),
                    "resolution": resolution,
                    "values": {"tsv": [{"quantity": q, "time": lt} for lt, _, q in entries]},
                },
            },
            "spotdata": None,
        }
    }
