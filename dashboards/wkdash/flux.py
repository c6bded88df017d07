"""Flux text for the panels: local days, the tier a range reads, counters' daily increases.

Every query starts from the same few definitions, so that each panel's Flux reads alone
(Grafana's query inspector shows it whole) and behaves the same:

* ``option location`` from the ``timezone`` variable: ``aggregateWindow(every: 1d)``,
  ``date.truncate`` and calendar arithmetic then follow local midnights, DST included
  (a 23- or 25-hour day is one day);
* ``start`` / ``stop``: the panel's range (or a day, week, month ending at its stop);
* ``cut``: where the 1h tier ends and raw begins. A range longer than ``LONG`` or older
  than the raw bucket's retention (the ``raw_retention`` variable) reads the 1h tier up
  to two hours before now and raw after that, so a year renders from ~9000 points per
  series; a short recent range reads raw alone;
* ``have(b:)``: a source without a bucket (not deployed) reads as empty instead of
  failing the whole panel.

Grafana substitutes ``${var}`` (frontend) and ``v.timeRangeStart``, ``v.timeRangeStop``,
``v.windowPeriod`` (backend, any ``word.word`` with those names), so this module writes
no other ``word.timeRangeStart``-like or ``word.bucket`` text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# Longer ranges than this read the 1h tier (shorter ones raw, if raw still has them).
LONG = "3d"
# The 1h tier is trusted up to this long before the current hour (its task runs after
# each hour ends; a margin so that a late run leaves no hole).
TIER_MARGIN = "2h"
TIER = "1h"

IMPORTS = ("array", "date", "timezone")

HEADER = """option location = timezone.location(name: "${timezone}")

// A source that is not deployed has no bucket: it reads as nothing.
have = (b) => length(arr: buckets() |> filter(fn: (r) => r.name == b)
    |> findColumn(fn: (key) => true, column: "name")) > 0
"""

# The start of the local day, Monday-based week and month that contain ``stop``.
PERIOD_STARTS = {
    "day": "date.truncate(t: stop, unit: 1d)",
    "week": (
        'date.sub(d: duration(v: string(v: (date.weekDay(t: stop) + 6) % 7) + "d"),'
        " from: date.truncate(t: stop, unit: 1d))"
    ),
    "month": "date.truncate(t: stop, unit: 1mo)",
}

# Which tier: raw for short recent ranges, the 1h tier up to ``cut`` otherwise.
CUT = f"""tierUntil = date.sub(d: {TIER_MARGIN}, from: date.truncate(t: now(), unit: 1h,
    location: timezone.utc))
useTier = int(v: stop) - int(v: start) > int(v: {LONG})
    or start < date.sub(d: ${{raw_retention}}, from: now())
cut = if not useTier or tierUntil < start then start
    else if tierUntil > stop then stop
    else tierUntil
"""

# Aggregation window of a graph: Grafana's interval, but never finer than the tier read.
EVERY = f"""every = if useTier and int(v: v.windowPeriod) < int(v: {TIER}) then {TIER}
    else v.windowPeriod
"""


def flux_str(s: str) -> str:
    """A Flux string literal."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Series:
    """Fields of one measurement in one source's buckets, and the tags that tell series apart."""

    source: str
    measurement: str
    fields: tuple[str, ...]
    tags: tuple[str, ...]
    where: str = ""  # an extra predicate on r (e.g. a tag value)
    text: bool = False  # a text field (raw only; the tiers leave text out)

    def predicate(self) -> str:
        """The filter, written out so that InfluxDB pushes it down to storage."""
        fields = " or ".join(f"r._field == {flux_str(f)}" for f in self.fields)
        extra = f" and {self.where}" if self.where else ""
        return f"r._measurement == {flux_str(self.measurement)} and ({fields}){extra}"


def program(*parts: str, imports: Sequence[str] = ()) -> str:
    """A whole query: imports, the shared header, then ``parts`` in order."""
    names = sorted({*IMPORTS, *imports})
    head = "\n".join(f"import {flux_str(n)}" for n in names)
    body = "\n".join(p.rstrip("\n") + "\n" for p in parts if p)
    return f"{head}\n\n{HEADER}\n{body}"


def span(start: str = "v.timeRangeStart", stop: str = "v.timeRangeStop") -> str:
    """``start``/``stop`` and the tier split (``cut``) for them."""
    return f"stop = {stop}\nstart = {start}\n{CUT}"


def days() -> str:
    """The panel's range widened to whole local days (the first day counts whole)."""
    return span(start="date.truncate(t: v.timeRangeStart, unit: 1d)")


def period(name: str) -> str:
    """The local day, week (from Monday) or month up to the panel's stop."""
    return span(start=PERIOD_STARTS[name])


def _none(s: Series, name: str) -> str:
    """``NAME_none = `` an empty stream with the series' columns (when it has no bucket)."""
    tags = "".join(f', {t}: ""' for t in s.tags)
    value = '""' if s.text else "0.0"
    return (
        f"{name}_none = array.from(rows: [{{_time: 1970-01-01T00:00:00Z,\n"
        "    _start: 1970-01-01T00:00:00Z, _stop: 1970-01-01T00:00:00Z,\n"
        f'    _measurement: "", _field: "", _value: {value}{tags}}}])\n'
        "    |> range(start: start, stop: stop)\n"
        "    |> filter(fn: (r) => false)\n"
    )


def _parts(s: Series) -> tuple[str, str]:
    """The 1h tier's rows before ``cut`` and raw's from ``cut`` (never an empty range)."""
    pred = s.predicate()
    tier = (
        f"from(bucket: {flux_str(f'{s.source}_{TIER}')})\n"
        "            |> range(start: start, stop: if cut > start then cut"
        " else date.add(d: 1ns, to: start))\n"
        f"            |> filter(fn: (r) => {pred})\n"
        "            |> filter(fn: (r) => r._time < cut)"
    )
    raw = (
        f"from(bucket: {flux_str(f'{s.source}_raw')})\n"
        "            |> range(start: if cut < stop then cut"
        " else date.sub(d: 1ns, from: stop), stop: stop)\n"
        f"            |> filter(fn: (r) => {pred})\n"
        "            |> filter(fn: (r) => r._time >= cut)"
    )
    return tier, raw


def _guarded(s: Series, name: str, body: str) -> str:
    """``name = body`` if the source's raw and 1h buckets exist, else an empty stream."""
    raw, tier = flux_str(f"{s.source}_raw"), flux_str(f"{s.source}_{TIER}")
    return (
        f"{_none(s, name)}"
        f"{name} = if have(b: {raw}) and have(b: {tier}) then {body}\n"
        f"    else {name}_none\n"
    )


def _group(s: Series, *extra: str) -> str:
    return ", ".join(flux_str(c) for c in ("_measurement", "_field", *s.tags, *extra))


def read(s: Series, name: str) -> str:
    """``name = `` the rows of the series in [start, stop): 1h tier before ``cut``, raw after.

    One table per series (tags and field), in time order, whichever bucket a row came
    from; for reductions over the whole range (sum, last). Windows go through ``windowed``.
    """
    tier, raw = _parts(s)
    body = (
        f"union(tables: [\n        {tier},\n        {raw},\n    ])\n"
        f"        |> group(columns: [{_group(s)}])\n"
        '        |> sort(columns: ["_time"])'
    )
    return _guarded(s, name, body)


def read_raw(s: Series, name: str) -> str:
    """``name = `` the series from raw alone (text fields: the tiers leave them out)."""
    raw = flux_str(f"{s.source}_raw")
    return (
        f"{_none(s, name)}"
        f"{name} = if have(b: {raw}) then from(bucket: {raw})\n"
        "        |> range(start: start, stop: stop)\n"
        f"        |> filter(fn: (r) => {s.predicate()})\n"
        f"    else {name}_none\n"
    )


# How two partial windows (one from each bucket, where ``cut`` falls inside a window)
# combine: sums add, a counter's last value is its larger one, means are averaged.
MERGE = {"sum": "sum", "last": "max", "mean": "mean", "max": "max", "min": "min"}


def windowed(s: Series, name: str, every: str, fn: str, *, create_empty: bool = False) -> str:
    """``name = `` per window of ``every`` (local-time aligned, stamped at the window's
    start): ``fn`` of each series, over the 1h tier before ``cut`` and raw after it.

    Each bucket is aggregated on its own (InfluxDB needs a range before a window) and
    a window split by ``cut`` is merged with ``MERGE[fn]``: exact for sums and counters.
    """
    tier, raw = _parts(s)
    agg = (
        f"\n            |> aggregateWindow(every: {every}, fn: {fn},"
        f' createEmpty: {str(create_empty).lower()}, timeSrc: "_start")'
    )
    body = (
        f"union(tables: [\n        {tier}{agg},\n        {raw}{agg},\n    ])\n"
        f"        |> group(columns: [{_group(s, '_time')}])\n"
        f"        |> {MERGE[fn]}()\n"
        f"        |> group(columns: [{_group(s)}])\n"
        '        |> sort(columns: ["_time"])'
    )
    return _guarded(s, name, body)


def scale(factor: float) -> str:
    """A pipe stage multiplying ``_value`` (Wh -> kWh, pence -> pounds)."""
    return f"|> map(fn: (r) => ({{r with _value: float(v: r._value) * {factor!r}}}))"


def daily_sum(s: Series, name: str, factor: float = 1.0) -> str:
    """``name = `` per local day (stamped at its midnight): the sum of each series, scaled."""
    return windowed(s, name + "_wh", "1d", "sum") + f"{name} = {name}_wh {scale(factor)}\n"


def daily_increase(s: Series, name: str) -> str:
    """``name = `` each counter's increase over each local day: its last value of the day
    minus its last value of the day before, null when either day has no reading.

    Calendar arithmetic (``date.add(d: 1d)`` in the location) pairs each day with the one
    before it whatever their length, so a DST day needs no special case. The caller's
    ``start`` should be a day before the first day it shows.
    """
    return windowed(s, name + "_last", "1d", "last") + (
        f"{name} = union(tables: [\n"
        f'        {name}_last |> set(key: "side", value: "now"),\n'
        f"        {name}_last\n"
        f"            |> map(fn: (r) => ({{r with next: date.add(d: 1d, to: r._time)}}))\n"
        f'            |> drop(columns: ["_time"])\n'
        f'            |> rename(columns: {{next: "_time"}})\n'
        f'            |> set(key: "side", value: "before"),\n'
        f"    ])\n"
        f'    |> pivot(rowKey: ["_time"], columnKey: ["side"], valueColumn: "_value")\n'
        f"    |> filter(fn: (r) => r._time < stop)\n"
        f"    |> map(fn: (r) => ({{r with _value: r.now - r.before}}))\n"
        f'    |> drop(columns: ["now", "before"])\n'
    )


def sum_daily_fields(name: str, fields: Sequence[str], out: str, factor: float = 1.0) -> str:
    """``out = `` the sum over ``fields`` of ``name``'s per-day values (one table, _time/_value).

    A field missing on a day makes that day's sum null, except fields listed after the
    first two, which count as 0 when absent (the pool's heat quantity, rarely fitted).
    """
    cols = [f"r[{flux_str(f)}]" for f in fields]
    required = cols[:2]
    optional = [f"(if exists {c} then {c} else 0.0)" for c in cols[2:]]
    expr = " + ".join([*required, *optional])
    return (
        f"{out} = {name}\n"
        "    |> group()\n"
        '    |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
        f"    |> map(fn: (r) => ({{_time: r._time, _value: ({expr}) * {factor!r}}}))\n"
    )
