"""Which sources the scenario deploys, and what each one writes (spec: data schema)."""

from __future__ import annotations

import os
from pathlib import Path

from wattkeeper.registry import load_plugin

ROOT = Path(__file__).resolve().parents[3]
_PKG = ROOT / "agents" / "wattkeeper"


def _landed(kind: str, name: str) -> bool:
    return (_PKG / kind / f"{name}.py").exists() or (_PKG / kind / name / "__init__.py").exists()


# Every source whose agent and simulator both exist runs on the collector.
SOURCES = [
    s
    for s in ("octopus", "wattivahti", "pulse", "luxtronik")
    if _landed("sources", s) and _landed("simulate", s)
]
# A scenario deploying fewer sources (molecule/armhf) names them: WK_SOURCES=octopus,pulse.
if os.environ.get("WK_SOURCES"):
    SOURCES = [s for s in SOURCES if s in os.environ["WK_SOURCES"].split(",")]
ONESHOT = {"wattivahti"}
# Sources that declare roll-ups get the downsampling tasks.
ROLLED = [s for s in SOURCES if load_plugin(s).rollups]
DAEMONS = [s for s in SOURCES if s not in ONESHOT]
TIERS = {"1m": 60, "5m": 300, "1h": 3600}
# Fields checked against raw per source: field -> the aggregate its tier must hold.
CHECKED_FIELDS = {
    "pulse": {"pulses": "sum", "energy_wh": "sum", "power_w": "mean"},
    "wattivahti": {"consumption_wh": "sum"},
    "luxtronik": {"ID_WEB_Zaehler_BetrZeitVD1": "last", "ID_WEB_Temperatur_TVL": "mean"},
    "octopus": {"demand_w": "mean", "consumption_delta_wh": "sum", "consumption_wh": "last"},
}
