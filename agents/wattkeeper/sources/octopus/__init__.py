"""Octopus Energy Home Mini: live electricity telemetry from the Kraken GraphQL API."""

from __future__ import annotations

from wattkeeper.source import SourcePlugin

from .config import OctopusSection
from .migrate import add_commands
from .source import make_source

PLUGIN = SourcePlugin(
    name="octopus",
    config_class=OctopusSection,
    factory=make_source,
    add_commands=add_commands,
    description="Octopus Home Mini telemetry (Kraken GraphQL), within the API's call budget",
)
