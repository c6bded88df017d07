"""The downsampling tiers of a raw bucket on a real server, for tests and benchmarks.

``Tiers.create`` makes the tier buckets and the production tier tasks (the Flux of
wattkeeper.downsample, as the InfluxDB role installs it) next to a raw bucket; tests run
them on demand (``POST /api/v2/tasks/ID/runs`` with ``scheduledFor``: the run's
``now()``), and ``compare`` checks every window of a tier against the same Flux's
aggregates recomputed from raw.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from support.influxd import InfluxServer, csv_rows
from wattkeeper.downsample import (
    CHECKPOINT,
    INTERNAL_MEASUREMENTS,
    Rollup,
    TierTask,
    duration_seconds,
    rollup_query,
    tier_tasks,
)

TIERS: list[dict[str, object]] = [
    {"name": "raw", "retention": "30d"},
    {"name": "1m", "every": "1m", "chunk": "1d"},
    {"name": "5m", "every": "5m", "chunk": "1d"},
    {"name": "1h", "every": "1h", "chunk": "1d"},
]


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def floor(t: datetime, seconds: float) -> datetime:
    s = int(seconds)
    return datetime.fromtimestamp(int(t.timestamp()) // s * s, UTC)


# What the previous version installed as wattkeeper_SOURCE_1m (for pulse): the last three
# windows, every minute, nothing else.
V1_PULSE_1M = """import "date"
import "types"

option task = {name: "NAME", every: 1m, offset: 30s}

stop = date.truncate(t: now(), unit: 1m)
start = date.sub(d: 3m, from: stop)

data = from(bucket: "SRC")
    |> range(start: start, stop: stop)
r0_mean = data
    |> filter(fn: (r) => r._measurement == "pulse" and (r._field == "power_w"))
    |> aggregateWindow(every: 1m, fn: mean, createEmpty: false, timeSrc: "_start")
r0_sum = data
    |> filter(fn: (r) => r._measurement == "pulse" and (r._field == "energy_wh" or r._field == "pulses"))
    |> aggregateWindow(every: 1m, fn: sum, createEmpty: false, timeSrc: "_start")
union(tables: [r0_mean, r0_sum])
    |> to(bucket: "DST", org: "ORG")
"""  # noqa: E501


@dataclass
class Run:
    tier: str
    scheduled_for: datetime
    status: str
    seconds: float  # from the run's startedAt to finishedAt
    log: str = ""


@dataclass
class Comparison:
    """Windows of one tier against raw: a window is one series in one time window."""

    tier: str
    compared: int
    differing: int
    examples: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.tier} {self.compared}/{self.differing}"


@dataclass
class Tiers:
    server: InfluxServer
    raw: str
    rollups: list[Rollup]
    tasks: list[TierTask]
    ids: dict[str, str]

    @classmethod
    def create(
        cls,
        server: InfluxServer,
        prefix: str,
        rollups: list[Rollup],
        *,
        cascade: bool = False,
        tiers: list[dict[str, object]] | None = None,
        scheduled: bool = False,
    ) -> Tiers:
        """The tier buckets PREFIX_1m ... of the raw bucket PREFIX_raw, and their tasks.

        ``scheduled`` tasks also run on their own schedule, as the role installs them;
        otherwise only when a test asks (InfluxDB runs no inactive task, not even on
        demand, so their schedule becomes once in 1000 days: the rest of the Flux is the
        production one).
        """
        tasks = tier_tasks(prefix, rollups, tiers or TIERS, org=server.org, cascade=cascade)
        ids: dict[str, str] = {}
        for t in tasks:
            server.create_bucket(t.dst_bucket)
            flux = t.flux()
            if not scheduled:
                flux = flux.replace(f"every: {t.every}, offset:", "every: 1000d, offset:", 1)
            # Described as the role describes its tasks (it changes only tasks so described).
            about = f"wattkeeper: {prefix}_raw -> {t.dst_bucket} every {t.every}"
            created = server.api(
                "POST",
                "/api/v2/tasks",
                json={"orgID": server.org_id, "flux": flux, "description": about},
            ).json()
            ids[t.every] = str(created["id"])
        return cls(server, f"{prefix}_raw", list(rollups), tasks, ids)

    def task(self, tier: str) -> TierTask:
        return next(t for t in self.tasks if t.every == tier)

    @property
    def names(self) -> list[str]:
        return [t.every for t in self.tasks]

    def bucket(self, tier: str) -> str:
        return self.task(tier).dst_bucket

    # -- running ----------------------------------------------------------------------

    def run(self, tier: str, scheduled_for: datetime, timeout: float = 300) -> Run:
        """One run of the tier's task with ``now()`` = ``scheduled_for`` (whole seconds)."""
        task_id = self.ids[tier]
        when = scheduled_for.astimezone(UTC).replace(microsecond=0)
        run = self.server.api(
            "POST",
            f"/api/v2/tasks/{task_id}/runs",
            json={"scheduledFor": when.strftime("%Y-%m-%dT%H:%M:%SZ")},
        ).json()
        deadline = time.monotonic() + timeout
        info: dict[str, Any] = {}
        done_since: float | None = None
        seconds = float("nan")
        while time.monotonic() < deadline:
            # A queued manual run is not found until it starts. A finished run is read back
            # from the _tasks system bucket, which may for a moment lack its finishedAt (seen
            # once in CI under load): wait for it a little, the status is what counts.
            r = requests.get(
                f"{self.server.url}/api/v2/tasks/{task_id}/runs/{run['id']}",
                headers={"Authorization": f"Token {self.server.token}"},
                timeout=30,
            )
            info = r.json() if r.status_code == 200 else {}
            if info.get("status") in ("success", "failed", "canceled"):
                if "finishedAt" in info and "startedAt" in info:
                    started = parse_time(info["startedAt"])
                    seconds = (parse_time(info["finishedAt"]) - started).total_seconds()
                    break
                done_since = done_since if done_since is not None else time.monotonic()
                if time.monotonic() - done_since > 10:
                    break  # the duration stays unknown (nan)
            time.sleep(0.05)
        else:
            raise AssertionError(f"run of {tier} at {when} did not finish in {timeout}s")
        log = ""
        if info["status"] != "success":
            logs = self.server.api("GET", f"/api/v2/tasks/{task_id}/runs/{run['id']}/logs")
            log = "\n".join(e.get("message", "") for e in logs.json().get("events", []))
        return Run(tier, when, info["status"], seconds, log)

    def run_all(self, scheduled_for: datetime) -> list[Run]:
        """The next run of every tier, finest first (as their schedules order them)."""
        runs = [self.run(t, scheduled_for) for t in self.names]
        bad = [f"{r.tier}: {r.status} {r.log}" for r in runs if r.status != "success"]
        assert not bad, bad
        return runs

    def catch_up(self, scheduled_for: datetime, max_runs: int = 60) -> dict[str, list[Run]]:
        """Run every tier until its checkpoint has nothing left to do (finest first,
        each run a second later than the last: a run sees the checkpoints before it)."""
        out: dict[str, list[Run]] = {t: [] for t in self.names}
        when = scheduled_for
        for tier in self.names:
            for _ in range(max_runs):
                run = self.run(tier, when)
                assert run.status == "success", f"{tier}: {run.status} {run.log}"
                out[tier].append(run)
                # The next run a second later (it sees this one's checkpoint), or now.
                when = max(when + timedelta(seconds=1), datetime.now(UTC).replace(microsecond=0))
                if self.caught_up(tier, when):
                    break
            else:
                raise AssertionError(f"{tier} not caught up after {max_runs} runs")
        return out

    def checkpoint(self, tier: str) -> dict[str, Any]:
        """The newest checkpoint of a tier: its fields as datetimes, and ``_time``."""
        rows = self.server.query(
            f'from(bucket: "{self.bucket(tier)}") |> range(start: 0, stop: 2100-01-01T00:00:00Z) '
            f'|> filter(fn: (r) => r._measurement == "{CHECKPOINT}") |> last()'
        )
        if not rows:
            return {}
        newest = max(r["_time"] for r in rows)
        out: dict[str, Any] = {
            r["_field"]: datetime.fromtimestamp(int(r["_value"]) / 1e9, UTC)
            for r in rows
            if r["_time"] == newest
        }
        out["_time"] = parse_time(newest)
        return out

    def caught_up(self, tier: str, now: datetime) -> bool:
        cp = self.checkpoint(tier)
        every = duration_seconds(tier)
        due = floor(now, every)
        if self.task(tier).cascade:  # bounded by the tier it reads
            finer = self.names[self.names.index(tier) - 1]
            due = min(due, floor(self.checkpoint(finer)["stop"], every))
        return bool(cp) and cp["stop"] >= due and cp["redo_hi"] <= cp["redo_lo"]

    # -- comparing --------------------------------------------------------------------

    def query(self, flux: str, timeout: float = 600) -> list[dict[str, str]]:
        """A Flux query's rows; a comparison over many series (Luxtronik's 1,814 fields)
        on a busy machine may take longer than the server helper's 30 s."""
        r = requests.post(
            f"{self.server.url}/api/v2/query",
            params={"org": self.server.org},
            headers={"Authorization": f"Token {self.server.token}"},
            json={"query": flux, "dialect": {"annotations": [], "header": True}},
            timeout=timeout,
        )
        if r.status_code != 200:
            raise RuntimeError(f"query: HTTP {r.status_code} {r.text[:300]}")
        return csv_rows(r.text)

    def values(self, bucket: str, start: datetime, stop: datetime) -> dict[tuple[Any, ...], float]:
        internal = " and ".join(f'r._measurement != "{m}"' for m in INTERNAL_MEASUREMENTS)
        rows = self.query(
            f'from(bucket: "{bucket}") |> range(start: {iso(start)}, stop: {iso(stop)}) '
            f"|> filter(fn: (r) => {internal})"
        )
        return {_key(r): float(r["_value"]) for r in rows}

    def recomputed(
        self, tier: str, start: datetime, stop: datetime
    ) -> dict[tuple[Any, ...], float]:
        rows = self.query(rollup_query(self.rollups, self.raw, tier, iso(start), iso(stop)))
        return {_key(r): float(r["_value"]) for r in rows}

    def compare(self, tier: str, start: datetime, stop: datetime) -> Comparison:
        """Every window of [start, stop) (aligned outward) in the tier against the
        aggregates of raw: a window differs if a field is missing, extra or unequal."""
        every = duration_seconds(tier)
        lo, hi = floor(start, every), floor(stop - timedelta(microseconds=1), every)
        hi += timedelta(seconds=every)
        want = self.recomputed(tier, lo, hi)
        got = self.values(self.bucket(tier), lo, hi)
        windows: dict[tuple[Any, ...], bool] = {}
        examples = []
        for key in set(want) | set(got):
            window = key[:-1]  # (measurement, tags..., time) without the field
            a, b = want.get(key), got.get(key)
            same = (
                a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
            )
            windows[window] = windows.get(window, True) and same
            if not same and len(examples) < 5:
                examples.append(f"{key}: tier {b}, raw {a}")
        differing = sum(1 for ok in windows.values() if not ok)
        return Comparison(tier, len(windows), differing, examples)

    def compare_all(self, start: datetime, stop: datetime) -> list[Comparison]:
        """``compare`` for every tier, up to the windows its last run has aggregated (the
        hour under way is not yet in 1h)."""
        out = []
        for t in self.names:
            done = min(stop, self.checkpoint(t)["stop"])
            out.append(self.compare(t, start, done) if done > start else Comparison(t, 0, 0))
        return out


def _key(row: dict[str, str]) -> tuple[Any, ...]:
    tags = tuple(
        sorted(
            (k, v) for k, v in row.items() if not k.startswith("_") and k not in ("result", "table")
        )
    )
    return (row["_measurement"], tags, row["_time"], row["_field"])
