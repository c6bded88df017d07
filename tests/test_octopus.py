"""Octopus Home Mini: the real CLI -> `wattkeeper simulate octopus` (GraphQL) -> real InfluxDB 2.

The truth is the simulator's deterministic household (``household.reading`` of a device's
household and a UTC instant): a point at the wrong instant, in the wrong unit or written
twice under another time shows up as a wrong or missing value.
"""

from __future__ import annotations

import email.utils
import http.server
import itertools
import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import Target, agent_config, run_wattkeeper, spawn_wattkeeper
from support.agentproc import wait_for
from support.simproc import SimProcess, simulator_processes, start_simulator

from wattkeeper.simulate.octopus import household
from wattkeeper.simulate.octopus.kraken import DEFAULT_API_KEY

ACCOUNT = "A-DEMO0001"
DEVICE = "00-0D-6F-00-0A-DE-00-01"
SOLAR_DEVICE = "00-0D-6F-00-0A-DE-00-02"
FIELDS = {
    "demand_w": "demand",
    "consumption_wh": "consumption",
    "consumption_delta_wh": "consumptionDelta",
    "export_wh": "export",
    "cost_delta_pence": "costDelta",
    "cost_delta_with_tax_pence": "costDeltaWithTax",
}


class Sim(SimProcess):
    @property
    def url(self) -> str:
        return self.base + "/v1/graphql/"

    def _post(self, path: str, doc: dict[str, Any]) -> dict[str, Any]:
        r = requests.post(self.base + path, json=doc, timeout=5)
        r.raise_for_status()
        return dict(r.json())

    def stats(self) -> dict[str, Any]:
        r = requests.get(self.base + "/_stats", timeout=5)
        r.raise_for_status()
        return dict(r.json())

    def fault(self, kind: str, op: str = "telemetry", count: int = 1) -> None:
        self._post("/_fault", {"kind": kind, "op": op, "count": count})

    def advance(self, seconds: float) -> None:
        self._post("/_clock", {"advance": seconds})

    def app_calls(self, count: int, key: str = DEFAULT_API_KEY) -> None:
        self._post("/_calls", {"api_key": key, "count": count})

    def offline(self, start: str, end: str) -> None:
        self._post("/_offline", {"start": start, "end": end})

    def mini(self, state: str, device: str = "") -> None:
        self._post("/_mini", {"state": state, "device": device})

    def swap(self, device: str) -> str:
        return str(self._post("/_swap", {"device": device})["new_device"])

    def served(self) -> list[dict[str, Any]]:
        r = requests.get(self.base + "/_served", timeout=10)
        r.raise_for_status()
        return list(r.json())

    def now(self) -> float:
        return float(self.stats()["now"])


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[Callable[..., Sim]]:
    """Start `wattkeeper simulate octopus` processes; stop them all afterwards."""
    with simulator_processes("octopus", tmp_path) as started:
        yield lambda *extra: Sim(*start_simulator(started, "octopus", tmp_path, *extra))


@dataclass
class Setup:
    sim: Sim
    config: Path
    tmp: Path

    @property
    def buffer(self) -> Path:
        return self.tmp / "octopus-buffer.sqlite"


def make_setup(
    tmp_path: Path,
    target: Target,
    sim: Sim,
    *,
    api_key: str = DEFAULT_API_KEY,
    agent: dict[str, Any] | None = None,
    **source: Any,
) -> Setup:
    key_file = tmp_path / "octopus.apikey"
    key_file.write_text(api_key + "\n")
    key_file.chmod(0o600)
    table: dict[str, Any] = {
        "account_number": ACCOUNT,
        "api_key_file": key_file,
        "api_url": sim.url,
        "timeout": "3s",
        "initial_backfill": "2m",
    }
    table.update(source)
    extra: dict[str, Any] = {"agent": agent} if agent else {}
    cfg = agent_config(tmp_path, target, "octopus", table, **extra)
    return Setup(sim, cfg, tmp_path)


def run_once(s: Setup, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_wattkeeper("run", "octopus", "-c", s.config, "--once", timeout=timeout)


def run_daemon(s: Setup, seconds: float, during: Callable[[], None] | None = None) -> str:
    """The agent as systemd runs it, for a while; then SIGTERM. Returns its log."""
    log = s.tmp / "agent.log"
    proc = spawn_wattkeeper("run", "octopus", "-c", s.config, log=log)
    try:
        deadline = time.monotonic() + seconds
        if during is not None:
            during()
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
    text = log.read_text()
    assert rc == 0, text
    return text


def rows(target: Target, measurement: str = "octopus") -> list[dict[str, str]]:
    return target.query(
        "|> range(start: 2000-01-01T00:00:00Z, stop: 2100-01-01T00:00:00Z) "
        f'|> filter(fn: (r) => r._measurement == "{measurement}") '
        '|> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value") '
        '|> group() |> sort(columns: ["_time"])'
    )


def ts(row: dict[str, str]) -> int:
    return int(datetime.fromisoformat(row["_time"].replace("Z", "+00:00")).timestamp())


def field_types(target: Target, measurement: str = "octopus") -> set[str]:
    """The Flux column types of every field of the measurement (double, string, ...)."""
    resp = target.server.api(
        "POST",
        "/api/v2/query",
        params={"org": target.server.org},
        json={
            "query": f'from(bucket: "{target.bucket}") |> range(start: 2000-01-01T00:00:00Z, '
            f'stop: 2100-01-01T00:00:00Z) |> filter(fn: (r) => r._measurement == "{measurement}")',
            "dialect": {"annotations": ["datatype"]},
        },
    )
    types = set()
    for block in resp.text.split("\r\n\r\n"):
        lines = block.strip().splitlines()
        if len(lines) >= 2 and lines[0].startswith("#datatype"):
            header = lines[1].split(",")
            types.add(lines[0].split(",")[header.index("_value")])
    return types


def assert_readings(
    got: list[dict[str, str]],
    first: int,
    last: int,
    *,
    hh: str = "plain",
    grouping: str = "TEN_SECONDS",
    device: str = DEVICE,
    skip: Callable[[int], bool] = lambda t: False,
) -> None:
    """Every reading from first to last exactly once, at its readAt, with its true values."""
    step = household.GROUPING_SECONDS[grouping]
    times = [ts(r) for r in got]
    expected = [t for t in range(first, last + 1, step) if not skip(t)]
    missing = sorted(set(expected) - set(times))
    extra = sorted(set(times) - set(expected))
    assert times == expected, (
        f"{len(times)} points, expected {len(expected)}; "
        f"missing {len(missing)} {missing[:3]} extra {len(extra)} {extra[:3]}"
    )
    for r in got:
        truth = household.reading(hh, ts(r), grouping)
        assert r["device_id"] == device
        for name, api in FIELDS.items():
            assert float(r[name]) == float(truth[api]), (name, r, truth)


def calls(sim: Sim, op: str | None = None) -> list[dict[str, Any]]:
    return [c for c in sim.stats()["calls"] if op is None or c["op"] == op]


def max_in_window(times: list[float], period: float) -> int:
    """The most calls in any window of ``period`` seconds."""
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - period:
            j += 1
        best = max(best, i - j + 1)
    return best


# -- steady state ---------------------------------------------------------------------------


def test_once_lands_every_reading_with_its_read_at_and_float_fields(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    sim = simulator()
    s = make_setup(tmp_path, target, sim)
    r = run_once(s)
    assert r.returncode == 0, r.stderr
    assert f"Home Mini device {DEVICE}" in r.stderr
    now = sim.now()
    got = rows(target)
    # The first 10-second slot at or after now - 2m, to the last complete one.
    first = ts(got[0])
    assert now - 125 <= first <= now - 105
    assert ts(got[-1]) >= now - 30
    assert_readings(got, first, ts(got[-1]))
    assert field_types(target) == {"double"}
    # Discovery asked for the active agreement's current meters only.
    tele = sim.stats()["telemetry"]
    assert [t["deviceId"] for t in tele] == [DEVICE]
    assert DEFAULT_API_KEY not in r.stderr

    # A second run asks from just after the last reading: nothing twice, nothing skipped.
    time.sleep(1.5)
    r = run_once(s)
    assert r.returncode == 0, r.stderr
    tele = sim.stats()["telemetry"]
    assert tele[-1]["start"] == ts(got[-1]) + 1
    got2 = rows(target)
    assert_readings(got2, first, ts(got2[-1]))
    assert len(calls(sim, "account")) == 1  # the device id was kept in the state


def test_steady_polling_lands_every_reading_once(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    sim = simulator()
    s = make_setup(tmp_path, target, sim, calls_per_hour=30, budget_period="30s")
    started = sim.now()
    log = run_daemon(s, 25)
    ended = sim.now()
    got = rows(target)
    assert got, log
    assert "Traceback" not in log and "poll failed" not in log
    assert_readings(got, ts(got[0]), ts(got[-1]))
    assert ts(got[0]) <= started - 110
    # The last complete 10-second slot before the stop (one poll interval of slack).
    assert ts(got[-1]) >= ended - 10 - 10 - 30 / 27 - 5
    tele = sim.stats()["telemetry"]
    served = sum(t["rows"] for t in tele)
    # Each call asked from just after the previous reading: each reading was served once.
    assert served == len(got), (served, len(got))
    for a, b in itertools.pairwise(tele):
        if a["last"]:
            assert b["start"] == datetime.fromisoformat(a["last"]).timestamp() + 1
    spaced = [c["wall"] for c in calls(sim, "telemetry")]
    gaps = [b - a for a, b in itertools.pairwise(spaced)]
    # 30 calls per 30 s, a tenth kept in reserve: one poll every 30/27 s.
    assert min(gaps) >= 30 / 27 - 0.05, gaps


# -- tokens -----------------------------------------------------------------------------------


def test_token_expiry_mid_run_is_invisible_refresh_then_api_key(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    # 4-second tokens; refresh tokens stop working 15 s after each API-key login.
    sim = simulator("--token-lifetime", "4s", "--refresh-lifetime", "15s")
    s = make_setup(tmp_path, target, sim, calls_per_hour=60, budget_period="30s")

    def inject() -> None:
        time.sleep(5)
        # A token the server suddenly calls expired, and a refresh it refuses: the agent
        # authenticates again within the same poll.
        sim.fault("KT-CT-1124", "telemetry")
        time.sleep(3)
        sim.fault("KT-CT-1135", "refresh")

    log = run_daemon(s, 24, inject)
    st = sim.stats()
    assert st["counts"]["tokens_from_refresh"] >= 3, st["counts"]
    assert st["counts"]["tokens_from_api_key"] >= 3, st["counts"]
    assert st["faults_served"] == {"KT-CT-1124": 1, "KT-CT-1135": 1}
    outcomes = [c["outcome"] for c in st["calls"]]
    # Renewal happens before expiry: no call met an expired token except the injected one.
    assert outcomes.count("KT-CT-1124") == 1 and "KT-CT-1134" not in outcomes
    assert "KT-CT-1124; authenticating again" in log
    assert "refresh token refused (KT-CT-1135); using the API key" in log
    assert "poll failed" not in log
    got = rows(target)
    assert_readings(got, ts(got[0]), ts(got[-1]))
    assert ts(got[-1]) >= sim.now() - 23
    assert served_once(sim, got)


def recovered(sim: Sim, kind: str) -> bool:
    """The fault was served and a telemetry call succeeded after it."""
    made = sim.stats()["calls"]
    fault = f"fault:{kind}" if kind[0] != "K" else kind
    at = [i for i, c in enumerate(made) if c["outcome"] == fault]
    return bool(at) and any(
        c["op"] == "telemetry" and c["outcome"] == "ok" for c in made[at[-1] + 1 :]
    )


def served_once(sim: Sim, got: list[dict[str, str]]) -> bool:
    """Every reading the simulator handed out (in answers not spoiled on purpose) landed,
    and none was fetched twice."""
    tele = sim.stats()["telemetry"]
    return sum(t["rows"] for t in tele if t["fault"] not in ("missing", "nulllist")) == len(got)


def test_wrong_api_key_exits_78_with_one_clear_line_and_no_retry(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    sim = simulator()
    wrong = "sk_live_wrongwrongwrongwrongwrong0"
    s = make_setup(tmp_path, target, sim, api_key=wrong)
    r = run_once(s)
    assert r.returncode == 78, r.stderr
    assert "Traceback" not in r.stderr and wrong not in r.stderr
    line = next(x for x in r.stderr.splitlines() if "KT-CT-1139" in x)
    assert "octopus.api_key_file" in line and str(s.config) in line
    assert "personal-details/api-access" in line
    # The daemon, as systemd starts it: exits 78 at once (RestartPreventExitStatus=78),
    # and says so on Slack, since nothing will restart it.
    received: list[str] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])).decode())
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        s = make_setup(tmp_path, target, sim, api_key=wrong)
        agent_config(
            tmp_path,
            target,
            "octopus",
            {
                "account_number": ACCOUNT,
                "api_key_file": tmp_path / "octopus.apikey",
                "api_url": sim.url,
            },
            alerts={"slack_webhook_url": f"http://127.0.0.1:{hook.server_address[1]}/h"},
        )
        log = tmp_path / "daemon.log"
        proc = spawn_wattkeeper("run", "octopus", "-c", s.config, log=log)
        assert proc.wait(30) == 78, log.read_text()
    finally:
        hook.shutdown()
    assert [c["outcome"] for c in calls(sim)] == ["KT-CT-1139", "KT-CT-1139"]
    assert target.count("octopus", "demand_w") == 0
    alert = next(json.loads(x)["text"] for x in received if "source failing" in x)
    assert "Stopped: octopus.api_key_file in" in alert and "KT-CT-1139" in alert
    assert wrong not in alert


# -- the call budget ---------------------------------------------------------------------------


@pytest.mark.slow
def test_budget_never_exceeded_over_simulated_hours_even_while_retrying(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    """A "simulated hour" is budget_period=20s: 12 calls per 20 s for 2.5 periods, while the
    agent catches up six hours (it would like a call a second) and meets errors that make
    it retry and re-authenticate."""
    sim = simulator(
        "--rate-limit", "20", "--rate-period", "20s", "--token-lifetime", "8s",
        "--retry-after", "2",
    )  # fmt: skip
    s = make_setup(
        tmp_path,
        target,
        sim,
        calls_per_hour=12,
        budget_period="20s",
        timeout="1s",
        agent={"failure_threshold": 100},
    )
    kinds = ("KT-CT-1124", "500", "KT-CT-1124", "nonjson", "429", "503", "truncated")

    def inject() -> None:
        time.sleep(3)
        sim.advance(6 * 3600)
        for kind in kinds:
            sim.fault(kind, "any" if kind[0] != "K" else "telemetry")
            # Served, and then a successful telemetry call: the agent recovered from it.
            wait_for(lambda k=kind: recovered(sim, k), 30, f"recovery from fault {kind}")

    started = time.time()
    log = run_daemon(s, 45, inject)
    st = sim.stats()
    (tmp_path / "stats.json").write_text(json.dumps(st))
    made = [c["wall"] for c in st["calls"]]
    assert made[0] >= started
    assert sum(st["faults_served"].values()) == len(kinds), st["faults_served"]
    worst = max_in_window(made, 20.0)
    assert worst <= 12, f"{worst} calls in 20 s, budget 12"
    assert "KT-GB-4042" not in [c["outcome"] for c in st["calls"]]
    assert "poll failed" in log and "authenticating again" in log
    got = rows(target)
    assert_readings(got, ts(got[0]), ts(got[-1]))
    assert ts(got[-1]) >= sim.now() - 40
    print(
        f"\n{len(made)} calls in {made[-1] - made[0]:.0f}s; at most {worst} in any 20 s window "
        f"(budget 12, server limit 20); {len(got)} readings landed, 6 h caught up"
    )


def test_rate_limited_by_the_server_backs_off_and_loses_nothing(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    """The Octopus app shares the limit: KT-GB-4042 and HTTP 429 make the agent wait."""
    sim = simulator("--rate-limit", "20", "--rate-period", "20s", "--retry-after", "3")
    s = make_setup(tmp_path, target, sim, calls_per_hour=10, budget_period="20s")
    assert run_once(s).returncode == 0
    sim.app_calls(25)  # the app used more than the whole window
    r = run_once(s)
    assert r.returncode == 75, r.stderr
    assert "KT-GB-4042" in r.stderr and "backing off" in r.stderr
    sim.fault("429")
    time.sleep(20)  # the window slides past the app's calls
    r = run_once(s)
    assert r.returncode == 75 and "HTTP 429" in r.stderr, r.stderr
    asked = sim.now()  # the newest reading is judged by the run's start, not the slow end
    r = run_once(s)
    assert r.returncode == 0, r.stderr
    got = rows(target)
    assert_readings(got, ts(got[0]), ts(got[-1]))
    assert ts(got[-1]) >= asked - 21


# -- gaps -------------------------------------------------------------------------------------


def test_two_hour_stop_is_backfilled_without_a_missing_reading(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    sim = simulator()
    s = make_setup(tmp_path, target, sim, initial_backfill="1m")
    assert run_once(s).returncode == 0
    first = ts(rows(target)[0])
    before = len(sim.stats()["telemetry"])
    sim.advance(2 * 3600)  # for the API, two hours pass while the agent is stopped
    asked = sim.now()
    r = run_once(s)
    assert r.returncode == 0, r.stderr
    got = rows(target)
    assert_readings(got, first, ts(got[-1]))
    assert ts(got[-1]) >= asked - 21
    windows = sim.stats()["telemetry"][before:]
    # Two hours and a few seconds, in backfill_window (1 h) pieces, in this one run.
    assert [w["end"] - w["start"] for w in windows][:2] == [3600.0, 3600.0]
    assert len(windows) <= 3
    served = sum(t["rows"] for t in sim.stats()["telemetry"])
    print(
        f"\nbackfill: {len(got)} readings landed, {served} served, "
        f"{served - len(got)} served twice, {len(windows)} calls for the 2 h gap"
    )
    assert served == len(got)


def test_history_limit_recovers_what_the_api_still_has_and_logs_the_rest(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    sim = simulator("--history", "3h")
    s = make_setup(tmp_path, target, sim, initial_backfill="1m")
    assert run_once(s).returncode == 0
    cursor_at = ts(rows(target)[-1])
    sim.advance(30 * 3600)  # a day and a quarter away; the API keeps three hours
    before = len(calls(sim))
    r = run_once(s)
    assert r.returncode == 0, r.stderr
    lost = [x for x in r.stderr.splitlines() if "cannot be recovered" in x]
    assert len(lost) == 1 and "KT-GB-4051" in lost[0], r.stderr
    now = sim.now()
    got = [x for x in rows(target) if ts(x) > cursor_at]
    # From the oldest start the API accepted (within a sixteenth of a window of its
    # three-hour horizon) to now: complete.
    assert now - 3 * 3600 <= ts(got[0]) <= now - 3 * 3600 + 3600 / 16 + 60
    assert_readings(got, ts(got[0]), ts(got[-1]))
    assert ts(got[-1]) >= now - 21
    made = calls(sim)[before:]
    refused = [c for c in made if c["outcome"] == "KT-GB-4051"]
    # Galloping + bisection: log2(27 h / 1 h) + log2(last jump / 225 s) refusals, where
    # stepping a window at a time would be refused 27 times.
    assert 1 <= len(refused) <= 14, [c["outcome"] for c in made]
    print(f"\n4051 search: {len(made)} calls, {len(refused)} refused; {lost[0]}")


def test_offline_home_mini_gap_is_skipped_and_logged(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    sim = simulator()
    sim.offline("-25m", "-15m")
    s = make_setup(tmp_path, target, sim, initial_backfill="30m", backfill_window="4m")
    r = run_once(s)
    assert r.returncode == 0, r.stderr
    assert "(Home Mini offline?)" in r.stderr
    off_a, off_b = sim.stats()["options"]["offline"][0]
    got = rows(target)
    assert_readings(got, ts(got[0]), ts(got[-1]), skip=lambda t: off_a <= t < off_b)
    assert ts(got[0]) < off_a and ts(got[-1]) > off_b


# -- faults -----------------------------------------------------------------------------------

FAULTS = {
    # kind: (op, exit code of the faulty run, what its log must say)
    "500": ("telemetry", 75, "Telemetry: HTTP 500"),
    "502": ("telemetry", 75, "Telemetry: HTTP 502"),
    "503": ("telemetry", 75, "Telemetry: HTTP 503"),
    "429": ("telemetry", 75, "HTTP 429 too many requests; backing off"),
    "hang": ("telemetry", 75, "no answer from"),
    "nonjson": ("telemetry", 75, "answer is not JSON (HTTP 200, text/html)"),
    "truncated": ("telemetry", 75, "answer is not JSON"),
    "nodata": ("telemetry", 75, "Telemetry: answer has no data"),
    "missing": ("telemetry", 75, "malformed answer: telemetry row 0 lacks consumptionDelta"),
    "nulllist": ("telemetry", 75, "malformed answer: smartMeterTelemetry is null"),
    "KT-GB-4042": ("telemetry", 75, "KT-GB-4042 Too many requests.; backing off"),
    "KT-CT-1124": ("telemetry", 0, "Telemetry: KT-CT-1124; authenticating again"),
    "KT-CT-1111": ("telemetry", 0, "Telemetry: KT-CT-1111; authenticating again"),
    "500 on login": ("login", 75, "ObtainKrakenToken: HTTP 500"),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_fault_is_survived_with_a_log_line_and_no_loss(
    name: str, tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    sim = simulator("--hang", "3s", "--retry-after", "1")
    s = make_setup(tmp_path, target, sim, timeout="1s", calls_per_hour=100, budget_period="1h")
    assert run_once(s).returncode == 0
    kind = name.split()[0]
    op, rc, message = FAULTS[name]
    sim.fault(kind, op)
    sim.advance(30)  # new readings to fetch (and to spoil)
    r = run_once(s)
    assert r.returncode == rc, r.stderr
    assert message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert sim.stats()["faults_served"] == {kind: 1}
    time.sleep(1.2)  # a rate-limit answer's backoff is per process; a restart may call at once
    asked = sim.now()  # the newest reading is judged by the run's start, not the slow end
    r = run_once(s)
    assert r.returncode == 0, r.stderr
    got = rows(target)
    assert_readings(got, ts(got[0]), ts(got[-1]))
    assert ts(got[-1]) >= asked - 21
    assert served_once(sim, got)


def test_a_value_that_is_not_a_number_is_counted_and_never_written(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    sim = simulator("--fault", "badvalue", "--fault", "nullvalue")
    s = make_setup(tmp_path, target, sim)
    r = run_once(s)
    assert r.returncode == 0, r.stderr
    assert "1 value(s) are not numbers and were not written: demand='n/a' at " in r.stderr
    assert sim.stats()["faults_served"] == {"badvalue": 1}
    got = rows(target)
    bad = got[0]
    assert "demand_w" not in bad or bad["demand_w"] == ""
    assert float(bad["consumption_wh"]) == float(
        household.reading("plain", ts(bad), "TEN_SECONDS")["consumption"]
    )
    assert_readings(got[1:], ts(got[1]), ts(got[-1]))
    assert field_types(target) == {"double"}
    # Counted in the agent's own metrics.
    errors = target.query(
        '|> range(start: -1h) |> filter(fn: (r) => r._measurement == "wattkeeper_agent" '
        'and r._field == "poll_errors") |> last()'
    )
    assert float(errors[0]["_value"]) == 1.0

    # A null (the API's "no value") is simply not written, and not an error.
    time.sleep(1)
    r = run_once(s)
    assert r.returncode == 0 and "not numbers" not in r.stderr, r.stderr
    assert sim.stats()["faults_served"] == {"badvalue": 1, "nullvalue": 1}


# -- configuration and discovery --------------------------------------------------------------


@pytest.mark.parametrize(
    ("account", "key", "message"),
    [
        ("A-NOMINI03", "octopus.account_number", "has no smart import electricity meter"),
        ("A-TWOMTR04", "octopus.device_id", "choose one with octopus.device_id"),
        ("A-NOSUCH01", "octopus.account_number", "Octopus refuses account A-NOSUCH01"),
    ],
)
def test_no_usable_device_exits_78_saying_what_to_check(
    account: str,
    key: str,
    message: str,
    tmp_path: Path,
    target: Target,
    simulator: Callable[..., Sim],
) -> None:
    sim = simulator()
    s = make_setup(tmp_path, target, sim, account_number=account)
    r = run_once(s)
    assert r.returncode == 78, r.stderr
    line = next(x for x in r.stderr.splitlines() if message in x)
    assert key in line and str(s.config) in line
    assert "Traceback" not in r.stderr
    assert not sim.stats()["telemetry"]


def test_device_id_in_config_skips_discovery_and_a_wrong_one_is_named(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    sim = simulator()
    s = make_setup(tmp_path, target, sim, device_id=DEVICE)
    r = run_once(s)
    assert r.returncode == 0, r.stderr
    assert not calls(sim, "account")
    got = rows(target)
    assert_readings(got, ts(got[0]), ts(got[-1]))

    (tmp_path / "b").mkdir()
    s2 = make_setup(tmp_path / "b", target, sim, device_id="00-00-00-00-00-00-00-00")
    r = run_once(s2)
    assert r.returncode == 78, r.stderr
    assert "octopus.device_id" in r.stderr and "KT-CT-1111" in r.stderr


def test_discovery_on_an_account_with_solar_finds_import_and_export(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    sim = simulator()
    s = make_setup(
        tmp_path,
        target,
        sim,
        account_number="A-SOLAR002",
        grouping="FIVE_MINUTES",
        initial_backfill="31m",
    )
    # Solar in the middle of a (UTC) day: the server's clock says 20 s past noon (not the
    # very second a group ends: the agent takes a group once its end is past for certain).
    now = sim.now()
    sim.advance((now // 86400 + 1) * 86400 + 12 * 3600 + 20 - now)
    r = run_once(s)
    assert r.returncode == 0, r.stderr
    assert "Home Mini device 00-0D-6F-00-0A-DE-00-02 (export meter 00-0D-6F-00-0A-DE-00-03)" in (
        r.stderr
    )
    got = rows(target)
    assert_readings(
        got, ts(got[0]), ts(got[-1]), hh="solar", grouping="FIVE_MINUTES", device=SOLAR_DEVICE
    )
    assert len(got) == 6
    assert any(float(x["demand_w"]) < 0 for x in got)  # exporting at noon


# -- schemas, units, clocks -------------------------------------------------------------------


def test_seed_schemas_write_their_measurements_in_their_units(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    sim = simulator()
    s = make_setup(tmp_path, target, sim, schema="seed001", grouping="ONE_MINUTE")
    r = run_once(s)
    assert r.returncode == 0, r.stderr
    got = rows(target, "energy_consumption")
    assert got and not rows(target)
    for x in got:
        truth = household.reading("plain", ts(x), "ONE_MINUTE")
        assert x["source"] == "octopus_home_mini"
        assert float(x["demand"]) == pytest.approx(float(truth["demand"]) / 1000)  # kW
        assert float(x["consumption"]) == pytest.approx(float(truth["consumption"]) / 1000)
        assert float(x["consumption_delta"]) == pytest.approx(
            float(truth["consumptionDelta"]) / 1000
        )
        assert float(x["cost_delta"]) == pytest.approx(float(truth["costDelta"]) / 100)  # £
    assert field_types(target, "energy_consumption") == {"double"}

    (tmp_path / "b").mkdir()
    s0 = make_setup(tmp_path / "b", target, sim, schema="seed000")
    r = run_once(s0)
    assert r.returncode == 0, r.stderr
    power = rows(target, "power")
    assert power
    for x in power:
        truth = household.reading("plain", ts(x), "TEN_SECONDS")
        assert float(x["power_numeric"]) == float(truth["demand"])
    assert field_types(target, "power") == {"double"}


def test_british_summer_time_read_at_lands_at_its_utc_instant_on_the_servers_clock(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    """Kraken writes readAt in UK time (+01:00 in summer); the agent's own clock is months
    off the server's here, and use_server_clock makes that harmless."""
    sim = simulator()
    now = sim.now()
    july = datetime(datetime.fromtimestamp(now).year + 1, 7, 15, 12).timestamp()
    sim.advance(july - now)
    s = make_setup(tmp_path, target, sim)
    r = run_once(s)
    assert r.returncode == 0, r.stderr
    tele = sim.stats()["telemetry"]
    assert tele[0]["first"].endswith("+01:00")
    got = rows(target)
    assert_readings(got, ts(got[0]), ts(got[-1]))
    assert abs(ts(got[-1]) - sim.now()) < 25


# -- check and migrate ------------------------------------------------------------------------


def test_check_reaches_the_api_and_names_the_device(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    sim = simulator()
    s = make_setup(tmp_path, target, sim)
    r = run_wattkeeper("check", "-c", s.config)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"OK   octopus    {sim.url} account {ACCOUNT}: device {DEVICE}" in r.stdout
    assert "readings in the last 10 min" in r.stdout

    key = tmp_path / "octopus.apikey"
    key.write_text("sk_live_revoked00000000000000000\n")
    r = run_wattkeeper("check", "-c", s.config)
    assert r.returncode == 78, r.stdout
    assert "FAIL octopus    octopus.api_key_file: Octopus rejected the API key" in r.stdout


def test_migration_converts_every_convertible_string_value(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    sim = simulator()
    s = make_setup(tmp_path, target, sim)
    base = 1_700_000_000_000_000_000
    values = ["84.0000", "1203", "-5.5", " 42 ", "n/a", "", "inf", "1e3", "0.0000", "NaN"]
    convertible = {0: 84.0, 1: 1203.0, 2: -5.5, 3: 42.0, 7: 1000.0, 8: 0.0}
    lines = []
    for day in range(3):  # over several days (the migration walks day by day)
        for i, v in enumerate(values):
            t = base + day * 86_400_000_000_000 + i * 10_000_000_123  # ns digits kept
            lines.append(f'power,host=pi value="{v}" {t}')
    lines.append('power value="77.5" 1700000000000000001')  # no tag
    target.server.write(target.bucket, lines)

    r = run_wattkeeper("migrate", "octopus-string-fields", "-c", s.config, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "31 records of power.value read; would convert 19" in r.stdout
    assert "skipped 12 that are not numbers" in r.stdout
    assert target.count("power", "power_numeric") == 0

    r = run_wattkeeper("migrate", "octopus-string-fields", "-c", s.config)
    assert r.returncode == 0, r.stderr
    assert "converted 19 to power_numeric; skipped 12" in r.stdout
    # Table by table (one per series): each row carries exactly its own tags.
    got = target.server.query(
        f'from(bucket: "{target.bucket}") |> range(start: 2023-01-01T00:00:00Z, '
        'stop: 2024-01-01T00:00:00Z) |> filter(fn: (r) => r._field == "power_numeric")'
    )
    assert len(got) == 19
    expected = sorted(
        [
            (base + day * 86_400_000_000_000 + i * 10_000_000_123, v, "pi")
            for day in range(3)
            for i, v in convertible.items()
        ]
        + [(1700000000000000001, 77.5, "")]
    )
    from wattkeeper.sources.octopus.migrate import parse_rfc3339_ns

    assert (
        sorted((parse_rfc3339_ns(x["_time"]), float(x["_value"]), x.get("host", "")) for x in got)
        == expected
    )
    # Running it again changes nothing.
    r = run_wattkeeper("migrate", "octopus-string-fields", "-c", s.config)
    assert r.returncode == 0 and "converted 19" in r.stdout
    assert target.count("power", "power_numeric", start="2023-01-01T00:00:00Z") == 19


# -- the simulator itself ---------------------------------------------------------------------


def gql(sim: Sim, query: str, token: str | None = None, **variables: Any) -> requests.Response:
    headers = {"Authorization": token} if token else {}
    return requests.post(
        sim.url, json={"query": query, "variables": variables}, headers=headers, timeout=5
    )


TOKEN_MUTATION = (
    "mutation T($input: ObtainJSONWebTokenInput!) { obtainKrakenToken(input: $input) "
    "{ token refreshToken refreshExpiresIn payload } }"
)


def test_simulator_answers_as_kraken_does(simulator: Callable[..., Sim]) -> None:
    sim = simulator("--refresh-lifetime", "1h")
    r = gql(sim, TOKEN_MUTATION, input={"APIKey": "sk_live_nope"})
    assert r.status_code == 200
    err = r.json()["errors"][0]
    assert err["extensions"]["errorCode"] == "KT-CT-1139" and err["path"] == ["obtainKrakenToken"]
    assert r.json()["data"] == {"obtainKrakenToken": None}

    got = gql(sim, TOKEN_MUTATION, input={"APIKey": DEFAULT_API_KEY}).json()["data"]
    tok = got["obtainKrakenToken"]
    assert tok["refreshExpiresIn"] == pytest.approx(sim.now() + 3600, abs=5)
    assert tok["payload"]["exp"] - tok["payload"]["iat"] == 3600
    # The refresh token rotates: the new one works, the spent one is refused.
    again = gql(sim, TOKEN_MUTATION, input={"refreshToken": tok["refreshToken"]}).json()
    assert again["data"]["obtainKrakenToken"]["refreshExpiresIn"] == tok["refreshExpiresIn"]
    spent = gql(sim, TOKEN_MUTATION, input={"refreshToken": tok["refreshToken"]}).json()
    assert spent["errors"][0]["extensions"]["errorCode"] == "KT-CT-1135"

    # GraphQL validation is HTTP 400 with errors only, worded like graphql-core.
    token = tok["token"]
    bad = gql(sim, "{ smartMeterTelemetry(deviceId: $d) { readAt } }", token)
    assert bad.status_code == 400 and "Variable '$d' is not defined." in bad.text
    bad = gql(sim, '{ smartMeterTelemetry(deviceId: "x") { readAt watts } }', token)
    assert bad.status_code == 400
    assert "Cannot query field 'watts' on type 'SmartMeterTelemetryType'." in bad.text
    bad = gql(sim, "{ account(accountNumber: ", token)
    assert bad.status_code == 400 and "Syntax Error" in bad.text

    # Discovery: the active agreement's current meter only, with aliases honoured.
    q = (
        "query A($n: String!) { account(accountNumber: $n) { agreements: electricityAgreements"
        "(active: true) { meterPoint { meters(includeInactive: false) { "
        "smartImportElectricityMeter { deviceId } } } } } }"
    )
    acc = gql(sim, q, token, n=ACCOUNT).json()["data"]["account"]
    ids = [m["smartImportElectricityMeter"]["deviceId"] for a in acc["agreements"]
           for m in a["meterPoint"]["meters"]]  # fmt: skip
    assert ids == [DEVICE]
    everything = q.replace("(active: true)", "").replace("Inactive: false", "Inactive: true")
    acc = gql(sim, everything, token, n=ACCOUNT)
    assert len(json.dumps(acc.json()).split("deviceId")) - 1 == 3  # ended, replaced, current
    unused = gql(sim, everything.replace("$n: String!", "$n: String!, $x: Boolean"), token, n=1)
    assert unused.status_code == 400 and "Variable '$x' is never used in operation 'A'." in (
        unused.text
    )

    # Telemetry: start, end and grouping together; start inclusive, end exclusive; only the past.
    tq = (
        "query T($d: String!, $s: DateTime, $e: DateTime, $g: TelemetryGrouping) { "
        "smartMeterTelemetry(deviceId: $d, start: $s, end: $e, grouping: $g) { readAt demand } }"
    )
    r = gql(sim, tq, token, d=DEVICE, s="2026-01-01T00:00:00Z")
    assert r.json()["errors"][0]["extensions"]["errorCode"] == "KT-GB-4040"
    now = int(sim.now()) // 60 * 60
    start = datetime.fromtimestamp(now - 120).astimezone().isoformat()
    end = datetime.fromtimestamp(now - 60).astimezone().isoformat()
    r = gql(sim, tq, token, d=DEVICE, s=start, e=end, g="TEN_SECONDS")
    got_rows = r.json()["data"]["smartMeterTelemetry"]
    assert [datetime.fromisoformat(x["readAt"]).timestamp() for x in got_rows] == list(
        range(now - 120, now - 60, 10)
    )
    assert got_rows[0]["demand"] == household.reading("plain", now - 120, "TEN_SECONDS")["demand"]
    future = datetime.fromtimestamp(now + 3600).astimezone().isoformat()
    r = gql(sim, tq, token, d=DEVICE, s=end, e=future, g="ONE_MINUTE")
    assert all(
        datetime.fromisoformat(x["readAt"]).timestamp() + 60 <= sim.now()
        for x in r.json()["data"]["smartMeterTelemetry"]
    )
    r = gql(sim, tq, token, d=DEVICE, s=start, e=end, g="WEEKLY")
    assert r.status_code == 400 and "TelemetryGrouping" in r.text
    r = gql(sim, tq, token, d=DEVICE, s="2020-01-01T00:00:00Z", e=end, g="TEN_SECONDS")
    assert r.json()["errors"][0]["extensions"]["errorCode"] == "KT-GB-4051"
    r = gql(sim, tq, None, d=DEVICE, s=start, e=end, g="TEN_SECONDS")
    assert r.json()["errors"][0]["extensions"]["errorCode"] == "KT-CT-1112"
    assert gql(sim, tq, "JWT " + token, d=DEVICE).json()["data"]["smartMeterTelemetry"]
    # The Date header is the server's clock.
    sim.advance(7200)
    date = email.utils.parsedate_to_datetime(gql(sim, tq, token, d=DEVICE).headers["Date"])
    assert abs(date.timestamp() - time.time() - 7200) < 2
