"""Luxtronik 2 heat pump controllers (Novelan, Alpha Innotec) over TCP port 8889.

Every poll reads all parameters, calculations and visibilities with python-luxtronik and
writes three points (measurement ``luxtronik``, tag ``group``), one field per value named
as python-luxtronik names it. Recent polls are also kept in the agent's SQLite file for the
daily and weekly CSV roll-ups (`wattkeeper report luxtronik`).
"""

from __future__ import annotations

from wattkeeper.downsample import Rollup
from wattkeeper.source import Report, Simulated, SourceContext, SourcePlugin, Unit
from wattkeeper.sources.luxtronik.config import LuxtronikSection
from wattkeeper.sources.luxtronik.reader import raw_field_names
from wattkeeper.sources.luxtronik.report import add_commands
from wattkeeper.sources.luxtronik.sensors import SENSORS, describe
from wattkeeper.sources.luxtronik.source import LuxtronikSource


def _factory(ctx: SourceContext) -> LuxtronikSource:
    return LuxtronikSource(ctx)


# Cumulative counters keep their last value per window; everything else is averaged
# (booleans are 0/1, so their mean is the share of the window they were on).
_COUNTERS = [
    "ID_WEB_Zaehler_BetrZeitVD1",
    "ID_WEB_Zaehler_BetrZeitImpVD1",
    "ID_WEB_Zaehler_BetrZeitVD2",
    "ID_WEB_Zaehler_BetrZeitImpVD2",
    "ID_WEB_Zaehler_BetrZeitZWE1",
    "ID_WEB_Zaehler_BetrZeitZWE2",
    "ID_WEB_Zaehler_BetrZeitZWE3",
    "ID_WEB_Zaehler_BetrZeitWP",
    "ID_WEB_Zaehler_BetrZeitHz",
    "ID_WEB_Zaehler_BetrZeitBW",
    "ID_WEB_Zaehler_BetrZeitKue",
    "ID_WEB_Zaehler_BetrZeitSolar",
    "ID_WEB_WMZ_Heizung",
    "ID_WEB_WMZ_Brauchwasser",
    "ID_WEB_WMZ_Schwimmbad",
    "ID_WEB_WMZ_Seit",
    # Electrical energy counters of newer firmware (heating, hot water), which
    # python-luxtronik 0.3.14 does not name yet; the dashboards' COP reads their increase.
    "Unknown_Parameter_1136",
    "Unknown_Parameter_1137",
]

PLUGIN = SourcePlugin(
    name="luxtronik",
    config_class=LuxtronikSection,
    factory=_factory,
    add_commands=add_commands,
    unit=Unit(
        extras=("luxtronik",),
        report=Report("report luxtronik", time_key="report_time", time_default="07:00"),
    ),
    example={"host": "192.0.2.10"},
    simulated=Simulated(port=18084, config={"host": "127.0.0.1", "port": 18084}),
    description="Luxtronik 2 heat pump controller (python-luxtronik, TCP 8889), read-only",
    # A code written raw (NAME_raw: python-luxtronik has no name for it) keeps its last
    # value too: the mean of two codes is no code.
    rollups=(
        Rollup(
            "luxtronik",
            fields={**dict.fromkeys(_COUNTERS, "last"), **dict.fromkeys(raw_field_names(), "last")},
            default="mean",
        ),
    ),
    sensors=SENSORS,
    describe_sensor=describe,
)
