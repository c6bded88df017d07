"""The [luxtronik] section: the controller's address, polling limits and the CSV roll-ups."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from wattkeeper.config import ConfigError, Duration

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


@dataclass
class LuxtronikSection:
    """[luxtronik]: one Luxtronik 2 controller (Novelan, Alpha Innotec), read-only."""

    # The heat pump controller's address (IP or name).
    host: str
    # Its TCP port (8889 on every Luxtronik 2).
    port: int = 8889
    # Time between two polls.
    interval: Duration = 30.0
    # Socket timeout, and the limit for one whole poll (connect + three answers).
    timeout: Duration = 60.0
    # A poll that returns fewer values than this is rejected (a half-booted controller).
    min_values: int = 100
    # Controllers serve one client at a time and stall when hammered: never connect
    # again sooner than this after the previous connection closed.
    min_spacing: Duration = 5.0
    # Local history kept for the CSV roll-ups (the weekly file needs 7 days).
    history_days: int = 8
    # Where the daily/weekly CSV files go (default: "reports" next to the buffer file).
    report_dir: Path | None = None
    # When the systemd timer runs `wattkeeper report luxtronik` (HH:MM, local time).
    report_time: str = "07:00"
    # Columns of the CSV files: value names or globs ("ID_WEB_Temperatur_*"); empty = all.
    report_fields: list[str] = field(default_factory=list)
    # "names": python-luxtronik names; "human": a readable label and the unit.
    report_headers: Literal["names", "human"] = "names"
    # Days the CSV files are kept.
    csv_retention_days: int = 30
    # Above this use of the disk holding the buffer, history writing pauses (polling goes on).
    disk_max_percent: float = 90.0

    def validate(self, where: str, file: Path) -> None:
        if not self.host.strip():
            raise ConfigError(f"{where}.host", file, "must not be empty")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"{where}.port", file, "must be between 1 and 65535")
        if self.interval < 0.1:
            raise ConfigError(f"{where}.interval", file, "must be at least 100ms")
        if self.timeout <= 0:
            raise ConfigError(f"{where}.timeout", file, "must be positive")
        if self.min_spacing < 0:
            raise ConfigError(f"{where}.min_spacing", file, "must not be negative")
        if self.min_values < 1:
            raise ConfigError(f"{where}.min_values", file, "must be at least 1")
        if self.history_days < 1:
            raise ConfigError(f"{where}.history_days", file, "must be at least 1 (day)")
        if not _HHMM.match(self.report_time):
            raise ConfigError(
                f"{where}.report_time", file, f'"{self.report_time}" is not a time like "07:00"'
            )
        for i, pattern in enumerate(self.report_fields):
            if not pattern.strip():
                raise ConfigError(f"{where}.report_fields[{i}]", file, "must not be empty")
        if self.csv_retention_days < 1:
            raise ConfigError(f"{where}.csv_retention_days", file, "must be at least 1 (day)")
        if not 0 < self.disk_max_percent <= 100:
            raise ConfigError(f"{where}.disk_max_percent", file, "must be between 0 and 100")

    def reports_path(self, buffer_path: Path) -> Path:
        return self.report_dir or buffer_path.parent / "reports"
