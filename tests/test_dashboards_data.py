"""The dashboards' queries against data the real agents wrote from the simulators.

One InfluxDB of this module's own holds the production bucket names (SOURCE_raw,
SOURCE_1h). The four agents write two to three days around the night Europe/Helsinki leaves
summer time (Sunday 25 October 2026, a 25-hour day):

* Octopus: one ``run --once`` whose first start backfills 70 hours from the simulator
  (its server clock set to the end of that Monday, local time);
* WattiVahti: ``sync wattivahti`` of the three local days;
* pulse: the daemon, the simulator replaying 52 hours from Saturday 18:00 UTC at 14400x
  (edges carry the simulator's timestamps), four channels, one metering the heat pump;
* Luxtronik: the daemon, its wall clock (libfaketime, an offset file this test moves on
  10800x) and the controller simulator's clock running 42 hours from Saturday 06:00 UTC.

The 1h tier is filled by the production roll-up Flux (``downsample.rollup_query``, what
the InfluxDB role's tasks run). Then every panel's query runs as Grafana sends it
(``support.grafana``) for a short range (raw) and a long one (the 1h tier), and the daily
energy, cost and COP are held to sums computed here from the raw points.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import ROOT, write_config
from support.agentproc import wait_for
from support.grafana import interpolate, panel_range
from support.influxd import InfluxServer
from support.simproc import simulator_processes, start_simulator

sys.path.insert(0, str(ROOT / "dashboards"))

from wkdash import build_boards

from wattkeeper.downsample import rollup_query

TZ = "Europe/Helsinki"
HEL = ZoneInfo(TZ)
DAY = date(2026, 10, 25)  # summer time ends at 04:00 local: 25 hours
SOURCES = ("octopus", "wattivahti", "pulse", "luxtronik")
PULSE_START = datetime(2026, 10, 24, 18, tzinfo=UTC)
OCTOPUS_NOW = datetime(2026, 10, 26, 22, tzinfo=UTC)  # Monday midnight, local
PULSE_HOURS, PULSE_SPEED, PPK = 52, 14400, 20
LUX_START, LUX_HOURS, LUX_SPEED = datetime(2026, 10, 24, 6, tzinfo=UTC), 42, 10800
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
pytestmark = pytest.mark.skipif(FAKETIME_LIB is None, reason="libfaketime not installed")


def midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=HEL).astimezone(UTC)


# Ranges as Grafana's time picker rounds them ("now/d" ends at 23:59:59.999): the short
# one is the local day (raw bucket), the long one the week up to the next day (1h tier).
MS = timedelta(milliseconds=1)
SHORT = (midnight(DAY), midnight(DAY + timedelta(days=1)) - MS)
LONG = (midnight(DAY - timedelta(days=5)), midnight(DAY + timedelta(days=2)) - MS)
VARIABLES = {
    "datasource": "wattkeeper-influxdb",
    "timezone": TZ,
    "raw_retention": "3650d",  # this module's buckets keep everything
    "heatpump_meter": "heatpump",
}


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
class Stack:
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


@pytest.fixture(scope="module")
def stack(influxd_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("dashboards")
    server = InfluxServer(influxd_binary, tmp / "influxd")
    server.start()
    logs: list[Path] = []
    try:
        with simulator_processes("all", tmp) as started:
            yield _landed(server, tmp, started, logs)
    finally:
        server.stop()


def _landed(server: InfluxServer, tmp: Path, started: list[Any], logs: list[Path]) -> Stack:
    _BUCKET_IDS.clear()
    offset = OCTOPUS_NOW.timestamp() - time.time()
    octo_port = start_simulator(started, "octopus", tmp, f"--clock-offset={offset:.0f}s")[0]
    wv_port = start_simulator(started, "wattivahti", tmp, "--initial-refresh-token", "rt-dash")[0]
    truth = tmp / "pulse-truth.txt"
    pulse_port = start_simulator(
        started,
        "pulse",
        tmp,
        "--channels",
        f"import:20:{PPK},export:26:{PPK},generate:21:{PPK},heatpump:22:{PPK}",
        "--profile",
        "import=household-day",
        "--profile",
        "export=household-day",
        "--profile",
        "generate=household-day",
        "--profile",
        "heatpump=steps:600,1800@3h",
        "--start",
        PULSE_START.isoformat(),
        "--speed",
        str(PULSE_SPEED),
        "--duration",
        f"{PULSE_HOURS}h",
        "--truth",
        str(truth),
    )[0]
    clock = FakeClock(tmp / "faketime", LUX_START, LUX_SPEED)
    lux_port = start_simulator(
        started,
        "luxtronik",
        tmp,
        "--start",
        LUX_START.isoformat(),
        "--time-scale",
        str(LUX_SPEED),
    )[0]

    octo = _config(
        tmp,
        server,
        "octopus",
        {
            "account_number": "A-SOLAR002",
            "api_key_file": _secret(tmp / "octopus.apikey", "sk_live_simulated0000000000000000"),
            "api_url": f"http://127.0.0.1:{octo_port}/v1/graphql/",
            "grouping": "FIVE_MINUTES",
            "initial_backfill": "70h",
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
        for n, p in (("import", 20), ("export", 26), ("generate", 21), ("heatpump", 22))
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
                "2026-10-24",
                "--end-date",
                "2026-10-26",
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
    return Stack(server, logs, replace(server, token=dashboards_token, proc=None))


def _train_sent(truth: Path) -> int | None:
    """Edges the simulator sent, once it has played the whole train (none dropped)."""
    text = truth.read_text() if truth.exists() else ""
    end = [line for line in text.splitlines() if line.startswith("# end ")]
    if not end:
        return None
    assert "dropped=0" in end[0], end[0]
    return int(end[0].split("sent=")[1].split()[0])


# -- running a panel's query as Grafana does ---------------------------------------------


def _dashboards() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((ROOT / "dashboards").glob("*.json"))}


def _targets(board: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            yield panel, target


def _run(
    stack: Stack,
    panel: dict[str, Any],
    target: dict[str, Any],
    rng: tuple[datetime, datetime],
    **variables: str,
) -> list[dict[str, str]]:
    start, stop = panel_range(panel, rng[0], rng[1], now=rng[1])
    flux = interpolate(target["query"], {**VARIABLES, **variables}, start, stop)
    return stack.flux(flux)


def _expects() -> dict[tuple[str, str, str], tuple[str, ...]]:
    out = {}
    for b in build_boards():
        for e in b.expects:
            out[(b.uid, e.panel, e.ref_id)] = e.columns
    return out


def test_every_panel_query_returns_what_its_panel_draws(stack: Stack) -> None:
    expects = _expects()
    now = datetime.now(UTC)
    checked = 0
    failures = []
    for uid, board in _dashboards().items():
        ranges = [(now - timedelta(hours=1), now)] if uid == "wattkeeper-agents" else [SHORT, LONG]
        for panel, target in _targets(board):
            columns = expects[(uid, panel["title"], target["refId"])]
            for rng in ranges:
                rows = _run(stack, panel, target, rng)
                checked += 1
                where = f"{uid} / {panel['title']} / {target['refId']} over {rng[0]}..{rng[1]}"
                if not rows:
                    failures.append(f"{where}: no rows")
                elif missing := set(columns) - set(rows[0]):
                    failures.append(f"{where}: no column {sorted(missing)} in {sorted(rows[0])}")
                elif "_value" in columns and all(r["_value"] == "" for r in rows):
                    failures.append(f"{where}: every _value is null")
    assert not failures, "\n".join(failures)
    assert checked > 100


# -- the numbers, computed independently from the raw points ------------------------------


def _raw(stack: Stack, bucket: str, predicate: str) -> list[tuple[datetime, str, float]]:
    rows = stack.flux(
        f'from(bucket: "{bucket}")'
        " |> range(start: 2026-10-01T00:00:00Z, stop: 2026-11-01T00:00:00Z)"
        f" |> filter(fn: (r) => {predicate})"
    )
    return [
        (datetime.fromisoformat(r["_time"].replace("Z", "+00:00")), r["_field"], float(r["_value"]))
        for r in rows
    ]


def _in_day(t: datetime, d: date) -> bool:
    return midnight(d) <= t < midnight(d + timedelta(days=1))


def _day_value(rows: list[dict[str, str]], d: date) -> float | None:
    """The value a daily panel shows for local day ``d`` (None: no value)."""
    want = midnight(d)
    hits = [r for r in rows if datetime.fromisoformat(r["_time"].replace("Z", "+00:00")) == want]
    assert len(hits) == 1, (d, rows)
    return None if hits[0]["_value"] == "" else float(hits[0]["_value"])


def _panel(uid: str, title: str) -> dict[str, Any]:
    return next(p for p in _dashboards()[uid]["panels"] if p.get("title") == title)


def _target(panel: dict[str, Any], ref: str) -> dict[str, Any]:
    return next(t for t in panel["targets"] if t["refId"] == ref)


def test_daily_energy_and_cost_equal_the_raw_readings_of_the_local_day(stack: Stack) -> None:
    """Octopus, the 25-hour Sunday: the per-day panels on raw (a short range) and on the
    1h tier (a week), and the "today" stats of Grafana's "yesterday" range, equal the sums
    of the raw readings between the local midnights."""
    raw = _raw(stack, "octopus_raw", 'r._measurement == "octopus"')
    sums = {
        field: sum(v for t, f, v in raw if f == field and _in_day(t, DAY))
        for field in ("consumption_delta_wh", "cost_delta_with_tax_pence", "cost_delta_pence")
    }
    day_points = sum(1 for t, f, _ in raw if f == "consumption_delta_wh" and _in_day(t, DAY))
    assert day_points == 25 * 12, "five-minute readings over the 25-hour day"
    expected = {
        ("Energy per day", "A"): sums["consumption_delta_wh"] / 1000,
        ("Cost per day", "A"): sums["cost_delta_with_tax_pence"] / 100,
        ("Cost per day", "B"): sums["cost_delta_pence"] / 100,
    }
    for (title, ref), want in expected.items():
        panel = _panel("wattkeeper-octopus", title)
        for rng in (SHORT, LONG):
            got = _day_value(_run(stack, panel, _target(panel, ref), rng), DAY)
            assert got == pytest.approx(want, rel=1e-9), (title, ref, rng)
    for title, want in (
        ("Import today", sums["consumption_delta_wh"] / 1000),
        ("Cost today", sums["cost_delta_with_tax_pence"] / 100),
    ):
        panel = _panel("wattkeeper-octopus", title)
        rows = _run(stack, panel, _target(panel, "A"), SHORT)
        assert float(rows[0]["_value"]) == pytest.approx(want, rel=1e-9), title
    # Weeks start on Monday (Flux's own weeks start on Thursday), months on the 1st: on
    # Monday 26 October "this week" is that Monday alone, "this month" all of it so far.
    monday = DAY + timedelta(days=1)
    for title, first_day in (
        ("Import this week", monday),
        ("Import this month", DAY.replace(day=1)),
    ):
        panel = _panel("wattkeeper-octopus", title)
        rows = _run(stack, panel, _target(panel, "A"), LONG)
        want = sum(
            v
            for t, f, v in raw
            if f == "consumption_delta_wh" and midnight(first_day) <= t < LONG[1]
        )
        assert float(rows[0]["_value"]) == pytest.approx(want / 1000, rel=1e-9), title
    # The same for the pulse channels' energy on the overview.
    pulses = _raw(stack, "pulse_raw", 'r._measurement == "pulse" and r._field == "energy_wh"')
    panel = _panel("wattkeeper-pulse", "Energy per day")
    rows = _run(stack, panel, _target(panel, "A"), LONG)
    heatpump = [r for r in rows if r["_field"] == "heatpump"]
    want = sum(v for t, _, v in pulses if _in_day(t, DAY)) / 1000
    assert sum(float(r["_value"]) for r in rows if _day_match(r, DAY)) == pytest.approx(want)
    assert heatpump


def _day_match(row: dict[str, str], d: date) -> bool:
    return datetime.fromisoformat(row["_time"].replace("Z", "+00:00")) == midnight(d)


def _heat_increase(stack: Stack, d: date) -> float | None:
    """Sum over the heat quantity counters of (last reading of d) - (last reading of d-1)."""
    rows = _raw(
        stack,
        "luxtronik_raw",
        'r._measurement == "luxtronik" and r.group == "calculations" and '
        '(r._field == "ID_WEB_WMZ_Heizung" or r._field == "ID_WEB_WMZ_Brauchwasser" or '
        'r._field == "ID_WEB_WMZ_Schwimmbad")',
    )
    total = 0.0
    for field in ("ID_WEB_WMZ_Heizung", "ID_WEB_WMZ_Brauchwasser", "ID_WEB_WMZ_Schwimmbad"):
        series = sorted((t, v) for t, f, v in rows if f == field)
        today = [v for t, v in series if _in_day(t, d)]
        before = [v for t, v in series if _in_day(t, d - timedelta(days=1))]
        if not today or not before:
            return None
        total += today[-1] - before[-1]
    return total


def test_cop_is_heat_increase_over_electricity_and_no_value_without_both(stack: Stack) -> None:
    heat = _heat_increase(stack, DAY)
    pulses = _raw(
        stack,
        "pulse_raw",
        'r._measurement == "pulse" and r._field == "energy_wh" and r.channel == "heatpump"',
    )
    elec = sum(v for t, _, v in pulses if _in_day(t, DAY)) / 1000
    assert heat and heat > 0 and elec > 0
    panel = _panel("wattkeeper-luxtronik", "COP per day")
    target = _target(panel, "A")
    for rng in (SHORT, LONG):
        rows = _run(stack, panel, target, rng)
        assert _day_value(rows, DAY) == pytest.approx(heat / elec, rel=1e-9), rng
    # The day before has no reading of the day before it: no value, never 0 or infinity.
    rows = _run(stack, panel, target, LONG)
    assert _heat_increase(stack, DAY - timedelta(days=1)) is None
    assert _day_value(rows, DAY - timedelta(days=1)) is None
    # The controller's own counters (the simulated firmware's stand still): no value at all.
    rows = _run(stack, panel, target, LONG, heatpump_meter="")
    values = [r["_value"] for r in rows]
    assert values and all(v == "" for v in values), values
    for r in _run(stack, panel, target, LONG):
        if r["_value"]:
            assert math.isfinite(float(r["_value"])) and float(r["_value"]) > 0


def test_short_recent_ranges_read_raw_and_long_or_old_ones_the_1h_tier(stack: Stack) -> None:
    """The bucket choice every tiered query makes, evaluated as Grafana sends it."""
    from wkdash.flux import program, span

    probe = program(
        span(),
        "array.from(rows: [{use_tier: useTier, cut: cut, start: start, stop: stop}])",
    )
    now = datetime.now(UTC).replace(microsecond=0)
    cases = [
        (SHORT, "3650d", False),  # a day: raw
        (LONG, "3650d", True),  # a week: the 1h tier (up to two hours before now)
        (SHORT, "30d", True),  # a day older than raw keeps: the 1h tier
        ((now - timedelta(days=30), now), "3650d", True),  # a month up to now: tier, then raw
    ]
    for rng, retention, tiered in cases:
        flux = interpolate(probe, {**VARIABLES, "raw_retention": retention}, *rng)
        row = stack.flux(flux)[0]
        assert (row["use_tier"] == "true") is tiered, (rng, retention)
        cut = datetime.fromisoformat(row["cut"].replace("Z", "+00:00"))
        if not tiered:
            assert row["cut"] == row["start"]
        elif rng[1] < now - timedelta(hours=3):
            assert cut == rng[1]  # all of it from the tier
        else:  # the tier up to two whole hours before now, raw after that
            assert now - timedelta(hours=3) <= cut <= now - timedelta(hours=2)
            assert cut.minute == cut.second == 0
