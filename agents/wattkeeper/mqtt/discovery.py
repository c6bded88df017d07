"""Topics and Home Assistant MQTT discovery messages of one agent.

One HA device per agent and host; each sensor's ``unique_id`` is built from the host, the
source and the sensor's key only, so it survives restarts, a new client id or a new
broker. Topic and payload shapes follow HA's MQTT discovery (topic
``PREFIX/COMPONENT/NODE_ID/OBJECT_ID/config``, both ids ``[a-zA-Z0-9_-]``; a retained JSON
config; ``availability_topic`` with ``online``/``offline``); tests/test_mqtt.py checks every
message against HA's schema and its device class / unit / state class tables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from wattkeeper import __version__
from wattkeeper.sensors import Sensor, display_name

ONLINE = "online"
OFFLINE = "offline"
_ID = re.compile(r"[^a-zA-Z0-9_-]+")


def slug(text: str) -> str:
    """Text as a discovery id part: HA accepts only [a-zA-Z0-9_-] there."""
    return _ID.sub("_", text).strip("_") or "x"


@dataclass(frozen=True)
class Identity:
    """Which agent this is, and where its messages go."""

    host: str
    source: str
    description: str
    topic_prefix: str
    discovery_prefix: str

    @property
    def node(self) -> str:
        return slug(f"wattkeeper_{self.host}_{self.source}")

    @property
    def base(self) -> str:
        return f"{self.topic_prefix}/{slug(self.host)}/{self.source}"

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def ha_status(self) -> str:
        return f"{self.discovery_prefix}/status"

    def state(self, key: str) -> str:
        return f"{self.base}/{key}"

    def attributes(self, key: str) -> str:
        return f"{self.base}/{key}/attributes"

    def config(self, component: str, key: str) -> str:
        return f"{self.discovery_prefix}/{component}/{self.node}/{key}/config"

    def unique_id(self, key: str) -> str:
        return f"{self.node}_{key}"

    def device(self) -> dict[str, Any]:
        return {
            "identifiers": [self.node],
            "name": f"wattkeeper {self.source} ({self.host})",
            "manufacturer": "wattkeeper",
            "model": self.description or self.source,
            "sw_version": __version__,
        }


ORIGIN = {"name": "wattkeeper", "sw_version": __version__}


def sensor_config(
    ident: Identity,
    sensor: Sensor,
    tag: str | None,
    key: str,
    *,
    availability: bool,
    expire_after: int | None = None,
    diagnostic: bool = False,
) -> dict[str, Any]:
    """The discovery config of one sensor (without abbreviations, for readability)."""
    cfg: dict[str, Any] = {
        "name": display_name(sensor, tag),
        "unique_id": ident.unique_id(key),
        "state_topic": ident.state(key),
        "device": ident.device(),
        "origin": ORIGIN,
    }
    for name, value in (
        ("device_class", sensor.device_class),
        ("state_class", sensor.state_class),
        ("unit_of_measurement", sensor.unit),
        ("suggested_display_precision", sensor.precision),
        ("icon", sensor.icon),
    ):
        if value is not None:
            cfg[name] = value
    if sensor.options:
        cfg["options"] = list(sensor.options)
    if sensor.with_time:
        cfg["json_attributes_topic"] = ident.attributes(key)
    if availability:
        cfg["availability_topic"] = ident.availability
    if expire_after:
        cfg["expire_after"] = expire_after
    if diagnostic:
        cfg["entity_category"] = "diagnostic"
    return cfg


def stale_config(
    ident: Identity, *, availability: bool, expire_after: int | None
) -> dict[str, Any]:
    """The agent's "stale" problem indicator (a binary sensor)."""
    cfg: dict[str, Any] = {
        "name": "Stale",
        "unique_id": ident.unique_id("stale"),
        "state_topic": ident.state("stale"),
        "device_class": "problem",
        "payload_on": "ON",
        "payload_off": "OFF",
        "entity_category": "diagnostic",
        "device": ident.device(),
        "origin": ORIGIN,
    }
    if availability:
        cfg["availability_topic"] = ident.availability
    if expire_after:
        cfg["expire_after"] = expire_after
    return cfg


# The agent's own health, for every source: computed by the core, not read from points.
HEALTH = (
    Sensor(
        "buffer_rows",
        "Readings waiting in the buffer",
        "",
        "",
        state_class="measurement",
        unit="readings",
        icon="mdi:database-clock",
    ),
    Sensor("last_reading", "Last reading", "", "", device_class="timestamp"),
    Sensor(
        "reading_age",
        "Time since last reading",
        "",
        "",
        device_class="duration",
        state_class="measurement",
        unit="s",
        precision=0,
    ),
)
