"""What a source shows in Home Assistant: one plain description per sensor.

A source declares its sensors next to its roll-ups (in its package's ``PLUGIN``), as data:
which field of which measurement feeds the sensor, and the device class, state class and
unit Home Assistant needs. The core's live view (``wattkeeper.mqtt``) turns committed
readings into sensor states and discovery messages; nothing here knows about MQTT.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# "latest": the field's newest value (by reading time). "total": a running sum of the field
# over every committed reading, kept in the buffer's state with the readings themselves, so
# it never goes backwards and never counts a reading twice (pulse energy).
Kind = Literal["latest", "total"]


@dataclass(frozen=True)
class Sensor:
    """One Home Assistant sensor fed by one field of one measurement."""

    # Part of the entity's object id and unique id: letters, digits and "_" only; stable,
    # because Home Assistant keys the entity (and its history) on it.
    key: str
    name: str
    measurement: str
    field: str
    device_class: str | None = None
    state_class: str | None = None
    unit: str | None = None
    kind: Kind = "latest"
    # One sensor per value of this tag (a pulse channel): key and name are prefixed with it.
    per_tag: str | None = None
    # Published value = field value x scale (Wh -> kWh: 0.001).
    scale: float = 1.0
    precision: int | None = None
    # Allowed states of an enum sensor (device_class "enum").
    options: tuple[str, ...] = ()
    # False: published only when named in [mqtt] sensors (a Luxtronik value outside the
    # curated set).
    default: bool = True
    # Also publish the reading's time as an attribute (data that arrives hours late).
    with_time: bool = False
    # Power measured between readings (pulses): the field holding the energy (Wh) one
    # reading stands for. While no reading comes, the power shown cannot exceed that energy
    # over the time since the last one, so a meter that stopped falls towards 0 W instead
    # of showing its last power for hours.
    per_reading_wh: str | None = None
    icon: str | None = None


def object_key(sensor: Sensor, tag_value: str | None) -> str:
    """The sensor's key for one tag value ("import_power"), or its own key."""
    if sensor.per_tag and tag_value:
        return f"{_slug(tag_value)}_{sensor.key}"
    return sensor.key


def display_name(sensor: Sensor, tag_value: str | None) -> str:
    if sensor.per_tag and tag_value:
        label = tag_value.replace("_", " ").capitalize()
        return f"{label} {sensor.name[:1].lower()}{sensor.name[1:]}"
    return sensor.name


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_") or "x"
