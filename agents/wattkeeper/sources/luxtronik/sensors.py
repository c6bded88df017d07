"""Luxtronik values in Home Assistant: a curated set, and any other value by name.

A controller has some 1,800 values; most are settings nobody graphs. The curated set is
what a heat pump owner watches: temperatures, the operating state and the heat meters.
Any other value is published when its python-luxtronik name is listed in [mqtt] sensors;
its device class and unit then follow python-luxtronik's own measurement type.
"""

from __future__ import annotations

from functools import cache

from luxtronik.calculations import Calculations
from luxtronik.parameters import Parameters
from luxtronik.visibilities import Visibilities

from wattkeeper.sensors import Sensor

M = "luxtronik"


def _temp(key: str, name: str, field: str) -> Sensor:
    return Sensor(key, name, M, field, device_class="temperature", state_class="measurement",
                  unit="°C", precision=1)  # fmt: skip


def _heat(key: str, name: str, field: str) -> Sensor:
    return Sensor(key, name, M, field, device_class="energy", state_class="total_increasing",
                  unit="kWh", precision=1)  # fmt: skip


def _operation_modes() -> tuple[str, ...]:
    by_name = {e.name: e for e in Calculations.calculations.values()}
    codes = getattr(by_name.get("ID_WEB_WP_BZ_akt"), "codes", {}) or {}
    return tuple(str(v) for v in codes.values())


SENSORS = (
    _temp("flow_temperature", "Flow temperature", "ID_WEB_Temperatur_TVL"),
    _temp("return_temperature", "Return temperature", "ID_WEB_Temperatur_TRL"),
    _temp("return_temperature_target", "Return temperature target", "ID_WEB_Sollwert_TRL_HZ"),
    _temp("outdoor_temperature", "Outdoor temperature", "ID_WEB_Temperatur_TA"),
    _temp(
        "outdoor_temperature_average", "Outdoor temperature (average)", "ID_WEB_Mitteltemperatur"
    ),
    _temp("hot_water_temperature", "Hot water temperature", "ID_WEB_Temperatur_TBW"),
    _temp("hot_water_target", "Hot water target", "ID_Einst_BWS_akt"),
    _temp("source_in_temperature", "Heat source inlet temperature", "ID_WEB_Temperatur_TWE"),
    _temp("source_out_temperature", "Heat source outlet temperature", "ID_WEB_Temperatur_TWA"),
    Sensor(
        "operating_state",
        "Operating state",
        M,
        "ID_WEB_WP_BZ_akt",
        device_class="enum",
        options=_operation_modes(),
        icon="mdi:heat-pump",
    ),
    Sensor(
        "heat_output",
        "Heat output",
        M,
        "Heat_Output",
        device_class="power",
        state_class="measurement",
        unit="W",
        precision=0,
    ),
    _heat("heat_heating", "Heat quantity, heating", "ID_WEB_WMZ_Heizung"),
    _heat("heat_hot_water", "Heat quantity, hot water", "ID_WEB_WMZ_Brauchwasser"),
    _heat("heat_total", "Heat quantity, total", "ID_WEB_WMZ_Seit"),
    Sensor(
        "compressor_hours",
        "Compressor operating time",
        M,
        "ID_WEB_Zaehler_BetrZeitVD1",
        device_class="duration",
        state_class="total_increasing",
        unit="h",
        scale=1 / 3600,
        precision=0,
    ),
)

# python-luxtronik measurement type -> (device class, state class, unit, scale). Types not
# listed (selections, versions, addresses, codes) become plain text sensors.
_BY_TYPE: dict[str, tuple[str | None, str | None, str | None, float]] = {
    "celsius": ("temperature", "measurement", "°C", 1.0),
    "kelvin": ("temperature_delta", "measurement", "K", 1.0),
    "energy": ("energy", "total_increasing", "kWh", 1.0),
    "W": ("power", "measurement", "W", 1.0),
    "Hz": ("frequency", "measurement", "Hz", 1.0),
    "bar": ("pressure", "measurement", "bar", 1.0),
    "voltage": ("voltage", "measurement", "V", 1.0),
    "percent": (None, "measurement", "%", 1.0),
    "seconds": ("duration", "measurement", "s", 1.0),
    "hours": ("duration", "measurement", "h", 1.0),
    "flow": (None, "measurement", "l/h", 1.0),
    "rpm": (None, "measurement", "rpm", 1.0),
    "pulses": (None, "measurement", None, 1.0),
    "count": (None, "measurement", None, 1.0),
    "boolean": (None, "measurement", None, 1.0),
}


@cache
def _entries() -> dict[str, object]:
    out: dict[str, object] = {}
    for table in (Parameters.parameters, Calculations.calculations, Visibilities.visibilities):
        for entry in table.values():
            out.setdefault(entry.name, entry)
    return out


def describe(name: str) -> Sensor | None:
    """A sensor for any python-luxtronik value name, or None if there is no such value."""
    entry = _entries().get(name)
    if entry is None:
        return None
    kind = str(getattr(entry, "measurement_type", None))
    codes = getattr(entry, "codes", None)
    key = "".join(c if c.isalnum() else "_" for c in name.lower())
    label = name.removeprefix("ID_WEB_").removeprefix("ID_").replace("_", " ")
    if kind == "timestamp":
        return Sensor(key, label, M, name, device_class="timestamp", default=False)
    if kind == "selection" and isinstance(codes, dict) and codes:
        options = tuple(dict.fromkeys(str(v) for v in codes.values()))
        return Sensor(key, label, M, name, device_class="enum", options=options, default=False)
    dc, sc, unit, scale = _BY_TYPE.get(kind, (None, None, None, 1.0))
    return Sensor(key, label, M, name, device_class=dc, state_class=sc, unit=unit, scale=scale,
                  default=False)  # fmt: skip
