"""Fault injection: each case reports readings generated, landed, duplicated and lost.

Every case prints one line per source and records it in docs/faults.md (see
support/faultreport.py for what each figure means and how it is counted). Cases that take
long (a 10-minute network cut, 50 kills of every agent, a long InfluxDB chaos run) are
marked ``faults`` and run by ``make test-faults``; the short versions run in ``make test``.

Random instants come from WATTKEEPER_FAULT_SEED when set (to replay a run), otherwise from
the clock; the seed is printed with the figures.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import agent_config, run_wattkeeper, spawn_wattkeeper
from support.agentproc import buffer_rows, buffer_state, wait_for
from support.faultreport import Figures, record
from support.fleet import (
    Fleet,
    Leg,
    LuxtronikLeg,
    OctopusLeg,
    PulseLeg,
    TinyLeg,
    WattiVahtiLeg,
    tier_figures,
    tiered_target,
    tiny_figures,
)
from support.influxd import InfluxServer
from support.netfault import BlackholeProxy
from test_core_resilience import TINY, landed

CUT_SECONDS = float(os.environ.get("WATTKEEPER_FAULT_CUT_SECONDS", "600"))
QUICK = "make test"
LONG = "make test-faults"


def _seed() -> int:
    return int(os.environ.get("WATTKEEPER_FAULT_SEED", str(int(time.time()))))


def _report_and_check(figures: list[Figures], started: float, suite: str) -> None:
    """Record every source's figures first, then demand exactness of each."""
    for fig in figures:
        record(fig, seconds=time.monotonic() - started, suite=suite)
    bad = [fig.line() for fig in figures if not fig.exact]
    assert not bad, "\n".join(bad)


def _check_logs(fleet: Fleet, *, outage_seen_by: tuple[str, ...] = ()) -> None:
    for source, text in fleet.logs().items():
        assert "Traceback" not in text, f"{source}:\n{text[-3000:]}"
        if source in outage_seen_by:
            assert "cannot deliver to InfluxDB" in text, source
            assert "InfluxDB is reachable again" in text, source


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _stop_cleanly(fleet: Fleet) -> None:
    codes = fleet.stop_agents()
    assert all(code == 0 for code in codes.values()), codes


# -- InfluxDB killed and restarted at random moments, all agents running ------------------


def all_legs(seconds: float, lux_interval: str = "2s") -> list[Leg]:
    return [
        TinyLeg(),
        PulseLeg(rate=10, seconds=seconds),
        LuxtronikLeg(lux_interval),
        WattiVahtiLeg(days=30),
        OctopusLeg(every=5),
    ]


def influx_chaos(
    server: InfluxServer, tmp_path: Path, seconds: float, case: str, suite: str
) -> None:
    seed = _seed()
    rng = random.Random(seed)
    fleet = Fleet(server, tmp_path, all_legs(seconds))
    started = time.monotonic()
    kills = 0
    down = 0.0
    try:
        fleet.start()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(rng.uniform(3.0, 15.0))  # up, with deliveries under way
            server.kill()  # SIGKILL: no clean shutdown, writes in flight are cut
            kills += 1
            pause = rng.uniform(2.0, 15.0)
            time.sleep(pause)
            down += pause
            server.start()
        assert len(fleet.agents_alive()) == len(fleet.legs), fleet.logs()
        fleet.wait_drained(240)
        _stop_cleanly(fleet)
        figures = fleet.figures(case)
    finally:
        fleet.close()
    for fig in figures:
        fig.note += f"; InfluxDB SIGKILLed {kills}x, down {down:.0f}s in all (seed {seed})"
    _report_and_check(figures, started, suite)
    _check_logs(fleet, outage_seen_by=("tiny", "pulse", "luxtronik", "octopus"))


@pytest.mark.slow
def test_influx_killed_at_random_while_all_agents_run(
    influx_factory: Callable[[], InfluxServer], tmp_path: Path
) -> None:
    influx_chaos(influx_factory(), tmp_path, 90, "InfluxDB killed at random, 90 s", QUICK)


@pytest.mark.faults
def test_influx_killed_at_random_while_all_agents_run_long(
    influx_factory: Callable[[], InfluxServer], tmp_path: Path
) -> None:
    influx_chaos(influx_factory(), tmp_path, 420, "InfluxDB killed at random, 7 min", LONG)


# -- the network to InfluxDB cut, then restored --------------------------------------------


def network_cut(
    server: InfluxServer, tmp_path: Path, seconds: float, case: str, suite: str
) -> None:
    """Every agent writes through a proxy that black-holes the path (timeouts, not
    refusals) for ``seconds``; collection goes on, and the backlog drains after."""
    proxy = BlackholeProxy(server.port)
    warmup = 25.0
    fleet = Fleet(server, tmp_path, all_legs(warmup + seconds + 20, "5s"))
    started = time.monotonic()
    try:
        fleet.start(proxy.url, influxdb={"timeout": "3s", "retry_max": "5s"})
        time.sleep(warmup)
        proxy.cut()
        taken = {leg.source: leg.pending() for leg in fleet.legs}
        time.sleep(seconds)
        grew = {leg.source: leg.pending() - taken[leg.source] for leg in fleet.legs}
        assert len(fleet.agents_alive()) == len(fleet.legs), fleet.logs()
        proxy.restore()
        fleet.wait_drained(300)
        _stop_cleanly(fleet)
        figures = fleet.figures(case)
    finally:
        fleet.close()
        proxy.close()
    for fig in figures:
        source = fig.source.split()[0]
        fig.note += f"; {grew[source]} points buffered during the cut"
    _report_and_check(figures, started, suite)
    # Readings kept coming in while InfluxDB was unreachable (WattiVahti had finished its
    # first sync and has nothing new to fetch for minutes).
    assert all(grew[s] > 0 for s in ("tiny", "pulse", "luxtronik", "octopus")), grew
    _check_logs(fleet, outage_seen_by=("tiny", "pulse", "luxtronik", "octopus"))


@pytest.mark.slow
def test_network_cut_short(influx: InfluxServer, tmp_path: Path) -> None:
    network_cut(influx, tmp_path, 30, "network to InfluxDB cut 30 s", QUICK)


@pytest.mark.faults
def test_network_cut_ten_minutes(influx: InfluxServer, tmp_path: Path) -> None:
    minutes = f"{CUT_SECONDS / 60:g} min"
    network_cut(influx, tmp_path, CUT_SECONDS, f"network to InfluxDB cut {minutes}", LONG)


# -- agents SIGKILLed at random instants ---------------------------------------------------


@pytest.mark.faults
def test_agents_sigkilled_50_times(influx: InfluxServer, tmp_path: Path) -> None:
    """Each agent is SIGKILLed at 50 random instants (mid-poll, mid-commit, mid-delivery,
    mid-sync) and started again at once; after the last start nothing may be missing and
    nothing doubled. The pulse agent is not in this case: an edge exists only at its
    instant, and while the process is dead nobody counts it (as on a real Pi, where the
    line request dies with the process); its committed pulses are the core's rows, which
    the test source here exercises with exact figures."""
    seed = _seed()
    rng = random.Random(seed)
    legs: list[Leg] = [
        TinyLeg(points_per_poll=100, interval="50ms"),
        LuxtronikLeg("1s"),
        WattiVahtiLeg(days=60, delay="500ms"),
        OctopusLeg(every=2),
    ]
    fleet = Fleet(influx, tmp_path, legs)
    started = time.monotonic()
    try:
        fleet.start(influxdb={"batch_size": 500})
        for _ in range(50):
            for leg in rng.sample(legs, len(legs)):
                time.sleep(rng.uniform(0.2, 1.5))
                assert leg.agent is not None and leg.agent.poll() is None, leg.log.read_text()
                leg.kill_agent()
                leg.start_agent()
        fleet.wait_drained(240)
        _stop_cleanly(fleet)
        figures = fleet.figures("agents SIGKILLed 50 times each")
    finally:
        fleet.close()
    for fig in figures:
        fig.note += f"; 50 SIGKILLs at random instants (seed {seed})"
    _report_and_check(figures, started, LONG)
    _check_logs(fleet)


# -- the buffer's disk full ----------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(mnt: Path, size: str) -> Iterator[Path]:
    """A small tmpfs for the buffers: the disk-full case on a real filesystem."""
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)])
    if res.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "disk", "3m") as mnt:
        yield mnt


def fill(disk: Path) -> Path:
    """Fill the filesystem with another file, as a runaway log would."""
    filler = disk / "filler"
    with filler.open("wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    return filler


def test_disk_full_keeps_polling_says_so_and_recovers(
    influx: InfluxServer, tmp_path: Path, small_disk: Path
) -> None:
    target, tiers = tiered_target(influx, tmp_path)
    cfg = agent_config(
        tmp_path,
        target,
        "tiny",
        {"points_per_poll": 20, "interval": "50ms"},
        buffer={"path": small_disk / "buffer.sqlite"},
    )
    buf = small_disk / "buffer.sqlite"
    log = tmp_path / "agent.log"
    started = time.monotonic()
    proc = spawn_wattkeeper("run", TINY, "-c", cfg, log=log)
    try:
        wait_for(lambda: landed(target)[0] > 200, 60, "first points")
        filler = fill(small_disk)
        wait_for(lambda: "cannot write to the buffer" in log.read_text(), 60, "the full disk")
        stuck = buffer_state(buf, "tiny.next", 0)
        time.sleep(5)
        assert proc.poll() is None, "the agent must keep running on a full disk"
        assert buffer_state(buf, "tiny.next", 0) == stuck, "nothing is taken that is not stored"
        filler.unlink()  # space returns
        # Polling never backed off: the cursor moves on within seconds.
        wait_for(lambda: buffer_state(buf, "tiny.next", 0) > stuck + 500, 20, "polling again")
        wait_for(lambda: buffer_rows(buf, "tiny,%") == 0, 120, "the backlog to drain")
        _stop(proc)
        assert proc.returncode == 0
    finally:
        _stop(proc)
    text = log.read_text()
    fig = tiny_figures(target, buf, "buffer disk full (3 MB tmpfs)", "polls held in memory")
    _report_and_check([tier_figures(fig, tiers, "tiny")], started, QUICK)
    assert "disk is full" in text and "polling goes on" in text
    assert "takes writes again" in text


@pytest.mark.slow
def test_disk_full_under_every_agent(influx: InfluxServer, tmp_path: Path) -> None:
    """All agents keep their buffers on one small tmpfs that another file fills up: each
    keeps polling (or counting pulses), says so, holds what it can, and catches up when
    the space returns."""
    with tmpfs(tmp_path / "disk", "24m") as disk:
        fleet = Fleet(influx, tmp_path, all_legs(90, "2s"), buffer_dir=disk)
        started = time.monotonic()
        try:
            fleet.start()
            sync = next(leg for leg in fleet.legs if leg.source == "wattivahti")
            wait_for(sync.settled, 60, "the first WattiVahti sync")
            filler = fill(disk)
            for leg in fleet.legs:
                if leg.source != "wattivahti":  # nothing new to fetch for a while
                    wait_for(
                        lambda leg=leg: (
                            "cannot write to the buffer" in leg.log.read_text()
                            or "cannot update the buffer" in leg.log.read_text()
                        ),
                        60,
                        f"{leg.source} to notice the full disk",
                    )
            time.sleep(15)
            assert len(fleet.agents_alive()) == len(fleet.legs), fleet.logs()
            filler.unlink()  # space returns
            fleet.wait_drained(240)
            _stop_cleanly(fleet)
            figures = fleet.figures("buffer disk full (24 MB tmpfs), every agent")
        finally:
            fleet.close()
    _report_and_check(figures, started, QUICK)
    _check_logs(fleet)


# -- a corrupt buffer file -----------------------------------------------------------------


def test_corrupt_buffer_is_moved_aside_and_the_agent_runs(
    influx: InfluxServer, tmp_path: Path
) -> None:
    target, tiers = tiered_target(influx, tmp_path)
    started = time.monotonic()
    cfg = agent_config(tmp_path, target, "tiny", {"total": 50, "points_per_poll": 50})
    buf = tmp_path / "tiny-buffer.sqlite"
    buf.write_bytes(b"\x00garbage from a dying SD card\x00" * 1000)
    res = run_wattkeeper("run", TINY, "-c", cfg, "--once")
    assert res.returncode == 0, res.stderr
    assert "is corrupt" in res.stderr and "started a fresh buffer" in res.stderr
    assert len(list(tmp_path.glob("tiny-buffer.sqlite.corrupt-*"))) == 1
    # A second start is a normal start: no crash loop.
    res = run_wattkeeper("run", TINY, "-c", cfg, "--once")
    assert res.returncode == 0 and "is corrupt" not in res.stderr
    fig = tiny_figures(target, buf, "corrupt buffer file", "moved aside, fresh buffer")
    _report_and_check([tier_figures(fig, tiers, "tiny")], started, QUICK)


# -- the clock jumping -----------------------------------------------------------------------

FAKETIME_LIB = next(
    (
        p
        for p in (
            "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
            "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        )
        if Path(p).exists()
    ),
    None,
)


def faketime_env(offset_file: Path) -> dict[str, str]:
    """The agent's wall clock (only) follows the offset in ``offset_file`` ("-1h", "+1d")."""
    assert FAKETIME_LIB is not None
    return {
        "LD_PRELOAD": FAKETIME_LIB,
        "FAKETIME_TIMESTAMP_FILE": str(offset_file),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


def test_octopus_call_budget_runs_on_elapsed_time_not_the_wall_clock() -> None:
    """Found by the clock case below: the budget kept its window on the wall clock, so a
    clock set back an hour (or a day) made the calls look like future ones and blocked
    the Octopus agent for as long. Now it follows elapsed time and persists wall times."""
    from wattkeeper.sources.octopus.budget import CallBudget

    wall, mono = [1_800_000_000.0], [100.0]
    saved: list[list[float]] = []
    budget = CallBudget(
        2, 60, persist=saved.append, clock=lambda: wall[0], monotonic=lambda: mono[0]
    )
    budget.take()
    budget.take()
    assert budget.wait_time() == pytest.approx(61)
    wall[0] -= 86_400  # the wall clock goes back a day: the window does not care
    mono[0] += 61
    assert budget.wait_time() == 0 and budget.available() == 2
    budget.take()
    wall[0] += 2 * 86_400  # and forward two days: the last call still counts
    mono[0] += 1
    assert budget.available() == 1
    # Persisted on the wall clock, so a restart (new monotonic origin) keeps the history.
    assert saved[-1] == [wall[0] - 2 * 86_400 - 0.0]
    again = CallBudget(2, 60, history=saved[-1], clock=lambda: wall[0] - 2 * 86_400 + 1)
    assert again.available() == 1


def test_octopus_server_clock_ignores_local_clock_jumps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by the clock case below too: the server's time was kept as an offset to the
    local wall clock, so a local jump moved it along; asking for windows an hour in the
    past, the agent asked nothing and never heard the server's Date again."""
    from wattkeeper.sources.octopus import client

    clock = client.ServerClock(enabled=True)
    clock.update("Mon, 23 Nov 2026 12:00:00 GMT")
    server = clock.now()
    real = time.time
    monkeypatch.setattr(client.time, "time", lambda: real() - 3600)  # local clock set back
    assert abs(clock.now() - server) < 5
    monkeypatch.setattr(client.time, "time", lambda: real() + 86_400)  # and forward a day
    assert abs(clock.now() - server) < 5


@pytest.mark.slow
@pytest.mark.skipif(FAKETIME_LIB is None, reason="libfaketime not installed (make deps)")
def test_clock_jumps_under_every_agent(influx: InfluxServer, tmp_path: Path) -> None:
    """Every agent's wall clock jumps an hour back, a day forward and back while it runs
    (the simulators and InfluxDB keep the true time): nothing lost, nothing doubled. The
    readings keep their sources' timestamps (pulse edges, portal and Kraken times); a
    Luxtronik point carries the agent's poll time, wrong while the clock is, and is
    counted by the controller's own timestamp word."""
    offset = tmp_path / "faketime"
    offset.write_text("+0")
    fleet = Fleet(influx, tmp_path, all_legs(80, "2s"))
    started = time.monotonic()
    try:
        fleet.start(agent_env=faketime_env(offset))
        for jump in ("+0", "-1h", "+1d", "+0"):
            offset.write_text(jump)
            time.sleep(15)
            assert len(fleet.agents_alive()) == len(fleet.legs), fleet.logs()
        fleet.wait_drained(240)
        _stop_cleanly(fleet)
        figures = fleet.figures("clock jumps -1 h, +1 d, back, every agent")
    finally:
        fleet.close()
    _report_and_check(figures, started, QUICK)
    _check_logs(fleet)


@pytest.mark.skipif(FAKETIME_LIB is None, reason="libfaketime not installed (make deps)")
def test_clock_jumps_back_and_forward(influx: InfluxServer, tmp_path: Path) -> None:
    """The agent's wall clock jumps an hour back, then a day forward (libfaketime, this
    process only): polling, delivery and the readings' own timestamps are unaffected."""
    target, tiers = tiered_target(influx, tmp_path)
    offset_file = tmp_path / "faketime"
    offset_file.write_text("+0")
    cfg = agent_config(
        tmp_path,
        target,
        "tiny",
        {"points_per_poll": 5, "interval": "100ms"},
        agent={"metrics_interval": "1s"},
    )
    buf = tmp_path / "tiny-buffer.sqlite"
    log = tmp_path / "agent.log"
    env = faketime_env(offset_file)
    started = time.monotonic()
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wattkeeper", "run", TINY, "-c", str(cfg)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parent / "plugins"), **env},
        )
    try:
        for offset in ("-1h", "+1d", "+0"):
            before = landed(target)[0]
            offset_file.write_text(offset)
            wait_for(lambda b=before: landed(target)[0] > b + 50, 60, f"delivery at {offset}")
        _stop(proc)
        assert proc.returncode == 0
    finally:
        _stop(proc)
    assert buffer_rows(buf, "tiny,%") == 0
    fig = tiny_figures(target, buf, "clock jumps -1 h, +1 d, back", "libfaketime, agent only")
    _report_and_check([tier_figures(fig, tiers, "tiny")], started, QUICK)
    # The jumps really happened in the agent: its own metrics carry its (wrong) wall clock.
    metrics = '|> filter(fn: (r) => r._measurement == "wattkeeper_agent")'
    ahead = target.query(f"|> range(start: 20h, stop: 30h) {metrics}")
    behind = target.query(f"|> range(start: -70m, stop: -50m) {metrics}")
    assert ahead and behind
