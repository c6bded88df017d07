"""Readings to InfluxDB points, in the wattkeeper schema or one of the seed tools' schemas.

The API's units: demand in W, consumption / consumptionDelta / export in Wh, costs in
pence. Seed 001 wrote kWh, kW and pounds; seed 000 only the demand as ``power_numeric``.
"""

from __future__ import annotations

from collections.abc import Callable

from wattkeeper.point import Point

from .parsing import Reading

# API field -> (wattkeeper field, factor).
_WATTKEEPER = {
    "demand": "demand_w",
    "consumption": "consumption_wh",
    "consumptionDelta": "consumption_delta_wh",
    "export": "export_wh",
    "costDelta": "cost_delta_pence",
    "costDeltaWithTax": "cost_delta_with_tax_pence",
}
_SEED001 = {
    "consumptionDelta": ("consumption_delta", 0.001),  # Wh -> kWh
    "demand": ("demand", 0.001),  # W -> kW
    "costDelta": ("cost_delta", 0.01),  # pence -> pounds
    "consumption": ("consumption", 0.001),  # Wh -> kWh
}


def wattkeeper_point(r: Reading, device_id: str) -> Point | None:
    fields: dict[str, float | int | str | bool] = {
        _WATTKEEPER[k]: v for k, v in r.values.items() if k in _WATTKEEPER
    }
    if not fields:
        return None
    return Point.at("octopus", r.read_at, fields, {"device_id": device_id})


def seed000_point(r: Reading, device_id: str) -> Point | None:
    if "demand" not in r.values:
        return None
    return Point.at("power", r.read_at, {"power_numeric": r.values["demand"]})


def seed001_point(r: Reading, device_id: str) -> Point | None:
    fields: dict[str, float | int | str | bool] = {
        name: r.values[k] * factor for k, (name, factor) in _SEED001.items() if k in r.values
    }
    if not fields:
        return None
    return Point.at("energy_consumption", r.read_at, fields, {"source": "octopus_home_mini"})


SCHEMAS: dict[str, Callable[[Reading, str], Point | None]] = {
    "wattkeeper": wattkeeper_point,
    "power-numeric": seed000_point,
    "energy-consumption": seed001_point,
    # Former names (the octopus section's validate() maps them to these anyway).
    "seed000": seed000_point,
    "seed001": seed001_point,
}
