"""The 1m / 5m / 1h roll-ups of the pulse schema, on the real server, against the truth.

Three hours of a household day are replayed quickly (the simulator stamps the edges in
the past), the agent writes them raw, and then (1) rollup_query over the raw bucket and
(2) the real downsampling task, created with task_flux and run through the tasks API,
must give exactly the sums and means computed here from the simulator's own edge list.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
import test_pulse
from conftest import Target, spawn_wattkeeper
from test_pulse import THREE, Sim, Truth, pulse_config, stop_agent, truth_power, wait_counts

from wattkeeper.downsample import rollup_query, task_flux
from wattkeeper.sources.pulse import PLUGIN

# The simulator fixture lives with the other pulse helpers.
pulse_sim = test_pulse.pulse_sim

START = "2026-01-05T15:00:00Z"  # afternoon: solar fading, evening load rising
STOP = "2026-01-05T18:00:00Z"
TIERS = {"1m": 60, "5m": 300, "1h": 3600}

Agg = dict[tuple[str, str, int], float]  # (channel, field, window start s) -> value


def epoch_s(rfc3339: str) -> int:
    return int(datetime.fromisoformat(rfc3339).timestamp())


def truth_rollup(truth: Truth, every: int, lo: int, hi: int) -> Agg:
    """Sums of pulses and energy, mean of power, per channel and aligned window."""
    out: Agg = {}
    for name, edges in truth.edges.items():
        times = [t for t, ok in edges if ok]
        power = truth_power(times, 1000)
        sums: dict[int, int] = defaultdict(int)
        watts: dict[int, list[float]] = defaultdict(list)
        for t in times:
            w = t // 10**9 // every * every
            if not lo <= w < hi:
                continue
            sums[w] += 1
            if t in power:
                watts[w].append(power[t])
        for w, n in sums.items():
            out[(name, "pulses", w)] = n
            out[(name, "energy_wh", w)] = n * 1.0
        for w, ws in watts.items():
            out[(name, "power_w", w)] = sum(ws) / len(ws)
    return out


def flux_rollup(rows: list[dict[str, str]]) -> Agg:
    return {
        (r["channel"], r["_field"], epoch_s(r["_time"])): float(r["_value"])
        for r in rows
        if r.get("_measurement") == "pulse"
    }


def assert_same(got: Agg, want: Agg) -> None:
    assert want, "the truth has no window in this range: the test would prove nothing"
    assert {f for _, f, _ in want} == {"pulses", "energy_wh", "power_w"}
    assert got.keys() == want.keys()
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-9, abs=1e-9), k


def _replay(tmp_path: Path, target: Target, pulse_sim: Callable[..., Sim]) -> Truth:
    sim = pulse_sim(
        "--profile",
        "household-day",
        "--start",
        START,
        "--duration",
        "3h",
        "--speed",
        "540",
        "--seed",
        "7",
    )
    cfg = pulse_config(tmp_path, target, sim, THREE)
    agent = spawn_wattkeeper("run", "pulse", "-c", cfg, log=tmp_path / "agent.log")
    try:
        truth = sim.wait_end(90)
        expected = {k: len(truth.sent(k)) for k in truth.edges}
        counts = wait_counts(target, expected, 60)
    finally:
        assert stop_agent(agent) == 0
    assert truth.dropped() == 0
    assert counts == expected
    assert all(n > 100 for n in expected.values()), expected
    return truth


def test_rollups_equal_the_truth(
    tmp_path: Path, target: Target, pulse_sim: Callable[..., Sim]
) -> None:
    truth = _replay(tmp_path, target, pulse_sim)
    lo, hi = epoch_s(START), epoch_s(STOP)
    rollups = list(PLUGIN.rollups)
    for every, seconds in TIERS.items():
        flux = rollup_query(rollups, target.bucket, every, START, STOP)
        got = flux_rollup(target.server.query(flux))
        assert_same(got, truth_rollup(truth, seconds, lo, hi))

    # The real tasks: created with task_flux, run for a fixed time through the API.
    server = target.server
    for every, seconds in TIERS.items():
        dst = f"{target.bucket}_{every}"
        server.create_bucket(dst)
        task = server.api(
            "POST",
            "/api/v2/tasks",
            json={
                "orgID": server.org_id,
                "flux": task_flux(
                    f"{dst}-task",
                    rollups,
                    src_bucket=target.bucket,
                    dst_bucket=dst,
                    org=server.org,
                    every=every,
                ),
            },
        ).json()
        try:
            run = server.api(
                "POST", f"/api/v2/tasks/{task['id']}/runs", json={"scheduledFor": STOP}
            ).json()
            status = ""
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                # A finishing run is briefly in neither InfluxDB's queue nor its log (GET
                # .../runs/ID answers 404 then, seen under load): look in the run list too.
                runs = server.api("GET", f"/api/v2/tasks/{task['id']}/runs").json()["runs"]
                status = next((r["status"] for r in runs if r["id"] == run["id"]), status)
                if status in ("success", "failed", "canceled"):
                    break
                time.sleep(0.5)
            assert status == "success", server.api(
                "GET", f"/api/v2/tasks/{task['id']}/runs/{run['id']}/logs"
            ).text
        finally:
            server.api("DELETE", f"/api/v2/tasks/{task['id']}")
        # A new tier's first run aggregates every whole window raw holds before its
        # scheduled time (see test_tiers.py for what later runs do).
        rows = server.query(f'from(bucket: "{dst}") |> range(start: 0)')
        assert_same(flux_rollup(rows), truth_rollup(truth, seconds, lo, hi))
