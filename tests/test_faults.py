"""Fault injection: each case reports readings generated, landed, duplicated and lost.

Cases that take long (a 10-minute network cut, 50 kills) are marked ``faults`` and run by
``make test-faults``; the short versions run in ``make test``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Target, agent_config, run_wattkeeper, spawn_wattkeeper
from support.agentproc import buffer_rows, buffer_state, wait_for
from support.netfault import BlackholeProxy
from test_core_resilience import TINY, assert_all_landed_once, landed, sigkill_repeatedly

CUT_SECONDS = float(os.environ.get("WATTKEEPER_FAULT_CUT_SECONDS", "600"))


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def network_cut(target: Target, tmp_path: Path, seconds: float) -> None:
    proxy = BlackholeProxy(target.server.port)
    cfg = agent_config(
        tmp_path,
        target,
        "tiny",
        {"points_per_poll": 5, "interval": "200ms"},
        influxdb={"url": proxy.url, "timeout": "3s", "retry_max": "5s"},
    )
    buf = tmp_path / "tiny-buffer.sqlite"
    log = tmp_path / "agent.log"
    proc = spawn_wattkeeper("run", TINY, "-c", cfg, log=log)
    try:
        wait_for(lambda: landed(target)[0] > 50, 60, "first points")
        proxy.cut()
        before = buffer_state(buf, "tiny.next", 0)
        time.sleep(seconds)
        assert buffer_state(buf, "tiny.next", 0) > before, "collection went on during the cut"
        assert buffer_rows(buf, "tiny,%") > 0
        proxy.restore()
        wait_for(lambda: buffer_rows(buf, "tiny,%") == 0, 180, "the backlog to drain")
        _stop(proc)
        assert proc.returncode == 0
    finally:
        _stop(proc)
        proxy.close()
    assert_all_landed_once(target, int(buffer_state(buf, "tiny.next", 0)), f"cut {seconds:.0f}s")
    assert "cannot deliver to InfluxDB" in log.read_text()


def test_network_cut_short(target: Target, tmp_path: Path) -> None:
    network_cut(target, tmp_path, 20)


@pytest.mark.faults
def test_network_cut_ten_minutes(target: Target, tmp_path: Path) -> None:
    network_cut(target, tmp_path, CUT_SECONDS)


@pytest.mark.faults
def test_agent_sigkilled_50_times(target: Target, tmp_path: Path) -> None:
    sigkill_repeatedly(target, tmp_path, kills=50, seed=50)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MB tmpfs for the buffer: the disk-full case on a real filesystem."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)])
    if res.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


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
    target: Target, tmp_path: Path, small_disk: Path
) -> None:
    cfg = agent_config(
        tmp_path,
        target,
        "tiny",
        {"points_per_poll": 20, "interval": "50ms"},
        buffer={"path": small_disk / "buffer.sqlite"},
    )
    buf = small_disk / "buffer.sqlite"
    log = tmp_path / "agent.log"
    proc = spawn_wattkeeper("run", TINY, "-c", cfg, log=log)
    try:
        wait_for(lambda: landed(target)[0] > 200, 60, "first points")
        filler = fill(small_disk)
        wait_for(lambda: "cannot write to the buffer" in log.read_text(), 60, "the full disk")
        stuck = buffer_state(buf, "tiny.next", 0)
        failed = log.read_text().count("poll failed")
        # Failed polls back off (5 s, 10 s, ...) but never stop.
        wait_for(lambda: log.read_text().count("poll failed") > failed, 30, "another poll")
        assert proc.poll() is None, "the agent must keep running on a full disk"
        assert buffer_state(buf, "tiny.next", 0) == stuck, "nothing is taken that is not stored"
        filler.unlink()  # space returns
        wait_for(lambda: buffer_state(buf, "tiny.next", 0) > stuck + 500, 60, "polling again")
        wait_for(lambda: buffer_rows(buf, "tiny,%") == 0, 120, "the backlog to drain")
        _stop(proc)
        assert proc.returncode == 0
    finally:
        _stop(proc)
    assert_all_landed_once(target, int(buffer_state(buf, "tiny.next", 0)), "disk full")
    assert "disk is full" in log.read_text()


def test_corrupt_buffer_is_moved_aside_and_the_agent_runs(target: Target, tmp_path: Path) -> None:
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
    assert_all_landed_once(target, 50, "corrupt buffer")


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


@pytest.mark.skipif(FAKETIME_LIB is None, reason="libfaketime not installed (make deps)")
def test_clock_jumps_back_and_forward(target: Target, tmp_path: Path) -> None:
    """The agent's wall clock jumps an hour back, then a day forward (libfaketime, this
    process only): polling, delivery and the readings' own timestamps are unaffected."""
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
    env = {
        "LD_PRELOAD": str(FAKETIME_LIB),
        "FAKETIME_TIMESTAMP_FILE": str(offset_file),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    fh = log.open("ab")
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
    assert_all_landed_once(target, int(buffer_state(buf, "tiny.next", 0)), "clock jumps")
    # The jumps really happened in the agent: its own metrics carry its (wrong) wall clock.
    metrics = '|> filter(fn: (r) => r._measurement == "wattkeeper_agent")'
    ahead = target.query(f"|> range(start: 20h, stop: 30h) {metrics}")
    behind = target.query(f"|> range(start: -70m, stop: -50m) {metrics}")
    assert ahead and behind
