"""What landed: each source's points in its raw bucket (read with the read-only dashboards
token), and every downsampling task, run once through the API, filling its tier bucket with
the aggregate the source declares for each field."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import ORG, Influx, wait_for
from report import report
from sources import CHECKED_FIELDS, DAEMONS, ROLLED, SOURCES, TIERS


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def _count(influx: Influx, bucket: str, measurement: str, start: str = "-30d") -> int:
    rows = influx.query(
        f'from(bucket: "{bucket}") |> range(start: {start}) '
        f'|> filter(fn: (r) => r._measurement == "{measurement}") |> group() |> count()'
    )
    return int(rows[0]["_value"]) if rows else 0


@pytest.mark.parametrize("source", SOURCES)
def test_points_queryable_with_dashboards_token(influx: Influx, source: str) -> None:
    n = wait_for(
        f"{source} points in {source}_raw", lambda: _count(influx, f"{source}_raw", source)
    )
    report("points in the raw buckets", f"{source}_raw", str(n))
    # The agent's own metrics land next to the readings.
    assert _count(influx, f"{source}_raw", "wattkeeper_agent") > 0


def _newest(
    influx: Influx, source: str, field: str, stop: datetime | None = None
) -> datetime | None:
    until = f", stop: {_iso(stop)}" if stop else ""
    rows = influx.query(
        f'from(bucket: "{source}_raw") |> range(start: -30d{until}) '
        f'|> filter(fn: (r) => r._measurement == "{source}" and r._field == "{field}") '
        "|> group() |> last()"
    )
    return _parse(rows[0]["_time"]) if rows else None


def _floor(t: datetime, every: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((t - epoch) // every) * every


def _run_task(influx: Influx, name: str, scheduled_for: datetime) -> dict[str, Any]:
    """Run the task now, as if scheduled at ``scheduled_for`` (its ``now()``)."""
    tasks = influx.api("GET", "/api/v2/tasks", params={"name": name, "orgID": influx.org_id()})[
        "tasks"
    ]
    assert len(tasks) == 1, f"task {name}: {len(tasks)} found"
    task = tasks[0]
    assert task["status"] == "active"
    run = influx.api(
        "POST", f"/api/v2/tasks/{task['id']}/runs", json={"scheduledFor": _iso(scheduled_for)}
    )

    def finished() -> dict[str, Any] | None:
        r = influx.api("GET", f"/api/v2/tasks/{task['id']}/runs/{run['id']}")
        return r if r.get("status") in ("success", "failed", "canceled") else None

    done = wait_for(f"run of task {name}", finished, timeout=60, every=1)
    if done["status"] != "success":
        logs = influx.api("GET", f"/api/v2/tasks/{task['id']}/runs/{run['id']}/logs")
        pytest.fail(f"task {name} run {done['status']}: {logs}")
    return done


def _series(row: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The tag set of a row (pulse channel, Luxtronik group ...)."""
    return tuple(
        sorted(
            (k, v)
            for k, v in row.items()
            if k and not k.startswith("_") and k not in ("result", "table")
        )
    )


def _window_values(
    influx: Influx, bucket: str, source: str, field: str, fn: str, start: datetime, stop: datetime
) -> dict[tuple[tuple[str, str], ...], float]:
    """``fn`` of the field over [start, stop), per series."""
    rows = influx.query(
        f'from(bucket: "{bucket}") |> range(start: {_iso(start)}, stop: {_iso(stop)}) '
        f'|> filter(fn: (r) => r._measurement == "{source}" and r._field == "{field}") '
        f'|> drop(columns: ["_start", "_stop"]) |> sort(columns: ["_time"]) |> {fn}()'
    )
    return {_series(r): float(r["_value"]) for r in rows}


@pytest.fixture(scope="module")
def frozen_raw(influx: Influx, collector: Any) -> Iterator[None]:
    """The live agents stopped (each flushes its buffer first), so that a window's raw
    points cannot change between a task's run and the comparison; started again after."""
    for source in SOURCES:
        wait_for(f"{source} points", lambda s=source: _count(influx, f"{s}_raw", s))
    daemons = [f"wattkeeper-{s}" for s in DAEMONS]
    collector.run_test("systemctl stop " + " ".join(daemons))
    try:
        yield
    finally:
        collector.run_test("systemctl start " + " ".join(daemons))


@pytest.mark.parametrize("tier", list(TIERS))
@pytest.mark.parametrize("source", ROLLED)
def test_task_run_fills_tier_with_the_declared_aggregates(
    influx: Influx, frozen_raw: None, source: str, tier: str
) -> None:
    every = timedelta(seconds=TIERS[tier])
    fields = CHECKED_FIELDS[source]
    first = next(iter(fields))
    # A run aggregates every whole window since the tier's checkpoint, and the windows
    # late markers announce (wattkeeper.downsample). Check the newest window before now
    # that holds readings.
    stop = _floor(datetime.now(UTC), every)
    before = _newest(influx, source, first, stop)
    note = ""
    if before is not None and before >= stop - 3 * every:
        window = _floor(before, every)
    else:
        # A fresh scenario has no whole hour of live readings yet (and the portal's newest
        # quarter-hour may be older than three minutes): copy the newest window's real
        # readings, shifted, into the last whole window, as the operator could, with the
        # late marker an agent would write for them.
        newest = _newest(influx, source, first)
        assert newest is not None, f"no {source}.{first} in {source}_raw"
        src = _floor(newest, every)
        window = stop - every
        influx.query(
            f'from(bucket: "{source}_raw") |> range(start: {_iso(src)}, stop: {_iso(src + every)}) '
            f'|> filter(fn: (r) => r._measurement == "{source}") '
            f"|> timeShift(duration: {int((window - src).total_seconds())}s) "
            f'|> to(bucket: "{source}_raw", org: "{ORG}")',
            token=influx.operator,
        )
        start_ns = int(window.timestamp()) * 10**9
        influx.api(
            "POST",
            f"/api/v2/write?org={ORG}&bucket={source}_raw&precision=ns",
            data=f"wattkeeper_late,host=molecule start={start_ns}i,"
            f"stop={start_ns + int(every.total_seconds()) * 10**9}i,points=0i",
        )
        note = f", readings of {_iso(src)} copied there"
    # The run's now() is a whole second: one after every point and marker written (never
    # in the future, where it would aggregate a window still under way).
    time.sleep(1.1)
    run = _run_task(influx, f"wattkeeper_{source}_{tier}", datetime.now(UTC))
    report(
        "downsampling task runs (manual, through the API)",
        f"wattkeeper_{source}_{tier}",
        f"{run['status']}: window {_iso(window)}{note}",
    )
    found = 0
    for field, fn in fields.items():
        expected = _window_values(
            influx, f"{source}_raw", source, field, fn, window, window + every
        )
        got = _window_values(
            influx, f"{source}_{tier}", source, field, "last", window, window + every
        )
        assert set(got) == set(expected), (
            f"{source}_{tier}.{field}: series {sorted(got)} != raw {sorted(expected)}"
        )
        for series, value in expected.items():
            assert math.isclose(got[series], value, rel_tol=1e-9, abs_tol=1e-9), (
                f"{source}_{tier}.{field} {dict(series)} at {_iso(window)}: {got[series]}, "
                f"but the {fn} of raw is {value}"
            )
            found += 1
    assert found, f"no checked field of {source} had readings in the window at {_iso(window)}"
    checkpoint = _checkpoint(influx, f"{source}_{tier}")
    assert checkpoint >= window + every, f"{source}_{tier}: checkpoint at {checkpoint}"


def _checkpoint(influx: Influx, bucket: str) -> datetime:
    """Where the tier's newest checkpoint says its windows are aggregated up to."""
    rows = influx.query(
        f'from(bucket: "{bucket}") |> range(start: 0, stop: 2100-01-01T00:00:00Z) '
        '|> filter(fn: (r) => r._measurement == "wattkeeper_checkpoint" and r._field == "stop") '
        "|> last()"
    )
    assert rows, f"{bucket} has no checkpoint"
    return datetime.fromtimestamp(int(rows[0]["_value"]) / 1e9, UTC)


@pytest.mark.parametrize("source", ROLLED)
def test_tiers_hold_only_numeric_fields(influx: Influx, source: str) -> None:
    """Strings (wattivahti's resolution, Luxtronik's version) are not rolled up."""
    rows = influx.query(
        'import "influxdata/influxdb/schema"\n'
        f'schema.measurementFieldKeys(bucket: "{source}_1m", measurement: "{source}", start: -30d)'
    )
    tier_fields = {r["_value"] for r in rows}
    assert tier_fields, f"{source}_1m is empty"
    if source == "wattivahti":
        assert "resolution" not in tier_fields
