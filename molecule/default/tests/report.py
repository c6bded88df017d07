"""Numbers the verify step reports at its end (exposure scores, task runs, points)."""

from __future__ import annotations

REPORT: dict[str, dict[str, str]] = {}
PRINTED = False


def report(section: str, key: str, value: str) -> None:
    REPORT.setdefault(section, {})[key] = value
