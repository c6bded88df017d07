"""InfluxDB dies in the middle of a 36 000-pulse burst; after it returns nothing is missing."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import test_pulse
from conftest import make_target, spawn_wattkeeper
from support.influxd import InfluxServer
from test_pulse import THREE, Sim, per_channel, pulse_config, stop_agent, wait_counts
from test_pulse_burst import BURST, PER_CHANNEL

# The simulator fixture lives with the other pulse helpers.
pulse_sim = test_pulse.pulse_sim


@pytest.mark.slow
def test_influxdb_down_during_the_burst_loses_nothing(
    tmp_path: Path,
    influx_factory: Callable[[], InfluxServer],
    pulse_sim: Callable[..., Sim],
) -> None:
    server = influx_factory()
    target = make_target(server, tmp_path)
    sim = pulse_sim(*BURST)
    cfg = pulse_config(tmp_path, target, sim, THREE)
    agent = spawn_wattkeeper("run", "pulse", "-c", cfg, log=tmp_path / "agent.log")
    expected = {"import": PER_CHANNEL, "export": PER_CHANNEL, "generate": PER_CHANNEL}
    try:
        time.sleep(15)
        server.kill()
        time.sleep(20)
        during = (tmp_path / "agent.log").read_text()
        server.start()
        truth = sim.wait_end(100)
        counts = wait_counts(target, expected, 90)
    finally:
        rc = stop_agent(agent)
    log = (tmp_path / "agent.log").read_text()
    assert rc == 0, log
    assert "cannot deliver to InfluxDB" in during
    assert "InfluxDB is reachable again" in log
    assert truth.dropped() == 0
    assert counts == expected
    assert per_channel(target, "energy_wh", "sum") == {k: float(v) for k, v in expected.items()}
    assert "missed" not in log
    assert "overflowed" not in log
