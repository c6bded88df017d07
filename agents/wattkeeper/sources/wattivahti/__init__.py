"""WattiVahti (Finnish DSO metering portal): quarter-hour consumption into InfluxDB.

Runs as a oneshot started by a systemd timer (``wattkeeper run wattivahti -c FILE
--once``); each run syncs from where the last one stopped. Module map: ``config`` (the
[wattivahti] section), ``auth`` (rotating B2C refresh token), ``api`` (meterdata2),
``localtime`` (naive Helsinki times -> UTC), ``source`` (what to fetch, cursors),
``commands`` (``login wattivahti``, ``sync wattivahti``).
"""

from __future__ import annotations

from wattkeeper.downsample import Rollup
from wattkeeper.source import Secret, Simulated, SourcePlugin, Timer, Unit
from wattkeeper.sources.wattivahti.commands import add_commands
from wattkeeper.sources.wattivahti.config import WattiVahtiSection
from wattkeeper.sources.wattivahti.source import WattiVahtiSource
from wattkeeper.sources.wattivahti.summary import SENSORS

PLUGIN = SourcePlugin(
    name="wattivahti",
    config_class=WattiVahtiSection,
    factory=WattiVahtiSource,
    # The portal's data is hours late: a oneshot an hour, at a random minute so that many
    # homes do not call the portal at once.
    unit=Unit(kind="oneshot", timer=Timer("hourly", "15min"), token_read=True),
    add_commands=add_commands,
    description="WattiVahti metering portal: 15-min/hourly consumption (and production)",
    secrets=(
        Secret(
            "refresh_token_file",
            "/var/lib/wattkeeper/wattivahti/refresh_token",
            "WattiVahti refresh token from `wattkeeper login wattivahti`.",
            rotates=True,
        ),
    ),
    # --state: the portal remembers the tokens it rotated across a restart, as the real
    # one does (the agent holds the newest; the initial one is spent).
    example={"metering_point": "1234567"},
    simulated=Simulated(
        port=18082,
        args=(
            "--initial-refresh-token",
            "wattkeeper-demo-refresh-token",
            "--state",
            "/var/lib/wattkeeper-simulate/wattivahti/tokens.json",
        ),
        config={
            "token_url": "http://127.0.0.1:18082/oauth2/v2.0/token",
            "api_url": "http://127.0.0.1:18082/meterdata2",
        },
        secrets={"refresh_token_file": "wattkeeper-demo-refresh-token"},
    ),
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
