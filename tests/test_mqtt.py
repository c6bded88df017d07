"""The live view in Home Assistant: real mosquitto brokers, real agents, real InfluxDB.

Every discovery message is checked against Home Assistant's own rules (support/hass.py);
the broker is killed, restarted, replaced by one that never reads, and polling and
delivery must not notice.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import PLUGINS, Target, agent_config, run_wattkeeper, spawn_wattkeeper
from support.agentproc import wait_for
from support.hass import check_config, check_state
from support.mosquitto import PASSWORD, Broker, Watcher
from support.simproc import simulator_processes, start_simulator

from wattkeeper.config import ConfigError, load_config
from wattkeeper.mqtt.discovery import HEALTH, Identity, sensor_config, stale_config
from wattkeeper.mqtt.live import LiveView, shown_value
from wattkeeper.point import Point
from wattkeeper.registry import load_plugin
from wattkeeper.sensors import Sensor
from wattkeeper.sources.luxtronik.sensors import _entries, describe

pytestmark = pytest.mark.timeout(120)
if str(PLUGINS) not in sys.path:
    sys.path.insert(0, str(PLUGINS))
TINY = "tiny_source:PLUGIN"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


@pytest.fixture
def watcher(broker: Broker) -> Iterator[Watcher]:
    w = Watcher(broker)
    yield w
    w.close()


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    proc.send_signal(sig)
    proc.wait(30)


def _configs(w: Watcher, node: str) -> dict[str, dict[str, Any]]:
    """The newest discovery config of each of the agent's entities, checked against HA."""
    out = {}
    for topic, m in w.latest("homeassistant/").items():
        if f"/{node}/" in topic and m.payload:
            out[topic] = check_config(topic, m.payload)
    return out


def _availability(w: Watcher, agent: str) -> str | None:
    topic = f"wattkeeper/{agent}/availability"
    m = w.latest(topic).get(topic)
    return m.payload if m else None


def _check_states(w: Watcher, configs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Every state that arrived is one HA takes; returns the newest state per unique id."""
    by_topic = {c["state_topic"]: c for c in configs.values()}
    newest = {}
    for m in w.all():
        cfg = by_topic.get(m.topic)
        if cfg is not None:
            check_state(cfg, m.payload)
            newest[cfg["unique_id"]] = m.payload
    return newest


# -- declarations, without a broker ----------------------------------------------------


def _all_declared() -> list[Sensor]:
    sensors = list(HEALTH)
    for name in ("pulse", "octopus", "wattivahti", "luxtronik"):
        sensors += load_plugin(name).sensors
    return sensors


def test_every_declared_sensor_is_one_home_assistant_accepts() -> None:
    ident = Identity("host-1", "pulse", "d", "wattkeeper", "homeassistant")
    # Every curated sensor, the health sensors, and every Luxtronik value a user may opt in.
    opt_in = [describe(name) for name in _entries()]
    sensors = _all_declared() + [s for s in opt_in if s is not None]
    assert len(sensors) > 1500
    for s in sensors:
        tag = "import" if s.per_tag else None
        cfg = sensor_config(ident, s, tag, s.key, availability=True)
        check_config(ident.config("sensor", s.key), json.dumps(cfg))
    cfg = stale_config(ident, availability=True, expire_after=None)
    check_config(ident.config("binary_sensor", "stale"), json.dumps(cfg))
    keys = [s.key for s in load_plugin("luxtronik").sensors]
    assert len(keys) == len(set(keys))


def test_energy_totals_never_go_back_and_old_readings_never_replace_newer() -> None:
    """Octopus-like cumulative registers and pulse-like running sums."""
    register = Sensor("c", "C", "m", "wh", "energy", "total_increasing", "kWh")
    power = Sensor("p", "P", "m", "w", "power", "measurement", "W")
    summed = Sensor("e", "E", "m", "d", "energy", "total_increasing", "kWh", kind="total")
    view = LiveView([register, power, summed])

    def feed(t: int, **fields: float) -> dict[str, Any]:
        update = view.prepare([Point("m", dict(fields), t)])
        if update is not None:
            view.accept(update)
        return {k: e.value for k, e in view.everything().items()}

    assert feed(100, wh=1000.0, w=5.0, d=1.0) == {"c": 1000.0, "p": 5.0, "e": 1.0}
    # A backfill (older readings) changes neither the register nor the power; the sum counts
    # every committed reading once.
    assert feed(50, wh=900.0, w=9.0, d=1.0) == {"c": 1000.0, "p": 5.0, "e": 2.0}
    # A small dip of the register is a glitch, held; a big drop is a new meter (HA: reset).
    assert feed(200, wh=995.0)["c"] == 1000.0
    assert feed(300, wh=10.0)["c"] == 10.0
    # The snapshot goes into the buffer with the readings; a restart goes on from it.
    update = view.prepare([Point("m", {"d": 0.5}, 400)])
    assert update is not None
    again = LiveView([register, power, summed])
    again.restore(update.state["mqtt.live"])
    assert {k: e.value for k, e in again.everything().items()} == {"c": 10.0, "p": 5.0, "e": 2.5}


def test_pulse_power_falls_while_no_pulse_comes() -> None:
    """3600 W from the last interval, 1 Wh per pulse: 10 s later it is at most 360 W."""
    power = next(s for s in load_plugin("pulse").sensors if s.key == "power")
    view = LiveView([power])
    t = 1_800_000_000
    update = view.prepare([Point("pulse", {"power_w": 3600.0, "energy_wh": 1.0}, t * 10**9,
                                 {"channel": "import"})])  # fmt: skip
    assert update is not None
    view.accept(update)
    entry = view.everything()["import_power"]
    assert shown_value(entry, t + 0.5) == 3600.0
    assert shown_value(entry, t + 10) == pytest.approx(360.0)


BAD_MQTT = [
    ({"url": "http://x:1883"}, "mqtt.url", "is not like mqtt://HOST:1883"),
    ({"url": "mqtt://user:pw@x"}, "mqtt.url", "credentials go in username"),
    ({"url": "mqtt://x:99999"}, "mqtt.url", "out of range"),
    ({"username": "u"}, "mqtt.url", "missing (mqtt.username needs it)"),
    ({"url": "mqtt://x", "password_file": "PW"}, "mqtt.username", "password_file needs it"),
    ({"url": "mqtt://x", "ca_file": "/etc/hostname"}, "mqtt.ca_file", "needs an mqtts:// url"),
    ({"url": "mqtt://x", "topic_prefix": "a/#"}, "mqtt.topic_prefix", "use letters"),
    ({"url": "mqtt://x", "interval": "1ms"}, "mqtt.interval", "at least 100ms"),
]


@pytest.mark.parametrize(("section", "key", "message"), BAD_MQTT)
def test_bad_mqtt_settings_name_the_key(
    section: dict[str, Any], key: str, message: str, tmp_path: Path
) -> None:
    pw = tmp_path / "pw"
    pw.write_text("secret-password\n")
    pw.chmod(0o600)
    section = {k: (str(pw) if v == "PW" else v) for k, v in section.items()}
    cfg = agent_config(tmp_path, None, "tiny", {}, mqtt=section)
    with pytest.raises(ConfigError) as exc:
        load_config(cfg, "tiny", load_plugin(TINY).config_class, set())
    assert exc.value.key == key and message in exc.value.message, exc.value


def test_password_file_readable_by_others_and_unknown_sensor_exit_78(
    broker: Broker, tmp_path: Path
) -> None:
    loose = tmp_path / "loose"
    loose.write_text(PASSWORD)
    loose.chmod(0o644)
    cfg = agent_config(tmp_path, None, "tiny", {}, mqtt=broker.section(password_file=loose))
    res = run_wattkeeper("run", TINY, "-c", cfg, "--once", timeout=30)
    assert res.returncode == 78 and "mqtt.password_file" in res.stderr and "chmod 600" in res.stderr
    cfg = agent_config(tmp_path, None, "tiny", {}, mqtt=broker.section(sensors=["nope"]))
    res = run_wattkeeper("run", TINY, "-c", cfg, "--once", timeout=30)
    assert res.returncode == 78 and "mqtt.sensors" in res.stderr and "nope" in res.stderr
    # `wattkeeper check` logs in once: OK with the right password, FAIL with a wrong one.
    cfg = agent_config(tmp_path, None, "tiny", {}, mqtt=broker.section())
    res = run_wattkeeper("check", "-c", cfg, "--source", TINY, timeout=60)
    assert "OK   mqtt" in res.stdout and "as wattkeeper: logged in" in res.stdout, res.stdout
    loose.write_text("wrong-password")
    loose.chmod(0o600)
    cfg = agent_config(tmp_path, None, "tiny", {}, mqtt=broker.section(password_file=loose))
    res = run_wattkeeper("check", "-c", cfg, "--source", TINY, timeout=60)
    assert "FAIL mqtt" in res.stdout and "refused the login" in res.stdout, res.stdout
    assert "wrong-password" not in res.stdout + res.stderr


# -- every source, through a real broker ------------------------------------------------


def _source_setup(name: str, started: list[Any], tmp_path: Path) -> tuple[dict[str, Any], set[str]]:
    """The [SOURCE] section against its simulator, and the sensors that must appear."""
    if name == "pulse":
        port, _, _ = start_simulator(
            started,
            "pulse",
            tmp_path,
            "--channels",
            "import:20,export:26",
            "--profile",
            "constant:7200",
        )
        channels = [
            {"name": "import", "pin": 20, "pulses_per_kwh": 1000},
            {"name": "export", "pin": 26, "pulses_per_kwh": 1000},
        ]
        table = {"backend": "simulated", "simulator": f"127.0.0.1:{port}", "channels": channels}
        return table, {"import_power", "import_energy", "export_power", "export_energy"}
    if name == "octopus":
        port, _, _ = start_simulator(started, "octopus", tmp_path)
        key = tmp_path / "octopus.apikey"
        key.write_text("sk_live_simulated0000000000000000\n")
        key.chmod(0o600)
        table = {
            "account_number": "A-DEMO0001",
            "api_key_file": key,
            "api_url": f"http://127.0.0.1:{port}/v1/graphql/",
            "initial_backfill": "10m",
        }
        return table, {"power", "consumption"}
    if name == "luxtronik":
        port, _, _ = start_simulator(started, "luxtronik", tmp_path)
        table = {"host": "127.0.0.1", "port": port, "interval": "2s", "min_spacing": "0s"}
        return table, {"flow_temperature", "operating_state", "heat_total", "id_web_freq_vd"}
    token = "rt-mqtt-test-0123456789"
    port, _, _ = start_simulator(
        started,
        "wattivahti",
        tmp_path,
        "--initial-refresh-token",
        token,
        "--quarter-hour-since",
        "2020-01-01",
    )
    rt = tmp_path / "refresh_token"
    rt.write_text(token + "\n")
    rt.chmod(0o600)
    base = f"http://127.0.0.1:{port}"
    table = {
        "metering_point": "1234567",
        "token_url": f"{base}/pesv.onmicrosoft.com/b2c_1_tunnistus_signinv2/oauth2/v2.0/token",
        "api_url": f"{base}/api/onlineapi/v1/meterdata2",
        "refresh_token_file": rt,
        "initial_days": 3,
    }
    return table, {"consumption_last_day", "consumption_last_hour"}


@pytest.mark.parametrize("name", ["pulse", "octopus", "luxtronik", "wattivahti"])
def test_each_source_appears_in_home_assistant(
    name: str, broker: Broker, watcher: Watcher, target: Target, tmp_path: Path
) -> None:
    node = f"wattkeeper_host-{name}_{name}"
    extra = ["ID_WEB_Freq_VD"] if name == "luxtronik" else []
    with simulator_processes(name, tmp_path) as started:
        table, expected = _source_setup(name, started, tmp_path)
        mqtt = broker.section(sensors=extra)
        cfg = agent_config(tmp_path, target, name, table, mqtt=mqtt, agent={"host": f"host-{name}"})
        unique = {f"{node}_{k}" for k in expected | {"buffer_rows", "stale", "last_reading"}}

        def all_there() -> bool:
            ids = {c["unique_id"] for c in _configs(watcher, node).values()}
            return unique <= ids and unique <= set(_check_states(watcher, _configs(watcher, node)))

        if name == "wattivahti":
            res = run_wattkeeper("run", name, "-c", cfg, "--once", timeout=60)
            assert res.returncode == 0, res.stderr
            log = res.stderr
        else:
            logf = tmp_path / "agent.log"
            proc = spawn_wattkeeper("run", name, "-c", cfg, log=logf)
            try:
                watcher.wait(all_there, 45, f"every {name} sensor and its state")
                # Home Assistant restarted: its birth message makes the agent announce again.
                since = time.monotonic()
                watcher.publish("homeassistant/status", "online")
                watcher.wait(
                    lambda: (
                        len(
                            [
                                m
                                for m in watcher.all("homeassistant/sensor/", since)
                                if f"/{node}/" in m.topic
                            ]
                        )
                        >= len(expected)
                    ),
                    20,
                    "discovery sent again after HA's birth message",
                )
            finally:
                _stop(proc)
            log = logf.read_text()
    watcher.wait(all_there, 10, f"every {name} sensor and its state")
    configs = _configs(watcher, node)
    avail = watcher.latest(f"wattkeeper/host-{name}/{name}/availability")
    if name == "wattivahti":
        # A oneshot has no availability (it is not running between runs): its values
        # expire instead, and each carries the time of the day or hour it sums up.
        assert not avail
        assert all(
            "availability_topic" not in c and c["expire_after"] > 0 for c in configs.values()
        )
        attrs = watcher.latest(f"wattkeeper/host-{name}/{name}/consumption_last_day/attributes")
        assert "reading_time" in next(iter(attrs.values())).json()
        _check_history_export(cfg, target)
    else:
        assert [m.payload for m in avail.values()] == ["offline"]  # said so when stopping
        assert all(c["availability_topic"].endswith("/availability") for c in configs.values())
    states = _check_states(watcher, configs)
    assert states[f"{node}_stale"] == "OFF"
    assert PASSWORD not in log


def _check_history_export(cfg: Path, target: Target) -> None:
    """`wattkeeper ha-statistics`: the history, hour by hour, as HA imports it."""
    start = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 5 * 86400))
    sid = "sensor:wattivahti_consumption"
    res = run_wattkeeper("ha-statistics", "-c", cfg, "--field", "consumption_wh",
                         "--statistic-id", sid, "--start", start)  # fmt: skip
    assert res.returncode == 0, res.stderr
    header, *rows = [line.split("\t") for line in res.stdout.splitlines()]
    assert header == ["statistic_id", "unit", "start", "delta"] and len(rows) > 24
    assert all(r[0] == sid and r[1] == "kWh" for r in rows)
    assert all(r[2].endswith(":00") for r in rows)  # full hours only
    total = target.query(
        '|> range(start: 0) |> filter(fn: (r) => r._field == "consumption_wh") |> group() |> sum()'
    )
    assert abs(sum(float(r[3]) for r in rows) - float(total[0]["_value"]) / 1000) < 0.01


# -- restarts, outages and a broker that never reads ------------------------------------


def test_restart_keeps_unique_ids_and_totals_monotonic_and_sigkill_says_offline(
    broker: Broker, watcher: Watcher, tmp_path: Path
) -> None:
    node = "wattkeeper_pi_pulse"
    with simulator_processes("pulse", tmp_path) as started:
        table, _ = _source_setup("pulse", started, tmp_path)
        cfg = agent_config(
            tmp_path, None, "pulse", table, mqtt=broker.section(), agent={"host": "pi"}
        )
        energy = "wattkeeper/pi/pulse/import_energy"
        ids: list[set[str]] = []
        for run, sig in enumerate((signal.SIGTERM, signal.SIGKILL)):
            since = time.monotonic()
            proc = spawn_wattkeeper("run", "pulse", "-c", cfg, log=tmp_path / f"agent{run}.log")
            try:
                watcher.wait(lambda s=since: len(watcher.all(energy, s)) >= 3, 30, "three totals")
                watcher.wait(lambda: _availability(watcher, "pi/pulse") == "online", 10, "online")
            finally:
                _stop(proc, sig)
            ids.append({c["unique_id"] for c in _configs(watcher, node).values()})
            # Stopped cleanly or killed: Home Assistant is told (the will, for SIGKILL).
            watcher.wait(lambda: _availability(watcher, "pi/pulse") == "offline", 15, "offline")
    assert ids[0] == ids[1] and f"{node}_import_energy" in ids[0]
    totals = [float(m.payload) for m in watcher.all(energy)]
    assert totals == sorted(totals) and totals[-1] > totals[0]
    # The published total is the committed pulses: 1 Wh each (the buffer holds them all,
    # InfluxDB being absent here), up to the last commit before SIGKILL.
    import sqlite3

    db = sqlite3.connect(tmp_path / "pulse-buffer.sqlite")
    committed = db.execute("SELECT count(*) FROM points WHERE line LIKE 'pulse,channel=import %'")
    assert abs(totals[-1] * 1000 - committed.fetchone()[0]) <= 3


def _poll_times(target: Target, run: str) -> list[float]:
    rows = target.query(
        f'|> range(start: 0) |> filter(fn: (r) => r._measurement == "tiny" and '
        f'r._field == "seq" and r.run == "{run}") |> keep(columns: ["_time", "_value"])'
    )
    return sorted(
        time.mktime(time.strptime(r["_time"][:19], "%Y-%m-%dT%H:%M:%S"))
        + float("0." + (r["_time"][20:-1] or "0"))
        for r in rows
    )


def test_broker_killed_and_restarted_while_polling(
    broker: Broker, watcher: Watcher, target: Target, tmp_path: Path
) -> None:
    """Polling and delivery go on exactly as in an agent without MQTT beside it."""
    node = "wattkeeper_pi_tiny"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    tiny = {"points_per_poll": 1, "interval": "200ms", "clock": "now"}
    with_mqtt = agent_config(
        tmp_path / "a",
        target,
        "tiny",
        {**tiny, "run": "mqtt"},
        mqtt=broker.section(),
        agent={"host": "pi"},
    )
    without = agent_config(
        tmp_path / "b", target, "tiny", {**tiny, "run": "plain"}, agent={"host": "pi"}
    )
    a = spawn_wattkeeper("run", TINY, "-c", with_mqtt, log=tmp_path / "a.log")
    b = spawn_wattkeeper("run", TINY, "-c", without, log=tmp_path / "b.log")
    try:
        watcher.wait(lambda: _configs(watcher, node), 30, "the agent's discovery")
        time.sleep(1)
        broker.kill()
        time.sleep(3)
        restarted = time.monotonic()
        broker.start()
        watcher.wait(
            lambda: [m for m in watcher.all(f"homeassistant/sensor/{node}/", restarted)],
            30,
            "discovery republished after the reconnect",
        )
        online = "wattkeeper/pi/tiny/availability"
        watcher.wait(lambda: watcher.all(online, restarted), 10, "online again")
        time.sleep(1)
    finally:
        _stop(a)
        _stop(b)
    # Every reading reached InfluxDB, and the polls kept their cadence through the outage,
    # like the agent without MQTT.
    assert _count_seq(target, "mqtt") == _seq_taken(tmp_path / "a" / "tiny-buffer.sqlite")
    times = {run: _poll_times(target, run) for run in ("mqtt", "plain")}
    gaps = {run: max(b - a for a, b in itertools.pairwise(t)) for run, t in times.items()}
    assert gaps["mqtt"] < 1.5, gaps
    assert abs(len(times["mqtt"]) - len(times["plain"])) <= 0.15 * len(times["plain"]) + 3, (
        len(times["mqtt"]),
        len(times["plain"]),
    )
    assert "MQTT broker" in (tmp_path / "a.log").read_text()


def _count_seq(target: Target, run: str) -> int:
    rows = target.query(
        f'|> range(start: 0) |> filter(fn: (r) => r._measurement == "tiny" and '
        f'r._field == "seq" and r.run == "{run}") |> group() |> count()'
    )
    return int(rows[0]["_value"]) if rows else 0


def _seq_taken(buffer: Path) -> int:
    from support.agentproc import buffer_state

    return int(buffer_state(buffer, "tiny.next", 0))  # type: ignore[call-overload]


class SilentBroker:
    """Accepts connections and never reads (``connack``: answers CONNECT, then never reads)."""

    def __init__(self, connack: bool) -> None:
        self.sock = socket.socket()
        # A small receive window (inherited by accepted connections): the agent's socket
        # fills within a second, after which only the agent's own memory could grow.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.connack = connack
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if self.connack:
                conn.recv(1)  # the CONNECT has arrived; read no more of anything
                conn.sendall(b"\x20\x02\x00\x00")

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.mark.parametrize("connack", [False, True], ids=["accepts-only", "connack-then-silent"])
def test_broker_that_never_reads(connack: bool, target: Target, tmp_path: Path) -> None:
    """Polling and delivery go on; memory stays flat while the agent has ever more to say."""
    silent = SilentBroker(connack)
    # 40 sensors with 4 kB text states, changing every 50 ms: 1.6 MB/s to publish, which
    # would pile up in paho's queue within seconds if it were handed over regardless.
    tiny = {"points_per_poll": 20, "interval": "50ms", "lanes": 40, "pad": 4000}
    mqtt = {"url": f"mqtt://127.0.0.1:{silent.port}", "interval": "100ms"}
    cfg = agent_config(tmp_path, target, "tiny", tiny, mqtt=mqtt)
    proc = spawn_wattkeeper("run", TINY, "-c", cfg, log=tmp_path / "agent.log")
    try:
        wait_for(lambda: len(silent.conns) > 0, 20, "a connection to the silent broker")
        # Past start-up and, when connected, past the seconds the kernel's socket buffers
        # absorb: from then on, without the bound, paho's queue would grow ~1 MB/s.
        warmup, window = (5, 6) if connack else (2, 4)
        time.sleep(warmup)
        rss_before = _rss_kib(proc.pid)
        delivered_before = _count_seq(target, "r1")
        time.sleep(window)
        rss_after = _rss_kib(proc.pid)
        delivered_after = _count_seq(target, "r1")
    finally:
        _stop(proc)
        silent.close()
    assert delivered_after - delivered_before > window * 100, (delivered_before, delivered_after)
    assert rss_after - rss_before < 3 * 1024, (rss_before, rss_after)
    assert _count_seq(target, "r1") == _seq_taken(tmp_path / "tiny-buffer.sqlite")


def test_mqtts_verifies_the_broker_certificate(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "tls-broker", tls=True)
    broker.start()
    watcher = Watcher(broker)
    try:
        url = f"mqtts://localhost:{broker.tls_port}"
        for run, ca in (("good", broker.ca_file), ("bad", None)):
            (tmp_path / run).mkdir()
            mqtt = broker.section(url=url, **({"ca_file": ca} if ca else {}))
            cfg = agent_config(
                tmp_path / run, None, "tiny", {"points_per_poll": 1}, mqtt=mqtt, agent={"host": run}
            )
            log = tmp_path / f"{run}.log"
            proc = spawn_wattkeeper("run", TINY, "-c", cfg, log=log)
            try:
                if run == "good":
                    watcher.wait(
                        lambda: watcher.latest("wattkeeper/good/tiny/seq"), 30, "a state over TLS"
                    )
                else:
                    wait_for(
                        lambda f=log: "certificate verify failed" in f.read_text(),
                        30,
                        "the certificate refused, in the log",
                    )
                    assert proc.poll() is None  # polling goes on
            finally:
                _stop(proc)
        assert not watcher.latest("wattkeeper/bad/")
    finally:
        watcher.close()
        broker.stop()


# -- the Ansible side (no containers) ----------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def test_role_renders_an_mqtt_section_the_agent_loads(broker: Broker, tmp_path: Path) -> None:
    """What roles/wattkeeper/tasks/files.yml renders for [mqtt], loaded by the agent."""
    import yaml
    from support.mosquitto import _filters

    from wattkeeper.config import MqttSection

    f = _filters()
    ca = tmp_path / "mqtt-ca.crt"
    ca.write_text("not checked until connecting\n")
    mqtt = {"url": "mqtts://broker.lan:8883", "username": "wattkeeper", "interval": "10s",
            "password_file": str(broker.password_file), "ca_file": str(ca),
            "sensors": ["ID_WEB_Freq_VD"]}  # fmt: skip
    path = tmp_path / "luxtronik.toml"
    influx = {"url": "http://192.0.2.1:8086", "org": "home", "bucket": "b", "token": "t" * 20}
    path.write_text(f.to_toml({"influxdb": influx, "mqtt": mqtt, "luxtronik": {"host": "h"}}))
    cfg = load_config(path, "luxtronik", load_plugin("luxtronik").config_class, set())
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.tls) == ("broker.lan", 8883, True)
    assert cfg.mqtt.password == PASSWORD and PASSWORD not in repr(cfg.mqtt)
    specs = yaml.safe_load((ROOT / "roles/wattkeeper/meta/argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]["wattkeeper_mqtt"]["options"]
    role_set = {"password_file", "ca_file", "sensors"}  # variables of their own
    keys = {fl.name for fl in dataclasses.fields(MqttSection) if fl.init}
    assert set(options) == keys - role_set
    validate = _filters("wattkeeper_validate.py")
    problems = validate.inventory_problems([], {"mqtt": {"url": "tcp://x"}}, {}, {})
    assert problems == [
        'wattkeeper_mqtt.url: "tcp://x" is not like mqtt://HOST:1883 or mqtts://HOST:8883 '
        "(credentials go in username and wattkeeper_mqtt_password, not in the URL)"
    ]
    problems = validate.inventory_problems(
        [], {"mqtt": {"url": "mqtt://x"}}, {"wattkeeper_mqtt_password": "p"}, {}
    )
    assert problems == ["wattkeeper_mqtt.username: missing (wattkeeper_mqtt_password needs it)"]
