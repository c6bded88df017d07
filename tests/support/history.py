"""Days of history in a real InfluxDB, written by the real agents in well under a minute.

Each agent gets its past the honest way, through its own production code path:

* Octopus: ``run --once`` on a first start backfills ``initial_backfill`` from the Kraken
  simulator, whose server clock (``--clock-offset``) says it is ``OCTOPUS_NOW``;
* WattiVahti: ``sync wattivahti`` of past local days (the portal serves any past day);
* pulse: the daemon, the simulator replaying past hours ``--speed`` times faster (edges
  carry the simulator's timestamps, as the kernel's would);
* Luxtronik: the daemon, which stamps readings with its own wall clock: libfaketime's
  offset file, moved on by ``FakeClock`` so that the agent's clock (and the controller
  simulator's, ``--time-scale``) runs ``LUX_SPEED`` times faster from ``LUX_START``.

Buckets get the production names (SOURCE_raw, SOURCE_1h) on an InfluxDB of the caller's
own; the 1h tier is filled with the roll-up Flux the InfluxDB role's tasks run. Agents
read and write with tokens of their own bucket; ``Landed.reader`` has read access to the
source buckets only, like the influxdb role's dashboards token.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from conftest import write_config

from support.agentproc import wait_for
from support.influxd import InfluxServer
from support.simproc import start_simulator
from wattkeeper.downsample import rollup_query

SOURCES = ("octopus", "wattivahti", "pulse", "luxtronik")
# Around the night Europe/Helsinki and Europe/London leave summer time (25 October 2026).
OCTOPUS_NOW = datetime(2026, 10, 26, 22, tzinfo=UTC)  # Monday midnight in Helsinki
OCTOPUS_BACKFILL = "70h"
WATTIVAHTI_DAYS = ("2026-10-24", "2026-10-26")  # local dates, both included
PULSE_START = datetime(2026, 10, 24, 18, tzinfo=UTC)
PULSE_HOURS, PULSE_SPEED, PPK = 52, 14400, 20
LUX_START, LUX_HOURS, LUX_SPEED = datetime(2026, 10, 24, 6, tzinfo=UTC), 42, 10800
HEATPUMP_CHANNEL = "heatpump"

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


class FakeClock:
    """Moves libfaketime's offset file so that the process's wall clock runs ``speed``
    times faster from ``start`` (written atomically; read on every time() call)."""

    def __init__(self, path: Path, start: datetime, speed: float) -> None:
        self.path, self.start, self.speed = path, start.timestamp(), speed
        self.t0 = time.monotonic()
        self.stopped = threading.Event()
        self._write()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def fake_now(self) -> float:
        return self.start + (time.monotonic() - self.t0) * self.speed

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{self.fake_now() - time.time():+.3f}\n")
        tmp.replace(self.path)

    def _run(self) -> None:
        while not self.stopped.wait(0.02):
            self._write()

    def env(self) -> dict[str, str]:
        assert FAKETIME_LIB is not None
        return {
            "LD_PRELOAD": FAKETIME_LIB,
            "FAKETIME_TIMESTAMP_FILE": str(self.path),
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }


@dataclass
class Landed:
    server: InfluxServer
    logs: list[Path]
    reader: InfluxServer  # the same server, with a read-only token of the source buckets

    def flux(self, query: str) -> list[dict[str, str]]:
        return self.reader.query(query)


_BUCKET_IDS: list[str] = []


def _secret(path: Path, value: str) -> Path:
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


def _config(tmp: Path, server: InfluxServer, source: str, table: dict[str, Any]) -> Path:
    bucket_id = server.create_bucket(f"{source}_raw")
    _BUCKET_IDS.extend([bucket_id, server.create_bucket(f"{source}_1h")])
    token = _secret(tmp / f"{source}.token", server.create_token(bucket_id, ("write", "read")))
    return write_config(
        tmp / f"{source}.toml",
        {
            "agent": {"log_target": "stderr", "metrics_interval": "1s", "flush_timeout": "20s"},
            "influxdb": {
                "url": server.url,
                "org": server.org,
                "bucket": f"{source}_raw",
                "token_file": token,
                "retry_initial": "200ms",
                "retry_max": "2s",
            },
            "buffer": {"path": tmp / f"{source}-buffer.sqlite"},
            source: table,
        },
    )


def _spawn(
    args: list[str | Path], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "wattkeeper", *map(str, args)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )


def _stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert proc.returncode == 0, log.read_text()[-3000:]


def _count(server: InfluxServer, bucket: str, measurement: str, field: str) -> int:
    rows = server.query(
        f'from(bucket: "{bucket}") |> range(start: 0) |> filter(fn: (r) => '
        f'r._measurement == "{measurement}" and r._field == "{field}") |> group() |> count()'
    )
    return int(rows[0]["_value"]) if rows else 0


def _roll_up(server: InfluxServer) -> None:
    """Fill each SOURCE_1h with the roll-up Flux the InfluxDB role's tasks run."""
    for source in SOURCES:
        plugin = importlib.import_module(f"wattkeeper.sources.{source}").PLUGIN
        flux = rollup_query(
            list(plugin.rollups),
            f"{source}_raw",
            "1h",
            "2026-10-20T00:00:00Z",
            "2026-10-30T00:00:00Z",
        )
        server.query(flux + f'\n    |> to(bucket: "{source}_1h", org: "{server.org}")')


def land_history(server: InfluxServer, tmp: Path, started: list[Any]) -> Landed:
    """Start the simulators (into ``started``) and the agents; return once all landed."""
    logs: list[Path] = []
    _BUCKET_IDS.clear()
    offset = OCTOPUS_NOW.timestamp() - time.time()
    octo_port = start_simulator(started, "octopus", tmp, f"--clock-offset={offset:.0f}s")[0]
    wv_port = start_simulator(started, "wattivahti", tmp, "--initial-refresh-token", "rt-dash")[0]
    truth = tmp / "pulse-truth.txt"
    pulse_args = (
        f"--channels import:20:{PPK},export:26:{PPK},generate:21:{PPK},{HEATPUMP_CHANNEL}:22:{PPK} "
        "--profile import=household-day --profile export=household-day "
        f"--profile generate=household-day --profile {HEATPUMP_CHANNEL}=steps:600,1800@3h "
        f"--start {PULSE_START.isoformat()} --speed {PULSE_SPEED} --duration {PULSE_HOURS}h "
        f"--truth {truth}"
    )
    pulse_port = start_simulator(started, "pulse", tmp, *pulse_args.split())[0]
    clock = FakeClock(tmp / "faketime", LUX_START, LUX_SPEED)
    lux_args = f"--start {LUX_START.isoformat()} --time-scale {LUX_SPEED}"
    lux_port = start_simulator(started, "luxtronik", tmp, *lux_args.split())[0]

    octo = _config(
        tmp,
        server,
        "octopus",
        {
            "account_number": "A-SOLAR002",
            "api_key_file": _secret(tmp / "octopus.apikey", "sk_live_simulated0000000000000000"),
            "api_url": f"http://127.0.0.1:{octo_port}/v1/graphql/",
            "grouping": "FIVE_MINUTES",
            "initial_backfill": OCTOPUS_BACKFILL,
            "backfill_window": "1d",
            "timeout": "10s",
        },
    )
    wv = _config(
        tmp,
        server,
        "wattivahti",
        {
            "metering_point": "1234567",
            "token_url": f"http://127.0.0.1:{wv_port}/b2c/oauth2/v2.0/token",
            "api_url": f"http://127.0.0.1:{wv_port}/meterdata2",
            "refresh_token_file": _secret(tmp / "wv-refresh-token", "rt-dash"),
            "production": True,
            "timeout": "10s",
        },
    )
    channels = [
        {"name": n, "pin": p, "pulses_per_kwh": PPK}
        for n, p in (("import", 20), ("export", 26), ("generate", 21), (HEATPUMP_CHANNEL, 22))
    ]
    pulse = _config(
        tmp,
        server,
        "pulse",
        {"backend": "simulated", "simulator": f"127.0.0.1:{pulse_port}", "channels": channels},
    )
    lux = _config(
        tmp,
        server,
        "luxtronik",
        {"host": "127.0.0.1", "port": lux_port, "interval": "500ms", "min_spacing": "0s"},
    )

    names = ("octopus", "wattivahti", "pulse", "luxtronik")
    logs.extend(tmp / f"agent-{n}.log" for n in names)
    procs = {
        "octopus": _spawn(["run", "octopus", "-c", octo, "--once"], logs[0]),
        "wattivahti": _spawn(
            [
                "sync",
                "wattivahti",
                "-c",
                wv,
                "--start-date",
                WATTIVAHTI_DAYS[0],
                "--end-date",
                WATTIVAHTI_DAYS[1],
            ],
            logs[1],
        ),
        "pulse": _spawn(["run", "pulse", "-c", pulse], logs[2]),
        "luxtronik": _spawn(["run", "luxtronik", "-c", lux], logs[3], env=clock.env()),
    }
    try:
        for n in ("octopus", "wattivahti"):
            assert procs[n].wait(180) == 0, (tmp / f"agent-{n}.log").read_text()[-3000:]
        lux_end = (LUX_START + timedelta(hours=LUX_HOURS)).timestamp()
        wait_for(lambda: clock.fake_now() > lux_end, 120, "the Luxtronik clock's hours")
        clock.stopped.set()
        _stop(procs["luxtronik"], logs[3])

        def pulses_landed() -> bool:
            sent = _train_sent(truth)
            return sent is not None and _count(server, "pulse_raw", "pulse", "energy_wh") == sent

        wait_for(pulses_landed, 180, "every pulse in pulse_raw", step=1)
        _stop(procs["pulse"], logs[2])
    finally:
        clock.stopped.set()
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    _roll_up(server)
    # The panels read with a token like the influxdb role's dashboards token: read access
    # to the source buckets and nothing else.
    perms = [
        {"action": "read", "resource": {"type": "buckets", "id": i, "orgID": server.org_id}}
        for i in _BUCKET_IDS
    ]
    dashboards_token = server.api(
        "POST",
        "/api/v2/authorizations",
        json={"orgID": server.org_id, "permissions": perms, "description": "dashboards"},
    ).json()["token"]
    return Landed(server, logs, replace(server, token=dashboards_token, proc=None))


def _train_sent(truth: Path) -> int | None:
    """Edges the simulator sent, once it has played the whole train (none dropped)."""
    text = truth.read_text() if truth.exists() else ""
    end = [line for line in text.splitlines() if line.startswith("# end ")]
    if not end:
        return None
    assert "dropped=0" in end[0], end[0]
    return int(end[0].split("sent=")[1].split()[0])
