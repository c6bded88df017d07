"""WattiVahti under portal faults, and in daemon mode: nothing lost, nothing doubled."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import Target, run_wattkeeper, spawn_wattkeeper
from test_wattivahti import (
    Sim,
    assert_quarters,
    helsinki_midnight_days_ago,
    make_setup,
    points,
    run_once,
    simulators,
    ts,
    wait_for,
)


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[Callable[..., Sim]]:
    yield from simulators(tmp_path)


FAULTS = {
    # kind: (exit code of the faulty run, what its log must say)
    "500": (75, "HTTP 500"),
    "503": (75, "HTTP 503"),
    "hang": (75, "unreachable: ReadTimeout"),
    "nonjson": (75, "answer is not JSON"),
    "empty": (0, ""),
    "token500": (75, "token endpoint answered HTTP 500"),
}


@pytest.mark.parametrize("kind", list(FAULTS))
def test_fault_is_survived(
    kind: str, tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    s = make_setup(
        tmp_path,
        target,
        simulator,
        "--quarter-hour-since",
        "2020-01-01",
        "--hang",
        "4s",
        initial_days=1,
        timeout="1s",
    )
    started = datetime.now(UTC)
    r = run_once(s)
    assert r.returncode == 0, r.stderr
    token_before = s.token_file.read_text()
    s.sim.fault(kind)
    rc, message = FAULTS[kind]
    r = run_once(s)
    assert r.returncode == rc, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    if kind == "token500":
        # The refresh failed before any rotation: the token on disk is still the valid one.
        assert s.token_file.read_text() == token_before
    assert s.sim.stats()["faults_served"] == {kind: 1}
    # The faulty run spoiled nothing already there (an empty answer is not a reason to
    # fall back to PT1H over quarter-hour data).
    first = helsinki_midnight_days_ago(1, started)
    rows = points(target, first - timedelta(days=1), datetime.now(UTC) + timedelta(hours=1))
    assert_quarters(rows, first, ts(rows[-1]))
    r = run_once(s)
    assert r.returncode == 0, r.stderr
    rows = points(target, first - timedelta(days=1), datetime.now(UTC) + timedelta(hours=1))
    # All quarter-hours, each once with its true value; an empty answer did not turn into
    # a PT1H fallback over quarter-hour data.
    assert_quarters(rows, first, ts(rows[-1]))
    assert ts(rows[-1]) >= started - timedelta(minutes=30)


def test_daemon_mode_catches_up_chunk_by_chunk_and_stops_on_sigterm(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    s = make_setup(
        tmp_path,
        target,
        simulator,
        "--quarter-hour-since",
        "2020-01-01",
        initial_days=3,
        chunk="1d",
        interval="1h",
    )
    started = datetime.now(UTC)
    first = helsinki_midnight_days_ago(3, started)
    proc = spawn_wattkeeper("run", "wattivahti", "-c", s.config, log=tmp_path / "daemon.log")
    try:

        def caught_up() -> bool:
            rows = points(target, first, started + timedelta(hours=1))
            return bool(rows) and ts(rows[-1]) >= started - timedelta(minutes=30)

        wait_for(caught_up, 60, "the daemon to catch up")
        # One request per local day, then it sleeps for the interval.
        assert len(s.sim.stats()["meterdata_requests"]) == 4
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, (tmp_path / "daemon.log").read_text()
    rows = points(target, first - timedelta(days=1), datetime.now(UTC) + timedelta(hours=1))
    assert_quarters(rows, first, ts(rows[-1]))


def test_range_sync_killed_midway_continues_when_rerun(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    s = make_setup(
        tmp_path,
        target,
        simulator,
        "--quarter-hour-since",
        "2024-01-01",
        "--delay",
        "250ms",
        chunk="1d",
    )
    args = (
        "sync",
        "wattivahti",
        "-c",
        s.config,
        "--start-date",
        "2024-02-01",
        "--end-date",
        "2024-02-20",
    )
    proc = spawn_wattkeeper(*args, log=tmp_path / "sync.log")
    wait_for(lambda: len(s.sim.stats()["meterdata_requests"]) >= 8, 60, "8 chunks")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    n_first = len(s.sim.stats()["meterdata_requests"])
    assert n_first < 20
    r = run_wattkeeper(*args)
    assert r.returncode == 0, r.stderr
    assert "resuming the interrupted sync" in r.stderr
    second = s.sim.stats()["meterdata_requests"][n_first:]
    assert len(second) <= 20 - n_first + 2
    rows = points(target, datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC))
    # 2024-02-01 00:00 EET .. 2024-02-20 23:45 EET, every quarter-hour once.
    assert_quarters(
        rows, datetime(2024, 1, 31, 22, tzinfo=UTC), datetime(2024, 2, 20, 21, 45, tzinfo=UTC)
    )
