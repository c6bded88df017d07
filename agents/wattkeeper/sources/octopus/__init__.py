"""Octopus Energy Home Mini: live electricity telemetry from the Kraken GraphQL API."""

from __future__ import annotations

from wattkeeper.downsample import Rollup
from wattkeeper.sensors import Sensor
from wattkeeper.source import Secret, Simulated, SourcePlugin

from .config import OctopusSection
from .migrate import add_commands
from .source import make_source

PLUGIN = SourcePlugin(
    name="octopus",
    config_class=OctopusSection,
    factory=make_source,
    add_commands=add_commands,
    description="Octopus Home Mini telemetry (Kraken GraphQL), within the API's call budget",
    secrets=(
        Secret(
            "api_key_file",
            "/etc/wattkeeper/octopus.apikey",
            "Octopus API key (sk_live_...), required on octopus hosts.",
        ),
    ),
    example={"account_number": "A-1234ABCD"},
    simulated=Simulated(
        port=18081,
        config={"api_url": "http://127.0.0.1:18081/v1/graphql/"},
        secrets={"api_key_file": "sk_live_simulated0000000000000000"},
    ),
    # How the InfluxDB role's tasks downsample the wattkeeper schema: the cumulative
    # registers keep their last value, deltas and costs add up, the demand is averaged.
    rollups=(
        Rollup(
            "octopus",
            {
                "demand_w": "mean",
                "consumption_wh": "last",
                "export_wh": "last",
                "consumption_delta_wh": "sum",
                "cost_delta_pence": "sum",
                "cost_delta_with_tax_pence": "sum",
            },
        ),
    ),
    # A frozen Home Mini: the API answers, nothing new arrives (BottlecapDave/
    # HomeAssistant-OctopusEnergy#1733); its users asked for a warning after 30 min (#1849).
    stale_after=1800.0,
    stale_subject="the Home Mini",
    # Home Assistant: the demand, and the meter's own cumulative registers (total_increasing:
    # they never go back, across restarts and backfills alike).
    sensors=(
        Sensor(
            "power",
            "Power",
            "octopus",
            "demand_w",
            device_class="power",
            state_class="measurement",
            unit="W",
            precision=0,
        ),
        Sensor(
            "consumption",
            "Consumption",
            "octopus",
            "consumption_wh",
            device_class="energy",
            state_class="total_increasing",
            unit="kWh",
            scale=0.001,
            precision=3,
        ),
        Sensor(
            "export",
            "Export",
            "octopus",
            "export_wh",
            device_class="energy",
            state_class="total_increasing",
            unit="kWh",
            scale=0.001,
            precision=3,
        ),
    ),
)
