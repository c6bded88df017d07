"""Benchmark of the tier tasks (not a test): what catching up after an outage costs.

Three pulse channels at 200 pulses/s each (600 points/s, the pulse bench's load) were
cut off from InfluxDB for a day, or a week; the tier tasks ran on empty windows
meanwhile. Then the agents' backlog arrives, late, with the agents' late markers (one per
hour of backlog; a drain writes one every 30 s). Each tier task (the production
Flux and chunks of the InfluxDB role) runs until it has caught up; every run's duration
is InfluxDB's own (startedAt to finishedAt). Then the steady state: a run after a
minute of on-time pulses, of this version's 1m task and of the previous version's (the
last three windows, no checkpoint), side by side.

    .venv/bin/python bench/tiers_bench.py [--days 1,7]
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.influxd import InfluxServer, find_influxd  # noqa: E402
from support.tiers import V1_PULSE_1M, Tiers, floor  # noqa: E402

from wattkeeper.sources.pulse import PLUGIN  # noqa: E402

RATE = 200  # pulses/s per channel
CHANNELS = ("import", "export", "generate")
HOUR = 3600
DAY = timedelta(days=1)


@dataclass
class CatchUp:
    tier: str
    runs: int
    longest_s: float
    total_s: float
    points_per_run: float
    cpu_s: float = 0.0  # InfluxDB's CPU seconds for the whole catch-up
    longest_cpu_s: float = 0.0


def cpu_seconds(server: InfluxServer) -> float:
    """InfluxDB's CPU time so far (user + system): what a run costs whatever else the
    machine does (its wall time grows with the load)."""
    assert server.proc is not None
    fields = Path(f"/proc/{server.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Outage:
    days: float
    points: int
    ingest_s: float
    tiers: list[CatchUp]


def _body(args: tuple[str, int, int, int]) -> tuple[str, bytes]:
    """One request: a channel's pulses in [start_s, stop_s), evenly spaced, gzip'd."""
    channel, start_s, stop_s, seed = args
    step = 10**9 // RATE
    pre = f"pulse,channel={channel} pulses=1i,energy_wh=1.0,power_w="
    t0 = start_s * 10**9
    n = (stop_s - start_s) * RATE
    text = "\n".join(f"{pre}{3600 + (i + seed) % 997}.0 {t0 + i * step}" for i in range(n))
    return channel, gzip.compress((text + "\n").encode(), 1)


def _slices(
    start: datetime, stop: datetime, seconds: int = 300
) -> Iterator[tuple[str, int, int, int]]:
    t, end = int(start.timestamp()), int(stop.timestamp())
    while t < end:
        for i, channel in enumerate(CHANNELS):
            yield channel, t, min(end, t + seconds), i * 7919
        t += seconds


def ingest(server: InfluxServer, bucket: str, start: datetime, stop: datetime) -> float:
    """Write 3 x 200 pulses/s over [start, stop) as fast as InfluxDB takes them."""
    session = requests.Session()
    session.headers.update({"Authorization": f"Token {server.token}", "Content-Encoding": "gzip"})
    started = time.monotonic()
    with ProcessPoolExecutor(2) as pool:
        for _, body in pool.map(_body, _slices(start, stop), chunksize=4):
            # A busy InfluxDB answers 500 "timeout" or 503 now and then; as an agent
            # would, send the same body again (a replay overwrites the same points).
            for attempt in range(10):
                r = session.post(
                    f"{server.url}/api/v2/write",
                    params={"org": server.org, "bucket": bucket, "precision": "ns"},
                    data=body,
                    timeout=600,
                )
                if r.status_code == 204 or r.status_code < 500:
                    break
                time.sleep(2 * (attempt + 1))
            if r.status_code != 204:
                raise RuntimeError(f"write: HTTP {r.status_code} {r.text[:200]}")
    return time.monotonic() - started


def markers(server: InfluxServer, bucket: str, start: datetime, stop: datetime) -> None:
    """The agents' late markers for the backlog: one per hour of readings, each in its own
    request as an agent sends them (stamped on arrival: one request, one instant)."""
    t, end = int(start.timestamp()), int(stop.timestamp())
    while t < end:
        hi = min(end, t + HOUR)
        server.write(
            bucket,
            [
                f"wattkeeper_late,host=bench start={t * 10**9}i,stop={hi * 10**9}i,"
                f"points={(hi - t) * RATE * len(CHANNELS)}i"
            ],
        )
        t = hi


def _now() -> datetime:
    """The current whole second, one after anything written so far."""
    time.sleep(1.05 - time.time() % 1)
    return datetime.now(UTC).replace(microsecond=0)


def outage(server: InfluxServer, days: float, log: Callable[[str], None]) -> Outage:
    name = f"bench{uuid.uuid4().hex[:8]}"
    server.create_bucket(f"{name}_raw")
    tiers = Tiers.create(server, name, list(PLUGIN.rollups))
    end = floor(datetime.now(UTC), HOUR) - timedelta(hours=1)
    start = end - timedelta(days=days)
    tiers.run_all(start)  # up to date when the network went away
    tiers.run_all(end)  # the runs during the outage found nothing (one stands for all)
    points = int(days * 86400) * RATE * len(CHANNELS)
    log(f"{days:g}-day outage: writing {points:,} pulses ...")
    ingest_s = ingest(server, tiers.raw, start, end)
    markers(server, tiers.raw, start, end)
    log(f"  written in {ingest_s:.0f} s; the tiers catch up ...")
    out = []
    for tier in tiers.names:
        durations, cpus = [], []
        while True:
            when = _now()
            cpu = cpu_seconds(server)
            run = tiers.run(tier, when, timeout=3600)
            cpus.append(cpu_seconds(server) - cpu)
            assert run.status == "success", run.log
            if run.seconds == run.seconds:  # not nan: InfluxDB gave both times
                durations.append(run.seconds)
            if tiers.caught_up(tier, datetime.now(UTC)):
                break
        span = min(days * 86400.0, tiers_chunk_seconds(tiers, tier))
        catch_up = CatchUp(tier, len(cpus), max(durations), sum(durations), span * RATE * 3)
        catch_up.cpu_s, catch_up.longest_cpu_s = sum(cpus), max(cpus)
        out.append(catch_up)
        log(
            f"  {tier}: {len(durations)} runs, longest {max(durations):.1f} s "
            f"({max(cpus):.1f} s of CPU)"
        )
    # Exact, window by window: all of a 1-day outage; of a longer one the first and the
    # last day (recomputing a week of 600 points/s from raw costs as much as the catch-up;
    # tests/test_tiers.py shows every window exact on smaller data).
    spans = [(start, end)] if days <= 2 else [(start, start + DAY), (end - DAY, end)]
    found = [c for lo, hi in spans for c in tiers.compare_all(lo, hi)]
    assert all(c.differing == 0 for c in found), [str(c) for c in found]
    return Outage(days, points, ingest_s, out)


def tiers_chunk_seconds(tiers: Tiers, tier: str) -> float:
    from wattkeeper.downsample import duration_seconds

    return duration_seconds(tiers.task(tier).chunk)


def steady_state(server: InfluxServer, repeats: int = 9) -> tuple[float, float, float, float]:
    """Median run seconds and CPU seconds of a 1m run after a minute of on-time pulses:
    this version's task, the previous version's."""
    name = f"bench{uuid.uuid4().hex[:8]}"
    server.create_bucket(f"{name}_raw")
    tiers = Tiers.create(server, name, list(PLUGIN.rollups))
    server.create_bucket(f"{name}_v1")
    old = server.api(
        "POST",
        "/api/v2/tasks",
        json={
            "orgID": server.org_id,
            # Run by hand only (as Tiers.create does for the current version's tasks).
            "flux": V1_PULSE_1M.replace("every: 1m,", "every: 1000d,")
            .replace("NAME", f"{name}_v1")
            .replace("SRC", tiers.raw)
            .replace("DST", f"{name}_v1")
            .replace("ORG", server.org),
        },
    ).json()
    start = floor(datetime.now(UTC), 60) - timedelta(minutes=repeats + 5)
    ingest(server, tiers.raw, start - timedelta(hours=1), start)
    tiers.run("1m", start)
    new_s, old_s, new_cpu, old_cpu = [], [], [], []
    old_tiers = Tiers(server, tiers.raw, tiers.rollups, tiers.tasks, {"1m": old["id"]})
    for i in range(repeats):
        minute = start + timedelta(minutes=i)
        ingest(server, tiers.raw, minute, minute + timedelta(minutes=1))
        when = minute + timedelta(minutes=1, seconds=30)  # the offset after the window
        for which, secs, cpus in ((tiers, new_s, new_cpu), (old_tiers, old_s, old_cpu)):
            cpu = cpu_seconds(server)
            seconds = which.run("1m", when).seconds
            if seconds == seconds:  # not nan: InfluxDB gave both times
                secs.append(seconds)
            cpus.append(cpu_seconds(server) - cpu)
    return (
        statistics.median(new_s),
        statistics.median(old_s),
        statistics.median(new_cpu),
        statistics.median(old_cpu),
    )


def run(
    server: InfluxServer, days: list[float], log: Callable[[str], None] = print
) -> tuple[list[Outage], tuple[float, float, float, float]]:
    normal = steady_state(server)
    log(
        f"steady state 1m run: {normal[0]:.3f} s, {normal[2]:.3f} s of CPU (previous "
        f"version {normal[1]:.3f} s, {normal[3]:.3f} s of CPU)"
    )
    return [outage(server, d, log) for d in days], normal


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", default="1,7", help="outages to measure, in days")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="wattkeeper-tiers-bench-") as d:
        server = InfluxServer(find_influxd(), Path(d) / "influxd")
        server.start()
        try:
            outages, normal = run(server, [float(x) for x in args.days.split(",")])
        finally:
            server.stop()
    for o in outages:
        for c in o.tiers:
            print(
                f"{o.days:g}-day outage, {c.tier}: {c.runs} runs, longest {c.longest_s:.1f} s "
                f"({c.longest_cpu_s:.1f} s of CPU), in all {c.total_s:.1f} s"
            )
    print(f"steady state: {normal[0]:.3f} s a run (previous version {normal[1]:.3f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
