"""Footprint of each agent at its default interval against its own simulator.

Every agent runs with the settings a user gets by default (poll interval, buffer, gzip),
all at the same time, for the same period; resident memory and CPU share are read from
/proc for the agent's process only. WattiVahti is a oneshot run by a timer, so its figures
are whole syncs (peak memory, CPU seconds): the first (initial_days back) and an hourly one.
Each agent also runs a second time, side by side, with an [mqtt] section publishing to a
local mosquitto (Home Assistant's view): the difference is what paho-mqtt and the live
view cost.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from support.influxd import InfluxServer, free_port

WK = [sys.executable, "-m", "wattkeeper"]


@dataclass
class Recipe:
    name: str
    simulator: Callable[[int], list[str]]
    source: Callable[[int, Path], dict[str, Any]]
    oneshot: bool = False
    prepare: Callable[[Path], None] | None = None


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str | Path):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + " }"
    return str(v)


WATTIVAHTI_TOKEN = f"rt-bench-{uuid.uuid4().hex}"
WATTIVAHTI_TOKEN_PATH = "/pesv.onmicrosoft.com/b2c_1_tunnistus_signinv2/oauth2/v2.0/token"


def _secret(path: Path, value: str) -> None:
    path.write_text(value + "\n")
    path.chmod(0o600)


RECIPES = [
    Recipe(
        "pulse (household day, 3 channels)",
        lambda port: [
            "simulate",
            "pulse",
            "--listen",
            f"127.0.0.1:{port}",
            "--channels",
            "import:20,export:26,generate:21",
            "--profile",
            "constant:720",
            "--pulses-per-kwh",
            "1000",
        ],
        lambda port, d: {
            "backend": "simulated",
            "simulator": f"127.0.0.1:{port}",
            "channels": [
                {"name": "import", "pin": 20, "pulses_per_kwh": 1000},
                {"name": "export", "pin": 26, "pulses_per_kwh": 1000},
                {"name": "generate", "pin": 21, "pulses_per_kwh": 1000},
            ],
        },
    ),
    Recipe(
        "wattivahti (hourly timer)",
        lambda port: [
            "simulate",
            "wattivahti",
            "--listen",
            f"127.0.0.1:{port}",
            "--initial-refresh-token",
            WATTIVAHTI_TOKEN,
            "--quarter-hour-since",
            "2020-01-01",
        ],
        lambda port, d: {
            "metering_point": "1234567",
            "token_url": f"http://127.0.0.1:{port}{WATTIVAHTI_TOKEN_PATH}",
            "api_url": f"http://127.0.0.1:{port}/api/onlineapi/v1/meterdata2",
            "refresh_token_file": str(d / "refresh_token"),
        },
        oneshot=True,
        prepare=lambda d: _secret(d / "refresh_token", WATTIVAHTI_TOKEN),
    ),
    Recipe(
        "octopus (a call a minute, 10 s readings)",
        lambda port: ["simulate", "octopus", "--listen", f"127.0.0.1:{port}"],
        lambda port, d: {
            "account_number": "A-DEMO0001",
            "api_key_file": str(d / "octopus.apikey"),
            "api_url": f"http://127.0.0.1:{port}/v1/graphql/",
        },
        prepare=lambda d: _secret(d / "octopus.apikey", "sk_live_simulated0000000000000000"),
    ),
    Recipe(
        "luxtronik (30 s polls, 1800+ values)",
        lambda port: ["simulate", "luxtronik", "--listen", f"127.0.0.1:{port}"],
        lambda port, d: {"host": "127.0.0.1", "port": port, "report_dir": str(d / "reports")},
    ),
]


def _wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"simulator on port {port} did not start")


def _config(
    d: Path, server: InfluxServer, name: str, source: dict[str, Any], mqtt: dict[str, Any]
) -> Path:
    bucket = f"fp_{d.name}"
    server.create_bucket(bucket)
    token = d / "token"
    token.write_text(server.token)
    token.chmod(0o600)
    sections = {
        "agent": {"log_target": "stderr"},
        "influxdb": {"url": server.url, "org": server.org, "bucket": bucket, "token_file": token},
        "buffer": {"path": d / "buffer.sqlite"},
        name: source,
    }
    if mqtt:
        sections["mqtt"] = mqtt
    cfg = d / f"{name}.toml"
    cfg.write_text(
        "\n".join(
            f"[{sec}]\n" + "\n".join(f"{k} = {_toml(v)}" for k, v in tbl.items())
            for sec, tbl in sections.items()
        )
        + "\n"
    )
    return cfg


def _oneshot(name: str, cfg: Path, log: IO[bytes]) -> tuple[float, float, float]:
    """One `run --once`: peak RSS (MiB), CPU seconds, wall seconds."""
    start = time.monotonic()
    p = subprocess.run(
        ["/usr/bin/time", "-f", "%M %U %S", *WK, "run", name, "-c", str(cfg), "--once"],
        stdout=log,
        stderr=subprocess.PIPE,
        timeout=600,
        check=False,
    )
    err = p.stderr.decode()
    log.write(p.stderr)
    if p.returncode != 0:
        raise RuntimeError(f"{name} --once exited {p.returncode}: {err[-500:]}")
    peak_kib, user, system = err.strip().splitlines()[-1].split()
    return int(peak_kib) / 1024, float(user) + float(system), time.monotonic() - start


def run(
    server: InfluxServer,
    tmp: Path,
    seconds: float,
    measure: Callable[[int, float], tuple[float, float, float]],
    record: Callable[..., None],
) -> None:
    from support.mosquitto import Broker

    procs: list[subprocess.Popen[bytes]] = []
    agents: list[tuple[str, subprocess.Popen[bytes]]] = []
    broker = Broker(tmp / "fp-mosquitto")
    broker.start()
    try:
        for recipe, with_mqtt in [(r, m) for r in RECIPES for m in (False, True)]:
            name = recipe.name.split()[0]
            label = recipe.name + (" + [mqtt]" if with_mqtt else "")
            d = tmp / f"fp-{name}{'-mqtt' if with_mqtt else ''}"
            d.mkdir()
            port = free_port()
            log = (d / "sim.log").open("wb")
            procs.append(subprocess.Popen([*WK, *recipe.simulator(port)], stdout=log, stderr=log))
            _wait_port(port)
            if recipe.prepare is not None:
                recipe.prepare(d)
            mqtt = broker.section(interval="5s") if with_mqtt else {}
            cfg = _config(d, server, name, recipe.source(port, d), mqtt)
            alog = (d / "agent.log").open("wb")
            if recipe.oneshot:
                # Started by a timer: the first run syncs initial_days, later ones an hour.
                for run_label in ("first sync (7 days)", "hourly sync"):
                    peak_mib, cpu_s, wall = _oneshot(name, cfg, alog)
                    record(
                        "footprint",
                        f"{label}: {run_label}, peak RSS",
                        peak_mib,
                        "MiB",
                    )
                    record(
                        "footprint",
                        f"{label}: {run_label}, CPU",
                        cpu_s,
                        "s",
                        f"wall {wall:.1f} s",
                    )
                continue
            a = subprocess.Popen([*WK, "run", name, "-c", str(cfg)], stdout=alog, stderr=alog)
            procs.append(a)
            agents.append((label, a))
        time.sleep(5)  # start-up (imports, first poll) is not the steady state
        # Measure all daemons over the same period, in parallel.
        import threading

        results: dict[str, tuple[float, float, float]] = {}

        def one(label: str, pid: int) -> None:
            results[label] = measure(pid, seconds)

        threads = [threading.Thread(target=one, args=(label, p.pid)) for label, p in agents]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for label, _ in agents:
            peak, mean, cpu = results[label]
            record("footprint", f"{label}: RSS (mean)", mean, "MiB", f"peak {peak:.1f}")
            record("footprint", f"{label}: CPU", cpu, "% of a core")
        for label, _ in agents:
            if label.endswith(" + [mqtt]"):
                plain = label.removesuffix(" + [mqtt]")
                extra = results[label][1] - results[plain][1]
                record("footprint", f"{plain}: what [mqtt] adds", extra, "MiB RSS", "paho-mqtt")
    finally:
        broker.stop()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
