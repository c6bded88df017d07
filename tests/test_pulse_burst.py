"""A burst of 200 pulses/s on each of three channels for a minute (36 000 pulses).

Nothing may be lost: not in the (simulated) kernel FIFO, not in the in-memory queue,
not in the buffer, not on the way to InfluxDB.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import test_pulse
from conftest import Target, spawn_wattkeeper
from test_pulse import THREE, Sim, per_channel, pulse_config, raw_series, stop_agent, wait_counts

# The simulator fixture lives with the other pulse helpers.
pulse_sim = test_pulse.pulse_sim

PER_CHANNEL = 12_000  # 200/s for 60 s
BURST = ("--profile", "constant:720000", "--pulses-per-kwh", "1000", "--count", str(PER_CHANNEL))


@pytest.mark.slow
def test_burst_of_200_per_second_per_channel_for_a_minute_loses_nothing(
    tmp_path: Path, target: Target, pulse_sim: Callable[..., Sim]
) -> None:
    sim = pulse_sim(*BURST)
    cfg = pulse_config(tmp_path, target, sim, THREE)
    agent = spawn_wattkeeper("run", "pulse", "-c", cfg, log=tmp_path / "agent.log")
    expected = {"import": PER_CHANNEL, "export": PER_CHANNEL, "generate": PER_CHANNEL}
    try:
        truth = sim.wait_end(100)
        counts = wait_counts(target, expected, 60)
    finally:
        rc = stop_agent(agent)
    log = (tmp_path / "agent.log").read_text()
    assert rc == 0, log
    assert truth.dropped() == 0
    assert counts == expected
    assert per_channel(target, "energy_wh", "sum") == {k: float(v) for k, v in expected.items()}
    assert [t for t, _ in raw_series(target, "generate", "pulses")] == truth.sent("generate")
    assert "missed" not in log
    assert "overflowed" not in log
    rows = target.query(
        '|> range(start: 0) |> filter(fn: (r) => r._measurement == "wattkeeper_agent" '
        'and r._field == "points_dropped") |> max()'
    )
    assert float(rows[0]["_value"]) == 0.0
