"""The simulated meter: deterministic quantities, and series in the portal's JSON shape.

Quantities depend only on the UTC instant and the measurement type, so a test can compute
the exact value any point must have (and a point written at the wrong instant shows up
as a wrong value). Hourly values are the sum of their four quarter-hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
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


# How long after the spring switch the portal keeps labelling in winter time. Modelled on
# the one public sample of a spring night, miikaforma/WattiVahtiLogger api/src/lib.rs
# (test_production_data_with_daylight_savings, 2023-03-26, PT1H): the labels run 00, 01,
# 02, 03, 04, 05, 07, i.e. the three hours after the switch (01:00-03:59Z) are labelled
# in UTC+2 (03:00-05:59, including the impossible 03:xx) and 04:00Z is 07:00 again.
# Evidence is thin: a hand-written test fixture of seven hourly entries; that PT15MIN
# answers are labelled the same way is our assumption.
SPRING_WINTER_LABELS = timedelta(hours=3)
_WINTER = timezone(timedelta(hours=2))


def spring_switch(instant: datetime) -> datetime | None:
    """The UTC instant of the spring switch on the local day of ``instant``, if any."""
    day = instant.astimezone(HELSINKI).date()
    midnight = local_midnight(day)
    nxt = local_midnight(day + timedelta(days=1))
    if nxt - midnight != timedelta(hours=23):
        return None
    t = midnight
    while t.astimezone(HELSINKI).utcoffset() == midnight.astimezone(HELSINKI).utcoffset():
        t += timedelta(hours=1)
    return t


def portal_label(instant: datetime, spring_labels: bool) -> str:
    """The naive local time the portal writes for ``instant``."""
    if spring_labels:
        switch = spring_switch(instant)
        if switch is not None and switch <= instant < switch + SPRING_WINTER_LABELS:
            return instant.astimezone(_WINTER).replace(tzinfo=None).isoformat(timespec="seconds")
    return local_naive(instant)


def quantity(kwh: float) -> float | int:
    """A quantity as the portal writes it: a zero is the integer 0 (WattiVahtiLogger's
    PT1H fixtures in api/src/lib.rs carry "quantity": 0 next to 0.02, 0.04)."""
    return 0 if kwh == 0 else kwh


def local_midnight(d: date) -> datetime:
    return datetime.combine(d, time(0), HELSINKI).astimezone(UTC)


@dataclass(frozen=True)
class Entry:
    """One tsv entry: the label the portal writes, the instant it stands for, the value."""

    label: str
    utc: int  # Unix seconds of the interval's start
    quantity: float | int | None


def entries(
    *,
    measurement_type: int,
    start: datetime,
    stop: datetime,
    resolution: str,
    quarter_since: datetime,
    data_until: datetime,
    spring_labels: bool = False,
) -> list[Entry]:
    """The entries of the meterdata2 answer for [start, stop), in the portal's order.

    PT15MIN exists only from ``quarter_since`` on; instants from ``data_until`` on are
    not measured yet (quantity null). Entries are ordered by their naive local time, which
    turns the autumn repeated hour into consecutive pairs, as the real portal does
    (vuorinet/wattivahti-influx DST_FIX_UPDATE.md: 03:00, 03:00, 03:15, 03:15, ...).
    With ``spring_labels`` the night of the spring switch is labelled as in the public
    sample (see SPRING_WINTER_LABELS).
    """
    step = STEPS[resolution]
    t = int(start.timestamp())
    t += -t % step
    out: list[Entry] = []
    while t < stop.timestamp():
        instant = datetime.fromtimestamp(t, UTC)
        t += step
        if resolution == "PT15MIN" and instant < quarter_since:
            continue
        q = (
            quantity(value_kwh(measurement_type, instant, resolution))
            if instant < data_until
            else None
        )
        out.append(Entry(portal_label(instant, spring_labels), int(instant.timestamp()), q))
    out.sort(key=lambda e: (e.label, e.utc))
    return out


def answer(
    metering_point: str, start: datetime, stop: datetime, resolution: str, tsv: list[Entry]
) -> dict[str, Any]:
    """The meterdata2 JSON document around ``tsv`` (shape of WattiVahtiLogger's models.rs)."""
    total = round(sum(e.quantity for e in tsv if e.quantity is not None), 3)
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
                    "values": {"tsv": [{"quantity": e.quantity, "time": e.label} for e in tsv]},
                },
            },
            "spotdata": None,
        }
    }
