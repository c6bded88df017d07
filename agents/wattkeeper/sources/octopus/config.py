"""The [octopus] section of an agent file: its type hints are the schema."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from wattkeeper.config import ConfigError, Duration, read_secret_file
from wattkeeper.journal import SECRETS

Grouping = Literal["TEN_SECONDS", "ONE_MINUTE", "FIVE_MINUTES", "HALF_HOURLY", "HOURLY"]
SchemaName = Literal["wattkeeper", "power-numeric", "energy-consumption", "seed000", "seed001"]
# The names of earlier releases, after the seed tools that wrote each layout.
SCHEMA_ALIASES = {"seed000": "power-numeric", "seed001": "energy-consumption"}

# Seconds covered by one reading of each grouping (the readAt spacing), finest first:
# the order in which an empty window is asked again, one grouping coarser each time.
GROUPING_SECONDS: dict[str, int] = {
    "TEN_SECONDS": 10,
    "ONE_MINUTE": 60,
    "FIVE_MINUTES": 300,
    "HALF_HOURLY": 1800,
    "HOURLY": 3600,
}


@dataclass
class OctopusSection:
    """[octopus]: the Kraken GraphQL API, the account and the call budget."""

    # The Octopus account number, like A-1234ABCD.
    account_number: str
    # File holding the API key (mode 0600).
    api_key_file: Path
    # The Kraken GraphQL endpoint.
    api_url: str = "https://api.octopus.energy/v1/graphql/"
    # Skips discovery (one call per start) when set.
    device_id: str | None = None
    # How fine the readings are (the Home Mini's own step is ten seconds).
    grouping: Grouping = "TEN_SECONDS"
    # The API allows ~100 calls/hour per user, shared with the Octopus app: keep a margin.
    calls_per_hour: int = 60
    # The budget window; "1h" in production (calls_per_hour is per this period).
    budget_period: Duration = 3600.0
    # The InfluxDB layout: "wattkeeper"; "power-numeric" (measurement power, the demand as
    # power_numeric) or "energy-consumption" (kWh, kW, pounds) as two older tools wrote
    # it; "seed000" and "seed001" are their former names.
    schema: SchemaName = "wattkeeper"
    # One telemetry call asks for at most this much time (several calls while catching up).
    backfill_window: Duration = 3600.0
    # How far back a gap is fetched at most (the API refuses older starts: KT-GB-4051).
    max_backfill: Duration = 7 * 86400.0
    # On the very first start (no cursor yet), fetch this much history.
    initial_backfill: Duration = 3600.0
    # A window that ended this long ago and came back empty is not asked for again.
    settle: Duration = 300.0
    # Timeout of one API call.
    timeout: Duration = 20.0
    # Trust the API's Date header over the local clock (a Pi has no RTC).
    use_server_clock: bool = True
    api_key: str = field(default="", repr=False, init=False)

    def validate(self, where: str, file: Path) -> None:
        if not re.fullmatch(r"A-[0-9A-Z]{6,10}", self.account_number):
            raise ConfigError(
                f"{where}.account_number",
                file,
                f'"{self.account_number}" is not an Octopus account number (like "A-1234ABCD")',
            )
        if not re.match(r"^https?://[^/\s]+", self.api_url):
            raise ConfigError(f"{where}.api_url", file, f'"{self.api_url}" is not an http(s) URL')
        if self.device_id is not None and not self.device_id.strip():
            raise ConfigError(f"{where}.device_id", file, "is empty (remove it to discover)")
        if self.calls_per_hour < 2:
            raise ConfigError(f"{where}.calls_per_hour", file, "must be at least 2")
        if self.calls_per_hour > 100:
            raise ConfigError(
                f"{where}.calls_per_hour",
                file,
                "must not exceed 100: Octopus allows about 100 calls per hour per user, "
                "shared with the Octopus app",
            )
        self.schema = SCHEMA_ALIASES.get(self.schema, self.schema)  # type: ignore[assignment]
        step = GROUPING_SECONDS[self.grouping]
        for key in ("budget_period", "timeout", "settle"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{where}.{key}", file, "must be positive")
        if self.backfill_window < step:
            raise ConfigError(
                f"{where}.backfill_window", file, f"must cover at least one reading ({step}s)"
            )
        if self.max_backfill < self.initial_backfill:
            raise ConfigError(
                f"{where}.max_backfill", file, "must not be shorter than initial_backfill"
            )
        self.api_key = read_secret_file(self.api_key_file, f"{where}.api_key_file", file)
        SECRETS.add(self.api_key)
