"""The dashboards: an overview, one per source, and the agents' health."""

from __future__ import annotations

from . import queries as q
from . import special as sp
from .common import SERIES, VALUE, Board, graph, grid, number, states
from .flux import Series, program, read_raw, span

PERIODS = (("day", "Today"), ("week", "This week"), ("month", "This month"))
PERIOD_NOTE = (
    "Local days, weeks (from Monday) and months of the time zone variable, up to the end "
    "of the selected range (now, unless you look at the past)."
)
CHANNEL = "r.channel"


def _refs(queries: list[str]) -> dict[str, str]:
    return {chr(ord("A") + i): flux for i, flux in enumerate(queries)}


def _energy_stats(b: Board, sources: list[tuple[Series, str]], what: str) -> None:
    """One stat panel per period: the energy of each series (kWh)."""
    for which, title in PERIODS:
        full = f"{what} {title.lower()}" if what else title
        b.add(
            number(full, "kwatth", description=PERIOD_NOTE, width=8),
            full,
            _refs([q.total(s, which, label) for s, label in sources]),
            VALUE,
        )


def overview() -> Board:
    b = Board(
        "wattkeeper-overview",
        "wattkeeper · Overview",
        "Power now; energy and cost today, this week, this month; import and export.",
    )
    b.row("Now")
    b.add(
        number("Power now", "watt", decimals=0, width=12),
        "Power now",
        _refs(
            [
                q.latest(q.octopus("demand_w"), q.lit("House (Octopus)")),
                q.latest(q.pulse("power_w"), CHANNEL),
            ]
        ),
        VALUE,
    )
    b.add(
        number("Cost today", "currencyGBP", decimals=2, width=12, description=PERIOD_NOTE),
        "Cost today",
        _refs([q.total(q.octopus("cost_delta_with_tax_pence"), "day", q.lit("Octopus"), 0.01)]),
        VALUE,
    )
    b.row("Energy")
    _energy_stats(
        b,
        [
            (q.octopus("consumption_delta_wh"), q.lit("Octopus import")),
            (q.wattivahti("consumption_wh"), q.lit("WattiVahti consumption")),
            (q.pulse("energy_wh"), CHANNEL),
        ],
        "",
    )
    for which, title in PERIODS[1:]:
        b.add(
            number(f"Cost {title.lower()}", "currencyGBP", decimals=2, width=12),
            f"Cost {title.lower()}",
            _refs([q.total(q.octopus("cost_delta_with_tax_pence"), which, '"Octopus"', 0.01)]),
            VALUE,
        )
    b.row("Import and export")
    b.add(
        graph("Import and export per day", "kwatth", bars=True, width=24),
        "Import and export per day",
        _refs(
            [
                q.per_day(q.octopus("consumption_delta_wh"), q.lit("Octopus import")),
                q.increase_per_day(q.octopus("export_wh"), q.lit("Octopus export")),
                q.per_day(q.wattivahti("consumption_wh"), q.lit("WattiVahti consumption")),
                q.per_day(q.wattivahti("production_wh"), q.lit("WattiVahti production")),
                q.per_day(q.pulse("energy_wh"), CHANNEL),
            ]
        ),
        SERIES,
    )
    thirty = graph("Energy per day, last 30 days", "kwatth", bars=True, width=24).time_from("30d")
    b.add(
        thirty,
        "Energy per day, last 30 days",
        _refs(
            [
                q.per_day(q.octopus("consumption_delta_wh"), q.lit("Octopus import")),
                q.per_day(q.wattivahti("consumption_wh"), q.lit("WattiVahti consumption")),
                q.per_day(q.pulse("energy_wh"), CHANNEL),
            ]
        ),
        SERIES,
    )
    return b


def octopus() -> Board:
    b = Board(
        "wattkeeper-octopus",
        "wattkeeper · Octopus Home Mini",
        "Demand, energy and cost from the Octopus Home Mini (measurement octopus).",
    )
    _energy_stats(b, [(q.octopus("consumption_delta_wh"), q.lit("Import"))], "Import")
    for which, title in PERIODS:
        b.add(
            number(f"Cost {title.lower()}", "currencyGBP", decimals=2, width=8),
            f"Cost {title.lower()}",
            _refs(
                [
                    q.total(q.octopus("cost_delta_with_tax_pence"), which, q.lit("with VAT"), 0.01),
                    q.total(q.octopus("cost_delta_pence"), which, q.lit("before VAT"), 0.01),
                ]
            ),
            VALUE,
        )
    b.add(
        graph("Demand", "watt", width=24, description="Negative while exporting."),
        "Demand",
        _refs([q.mean_graph(q.octopus("demand_w"), q.lit("Demand"))]),
        SERIES,
    )
    b.add(
        graph("Energy per day", "kwatth", bars=True),
        "Energy per day",
        _refs(
            [
                q.per_day(q.octopus("consumption_delta_wh"), q.lit("Import")),
                q.increase_per_day(q.octopus("export_wh"), q.lit("Export")),
            ]
        ),
        SERIES,
    )
    b.add(
        graph("Cost per day", "currencyGBP", bars=True),
        "Cost per day",
        _refs(
            [
                q.per_day(q.octopus("cost_delta_with_tax_pence"), q.lit("with VAT"), 0.01),
                q.per_day(q.octopus("cost_delta_pence"), q.lit("before VAT"), 0.01),
            ]
        ),
        SERIES,
    )
    return b


def wattivahti() -> Board:
    b = Board(
        "wattkeeper-wattivahti",
        "wattkeeper · WattiVahti",
        "Consumption and production from the WattiVahti metering portal (measurement "
        "wattivahti); the portal publishes a day's readings hours to a day later.",
    )
    both = [
        (q.wattivahti("consumption_wh"), q.lit("Consumption")),
        (q.wattivahti("production_wh"), q.lit("Production")),
    ]
    _energy_stats(b, both, "")
    b.add(
        graph(
            "Per hour", "kwatth", bars=True, width=24, description="Hourly; coarser on long ranges."
        ),
        "Per hour",
        _refs([q.sums_per(s, "1h", label) for s, label in both]),
        SERIES,
    )
    b.add(
        graph("Per day", "kwatth", bars=True, width=12),
        "Per day",
        _refs([q.per_day(s, label) for s, label in both]),
        SERIES,
    )
    b.add(
        grid(
            "Resolution per day",
            width=12,
            description="Readings per day by resolution: PT15MIN quarter-hours or PT1H hours.",
        ),
        "Resolution per day",
        _refs([sp.resolution_per_day()]),
        ("_time", "resolution", "readings"),
    )
    return b


def pulse() -> Board:
    b = Board(
        "wattkeeper-pulse",
        "wattkeeper · Meter pulses",
        "Power and energy of each pulse channel (measurement pulse, tag channel).",
    )
    _energy_stats(b, [(q.pulse("energy_wh"), CHANNEL)], "")
    b.add(
        graph(
            "Power",
            "watt",
            width=24,
            description="Mean power per interval, from the energy counted in it.",
        ),
        "Power",
        _refs([q.power_from_energy(q.pulse("energy_wh"), CHANNEL)]),
        SERIES,
    )
    b.add(
        graph("Energy per day", "kwatth", bars=True, width=24),
        "Energy per day",
        _refs([q.per_day(q.pulse("energy_wh"), CHANNEL)]),
        SERIES,
    )
    return b


TEMPERATURES = {
    "ID_WEB_Temperatur_TVL": "Flow",
    "ID_WEB_Temperatur_TRL": "Return",
    "ID_WEB_Sollwert_TRL_HZ": "Return target",
    "ID_WEB_Temperatur_TA": "Outside",
    "ID_WEB_Temperatur_TBW": "Hot water",
}


def luxtronik() -> Board:
    b = Board(
        "wattkeeper-luxtronik",
        "wattkeeper · Luxtronik heat pump",
        "Temperatures, operating state, heat quantities and the daily COP of the heat pump "
        "(measurement luxtronik).",
        heatpump=True,
    )
    b.add(
        graph("Temperatures", "celsius", width=24),
        "Temperatures",
        _refs([q.mean_graph(q.luxtronik(f), q.lit(n)) for f, n in TEMPERATURES.items()]),
        SERIES,
    )
    b.add(
        states("Operating state", description="ID_WEB_WP_BZ_akt, from the raw bucket."),
        "Operating state",
        _refs(
            [
                program(
                    span(),
                    read_raw(q.luxtronik("ID_WEB_WP_BZ_akt", text=True), "rows"),
                    q.finish("rows", q.lit("Operating state")),
                )
            ]
        ),
        SERIES,
    )
    b.add(
        graph("Heat output", "watt", width=24),
        "Heat output",
        _refs([q.mean_graph(q.luxtronik("Heat_Output"), q.lit("Heat output"))]),
        SERIES,
    )
    b.add(
        graph("Heat produced per day", "kwatth", bars=True, stack=True),
        "Heat produced per day",
        _refs(
            [
                q.increase_per_day(q.luxtronik("ID_WEB_WMZ_Heizung"), q.lit("Heating"), 1.0),
                q.increase_per_day(q.luxtronik("ID_WEB_WMZ_Brauchwasser"), q.lit("Hot water"), 1.0),
            ]
        ),
        SERIES,
    )
    b.add(
        graph(
            "COP per day",
            "none",
            bars=True,
            description=(
                "Heat produced / electricity used, per local day. Electricity: the pulse "
                "channel in the heatpump_meter variable, or the controller's own counters. "
                "A day without both shows no value."
            ),
        ),
        "COP per day",
        _refs([sp.cop()]),
        SERIES,
    )
    b.add(
        graph("Heat and electricity per day", "kwatth", bars=True, width=24),
        "Heat and electricity per day",
        _refs([sp.cop_inputs("heat"), sp.cop_inputs("elec")]),
        SERIES,
    )
    return b


def health() -> Board:
    b = Board(
        "wattkeeper-agents",
        "wattkeeper · Agent health",
        "Every agent's own metrics (measurement wattkeeper_agent, in its raw bucket).",
    )
    b.add(
        grid("Agents", description="The newest metrics of each agent in the range."),
        "Agents",
        _refs([sp.agents_table()]),
        ("source", "host", "buffer_rows", "points_dropped", "poll_errors"),
    )
    for field, title, unit in (
        ("buffer_rows", "Buffer depth (points waiting)", "short"),
        ("oldest_pending_seconds", "Oldest undelivered reading (age)", "s"),
    ):
        b.add(graph(title, unit), title, _refs([sp.agent_graph(field)]), SERIES)
    for field, title in (
        ("points_dropped", "Points dropped"),
        ("poll_errors", "Poll errors"),
    ):
        b.add(
            graph(title, "short", bars=True),
            title,
            _refs([sp.agent_graph(field, increase=True)]),
            SERIES,
        )
    b.add(
        graph("Time since last delivery", "s", width=24),
        "Time since last delivery",
        _refs([sp.since_last_success_graph()]),
        SERIES,
    )
    return b


ALL = (overview, octopus, wattivahti, pulse, luxtronik, health)
