"""Late markers: points delivered long after their reading time announce their windows.

The agent commits the reading-time range of late points with their ack (one SQLite
transaction), then writes one small ``wattkeeper_late`` point into its raw bucket, after
the points; the tier tasks re-aggregate those windows on their next run
(tests/test_tiers.py). On-time deliveries write no marker.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import Target, agent_config, run_wattkeeper

from wattkeeper.buffer import Buffer
from wattkeeper.delivery import _TAIL, Deliverer, Flush, _Batch, late_range
from wattkeeper.influx import InfluxClient, WriteResult

TINY = "tiny_source:PLUGIN"


def markers(target: Target) -> list[dict[str, str]]:
    rows = target.query(
        "|> range(start: 0, stop: 2100-01-01T00:00:00Z) |> filter(fn: (r) => "
        'r._measurement == "wattkeeper_late") '
        '|> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
    )
    return sorted(rows, key=lambda r: r["_time"])


def test_late_points_are_followed_by_one_marker(target: Target, tmp_path: Path) -> None:
    base = int(time.time()) - 2 * 86400  # readings two days old
    cfg = agent_config(
        tmp_path,
        target,
        "tiny",
        {"total": 50, "points_per_poll": 50, "base": base},
        influxdb={"batch_size": 10},
        agent={"host": "pi-attic"},
    )
    before = time.time()
    res = run_wattkeeper("run", TINY, "-c", cfg, "--once")
    assert res.returncode == 0, res.stderr
    found = markers(target)
    # Five batches, one marker: the range is widened in the buffer and sent at the end.
    assert len(found) == 1, found
    m = found[0]
    assert int(m["start"]) == base * 10**9
    assert int(m["stop"]) == (base + 49) * 10**9 + 1
    assert int(m["points"]) == 50
    assert m["host"] == "pi-attic"
    # Stamped by the server on arrival (the task reads markers that arrived since its
    # last run), after the points it describes.
    stamped = time.mktime(time.strptime(m["_time"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert before - 2 <= stamped <= time.time() + 2
    # A second run delivers nothing and sends nothing.
    assert run_wattkeeper("run", TINY, "-c", cfg, "--once").returncode == 0
    assert len(markers(target)) == 1


def test_on_time_points_write_no_marker(target: Target, tmp_path: Path) -> None:
    # Readings from 2 s ago to 17 s ahead (a source clock a little fast is not late).
    base = int(time.time()) - 2
    cfg = agent_config(tmp_path, target, "tiny", {"total": 20, "points_per_poll": 20, "base": base})
    res = run_wattkeeper("run", TINY, "-c", cfg, "--once")
    assert res.returncode == 0, res.stderr
    rows = target.query(
        "|> range(start: 0, stop: 2100-01-01T00:00:00Z) "
        '|> filter(fn: (r) => r._measurement == "tiny") |> count()'
    )
    assert int(rows[0]["_value"]) == 20
    assert markers(target) == []


class MarkerFails:
    """The real client, except that every write of a marker goes unanswered: as if the
    agent died (or InfluxDB went away) between the points' ack and their marker."""

    def __init__(self, client: InfluxClient) -> None:
        self.client = client
        self.real = client.write
        self.failing = True
        client.write = self.write  # type: ignore[method-assign]

    def write(self, lines: list[str], timeout: float | None = None) -> WriteResult:
        if self.failing and lines and lines[0].startswith("wattkeeper_late"):
            return WriteResult(0, "ConnectionError", "simulated cut")
        return self.real(lines, timeout)


def test_marker_outlives_a_failure_between_the_ack_and_the_marker(
    target: Target, tmp_path: Path
) -> None:
    path = tmp_path / "b.sqlite"
    buf = Buffer(path)
    base_ns = (int(time.time()) - 3600) * 10**9
    buf.append([f"late seq={i}.0 {base_ns + i * 10**9}" for i in range(30)])
    client = InfluxClient(
        target.server.url, target.server.org, target.bucket, target.token_file.read_text().strip()
    )
    cut = MarkerFails(client)
    assert Deliverer(buf, client, batch_size=10, late_after=10).flush() is Flush.FAILED
    assert buf.pending == 0 and target.count("late", "seq") == 30  # the points are in
    assert buf.pending_late() == (base_ns, base_ns + 29 * 10**9 + 1, 30)  # the marker waits
    assert markers(target) == []
    buf.close()
    # The agent starts again (a new process would open the same file): the marker goes.
    cut.failing = False
    buf = Buffer(path)
    assert Deliverer(buf, client, late_after=10).flush() is Flush.EMPTY
    assert buf.pending_late() is None
    found = markers(target)
    assert [(int(m["start"]), int(m["stop"]), int(m["points"])) for m in found] == [
        (base_ns, base_ns + 29 * 10**9 + 1, 30)
    ]


def test_lateness_is_judged_on_the_servers_clock(target: Target, tmp_path: Path) -> None:
    """An agent whose clock runs an hour behind still marks points the server got late
    (the tasks run on the server's clock)."""
    buf = Buffer(tmp_path / "b.sqlite")
    deliverer = Deliverer(buf, InfluxClient(target.server.url, "home", "x", "t"), late_after=10)
    now = time.time()
    behind = WriteResult(204, server_time=float(int(now)))
    # Stamped by an agent clock an hour behind: 5 minutes before the agent's "now",
    # 65 minutes before the server's.
    line = f"m f=1 {int((now - 3900) * 1e9)}"
    batch = _Batch([(1, line)], b"", 0, _TAIL(line))
    assert deliverer._late(batch, behind) is not None
    on_time = f"m f=1 {int((now - 2) * 1e9)}"
    assert deliverer._late(_Batch([(1, on_time)], b"", 0, _TAIL(on_time)), behind) is None


def test_late_range_reads_only_timestamps() -> None:
    lines = [f"m,t=a f=1 {1_700_000_000_000_000_000 + i}" for i in range(10)]
    assert late_range(lines, 1_800_000_000_000_000_000) == (
        1_700_000_000_000_000_000,
        1_700_000_000_000_000_010,
        10,
    )
    assert late_range(lines, 1_700_000_000_000_000_005) == (
        1_700_000_000_000_000_000,
        1_700_000_000_000_000_005,
        5,
    )
    assert late_range(lines, 1_000_000_000_000_000_000) is None
    # A marker itself has no timestamp (stamped on arrival): never late.
    assert late_range(["wattkeeper_late start=1i,stop=2i,points=1i"], 10**19 - 1) is None


def test_a_running_agent_sends_at_most_a_marker_every_ten_seconds(
    target: Target, tmp_path: Path
) -> None:
    """An agent whose clock is off finds every pass late: the markers of passes in
    quick succession wait and merge; the last pass (--once, stopping) sends what waits."""
    buf = Buffer(tmp_path / "b.sqlite")
    client = InfluxClient(
        target.server.url, target.server.org, target.bucket, target.token_file.read_text().strip()
    )
    deliverer = Deliverer(buf, client, late_after=10)
    base_ns = (int(time.time()) - 3600) * 10**9
    for i in range(3):  # three passes of the delivery thread, a second apart at most
        buf.append([f"late seq={i}.0 {base_ns + i * 10**9}"])
        assert deliverer.flush() is Flush.EMPTY
    assert len(markers(target)) == 1
    assert buf.pending_late() == (base_ns + 10**9, base_ns + 2 * 10**9 + 1, 2)
    assert deliverer.flush(time.monotonic() + 10) is Flush.EMPTY  # a last pass
    found = markers(target)
    assert len(found) == 2 and buf.pending_late() is None
    assert (int(found[1]["start"]), int(found[1]["stop"])) == (
        base_ns + 10**9,
        base_ns + 2 * 10**9 + 1,
    )


def test_a_full_disk_while_forgetting_a_sent_marker_is_a_failed_pass(
    target: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The delivery thread must never die of it: the pass fails, the marker stays pending
    (it goes out again, harmlessly) and a later pass succeeds."""
    import sqlite3

    buf = Buffer(tmp_path / "b.sqlite")
    client = InfluxClient(
        target.server.url, target.server.org, target.bucket, target.token_file.read_text().strip()
    )
    base_ns = (int(time.time()) - 3600) * 10**9
    buf.append([f"late seq=1.0 {base_ns}"])
    cut = MarkerFails(client)
    assert Deliverer(buf, client, late_after=10).flush() is Flush.FAILED  # marker pending
    cut.failing = False
    real_clear = buf.clear_late

    def full(sent: tuple[int, int, int]) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(buf, "clear_late", full)
    deliverer = Deliverer(buf, client, late_after=10)
    assert deliverer.flush(time.monotonic() + 10) is Flush.FAILED
    assert buf.pending_late() is not None
    monkeypatch.setattr(buf, "clear_late", real_clear)
    assert deliverer.flush(time.monotonic() + 10) is Flush.EMPTY
    assert buf.pending_late() is None and len(markers(target)) == 2
