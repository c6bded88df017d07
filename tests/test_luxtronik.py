"""Luxtronik: the agent reads the simulator over TCP and lands every value in InfluxDB.

Chain under test: `wattkeeper run luxtronik` (the production CLI, a subprocess) ->
python-luxtronik -> `wattkeeper simulate luxtronik` (another subprocess, the Luxtronik 2
wire protocol) and -> a real InfluxDB 2. The expected values come from two independent
readers: the unmodified python-luxtronik client and a raw-socket decoder in this file.
"""

from __future__ import annotations

import http.server
import json
import math
import signal
import socket
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import luxtronik
import pytest
from conftest import Target, agent_config, run_wattkeeper, spawn_wattkeeper
from support.agentproc import wait_for
from support.influxd import free_port
from support.simproc import SimProcess, simulator_processes, start_simulator

from wattkeeper.sources.luxtronik.diskguard import USAGE_FILE_ENV
from wattkeeper.sources.luxtronik.reader import field_value

FREEZE = "2026-01-15T03:10:00+00:00"  # a cold night, compressor running


class Sim(SimProcess):
    def fault(self, kind: str, count: int = 1) -> None:
        """Queue a fault for the next ``count`` connections (the simulator's control command)."""
        codes = {"clear": 0, "close": 1, "slow": 2, "short": 3, "stall": 4, "garble": 5}
        code = codes[kind]
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(struct.pack(">ii", 9000 + code, count))
            assert struct.unpack(">ii", _recv_exact(s, 8)) == (9000 + code, count)


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        assert chunk, "simulator closed the connection"
        buf += chunk
    return buf


def raw_read(port: int) -> dict[str, list[int]]:
    """Decode the three answers straight off the wire, without python-luxtronik."""
    out: dict[str, list[int]] = {}
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        for cmd, group in ((3003, "parameters"), (3004, "calculations"), (3005, "visibilities")):
            s.sendall(struct.pack(">ii", cmd, 0))
            assert struct.unpack(">i", _recv_exact(s, 4))[0] == cmd
            if cmd == 3004:
                assert struct.unpack(">i", _recv_exact(s, 4))[0] == 0  # status word
            (n,) = struct.unpack(">i", _recv_exact(s, 4))
            fmt, size = (">b", 1) if cmd == 3005 else (">i", 4)
            data = _recv_exact(s, n * size)
            out[group] = [
                struct.unpack(fmt, data[i : i + size])[0] for i in range(0, len(data), size)
            ]
    return out


@pytest.fixture
def start_sim(tmp_path: Path) -> Iterator[Callable[..., Sim]]:
    with simulator_processes("luxtronik", tmp_path) as started:

        def start(*extra: str) -> Sim:
            return Sim(*start_simulator(started, "luxtronik", tmp_path, *extra))

        yield start


def lux_config(tmp_path: Path, target: Target | None, port: int, **keys: Any) -> Path:
    extra = {k: keys.pop(k) for k in ("agent", "alerts") if k in keys}
    table = {
        "host": "127.0.0.1",
        "port": port,
        "interval": "1s",
        "timeout": "5s",
        "min_spacing": "100ms",
        "report_dir": str(tmp_path / "reports"),
    }
    table.update(keys)
    return agent_config(tmp_path, target, "luxtronik", table, **extra)


def influx_fields(target: Target, group: str) -> dict[str, Any]:
    rows = target.query(
        '|> range(start: 0) |> filter(fn: (r) => r._measurement == "luxtronik" '
        f'and r.group == "{group}") |> last()'
    )
    return {r["_field"]: r["_value"] for r in rows}


def test_poll_lands_every_value(
    start_sim: Callable[..., Sim], target: Target, tmp_path: Path
) -> None:
    sim = start_sim("--freeze-at", FREEZE)
    cfg = lux_config(tmp_path, target, sim.port)
    t0 = time.time()
    res = run_wattkeeper("run", "luxtronik", "-c", cfg, "--once")
    assert res.returncode == 0, res.stderr

    # Expected: the unmodified python-luxtronik client reading the same (frozen) simulator.
    lib = luxtronik.Luxtronik("127.0.0.1", sim.port)
    tables = {
        "parameters": lib.parameters.parameters,
        "calculations": lib.calculations.calculations,
        "visibilities": lib.visibilities.visibilities,
    }
    total = 0
    for group, table in tables.items():
        expected = {e.name: field_value(e.value) for e in table.values() if e.value is not None}
        got = influx_fields(target, group)
        assert set(got) == set(expected), group
        for name, want in expected.items():
            value = got[name]
            if isinstance(want, str):
                assert value == want, name
            else:
                assert math.isclose(float(value), want, rel_tol=1e-9, abs_tol=1e-9), name
        total += len(got)
    assert total == 1814  # a recent firmware's worth of values

    # Spot checks against the raw words on the wire (independent of python-luxtronik).
    raw = raw_read(sim.port)
    calc = influx_fields(target, "calculations")
    par = influx_fields(target, "parameters")
    assert float(calc["ID_WEB_Temperatur_TVL"]) == raw["calculations"][10] / 10
    assert float(calc["ID_WEB_Temperatur_TA"]) == raw["calculations"][15] / 10 < 0  # signed
    assert float(calc["ID_WEB_LIN_HD"]) == raw["calculations"][180] / 100  # bar
    assert float(calc["ID_WEB_LIN_ND"]) == raw["calculations"][181] / 100
    assert float(calc["ID_WEB_WMZ_Heizung"]) == raw["calculations"][151] / 10  # kWh
    assert float(calc["ID_WEB_Zaehler_BetrZeitImpVD1"]) == raw["calculations"][57]
    assert float(calc["ID_WEB_VD1out"]) == 1.0  # bool as 0/1
    version = "".join(chr(c) for c in raw["calculations"][81:90]).strip("\x00")
    assert calc["ID_WEB_SoftStand"] == version == "V3.88.1"
    assert calc["ID_WEB_AdresseIP_akt"] == "192.168.20.180"
    assert calc["ID_WEB_WP_BZ_akt"] == "heating"
    assert float(par["ID_Einst_BWS_akt"]) == raw["parameters"][2] / 10 == 50.0
    assert par["ID_Ba_Hz_akt"] == "Automatic"
    # Every value the simulator holds landed (calculations 81-90 fold into one string).
    assert len(raw["parameters"]) == len(par) == 1190
    assert len(raw["calculations"]) - 9 == len(calc) == 258
    assert len(raw["visibilities"]) == len(influx_fields(target, "visibilities")) == 366

    # One timestamp per poll (the poll time, UTC), the same for the three groups.
    rows = target.query(
        '|> range(start: 0) |> filter(fn: (r) => r._measurement == "luxtronik" and '
        'r._field == "ID_WEB_Temperatur_TVL")'
    )
    assert len(rows) == 1
    when = datetime.fromisoformat(rows[0]["_time"].replace("Z", "+00:00")).timestamp()
    assert t0 - 1 <= when <= time.time()

    # Read-only: the agent sent no write (3002); a write by another client is acknowledged
    # by the simulator, as by a controller, but changes nothing.
    assert "write of parameter" not in sim.log.read_text()
    lib.parameters.set("ID_Einst_BWS_akt", 55.0)
    lib.write()
    assert raw_read(sim.port)["parameters"][2] == 500
    assert "write of parameter 2 ignored" in sim.log.read_text()

    chk = run_wattkeeper("check", "-c", cfg)
    assert chk.returncode == 0, chk.stdout + chk.stderr
    assert f"Luxtronik controller 127.0.0.1:{sim.port}: firmware V3.88.1; " in chk.stdout

    # The poll also went into the local history for the CSV reports.
    rep = run_wattkeeper("report", "luxtronik", "-c", cfg)
    assert rep.returncode == 0, rep.stderr
    daily = next((tmp_path / "reports").glob("*_daily.csv")).read_text().splitlines()
    assert len(daily) == 2
    assert len(daily[0].split(",")) == 1 + total


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("close", "closed the connection mid-answer"),
        ("short", "returned only 90 values (luxtronik.min_values = 100); poll rejected"),
        ("slow", "timed out"),
        ("stall", "timed out"),
        ("garble", "garbled answer"),
    ],
)
def test_fault_fails_one_poll_then_recovers(
    start_sim: Callable[..., Sim], target: Target, tmp_path: Path, fault: str, message: str
) -> None:
    sim = start_sim("--slow-seconds", "3", "--short-count", "30")
    cfg = lux_config(tmp_path, target, sim.port, timeout="1500ms")
    sim.fault(fault)
    res = run_wattkeeper("run", "luxtronik", "-c", cfg, "--once")
    assert res.returncode == 75, res.stderr
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    assert target.count("luxtronik", "ID_WEB_Temperatur_TVL") == 0
    if fault in ("slow", "stall"):
        time.sleep(2)  # the controller is still busy with the slow answer
    res = run_wattkeeper("run", "luxtronik", "-c", cfg, "--once")
    assert res.returncode == 0, res.stderr
    assert target.count("luxtronik", "ID_WEB_Temperatur_TVL") == 1


def test_running_agent_survives_faults(
    start_sim: Callable[..., Sim], target: Target, tmp_path: Path
) -> None:
    sim = start_sim("--slow-seconds", "2", "--time-scale", "60")
    cfg = lux_config(
        tmp_path, target, sim.port, interval="500ms", timeout="1s", agent={"metrics_interval": "1s"}
    )
    log = tmp_path / "agent.log"
    agent = spawn_wattkeeper("run", "luxtronik", "-c", cfg, log=log)
    try:
        polls = 0
        # One fault at a time, each followed by a good poll (the core's backoff grows
        # with consecutive failures: 2.5-5 s after the first).
        for fault in ("close", "short", "slow", "close"):
            sim.fault(fault)
            wait_for(
                lambda n=polls: target.count("luxtronik", "ID_WEB_Temperatur_TVL") > n + 1,
                30,
                f"a good poll after the {fault} fault",
            )
            polls = target.count("luxtronik", "ID_WEB_Temperatur_TVL")
            assert agent.poll() is None, log.read_text()

        def errors() -> float:
            rows = target.query(
                '|> range(start: 0) |> filter(fn: (r) => r._measurement == "wattkeeper_agent" '
                'and r._field == "poll_errors") |> last()'
            )
            return float(rows[0]["_value"]) if rows else 0.0

        wait_for(lambda: errors() >= 4, 20, "poll_errors to count the four faults")
    finally:
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(30) == 0
    text = log.read_text()
    assert text.count("closed the connection mid-answer") == 2
    assert "poll rejected" in text
    assert "timed out" in text
    assert "Traceback" not in text
    # Values moved on between polls (the simulated clock runs 60x): not a replayed answer.
    rows = target.query(
        '|> range(start: 0) |> filter(fn: (r) => r._measurement == "luxtronik" and '
        'r._field == "ID_WEB_Zaehler_BetrZeitVD1")'
    )
    values = [float(r["_value"]) for r in rows]
    assert values == sorted(values) and values[-1] > values[0]


def test_min_spacing_between_connections(
    start_sim: Callable[..., Sim], target: Target, tmp_path: Path
) -> None:
    sim = start_sim()
    cfg = lux_config(tmp_path, target, sim.port, interval="100ms", min_spacing="1s")
    log = tmp_path / "agent.log"
    agent = spawn_wattkeeper("run", "luxtronik", "-c", cfg, log=log)
    try:
        wait_for(lambda: target.count("luxtronik", "ID_WEB_Temperatur_TVL") >= 1, 30, "a poll")
        first = target.count("luxtronik", "ID_WEB_Temperatur_TVL")
        time.sleep(4)
        polls = target.count("luxtronik", "ID_WEB_Temperatur_TVL") - first
    finally:
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(30) == 0
    # interval 100 ms alone would give ~40 polls; min_spacing 1 s allows at most 5.
    assert 2 <= polls <= 5, polls


def test_bad_config_is_one_line(tmp_path: Path) -> None:
    cfg = lux_config(tmp_path, None, 8889, report_time="7am")
    res = run_wattkeeper("run", "luxtronik", "-c", cfg, "--once")
    assert res.returncode == 78
    assert res.stderr.strip().splitlines() == [
        f'wattkeeper: configuration error: {cfg}: luxtronik.report_time: "7am" is not a time '
        'like "07:00"'
    ]


def test_unreachable_controller_is_a_poll_error(tmp_path: Path) -> None:
    cfg = lux_config(tmp_path, None, free_port())
    res = run_wattkeeper("run", "luxtronik", "-c", cfg, "--once")
    assert res.returncode == 75
    assert "Luxtronik controller 127.0.0.1:" in res.stderr
    assert "Traceback" not in res.stderr


def history_rows(buffer: Path) -> int:
    if not buffer.exists():
        return 0
    db = sqlite3.connect(buffer, timeout=30)
    try:
        return int(db.execute("SELECT count(*) FROM luxtronik_history").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list[str] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Hook.received.append(json.loads(body or b"{}").get("text", ""))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_disk_guard_pauses_history_but_not_influxdb(
    start_sim: Callable[..., Sim],
    target: Target,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim = start_sim()
    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    _Hook.received.clear()
    usage = tmp_path / "disk-usage"
    usage.write_text("95.5\n")
    monkeypatch.setenv(USAGE_FILE_ENV, str(usage))
    cfg = lux_config(
        tmp_path,
        target,
        sim.port,
        interval="500ms",
        disk_max_percent=90,
        alerts={"slack_webhook_url": f"http://127.0.0.1:{hook.server_address[1]}/hook"},
    )
    buffer = tmp_path / "luxtronik-buffer.sqlite"
    log = tmp_path / "agent.log"
    agent = spawn_wattkeeper("run", "luxtronik", "-c", cfg, log=log)
    try:
        wait_for(lambda: target.count("luxtronik", "ID_WEB_Temperatur_TVL") >= 3, 30, "polls")
        assert history_rows(buffer) == 0
        assert log.read_text().count("history for the CSV reports is paused") == 1  # once
        wait_for(lambda: any("disk almost full" in t for t in _Hook.received), 10, "the alert")
        usage.write_text("42\n")
        wait_for(lambda: history_rows(buffer) >= 2, 30, "history to resume")
        assert "history resumed" in log.read_text()
        assert agent.poll() is None
    finally:
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(30) == 0
        hook.shutdown()
    assert "disk_max_percent = 90" in log.read_text()
    alert = next(t for t in _Hook.received if "disk almost full" in t)
    assert "95.5% used" in alert and "polling to InfluxDB continues" in alert


def test_simulated_heating_day_is_plausible(start_sim: Callable[..., Sim]) -> None:
    night = raw_read(start_sim("--freeze-at", "2026-01-15T03:10:00+00:00").port)["calculations"]
    noon = raw_read(start_sim("--freeze-at", "2026-01-15T15:50:00+00:00").port)["calculations"]
    for c in (night, noon):
        assert -300 <= c[15] <= 300  # outside -30..30 °C
        assert 200 <= c[11] <= 550 and c[10] >= c[11]  # return 20..55 °C, flow above it
        assert c[44] in (0, 1)
    assert night[15] < 0 < noon[15]  # a cold night, a milder afternoon
    assert night[44] == 1 and noon[44] == 0  # compressor cycles: on at 03:10, off at 15:50
    assert night[10] - night[11] >= 30 and noon[10] - noon[11] < 10  # spread only when running
    assert 1000 <= night[180] <= 3000 and night[181] < night[180]  # bar * 100
    assert noon[151] > night[151] and noon[56] > night[56] and noon[57] > night[57]  # counters
    assert night[257] > 0 == noon[257]  # heat output (W)
