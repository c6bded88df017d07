"""stale_seconds in wattkeeper_agent, for every source: the age of the newest reading."""

from __future__ import annotations

import time
from pathlib import Path

from conftest import Target, agent_config, run_wattkeeper
from plugins.tiny_source import BASE_NS


def last_stale_seconds(target: Target) -> float:
    got = target.query(
        '|> range(start: -1h) |> filter(fn: (r) => r._measurement == "wattkeeper_agent" '
        'and r._field == "stale_seconds") |> last()'
    )
    return float(got[0]["_value"])


def test_stale_seconds_is_the_age_of_the_newest_reading_and_survives_a_restart(
    tmp_path: Path, target: Target
) -> None:
    # The tiny source's readings are from November 2023: reading n at BASE + n s.
    cfg = agent_config(tmp_path, target, "tiny", {"points_per_poll": 5, "total": 5})
    newest = BASE_NS / 1e9 + 4
    r = run_wattkeeper("run", "tiny_source:PLUGIN", "-c", cfg, "--once", timeout=30)
    assert r.returncode == 0, r.stderr
    assert abs(last_stale_seconds(target) - (time.time() - newest)) < 30

    # A run that takes no reading: the age still counts from the newest one, kept in the
    # buffer, not from this start.
    time.sleep(1.1)
    r = run_wattkeeper("run", "tiny_source:PLUGIN", "-c", cfg, "--once", timeout=30)
    assert r.returncode == 0, r.stderr
    assert abs(last_stale_seconds(target) - (time.time() - newest)) < 30
    assert last_stale_seconds(target) > 86400
