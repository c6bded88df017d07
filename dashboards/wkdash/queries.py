"""Whole panel queries, from the building blocks in ``flux``.

Every query ends with the columns Grafana draws: ``_time`` and ``_value`` for graphs,
``_value`` for stats, and ``_field`` set to the series' label (``label`` is a Flux
expression: a string literal, or ``r.channel`` to name pulse channels by their channel).
"""

from __future__ import annotations

from .flux import (
    EVERY,
    Series,
    daily_increase,
    daily_sum,
    days,
    flux_str,
    period,
    program,
    read,
    read_raw,
    scale,
    span,
    windowed,
)

# Energy is stored in Wh, cost in pence.
KWH = 0.001
POUNDS = 0.01


def octopus(*fields: str) -> Series:
    return Series("octopus", "octopus", fields, ("device_id",))


def wattivahti(*fields: str, text: bool = False) -> Series:
    return Series("wattivahti", "wattivahti", fields, ("metering_point",), text=text)


def pulse(*fields: str, channel: str = "") -> Series:
    where = f"r.channel == {channel}" if channel else ""
    return Series("pulse", "pulse", fields, ("channel",), where)


def luxtronik(*fields: str, group: str = "calculations", text: bool = False) -> Series:
    where = f"r.group == {flux_str(group)}"
    return Series("luxtronik", "luxtronik", fields, ("group",), where, text)


def agent(source: str, *fields: str) -> Series:
    return Series(source, "wattkeeper_agent", fields, ("source", "host"))


AGENT_SOURCES = ("octopus", "wattivahti", "pulse", "luxtronik")


def lit(text: str) -> str:
    """A label that is the same for every row."""
    return flux_str(text)


def finish(name: str, label: str, *, time: bool = True, tags: tuple[str, ...] = ()) -> str:
    """The last stage: label each series and keep only what the panel shows."""
    cols = ", ".join(
        flux_str(c) for c in (*(("_time",) if time else ()), "_value", "_field", *tags)
    )
    return (
        f"{name}\n"
        f"    |> map(fn: (r) => ({{r with _field: {label}}}))\n"
        f"    |> keep(columns: [{cols}])\n"
    )


def per_day(s: Series, label: str, factor: float = KWH) -> str:
    """Per local day over the panel's range: the sum (energy, cost), scaled."""
    return program(days(), daily_sum(s, "daily", factor), finish("daily", label))


def increase_per_day(s: Series, label: str, factor: float = KWH) -> str:
    """Per local day over the panel's range: a counter's increase, scaled."""
    return program(
        "first = date.truncate(t: v.timeRangeStart, unit: 1d)",
        span(start="date.sub(d: 1d, from: first)"),
        daily_increase(s, "inc"),
        f"shown = inc |> filter(fn: (r) => r._time >= first) {scale(factor)}",
        finish("shown", label),
    )


def total(s: Series, which: str, label: str, factor: float = KWH) -> str:
    """The sum of the series over the local day, week or month up to the range's stop."""
    return program(
        period(which),
        read(s, "rows"),
        f"sums = rows |> sum() {scale(factor)}",
        finish("sums", label, time=False),
    )


def latest(s: Series, label: str, *, within: str = "15m", factor: float = 1.0) -> str:
    """The newest value of each series in the ``within`` before the range's stop."""
    return program(
        span(start=f"date.sub(d: {within}, from: v.timeRangeStop)"),
        read_raw(s, "rows"),
        f"newest = rows |> last() {scale(factor)}",
        finish("newest", label, time=False),
    )


def mean_graph(s: Series, label: str, factor: float = 1.0) -> str:
    """The mean of each series per Grafana interval (at least an hour on the 1h tier)."""
    return program(
        span(),
        EVERY,
        windowed(s, "w", "every", "mean"),
        f"shown = w {scale(factor)}",
        finish("shown", label),
    )


def power_from_energy(s: Series, label: str) -> str:
    """Mean power per interval from the energy counted in it (pulse channels): exact on
    every tier, unlike the mean of the pulses' own power values."""
    return program(
        span(),
        EVERY,
        windowed(s, "wh", "every", "sum"),
        "seconds = float(v: int(v: every)) / 1000000000.0",
        "power = wh |> map(fn: (r) => ({r with _value: r._value * 3600.0 / seconds}))",
        finish("power", label),
    )


def sums_per(s: Series, every: str, label: str, factor: float = KWH) -> str:
    """Sums per interval of at least ``every`` (hourly bars that coarsen on long ranges)."""
    return program(
        span(),
        f"every = if int(v: v.windowPeriod) < int(v: {every}) then {every} else v.windowPeriod",
        windowed(s, "w", "every", "sum"),
        f"shown = w {scale(factor)}",
        finish("shown", label),
    )
