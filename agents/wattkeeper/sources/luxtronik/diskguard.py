"""Pause history writing when the disk holding the data is nearly full.

A full disk would also stop the buffer, and the buffer matters more: the history is only
for CSV convenience, so it yields first. Polling and delivery to InfluxDB go on.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

# Tests (and curious operators) can stand in a number for the real disk usage:
# the file named here holds a percentage, read at every check.
USAGE_FILE_ENV = "WATTKEEPER_LUXTRONIK_DISK_USAGE_FILE"


def disk_used_percent(path: Path) -> float:
    """Used space as `df` reports it: used / (used + available to non-root users)."""
    override = os.environ.get(USAGE_FILE_ENV)
    if override:
        return float(Path(override).read_text().strip())
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    free_for_users = usage.free
    denominator = usage.used + free_for_users
    return 100.0 * usage.used / denominator if denominator else 0.0


class DiskGuard:
    """Says whether history may be written; logs and alerts once per full-disk episode."""

    def __init__(
        self,
        path: Path,
        max_percent: float,
        log: logging.Logger,
        on_full: Callable[[str], object],
        usage: Callable[[Path], float] = disk_used_percent,
    ) -> None:
        self.path = path
        self.max_percent = max_percent
        self.log = log
        self.on_full = on_full
        self.usage = usage
        self.paused = False

    def allows_writing(self) -> bool:
        try:
            used = self.usage(self.path)
        except (OSError, ValueError) as exc:
            self.log.warning("cannot measure disk usage of %s: %s", self.path, exc)
            return not self.paused
        if used > self.max_percent and not self.paused:
            self.paused = True
            msg = (
                f"disk holding {self.path} is {used:.1f}% used "
                f"(luxtronik.disk_max_percent = {self.max_percent:g}); "
                "history for the CSV reports is paused, polling to InfluxDB continues"
            )
            self.log.error("%s", msg)
            self.on_full(msg)
        elif used <= self.max_percent and self.paused:
            self.paused = False
            self.log.info("disk holding %s is %.1f%% used again: history resumed", self.path, used)
        return not self.paused
