"""Every tier complete: late, backfilled and missed windows reach 1m, 5m and 1h.

A real InfluxDB 2, the production tier tasks (wattkeeper.downsample, as the InfluxDB role
installs them) run on demand with ``scheduledFor`` (their ``now()``), and the real agents
against their simulators. After the next run of each task, every window of every tier
must equal the declared aggregate of raw, recomputed by the same Flux (support/tiers.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import test_ansible_plugins
import test_octopus
import test_pulse
import test_wattivahti
from conftest import ROOT, Target, agent_config, make_target, run_wattkeeper, spawn_wattkeeper
from support.agentproc import wait_for
from support.influxd import InfluxServer
from support.netfault import BlackholeProxy
from support.simproc import simulator_processes, start_simulator
from support.tiers import TIERS, V1_PULSE_1M, Tiers, floor, parse_time
from test_pulse import THREE, Sim, pulse_config, wait_counts

from wattkeeper.downsample import Rollup, check_query, duration_seconds
from wattkeeper.simulate.wattivahti.data import quarter_kwh
from wattkeeper.sources.octopus import PLUGIN as OCTOPUS
from wattkeeper.sources.pulse import PLUGIN as PULSE
from wattkeeper.sources.wattivahti import PLUGIN as WATTIVAHTI

pulse_sim = test_pulse.pulse_sim
TINY = "tiny_source:PLUGIN"
TIER_FILTERS = test_ansible_plugins.FT

HOUR = timedelta(hours=1)


def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def soon() -> datetime:
    """A run time after everything written so far: the next whole second (runs are whole
    seconds, and InfluxDB holds a run scheduled ahead until its time)."""
    time.sleep(1.02 - time.time() % 1)
    return datetime.now(UTC).replace(microsecond=0)


def pulse_lines(start: datetime, stop: datetime, step: float = 7.0, seed: int = 0) -> list[str]:
    lines = []
    t, i = start, seed
    while t < stop:
        ns = int(t.timestamp() * 1e9)
        for ch in ("import", "export"):
            lines.append(
                f"pulse,channel={ch} pulses=1i,energy_wh=1.0,power_w={800 + i % 97}.0 {ns}"
            )
        t += timedelta(seconds=step)
        i += 1
    return lines


def assert_exact(tiers: Tiers, start: datetime, stop: datetime, at_least: int = 1) -> list[Any]:
    found = tiers.compare_all(start, stop)
    for c in found:
        assert c.differing == 0, f"{c}: {c.examples}"
        assert c.compared >= at_least, str(c)
    return found


# -- the task's own logic, with points written directly --------------------------------


@pytest.mark.parametrize("cascade", [False, True], ids=["raw", "cascade"])
def test_runs_resume_from_the_checkpoint_and_fold_in_late_windows(
    influx: InfluxServer, tmp_path: Path, cascade: bool
) -> None:
    """A new tier repairs what raw holds; runs missed for an hour and a half are made up by
    the next; a late point (with its marker) rewrites its windows, in 1m, 5m and 1h."""
    name = prefix()
    make_target(influx, tmp_path, f"{name}_raw")
    tiers = Tiers.create(influx, name, list(PULSE.rollups), cascade=cascade)
    t0 = floor(datetime.now(UTC), 3600) - 3 * HOUR
    influx.write(tiers.raw, pulse_lines(t0 - 2 * HOUR, t0 + timedelta(minutes=30)))
    tiers.run_all(t0 + timedelta(minutes=30))
    assert_exact(tiers, t0 - 2 * HOUR, t0 + timedelta(minutes=30), at_least=4)
    # No run for 65 minutes (InfluxDB busy, restarting...), points on time meanwhile.
    influx.write(tiers.raw, pulse_lines(t0 + timedelta(minutes=30), t0 + timedelta(minutes=95)))
    tiers.run_all(t0 + timedelta(minutes=95))
    for tier in tiers.names:
        assert tiers.checkpoint(tier)["stop"] == floor(
            t0 + timedelta(minutes=95), duration_seconds(tier)
        )
    # A late point in a window every tier has aggregated, and the marker its agent writes.
    late = t0 + timedelta(minutes=10, seconds=3)
    ns = int(late.timestamp() * 1e9)
    before = tiers.values(tiers.bucket("1m"), floor(late, 60), floor(late, 60) + HOUR)
    influx.write(tiers.raw, [f"pulse,channel=import pulses=1i,energy_wh=1.0,power_w=9999.0 {ns}"])
    influx.write(tiers.raw, [f"wattkeeper_late,host=h start={ns}i,stop={ns + 1}i,points=1i"])
    tiers.run_all(soon())
    after = tiers.values(tiers.bucket("1m"), floor(late, 60), floor(late, 60) + HOUR)
    changed = {parse_time(k[2]) for k in after if after[k] != before.get(k)}
    assert changed == {floor(late, 60)}, changed
    assert_exact(tiers, t0 - 2 * HOUR, t0 + timedelta(minutes=95), at_least=6)


def test_a_long_catch_up_is_chunked_and_each_run_resumes_where_the_last_stopped(
    influx: InfluxServer, tmp_path: Path
) -> None:
    """Dense data (here: a budget of 500 values a run, and 20-minute chunks) after a long
    gap: each run takes one chunk from the checkpoint on, and the tiers end up exact."""
    name = prefix()
    make_target(influx, tmp_path, f"{name}_raw")
    small = [
        TIERS[0],
        *(
            {**t, "chunk": max("20m", t["every"], key=duration_seconds), "budget": 500}
            for t in TIERS[1:]
        ),
    ]
    tiers = Tiers.create(influx, name, list(PULSE.rollups), tiers=small)
    t0 = floor(datetime.now(UTC), 3600) - 3 * HOUR
    tiers.run_all(t0)
    influx.write(tiers.raw, pulse_lines(t0, t0 + HOUR))
    when = t0 + HOUR
    stops = []
    for _ in range(10):
        assert tiers.run("1m", when).status == "success"
        stops.append(tiers.checkpoint("1m")["stop"])
        if stops[-1] >= floor(when, 60):
            break
        when += timedelta(seconds=1)
    assert stops == [t0 + timedelta(minutes=20 * (i + 1)) for i in range(3)], stops
    runs = tiers.catch_up(when)
    assert len(runs["5m"]) >= 3, runs  # a chunk a run
    assert_exact(tiers, t0, t0 + HOUR)


# -- the real agents --------------------------------------------------------------------


def late_markers(target: Target) -> list[dict[str, str]]:
    return target.query(
        "|> range(start: 0, stop: 2100-01-01T00:00:00Z) "
        '|> filter(fn: (r) => r._measurement == "wattkeeper_late" and r._field == "points")'
    )


def replay(
    pulse_sim: Callable[..., Sim], start: datetime, minutes: int, speed: int, seed: int = 3
) -> Sim:
    return pulse_sim(
        "--profile",
        "household-day",
        "--start",
        start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "--duration",
        f"{minutes}m",
        "--speed",
        str(speed),
        "--seed",
        str(seed),
    )


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(30)


def test_points_delivered_two_days_late_reach_every_tier(
    influx: InfluxServer, tmp_path: Path, pulse_sim: Callable[..., Sim]
) -> None:
    """Pulses counted two days ago, held in the agent's buffer while InfluxDB was away,
    drained when it came back: the next run of each task puts them in 1m, 5m and 1h.
    (Cascading tiers: test_influx_stopped_15_minutes..., and the first test here.)"""
    cascade = False
    name = prefix()
    target = make_target(influx, tmp_path, f"{name}_raw")
    tiers = Tiers.create(influx, name, list(PULSE.rollups), cascade=cascade)
    tiers.run_all(soon())  # up to date: the checkpoints say now
    proxy = BlackholeProxy(influx.port)
    proxy.cut()
    # Noon two days ago: the household day has all three channels busy then (at night
    # only import counts, and too few pulses to compare windows).
    start = floor(datetime.now(UTC) - timedelta(days=2), 86400) + timedelta(hours=12)
    sim = replay(pulse_sim, start, 20, 300)
    cfg = pulse_config(
        tmp_path,
        target,
        sim,
        THREE,
        influxdb={"url": proxy.url, "timeout": "2s", "retry_max": "2s"},
    )
    agent = spawn_wattkeeper("run", "pulse", "-c", cfg, log=tmp_path / "agent.log")
    try:
        truth = sim.wait_end(90)
        proxy.restore()
        expected = {k: len(truth.sent(k)) for k in truth.edges}
        assert wait_counts(target, expected, 90) == expected
        wait_for(lambda: late_markers(target), 30, "the late marker")
    finally:
        assert stop(agent) == 0
        proxy.close()
    assert sum(expected.values()) > 100, expected
    tiers.run_all(soon())
    found = assert_exact(tiers, start, start + timedelta(minutes=20))
    assert found[0].compared >= 20, found
    print(f"\ntwo days late ({'cascade' if cascade else 'raw'}): " + ", ".join(map(str, found)))


def test_influx_stopped_15_minutes_leaves_no_window_empty_or_short(
    influx_factory: Callable[[], InfluxServer], tmp_path: Path, pulse_sim: Callable[..., Sim]
) -> None:
    """Forty minutes of pulses replayed (at 180x) while the test plays InfluxDB's
    scheduler: each task runs at its windows' ends, except while InfluxDB is stopped for
    15 of those minutes, the agent buffering meanwhile. Afterwards every window of every
    tier equals raw (cascading, the harder case for 5m and 1h)."""
    server = influx_factory()
    name = prefix()
    target = make_target(server, tmp_path, f"{name}_raw")
    tiers = Tiers.create(server, name, list(PULSE.rollups), cascade=True)
    speed = 180
    start = floor(datetime.now(UTC), 3600) - 2 * HOUR
    tiers.run_all(start)
    sim = replay(pulse_sim, start, 40, speed, seed=11)
    real0 = time.monotonic()
    cfg = pulse_config(tmp_path, target, sim, THREE, influxdb={"timeout": "2s", "retry_max": "1s"})
    agent = spawn_wattkeeper("run", "pulse", "-c", cfg, log=tmp_path / "agent.log")

    def virtual() -> datetime:
        return start + timedelta(seconds=(time.monotonic() - real0) * speed)

    down = (start + timedelta(minutes=10), start + timedelta(minutes=25))
    done: dict[str, datetime] = {t: start for t in tiers.names}
    ran = skipped = 0
    try:
        while sim.proc.poll() is None and virtual() < start + timedelta(minutes=42):
            now = virtual()
            if down[0] <= now < down[1]:
                if server.proc is not None:
                    server.stop()
                continue_at = floor(now, 60)
                skipped += sum(
                    1 for t in tiers.names if floor(continue_at, duration_seconds(t)) > done[t]
                )
                done = {t: floor(continue_at, duration_seconds(t)) for t in tiers.names}
                time.sleep(0.2)
                continue
            if server.proc is None:
                server.start()
            for tier in tiers.names:
                due = floor(now, duration_seconds(tier))
                if due > done[tier]:  # InfluxDB's scheduler: one run per window end
                    run = tiers.run(tier, due)
                    assert run.status == "success", run.log
                    done[tier] = due
                    ran += 1
            time.sleep(0.05)
        truth = sim.wait_end(60)
        if server.proc is None:
            server.start()
        expected = {k: len(truth.sent(k)) for k in truth.edges}
        assert wait_counts(target, expected, 120) == expected
        wait_for(lambda: late_markers(target), 30, "the late markers")
    finally:
        assert stop(agent) == 0
    assert skipped >= 3, f"the outage skipped only {skipped} runs"
    tiers.run_all(soon())
    found = assert_exact(tiers, start, start + timedelta(minutes=40))
    # Not empty, not short: every minute of the 40 holds the channels that had pulses.
    assert found[0].compared >= 40, found
    print(
        f"\nInfluxDB stopped 15 min: {ran} runs, {skipped} skipped; " + ", ".join(map(str, found))
    )


@pytest.fixture
def wattivahti_sim(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    yield from test_wattivahti.simulators(tmp_path)


@pytest.fixture
def octopus_sim(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    with simulator_processes("octopus", tmp_path) as started:
        yield lambda *extra: test_octopus.Sim(
            *start_simulator(started, "octopus", tmp_path, *extra)
        )


def test_wattivahti_first_sync_of_7_days_fills_every_hour_of_the_1h_tier(
    influx: InfluxServer, tmp_path: Path, wattivahti_sim: Callable[..., Any]
) -> None:
    name = prefix()
    target = make_target(influx, tmp_path, f"{name}_raw")
    tiers = Tiers.create(influx, name, list(WATTIVAHTI.rollups))
    tiers.run_all(soon())
    s = test_wattivahti.make_setup(
        tmp_path, target, wattivahti_sim, "--quarter-hour-since", "2020-01-01", initial_days=7
    )
    started = datetime.now(UTC)
    r = test_wattivahti.run_once(s)
    assert r.returncode == 0, r.stderr
    runs = tiers.catch_up(soon())
    first = test_wattivahti.helsinki_midnight_days_ago(7, started)
    rows = test_wattivahti.points(target, first, started + HOUR)
    last = floor(test_wattivahti.ts(rows[-1]), 3600)  # the newest hour may still fill up
    hours = {}
    for row in rows:
        hour = floor(test_wattivahti.ts(row), 3600)
        if hour < last:
            hours[hour] = hours.get(hour, 0.0) + float(row["consumption_wh"])
    assert len(hours) >= 7 * 24
    got = tiers.values(tiers.bucket("1h"), first, last)
    got_hours = {
        parse_time(k[2]): v
        for k, v in got.items()
        if k[0] == "wattivahti" and k[3] == "consumption_wh"
    }
    assert got_hours.keys() == hours.keys()
    for hour, wh in hours.items():
        truth = sum(quarter_kwh(1, hour + i * test_wattivahti.Q) * 1000 for i in range(4))
        assert got_hours[hour] == pytest.approx(wh, rel=1e-9) == pytest.approx(truth, rel=1e-9)
    found = assert_exact(tiers, first, last)
    # A week of quarter-hours is few values: a run takes it whole (not a day per run).
    assert all(len(r) <= 2 for r in runs.values()), runs
    print(
        f"\nWattiVahti 7-day sync: {len(hours)} hours; runs "
        + ", ".join(f"{t} {len(r)}" for t, r in runs.items())
        + "; "
        + ", ".join(map(str, found))
    )


def test_octopus_gap_backfill_of_2_hours_reaches_the_1m_tier(
    influx: InfluxServer, tmp_path: Path, octopus_sim: Callable[..., Any]
) -> None:
    name = prefix()
    target = make_target(influx, tmp_path, f"{name}_raw")
    tiers = Tiers.create(influx, name, list(OCTOPUS.rollups))
    # The Kraken clock two hours behind: the agent's first poll is two hours ago, then
    # the API's clock catches up (as if the agent had been stopped for two hours).
    sim = octopus_sim("--clock-offset=-2h")
    s = test_octopus.make_setup(tmp_path, target, sim, initial_backfill="1m")
    assert test_octopus.run_once(s).returncode == 0
    first = test_octopus.ts(test_octopus.rows(target)[0])
    tiers.run_all(soon())
    sim.advance(2 * 3600)
    r = test_octopus.run_once(s)
    assert r.returncode == 0, r.stderr
    got = test_octopus.rows(target)
    last = test_octopus.ts(got[-1])
    assert last - first >= 2 * 3600 - 60, (first, last)
    assert late_markers(target), "the backfill is late: its agent marks it"
    tiers.run_all(soon())
    start = datetime.fromtimestamp(first, UTC)
    stop = floor(datetime.fromtimestamp(last, UTC), 60)
    found = assert_exact(tiers, start, stop)
    one_minute = found[0]
    assert one_minute.compared >= 119, one_minute
    print(f"\nOctopus 2 h gap backfill: {len(got)} readings; " + ", ".join(map(str, found)))


def test_a_late_point_changes_the_window_it_lands_in(influx: InfluxServer, tmp_path: Path) -> None:
    """Readings 0-99 (one a second) are aggregated; then readings 100-109 arrive, inside
    the 1m window of 60-119 and the 5m and 1h ones of all of them: each window takes the
    new sum at the next run."""
    name = prefix()
    target = make_target(influx, tmp_path, f"{name}_raw")
    tiers = Tiers.create(influx, name, [Rollup("tiny", {"seq": "sum"})])
    base = int((floor(datetime.now(UTC), 3600) - 3 * HOUR).timestamp())
    cfg = agent_config(
        tmp_path, target, "tiny", {"total": 100, "points_per_poll": 100, "base": base}
    )
    assert run_wattkeeper("run", TINY, "-c", cfg, "--once").returncode == 0
    tiers.run_all(soon())
    t0 = datetime.fromtimestamp(base, UTC)
    sums = {t: tiers.values(tiers.bucket(t), t0, t0 + HOUR) for t in tiers.names}
    assert [sorted(v.values()) for v in sums.values()] == [
        [sum(range(60)), sum(range(60, 100))],
        [sum(range(100))],
        [sum(range(100))],
    ]
    cfg = agent_config(
        tmp_path, target, "tiny", {"total": 110, "points_per_poll": 100, "base": base}
    )
    assert run_wattkeeper("run", TINY, "-c", cfg, "--once").returncode == 0
    tiers.run_all(soon())
    sums = {t: tiers.values(tiers.bucket(t), t0, t0 + HOUR) for t in tiers.names}
    assert [sorted(v.values()) for v in sums.values()] == [
        [sum(range(60)), sum(range(60, 110))],
        [sum(range(110))],
        [sum(range(110))],
    ]
    assert_exact(tiers, t0, t0 + HOUR)


def influxdb_task_module(server: InfluxServer, name: str, flux: str) -> str:
    """The role's own module, as api.yml calls it; returns CHANGED or SUCCESS."""
    args = {"url": server.url, "token": server.token, "org": server.org, "name": name}
    args["flux"] = flux
    out = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "localhost", "-o", "-m", "influxdb_task",
         "-a", json.dumps(args)],
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.split("|")[1].split("=>")[0].strip()


def test_tasks_of_the_previous_version_are_converted_in_place(
    influx: InfluxServer, tmp_path: Path
) -> None:
    """site.yml on a server the previous version provisioned: the module puts the new
    Flux into the same task; its first run goes on from the last windows and rebuilds the
    windows the old task missed from raw."""
    name = prefix()
    make_target(influx, tmp_path, f"{name}_raw")
    tiers = Tiers.create(influx, name, list(PULSE.rollups))
    one = tiers.task("1m")
    old = (
        V1_PULSE_1M.replace("NAME", one.name)
        .replace("SRC", tiers.raw)
        .replace("DST", one.dst_bucket)
        .replace("ORG", influx.org)
    )
    task_id = tiers.ids["1m"]
    # As the previous version's role left it: its Flux, and the description that marks it
    # as wattkeeper's (the module changes no task without it).
    described = f"wattkeeper: {tiers.raw} -> {one.dst_bucket} every 1m"
    influx.api("PATCH", f"/api/v2/tasks/{task_id}", json={"flux": old, "description": described})
    t0 = floor(datetime.now(UTC), 60) - 2 * HOUR
    influx.write(tiers.raw, pulse_lines(t0, t0 + 2 * HOUR))
    # The old task ran now and then (each run covered three minutes): gaps in between.
    for minutes in (10, 40, 41, 90):
        assert tiers.run("1m", t0 + timedelta(minutes=minutes)).status == "success"
    assert tiers.compare("1m", t0, t0 + 2 * HOUR).differing > 100
    assert influxdb_task_module(influx, one.name, one.flux()) == "CHANGED"
    assert (
        influx.api("GET", f"/api/v2/tasks/{task_id}").json()["flux"].strip() == one.flux().strip()
    )
    when = soon()
    tiers.run("1m", when)
    cp = tiers.checkpoint("1m")
    assert cp["stop"] == floor(when, 60)  # on from the last windows, not 30 days back
    one_minute = tiers.compare("1m", t0, t0 + 2 * HOUR)
    assert (one_minute.compared, one_minute.differing) == (240, 0), one_minute.examples


def test_verify_finds_points_without_a_marker_and_redo_tiers_repairs_them(
    influx: InfluxServer, tmp_path: Path
) -> None:
    """verify.yml's check (the Flux the role runs) counts the windows that differ from raw,
    as the tests' own comparison does; redo-tiers.yml's marker makes the next runs fix
    them."""
    name = prefix()
    make_target(influx, tmp_path, f"{name}_raw")
    tiers = Tiers.create(influx, name, list(PULSE.rollups))
    now = datetime.now(UTC)
    influx.write(tiers.raw, pulse_lines(now - 2 * HOUR, now - timedelta(minutes=5)))
    tiers.run_all(soon())

    def check(tier: str) -> tuple[int, int]:
        row = influx.query(check_query(tiers.task(tier)))[0]
        return int(row["windows"]), int(row["differing"])

    for c in tiers.compare_all(now - timedelta(days=1), now):
        assert check(c.tier) == (c.compared, 0) and c.compared > 0, c
    # Written by hand, with no marker: one window of each tier now differs from raw.
    ns = int((now - HOUR).timestamp() * 1e9)
    influx.write(tiers.raw, [f"pulse,channel=export pulses=1i,energy_wh=1.0,power_w=1.0 {ns}"])
    for c in tiers.compare_all(now - timedelta(days=1), now):
        assert check(c.tier) == (c.compared, 1) == (c.compared, c.differing), c
    influx.write(tiers.raw, [TIER_FILTERS.redo_marker("1d").strip()])
    tiers.run_all(soon())
    for c in tiers.compare_all(now - timedelta(days=1), now):
        assert check(c.tier) == (c.compared, 0) == (c.compared, c.differing), c


def test_a_failed_run_leaves_the_checkpoint_where_it_was(
    influx: InfluxServer, tmp_path: Path
) -> None:
    """The checkpoint is written only once every aggregate is: a run whose writes fail
    (here a field type conflict in the tier bucket) records nothing, so the next run does
    the same windows again."""
    name = prefix()
    make_target(influx, tmp_path, f"{name}_raw")
    tiers = Tiers.create(influx, name, list(PULSE.rollups))
    now = datetime.now(UTC)
    old = now - timedelta(days=10)  # another shard of the tier bucket (7-day groups)
    influx.write(tiers.raw, pulse_lines(old, old + HOUR))
    influx.write(tiers.raw, pulse_lines(now - HOUR, now - timedelta(minutes=2)))
    assert tiers.run("1m", now - timedelta(days=9)).status == "success"
    before = tiers.checkpoint("1m")
    assert before["stop"] == floor(now - timedelta(days=9), 60)
    # The tier holds `pulses` as a float in this week's shard: the sums (integers) fail.
    conflict = int((now - timedelta(minutes=10)).timestamp()) * 10**9
    influx.write(tiers.bucket("1m"), [f"pulse,channel=other pulses=1.5 {conflict}"])
    failed = tiers.run("1m", soon())
    assert failed.status == "failed", failed
    assert "field type conflict" in failed.log, failed.log
    assert tiers.checkpoint("1m") == before
