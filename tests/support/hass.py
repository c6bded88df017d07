"""What Home Assistant accepts in an MQTT discovery message, for checking ours.

Encoded from Home Assistant's own sources, so our messages are checked against the real
rules rather than our idea of them:

* topic: homeassistant/components/mqtt/discovery.py, ``TOPIC_MATCHER``:
  ``<component>/[<node_id>/]<object_id>/config`` with ids ``[a-zA-Z0-9_-]+``;
* keys: homeassistant/components/mqtt/sensor.py ``_PLATFORM_SCHEMA_BASE`` (on
  ``MQTT_RO_SCHEMA``: ``state_topic`` required) and mqtt/schemas.py
  ``MQTT_ENTITY_COMMON_SCHEMA`` (device needs ``identifiers`` or ``connections``; origin needs
  ``name``); ``validate_sensor_state_and_device_class_config`` (``options`` only for enum
  sensors and never with a state class or unit; ``last_reset_value_template`` only with
  state class ``total``);
* device class / unit / state class: homeassistant/components/sensor/const.py,
  ``DEVICE_CLASS_UNITS`` and ``DEVICE_CLASS_STATE_CLASSES`` (the rows of the device classes
  wattkeeper uses; a message with another class fails here until its row is added), and
  ``NON_NUMERIC_DEVICE_CLASSES`` (date, enum, timestamp: no unit, no state class).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

TOPIC = re.compile(
    r"^(?P<prefix>.+?)/(?P<component>\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?"
    r"(?P<object_id>[a-zA-Z0-9_-]+)/config$"
)

_ENERGY_UNITS = {"J", "kJ", "MJ", "GJ", "mWh", "Wh", "kWh", "MWh", "GWh", "TWh",
                 "cal", "kcal", "Mcal", "Gcal"}  # fmt: skip
_TEMPERATURE = {"°C", "°F", "K"}
ALL_STATE_CLASSES = {"measurement", "total", "total_increasing"}

# sensor/const.py DEVICE_CLASS_UNITS (rows used by wattkeeper).
DEVICE_CLASS_UNITS: dict[str, set[str | None]] = {
    "power": {"W", "kW", "MW", "GW", "TW"},
    "energy": set(_ENERGY_UNITS),
    "temperature": set(_TEMPERATURE),
    "temperature_delta": set(_TEMPERATURE),
    "duration": {"d", "h", "min", "s", "ms"},
    "frequency": {"Hz", "kHz", "MHz", "GHz"},
    "pressure": {"Pa", "hPa", "kPa", "bar", "cbar", "mbar", "mmHg", "inHg", "psi"},
    "voltage": {"µV", "mV", "V", "kV", "MV"},
}
# sensor/const.py DEVICE_CLASS_STATE_CLASSES (same rows, plus the non-numeric classes).
DEVICE_CLASS_STATE_CLASSES: dict[str, set[str]] = {
    "power": {"measurement"},
    "energy": {"total", "total_increasing"},
    "temperature": {"measurement"},
    "temperature_delta": {"measurement"},
    "duration": set(ALL_STATE_CLASSES),
    "frequency": {"measurement"},
    "pressure": {"measurement"},
    "voltage": {"measurement"},
    "date": set(),
    "enum": set(),
    "timestamp": set(),
}
NON_NUMERIC = {"date", "enum", "timestamp"}
# binary_sensor/__init__.py BinarySensorDeviceClass (the one wattkeeper uses).
BINARY_DEVICE_CLASSES = {"problem"}

_COMMON = {
    "name", "unique_id", "state_topic", "device", "origin", "availability_topic",
    "payload_available", "payload_not_available", "availability", "entity_category",
    "enabled_by_default", "icon", "json_attributes_topic", "json_attributes_template",
    "object_id", "qos", "value_template", "encoding", "expire_after", "force_update",
}  # fmt: skip
SENSOR_KEYS = _COMMON | {
    "device_class", "state_class", "unit_of_measurement", "suggested_display_precision",
    "options", "last_reset_value_template",
}  # fmt: skip
BINARY_KEYS = _COMMON | {"device_class", "payload_on", "payload_off", "off_delay"}
DEVICE_KEYS = {"identifiers", "connections", "manufacturer", "model", "model_id", "name",
               "hw_version", "serial_number", "sw_version", "via_device", "suggested_area",
               "configuration_url"}  # fmt: skip


def check_config(topic: str, payload: str, prefix: str = "homeassistant") -> dict[str, Any]:
    """Raise AssertionError naming what HA would refuse in one discovery message."""
    m = TOPIC.match(topic)
    assert m and m.group("prefix") == prefix, f"{topic}: not a discovery topic HA matches"
    component = m.group("component")
    assert component in ("sensor", "binary_sensor"), f"{topic}: unexpected {component}"
    cfg = json.loads(payload)
    assert isinstance(cfg, dict), f"{topic}: config is not a JSON object"
    allowed = SENSOR_KEYS if component == "sensor" else BINARY_KEYS
    unknown = set(cfg) - allowed
    assert not unknown, f"{topic}: keys HA does not know: {sorted(unknown)}"
    for key in ("state_topic", "unique_id", "name"):
        assert isinstance(cfg.get(key), str) and cfg[key], f"{topic}: {key} missing"
    assert not set(cfg["state_topic"]) & {"+", "#"}, f"{topic}: wildcard in state_topic"
    device = cfg.get("device")
    assert isinstance(device, dict) and (device.get("identifiers") or device.get("connections"))
    assert not set(device) - DEVICE_KEYS, f"{topic}: device keys {sorted(set(device))}"
    assert isinstance(cfg.get("origin", {}).get("name"), str), f"{topic}: origin.name missing"
    if "entity_category" in cfg:
        assert cfg["entity_category"] == "diagnostic", f"{topic}: sensors take diagnostic only"
    if component == "binary_sensor":
        assert cfg.get("device_class") in BINARY_DEVICE_CLASSES | {None}
        return cfg
    dc = cfg.get("device_class")
    sc = cfg.get("state_class")
    unit = cfg.get("unit_of_measurement")
    assert sc is None or sc in ALL_STATE_CLASSES, f"{topic}: state_class {sc!r}"
    if dc is not None:
        assert dc in DEVICE_CLASS_STATE_CLASSES, f"{topic}: device class {dc!r} not in the table"
        if dc in NON_NUMERIC:
            assert unit is None and sc is None, f"{topic}: {dc} takes no unit or state class"
        else:
            assert unit in DEVICE_CLASS_UNITS[dc], f"{topic}: unit {unit!r} is not one of {dc}'s"
        if sc is not None:
            assert sc in DEVICE_CLASS_STATE_CLASSES[dc], f"{topic}: {dc} with state_class {sc}"
    if "options" in cfg:
        assert dc == "enum" and cfg["options"], f"{topic}: options need device_class enum"
        assert sc is None and unit is None, f"{topic}: options with a state class or unit"
    if "last_reset_value_template" in cfg:
        assert sc == "total", f"{topic}: last_reset needs state_class total"
    return cfg


def numeric(cfg: dict[str, Any]) -> bool:
    """Whether HA expects a number in this sensor's state (sensor.py _numeric_state_expected)."""
    dc = cfg.get("device_class")
    if dc in NON_NUMERIC:
        return False
    return bool(cfg.get("state_class") or cfg.get("unit_of_measurement") or dc)


def check_state(cfg: dict[str, Any], payload: str) -> None:
    """A state HA would take for this sensor."""
    where = cfg["unique_id"]
    if "payload_on" in cfg:
        assert payload in (cfg["payload_on"], cfg["payload_off"]), f"{where}: {payload!r}"
    elif cfg.get("device_class") == "timestamp":
        assert datetime.fromisoformat(payload).tzinfo is not None, f"{where}: {payload!r}"
    elif cfg.get("device_class") == "enum":
        assert payload in cfg["options"], f"{where}: {payload!r} not in the options"
    elif numeric(cfg):
        float(payload)
    else:
        assert len(payload) <= 255, f"{where}: text state longer than HA keeps"
