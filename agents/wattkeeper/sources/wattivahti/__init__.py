"""WattiVahti (Finnish DSO metering portal): quarter-hour consumption into InfluxDB.

Runs as a oneshot started by a systemd timer (``wattkeeper run wattivahti -c FILE
--once``); each run syncs from where the last one stopped. Module map: ``config`` (the
[wattivahti] section), ``auth`` (rotating B2C refresh token), ``api`` (meterdata2),
``localtime`` (naive Helsinki times -> UTC), ``source`` (what to fetch, cursors),
``commands`` (``wattivahti login``, ``sync wattivahti``).
"""

from __future__ import annotations

from wattkeeper.downsample import Rollup
from wattkeeper.source import SourcePlugin
from wattkeeper.sources.wattivahti.commands import add_commands
from wattkeeper.sources.wattivahti.config import WattiVahtiSection
from wattkeeper.sources.wattivahti.source import WattiVahtiSource
from wattkeeper.sources.wattivahti.summary import SENSORS

PLUGIN = SourcePlugin(
    name="wattivahti",
    config_class=WattiVahtiSection,
    factory=WattiVahtiSource,
    kind="oneshot",
    add_commands=add_commands,
    description="WattiVahti metering portal: 15-min/hourly consumption (and production)",
    rollups=(
        Rollup(
            "wattivahti",
            {"consumption_wh": "sum", "production_wh": "sum"},
        ),
    ),
    # Home Assistant: the last complete day and hour only (the data is hours late).
    sensors=SENSORS,
)

__all__ = ["PLUGIN"]
