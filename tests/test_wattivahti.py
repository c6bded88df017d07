"""WattiVahti: the real CLI -> `wattkeeper simulate wattivahti` (HTTP) -> a real InfluxDB 2.

The truth is the simulator's deterministic meter (``quarter_kwh`` of a UTC instant): a
point written at the wrong instant (a DST mistake) carries the wrong value and fails.
"""

from __future__ import annotations

import signal
import stat
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import Target, agent_config, run_wattkeeper, spawn_wattkeeper, wattkeeper_cmd
from support.agentproc import wait_for
from support.simproc import SimProcess, simulator_processes, start_simulator

from wattkeeper.simulate.wattivahti.data import HELSINKI, hour_kwh, local_midnight, quarter_kwh

TOKEN_PATH = "/pesv.onmicrosoft.com/b2c_1_tunnistus_signinv2/oauth2/v2.0/token"
API_PATH = "/api/onlineapi/v1/meterdata2"
CLIENT_ID = "84ebdb93-9ea6-42c7-bd7d-302abf7556fa"
MP = "1234567"
Q = timedelta(minutes=15)


class Sim(SimProcess):
    @property
    def token_url(self) -> str:
        return self.base + TOKEN_PATH

    def stats(self) -> dict[str, Any]:
        r = requests.get(self.base + "/_stats", timeout=5)
        r.raise_for_status()
        return dict(r.json())

    def fault(self, kind: str, count: int = 1) -> None:
        requests.post(
            self.base + "/_fault", json={"kind": kind, "count": count}, timeout=5
        ).raise_for_status()

    def refresh(self, token: str) -> requests.Response:
        return requests.post(
            self.token_url,
            data={
                "client_id": CLIENT_ID,
                "grant_type": "refresh_token",
                "refresh_token": token,
                "scope": "x",
            },
            timeout=5,
        )


def simulators(tmp_path: Path) -> Iterator[Callable[..., Sim]]:
    """Start `wattkeeper simulate wattivahti` processes; stop them all afterwards."""
    with simulator_processes("wattivahti", tmp_path) as started:

        def start(*extra: str) -> Sim:
            return Sim(*start_simulator(started, "wattivahti", tmp_path, *extra))

        yield start


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[Callable[..., Sim]]:
    yield from simulators(tmp_path)


@dataclass
class Setup:
    sim: Sim
    config: Path
    token_file: Path
    tmp: Path


def make_setup(
    tmp_path: Path,
    target: Target,
    simulator: Callable[..., Sim],
    *sim_args: str,
    token: bool = True,
    sections: dict[str, dict[str, Any]] | None = None,
    **source: Any,
) -> Setup:
    """A simulator seeded with one refresh token, that token on disk, and an agent file
    (``sections``: keys of other sections, e.g. {"agent": {"failure_threshold": 2}})."""
    first = f"rt-{uuid.uuid4().hex}"
    token_file = tmp_path / "state" / "refresh_token"
    token_file.parent.mkdir(exist_ok=True)
    if token:
        token_file.write_text(first + "\n")
        token_file.chmod(0o600)
    sim = simulator("--initial-refresh-token", first, *sim_args)
    table: dict[str, Any] = {
        "metering_point": MP,
        "token_url": sim.token_url,
        "api_url": sim.base + API_PATH,
        "refresh_token_file": token_file,
        "initial_days": 2,
        "timeout": "5s",
    }
    table.update(source)
    cfg = agent_config(tmp_path, target, "wattivahti", table, **(sections or {}))
    return Setup(sim, cfg, token_file, tmp_path)


def run_once(s: Setup, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_wattkeeper("run", "wattivahti", "-c", s.config, "--once", timeout=timeout)


def points(target: Target, start: datetime, stop: datetime) -> list[dict[str, str]]:
    return target.query(
        f"|> range(start: {start.isoformat()}, stop: {stop.isoformat()}) "
        '|> filter(fn: (r) => r._measurement == "wattivahti") '
        '|> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value") '
        '|> group() |> sort(columns: ["_time"])'
    )


def ts(row: dict[str, str]) -> datetime:
    return datetime.fromisoformat(row["_time"].replace("Z", "+00:00"))


def assert_quarters(rows: list[dict[str, str]], first: datetime, last: datetime) -> None:
    """Every quarter-hour from first to last exactly once, with the meter's true value."""
    times = [ts(r) for r in rows]
    expected = []
    t = first
    while t <= last:
        expected.append(t)
        t += Q
    missing = sorted(set(expected) - set(times))[:5]
    extra = sorted(set(times) - set(expected))[:5]
    assert times == expected, (
        f"{len(times)} points, expected {len(expected)}; missing {missing} extra {extra}"
    )
    for r in rows:
        assert r["resolution"] == "PT15MIN", r
        assert r["metering_point"] == MP
        assert float(r["consumption_wh"]) == pytest.approx(quarter_kwh(1, ts(r)) * 1000), r


def helsinki_midnight_days_ago(days: int, now: datetime) -> datetime:
    return local_midnight((now - timedelta(days=days)).astimezone(HELSINKI).date())


# ---------------------------------------------------------------------------------------


def test_first_sync_then_incremental_overlap_adds_no_duplicate(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    s = make_setup(tmp_path, target, simulator, "--quarter-hour-since", "2020-01-01")
    started = datetime.now(UTC)
    r = run_once(s)
    assert r.returncode == 0, r.stderr
    first = helsinki_midnight_days_ago(2, started)
    rows = points(target, first - timedelta(days=1), started + timedelta(hours=1))
    assert rows, r.stderr
    last = ts(rows[-1])
    assert last >= started - 2 * Q
    assert_quarters(rows, first, last)
    n1 = len(rows)
    assert n1 >= 2 * 96

    before = len(s.sim.stats()["meterdata_requests"])
    r = run_once(s)
    assert r.returncode == 0, r.stderr
    reqs = s.sim.stats()["meterdata_requests"][before:]
    # The second run starts at local midnight of the day of (newest - 2h), not 2 days back.
    day = (last - timedelta(hours=2)).astimezone(HELSINKI).date()
    assert datetime.fromisoformat(reqs[0]["start"]) == local_midnight(day)
    assert [q["resultStep"] for q in reqs] == ["PT15MIN"] * len(reqs)
    rows2 = points(target, first - timedelta(days=1), datetime.now(UTC) + timedelta(hours=1))
    assert_quarters(rows2, first, ts(rows2[-1]))
    # Only quarter-hours that passed between the runs may be new; the overlap rewrote
    # the same instants.
    assert len(rows2) - n1 <= 1 + (datetime.now(UTC) - started) // Q
    assert target.count("wattivahti", "consumption_wh") == len(rows2)


def test_lost_state_resumes_from_newest_point_in_bucket(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    s = make_setup(tmp_path, target, simulator, "--quarter-hour-since", "2020-01-01")
    assert run_once(s).returncode == 0
    # A new buffer file (disk replaced, state lost): the bucket says where we were.
    for p in tmp_path.glob("wattivahti-buffer.sqlite*"):
        p.unlink()
    # Make the bucket's newest point older, so a fresh "2 days back" would be wrong.
    newest = datetime.fromtimestamp((int(time.time()) - 5 * 86400) // 900 * 900, UTC)
    target.server.write(
        target.bucket,
        [f"wattivahti,metering_point={MP} consumption_wh=1.0 {int(newest.timestamp()) * 10**9}"],
    )
    target.server.api(
        "POST",
        "/api/v2/delete",
        params={"org": target.server.org, "bucket": target.bucket},
        json={
            "start": (newest + timedelta(seconds=1)).isoformat().replace("+00:00", "Z"),
            "stop": (datetime.now(UTC) + timedelta(days=1)).isoformat().replace("+00:00", "Z"),
            "predicate": '_measurement="wattivahti"',
        },
    )
    before = len(s.sim.stats()["meterdata_requests"])
    r = run_once(s)
    assert r.returncode == 0, r.stderr
    assert "newest point in the bucket" in r.stderr
    reqs = s.sim.stats()["meterdata_requests"][before:]
    day = (newest - timedelta(hours=2)).astimezone(HELSINKI).date()
    assert datetime.fromisoformat(reqs[0]["start"]) == local_midnight(day)
    # The planted point was rewritten with the true value, and everything after it is there.
    rows = points(target, newest, datetime.now(UTC) + timedelta(hours=1))
    assert_quarters(rows, newest, ts(rows[-1]))


@pytest.mark.parametrize(
    ("day", "n", "first_utc", "last_utc"),
    [
        ("2024-10-27", 100, "2024-10-26T21:00:00+00:00", "2024-10-27T21:45:00+00:00"),
        ("2024-03-31", 92, "2024-03-30T22:00:00+00:00", "2024-03-31T20:45:00+00:00"),
    ],
)
def test_dst_day_lands_every_quarter_hour_at_its_utc_instant(
    tmp_path: Path,
    target: Target,
    simulator: Callable[..., Sim],
    day: str,
    n: int,
    first_utc: str,
    last_utc: str,
) -> None:
    s = make_setup(tmp_path, target, simulator, "--quarter-hour-since", "2024-01-01")
    r = run_wattkeeper("sync", "wattivahti", "-c", s.config, "--start-date", day, "--end-date", day)
    assert r.returncode == 0, r.stderr
    rows = points(target, datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC))
    assert len(rows) == n
    assert_quarters(rows, datetime.fromisoformat(first_utc), datetime.fromisoformat(last_utc))
    assert "rejected" not in r.stderr


def test_pt1h_fallback_for_old_ranges(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    s = make_setup(tmp_path, target, simulator, "--quarter-hour-since", "2024-06-01")
    # One request window straddles the switch: May 30-31 hourly, June 1 quarter-hourly.
    r = run_wattkeeper(
        "sync",
        "wattivahti",
        "-c",
        s.config,
        "--start-date",
        "2024-05-30",
        "--end-date",
        "2024-06-01",
    )
    assert r.returncode == 0, r.stderr
    rows = points(target, datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 7, 1, tzinfo=UTC))
    hourly = [x for x in rows if x["resolution"] == "PT1H"]
    quarter = [x for x in rows if x["resolution"] == "PT15MIN"]
    assert len(hourly) == 48 and len(quarter) == 96
    switch = datetime(2024, 5, 31, 21, tzinfo=UTC)  # 2024-06-01 00:00 EEST
    assert [ts(x) for x in hourly] == [switch - timedelta(hours=48 - i) for i in range(48)]
    for x in hourly:
        assert float(x["consumption_wh"]) == pytest.approx(hour_kwh(1, ts(x)) * 1000)
    assert_quarters(quarter, switch, switch + 95 * Q)


def test_sync_of_a_long_range_is_chunked_and_rerun_is_a_no_op(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    s = make_setup(tmp_path, target, simulator, "--quarter-hour-since", "2024-01-01", chunk="3d")
    r = run_wattkeeper(
        "sync",
        "wattivahti",
        "-c",
        s.config,
        "--start-date",
        "2024-02-01T06:00",
        "--end-date",
        "2024-02-10T06:00",
    )
    assert r.returncode == 0, r.stderr
    reqs = s.sim.stats()["meterdata_requests"]
    assert len(reqs) == 4  # 10 local days in 3-day windows
    rows = points(target, datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC))
    # Date-times bound the range exactly (06:00 EET = 04:00Z), end exclusive.
    assert_quarters(
        rows, datetime(2024, 2, 1, 4, tzinfo=UTC), datetime(2024, 2, 10, 3, 45, tzinfo=UTC)
    )
    r = run_wattkeeper(
        "sync",
        "wattivahti",
        "-c",
        s.config,
        "--start-date",
        "2024-02-01T06:00",
        "--end-date",
        "2024-02-10T06:00",
    )
    assert r.returncode == 0 and "already synced" in r.stderr
    assert len(s.sim.stats()["meterdata_requests"]) == 4


def test_sigkill_during_sync_then_clean_resume(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    s = make_setup(
        tmp_path,
        target,
        simulator,
        "--quarter-hour-since",
        "2020-01-01",
        "--delay",
        "250ms",
        initial_days=30,
        chunk="1d",
    )
    started = datetime.now(UTC)
    proc = spawn_wattkeeper("run", "wattivahti", "-c", s.config, "--once", log=tmp_path / "a.log")
    wait_for(lambda: len(s.sim.stats()["meterdata_requests"]) >= 12, 60, "a dozen chunks")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    first_run = s.sim.stats()["meterdata_requests"]
    r = run_once(s)
    assert r.returncode == 0, r.stderr
    second_run = s.sim.stats()["meterdata_requests"][len(first_run) :]
    # Resumed at the first uncommitted chunk (the cursor's day), not from 30 days back.
    assert len(second_run) <= 31 - 10
    assert datetime.fromisoformat(second_run[0]["start"]) > datetime.fromisoformat(
        first_run[0]["start"]
    )
    first = helsinki_midnight_days_ago(30, started)
    rows = points(target, first - timedelta(days=1), datetime.now(UTC) + timedelta(hours=1))
    assert_quarters(rows, first, ts(rows[-1]))
    assert ts(rows[-1]) >= started - 2 * Q


def test_token_rotation_is_persisted_and_the_old_token_refused(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    s = make_setup(tmp_path, target, simulator, initial_days=1)
    t0 = s.token_file.read_text().strip()
    assert run_once(s).returncode == 0
    t1 = s.token_file.read_text().strip()
    assert t1 and t1 != t0
    assert stat.S_IMODE(s.token_file.stat().st_mode) == 0o600
    assert run_once(s).returncode == 0
    t2 = s.token_file.read_text().strip()
    assert t2 not in (t0, t1)
    for old in (t0, t1):
        resp = s.sim.refresh(old)
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"
    st = s.sim.stats()
    assert st["refresh_tokens_issued"] == 2 and st["valid_refresh_tokens"] == 1
    assert sorted(p.name for p in s.token_file.parent.iterdir()) == ["refresh_token"]
    # The tokens never reach the log.
    r = run_once(s)
    t3 = s.token_file.read_text().strip()
    assert t2 not in r.stderr and t3 not in r.stderr


def test_simulator_with_state_keeps_its_grants_across_a_restart(
    tmp_path: Path, simulator: Callable[..., Sim]
) -> None:
    """The demo's portal restarts with its container while the agent keeps its rotated
    token: with --state the simulator remembers it (and that the first one is spent)."""
    state = tmp_path / "portal-tokens.json"
    args = ("--initial-refresh-token", "rt-initial", "--state", str(state))
    first = simulator(*args)
    t1 = first.refresh("rt-initial").json()["refresh_token"]
    first.proc.send_signal(signal.SIGTERM)
    assert first.proc.wait(10) == 0
    assert "rt-initial" in state.read_text() and stat.S_IMODE(state.stat().st_mode) == 0o600
    again = simulator(*args)
    spent = again.refresh("rt-initial")
    assert spent.status_code == 400 and "AADB2C90129" in spent.json()["error_description"]
    answer = again.refresh(t1)
    assert answer.status_code == 200, answer.text
    assert again.refresh(t1).status_code == 400  # rotation goes on as before


def test_missing_expired_or_spent_token_exits_78_naming_the_file(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    s = make_setup(tmp_path, target, simulator, "--refresh-token-lifetime", "1s", token=False)
    r = run_once(s)
    assert r.returncode == 78
    assert str(s.token_file) in r.stderr and "wattkeeper login wattivahti -c" in r.stderr
    assert "Traceback" not in r.stderr

    s.token_file.write_text("rt-unknown\n")
    s.token_file.chmod(0o644)
    r = run_once(s)
    assert r.returncode == 78 and "chmod 600" in r.stderr

    s.token_file.chmod(0o600)
    r = run_once(s)  # never issued (or already used): revoked
    assert r.returncode == 78, r.stderr
    assert "invalid_grant" in r.stderr and str(s.token_file) in r.stderr

    (tmp_path / "b").mkdir()
    s2 = make_setup(tmp_path / "b", target, simulator, "--refresh-token-lifetime", "1s")
    time.sleep(1.5)
    r = run_once(s2)
    assert r.returncode == 78, r.stderr
    assert "AADB2C90080" in r.stderr and "expired" in r.stderr
    assert str(s2.token_file) in r.stderr and "login" in r.stderr
    assert target.count("wattivahti", "consumption_wh") == 0


def test_login_pkce_flow_stores_a_working_token(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    s = make_setup(tmp_path, target, simulator, token=False, initial_days=1)
    proc = subprocess.Popen(
        [*wattkeeper_cmd(), "wattivahti", "login", "-c", str(s.config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    url = ""
    while not url:
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        if "/authorize?" in line:
            url = line.strip()
    assert "code_challenge_method=S256" in url
    # The "browser": the simulated B2C signs in and redirects with the code.
    resp = requests.get(url, allow_redirects=False, timeout=5)
    assert resp.status_code == 302
    out, err = proc.communicate(resp.headers["Location"] + "\n", timeout=60)
    assert proc.returncode == 0, err
    assert stat.S_IMODE(s.token_file.stat().st_mode) == 0o600
    assert "Stored the refresh token" in out
    r = run_once(s)
    assert r.returncode == 0, r.stderr
    assert target.count("wattivahti", "consumption_wh") > 0


def test_production_lands_in_production_wh_next_to_consumption(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    s = make_setup(
        tmp_path, target, simulator, "--quarter-hour-since", "2024-06-02", production=True
    )
    r = run_wattkeeper(
        "sync",
        "wattivahti",
        "-c",
        s.config,
        "--start-date",
        "2024-06-01",
        "--end-date",
        "2024-06-02",
    )
    assert r.returncode == 0, r.stderr
    rows = points(target, datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 7, 1, tzinfo=UTC))
    assert len(rows) == 24 + 96
    for x in rows:
        t = ts(x)
        truth = hour_kwh if x["resolution"] == "PT1H" else quarter_kwh
        assert float(x["consumption_wh"]) == pytest.approx(truth(1, t) * 1000)
        assert float(x["production_wh"]) == pytest.approx(truth(6, t) * 1000)
    kinds = {q["measurementType"] for q in s.sim.stats()["meterdata_requests"]}
    assert kinds == {"1", "6"}


def test_check_reaches_the_portal_and_rotates_the_token(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    s = make_setup(tmp_path, target, simulator)
    t0 = s.token_file.read_text()
    r = run_wattkeeper("check", "-c", s.config)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "OK   wattivahti" in r.stdout and f"metering point {MP}" in r.stdout
    assert s.token_file.read_text() != t0
    assert s.sim.refresh(t0.strip()).status_code == 400
