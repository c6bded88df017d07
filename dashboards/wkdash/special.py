"""The queries that are more than a sum or a mean: daily COP, WattiVahti's resolution per
day, and the agents' health from ``wattkeeper_agent``."""

from __future__ import annotations

from .flux import (
    Series,
    daily_increase,
    daily_sum,
    flux_str,
    program,
    read_raw,
    span,
    sum_daily_fields,
)
from .queries import AGENT_SOURCES, KWH, agent, finish, luxtronik, pulse, wattivahti

HEAT_FIELDS = ("ID_WEB_WMZ_Heizung", "ID_WEB_WMZ_Brauchwasser", "ID_WEB_WMZ_Schwimmbad")
# Electrical energy the controller counts itself, where its firmware has it (heating, hot
# water); evidence: Home Assistant integrations read these two parameters as energy input.
# python-luxtronik 0.3.14 does not name them; later versions call them HEAT_ENERGY_INPUT
# and DHW_ENERGY_INPUT, type Energy (0.1 kWh units): so does the Home Assistant
# integration BenPru/luxtronik (P1136_HEAT_ENERGY_INPUT, P1137_DHW_ENERGY_INPUT).
ELECTRIC_FIELDS = ("Unknown_Parameter_1136", "Unknown_Parameter_1137")
CONTROLLER_UNIT_KWH = 0.1

_COP_RANGE = (
    "first = date.truncate(t: v.timeRangeStart, unit: 1d)",
    span(start="date.sub(d: 1d, from: first)"),
)


def _heat_and_electricity() -> tuple[str, ...]:
    """``heat`` and ``elec``: kWh per local day (_time, _value), null when unknown."""
    heat = luxtronik(*HEAT_FIELDS)
    controller = luxtronik(*ELECTRIC_FIELDS, group="parameters")
    meter = pulse("energy_wh", channel='"${heatpump_meter}"')
    return (
        daily_increase(heat, "heat_inc"),
        sum_daily_fields("heat_inc", HEAT_FIELDS, "heat"),
        daily_increase(controller, "ctl_inc"),
        sum_daily_fields("ctl_inc", ELECTRIC_FIELDS, "elec_controller", CONTROLLER_UNIT_KWH),
        daily_sum(meter, "elec_meter", KWH),
        "elec = if " + flux_str("${heatpump_meter}") + ' != "" then elec_meter'
        ' |> group() |> keep(columns: ["_time", "_value"])\n    else elec_controller',
    )


def cop() -> str:
    """Per local day: heat produced / electricity used; no value (null) unless both are
    known and above zero, so a day without either is never 0 or infinity."""
    return program(
        *_COP_RANGE,
        *_heat_and_electricity(),
        "both = union(tables: [\n"
        '        heat |> set(key: "q", value: "heat"),\n'
        '        elec |> set(key: "q", value: "elec"),\n'
        "    ])\n"
        "    |> group()\n"
        '    |> pivot(rowKey: ["_time"], columnKey: ["q"], valueColumn: "_value")\n'
        "    |> filter(fn: (r) => r._time >= first and r._time < stop)\n"
        '    |> sort(columns: ["_time"])',
        'daily = both |> map(fn: (r) => ({_time: r._time, _field: "COP",\n'
        "    _value: if exists r.heat and exists r.elec and r.heat > 0.0 and r.elec > 0.0\n"
        '        then r.heat / r.elec else debug.null(type: "float")}))',
        finish("daily", '"COP"'),
        imports=("internal/debug",),
    )


def cop_inputs(which: str) -> str:
    """The heat or the electricity per day that the COP divides (kWh)."""
    label = {"heat": "Heat produced", "elec": "Electricity used"}[which]
    return program(
        *_COP_RANGE,
        *_heat_and_electricity(),
        f"shown = {which}\n"
        "    |> filter(fn: (r) => r._time >= first and r._time < stop)\n"
        '    |> sort(columns: ["_time"])',
        finish("shown", flux_str(label)),
    )


def resolution_per_day() -> str:
    """How many readings of each resolution (PT15MIN, PT1H) each local day has (raw only:
    the tiers keep no text fields)."""
    return program(
        span(start="date.truncate(t: v.timeRangeStart, unit: 1d)"),
        read_raw(wattivahti("resolution", text=True), "rows"),
        "counted = rows\n"
        "    |> map(fn: (r) => ({_time: r._time, _value: 1.0, resolution: r._value}))\n"
        '    |> group(columns: ["resolution"])\n'
        '    |> aggregateWindow(every: 1d, fn: sum, createEmpty: false, timeSrc: "_start")\n'
        "    |> group()\n"
        '    |> sort(columns: ["_time", "resolution"])\n'
        '    |> rename(columns: {_value: "readings"})\n'
        '    |> keep(columns: ["_time", "resolution", "readings"])',
        "counted",
    )


AGENT_FIELDS = (
    "buffer_rows",
    "oldest_pending_seconds",
    "points_dropped",
    "poll_errors",
    "last_success_unixtime",
    "stale_seconds",
)


def _agents(fields: tuple[str, ...]) -> tuple[str, ...]:
    """``agents = `` the metrics of every agent, from each source's raw bucket."""
    parts = [read_raw(agent(src, *fields), f"a_{src}") for src in AGENT_SOURCES]
    union = ", ".join(f"a_{src}" for src in AGENT_SOURCES)
    return (*parts, f"agents = union(tables: [{union}])")


def agents_table() -> str:
    """The newest metrics of each agent (source, host), with the age of its last delivery."""
    return program(
        span(),
        *_agents(AGENT_FIELDS),
        "nowSeconds = float(v: int(v: now())) / 1000000000.0",
        "newest = agents\n"
        "    |> last()\n"
        '    |> group(columns: ["source", "host"])\n'
        '    |> pivot(rowKey: ["source", "host"], columnKey: ["_field"], valueColumn: "_value")\n'
        "    |> map(fn: (r) => ({r with since_success_seconds:\n"
        "        if exists r.last_success_unixtime then nowSeconds - r.last_success_unixtime\n"
        '        else debug.null(type: "float")}))\n'
        "    |> group()\n"
        '    |> sort(columns: ["source", "host"])\n'
        '    |> drop(columns: ["_start", "_stop", "_measurement", "_time",'
        ' "last_success_unixtime"])',
        "newest",
        imports=("internal/debug",),
    )


def agent_graph(field: str, *, increase: bool = False) -> str:
    """One metric of every agent over time (the largest value per interval); ``increase``
    for counters: how much they grew per interval (a restart's reset counts as 0)."""
    stage = (
        "agents |> difference(nonNegative: true)\n"
        "    |> aggregateWindow(every: v.windowPeriod, fn: sum, createEmpty: false)"
        if increase
        else "agents\n    |> aggregateWindow(every: v.windowPeriod, fn: max, createEmpty: false)"
    )
    return program(
        span(),
        *_agents((field,)),
        f"shown = {stage}",
        finish("shown", 'r.source + " on " + r.host'),
    )


def since_last_success_graph() -> str:
    """Seconds between each metrics point and the agent's last delivery before it."""
    return program(
        span(),
        *_agents(("last_success_unixtime",)),
        "ages = agents\n"
        "    |> map(fn: (r) => ({r with\n"
        "        _value: float(v: int(v: r._time)) / 1000000000.0 - r._value}))\n"
        "    |> aggregateWindow(every: v.windowPeriod, fn: max, createEmpty: false)",
        finish("ages", 'r.source + " on " + r.host'),
    )


__all__ = [
    "Series",
    "agent_graph",
    "agents_table",
    "cop",
    "cop_inputs",
    "resolution_per_day",
    "since_last_success_graph",
]
