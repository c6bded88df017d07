"""Nothing is lost: InfluxDB killed for minutes, the agent SIGKILLed mid-flush, SIGTERM.

Each test prints its figures (generated / landed / duplicated) so `make test` shows them.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Target, agent_config, make_target, spawn_wattkeeper
from support.agentproc import buffer_rows, buffer_state, wait_for
from support.influxd import InfluxServer

TINY = "tiny_source:PLUGIN"
OUTAGE = float(os.environ.get("WATTKEEPER_TEST_OUTAGE_SECONDS", "120"))


def landed(target: Target) -> tuple[int, float]:
    """Rows of the tiny series in InfluxDB, and the sum of their values."""
    rows = target.query(
        '|> range(start: 0) |> filter(fn: (r) => r._measurement == "tiny" and r._field == "seq")'
        " |> group() |> reduce(identity: {n: 0, s: 0.0},"
        " fn: (r, accumulator) => ({n: accumulator.n + 1, s: accumulator.s + r._value}))"
    )
    return (int(rows[0]["n"]), float(rows[0]["s"])) if rows else (0, 0.0)


def assert_all_landed_once(target: Target, generated: int, label: str) -> None:
    n, total = landed(target)
    # Reading k has value k at its own timestamp: n rows summing to 0+1+...+(N-1) means
    # every reading is there exactly once (a duplicate would need another timestamp).
    print(f"\n[{label}] generated={generated} landed={n} duplicated={max(0, n - generated)}")
    assert n == generated
    assert total == generated * (generated - 1) / 2


def stop_agent(proc: object, timeout: float = 30) -> int:
    proc.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
    return int(proc.wait(timeout))  # type: ignore[attr-defined]


@pytest.mark.slow
def test_influx_killed_then_restarted_minutes_later_loses_nothing(
    influx_factory: Callable[[], InfluxServer], tmp_path: Path
) -> None:
    server = influx_factory()
    target = make_target(server, tmp_path)
    cfg = agent_config(tmp_path, target, "tiny", {"points_per_poll": 5, "interval": "100ms"})
    buf = tmp_path / "tiny-buffer.sqlite"
    log = tmp_path / "agent.log"
    proc = spawn_wattkeeper("run", TINY, "-c", cfg, log=log)
    try:
        wait_for(lambda: landed(target)[0] > 100, 60, "first points to land")
        server.kill()
        killed_at = buffer_state(buf, "tiny.next", 0)
        time.sleep(OUTAGE)
        during = buffer_state(buf, "tiny.next", 0)
        assert during > killed_at + 100, "the agent kept collecting while InfluxDB was down"
        server.start()
        wait_for(lambda: buffer_rows(buf, "tiny,%") == 0, 120, "the backlog to drain")
        assert stop_agent(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    generated = int(buffer_state(buf, "tiny.next", 0))
    assert_all_landed_once(target, generated, f"influxd down {OUTAGE:.0f}s")
    text = log.read_text()
    assert "cannot deliver to InfluxDB" in text and "InfluxDB is reachable again" in text


def sigkill_repeatedly(target: Target, tmp_path: Path, kills: int, seed: int) -> None:
    """Start the agent, SIGKILL it at a random instant with points in flight, ``kills`` times;
    then deliver what is left and check that every reading landed exactly once."""
    from conftest import run_wattkeeper

    # Small batches and a fast source keep the agent inside a flush most of the time.
    cfg = agent_config(
        tmp_path,
        target,
        "tiny",
        {"points_per_poll": 200, "interval": "20ms"},
        influxdb={"batch_size": 500},
    )
    buf = tmp_path / "tiny-buffer.sqlite"
    log = tmp_path / "agent.log"
    rng = random.Random(seed)
    for _ in range(kills):
        proc = spawn_wattkeeper("run", TINY, "-c", cfg, log=log)
        wait_for(lambda: buffer_state(buf, "tiny.next", 0) > 0, 60, "agent start")
        time.sleep(rng.uniform(0.3, 2.0))
        # Then the next instant with points in flight (committed, not yet acknowledged).
        wait_for(lambda: buffer_rows(buf, "tiny,%") > 0, 10, "points in flight", step=0.002)
        proc.kill()
        proc.wait()
    generated = int(buffer_state(buf, "tiny.next", 0))
    res = run_wattkeeper("buffer", "flush", "-c", cfg, "--source", TINY)
    assert res.returncode == 0, res.stderr
    assert buffer_rows(buf) == 0
    assert_all_landed_once(target, generated, f"sigkill x{kills}")


@pytest.mark.slow
def test_agent_sigkilled_20_times_mid_flush_loses_nothing(target: Target, tmp_path: Path) -> None:
    sigkill_repeatedly(target, tmp_path, kills=20, seed=20)


def test_sigterm_exits_within_flush_timeout_and_keeps_the_rest(tmp_path: Path) -> None:
    # An InfluxDB that accepts connections and never answers: the worst case for a stop.
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(100)
    try:
        cfg = agent_config(
            tmp_path,
            None,
            "tiny",
            {"points_per_poll": 10, "interval": "50ms"},
            influxdb={"url": f"http://127.0.0.1:{hang.getsockname()[1]}", "timeout": "60s"},
            agent={"flush_timeout": "3s"},
        )
        buf = tmp_path / "tiny-buffer.sqlite"
        proc = spawn_wattkeeper("run", TINY, "-c", cfg, log=tmp_path / "agent.log")
        wait_for(lambda: buffer_state(buf, "tiny.next", 0) >= 100, 60, "points to pile up")
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        took = time.monotonic() - start
    finally:
        hang.close()
    print(f"\n[sigterm] exit={code} after {took:.1f}s (flush_timeout 3s)")
    assert code == 0
    assert took < 3 + 2  # the flush timeout plus process teardown
    generated = int(buffer_state(buf, "tiny.next", 0))
    assert buffer_rows(buf, "tiny,%") == generated  # every reading still safe in the buffer
    assert "points safe in the buffer" in (tmp_path / "agent.log").read_text()
