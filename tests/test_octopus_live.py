"""Octopus as the live Kraken service answers (issue 13, items 1-6), through the real agent.

Each test turns on the simulator switch that reproduces one behaviour of the live service
(its source is named beside the switch in wattkeeper/simulate/octopus) and runs
`wattkeeper run octopus` against it and a real InfluxDB. The truth is what the simulator
served (GET /_served): every complete reading must land with exactly the served value.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import PLUGINS, Target, agent_config, wattkeeper_cmd
from support.agentproc import buffer_state, wait_for
from test_octopus import (
    DEVICE,
    FIELDS,
    Sim,
    calls,
    make_setup,
    recovered,
    rows,
    run_daemon,
    run_once,
    simulator,
    ts,
)

from wattkeeper.simulate.octopus import household

__all__ = ["simulator"]  # the fixture, shared with test_octopus


def read_at(row: dict[str, Any]) -> int:
    return int(datetime.fromisoformat(row["readAt"]).timestamp())


def assert_served_landed(sim: Sim, target: Target) -> list[dict[str, Any]]:
    """Every complete reading served lands once, at its readAt, with exactly the served
    value of every field (zeros included); nothing else lands. Returns the served rows."""
    served = [r for r in sim.served() if not r["partial"] and not r["fault"]]
    keys = [(r["deviceId"], read_at(r)) for r in served]
    assert len(keys) == len(set(keys)), "a reading was served twice"
    landed = {(r["device_id"], ts(r)): r for r in rows(target)}
    assert len(landed) == len(rows(target))
    missing = sorted(set(keys) - set(landed))
    extra = sorted(set(landed) - set(keys))
    assert not missing and not extra, f"missing {missing[:3]}, not served {extra[:3]}"
    for r in served:
        got = landed[(r["deviceId"], read_at(r))]
        for name, api in FIELDS.items():
            assert float(got[name]) == float(r[api]), (name, api, r, got)
    return served


# -- 1. str(Decimal) forms, and the truth test ------------------------------------------------


def test_real_value_forms_zeros_land_as_zero_and_nothing_is_rejected(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    """Kraken writes a zero consumptionDelta as "0E+1" and the demand as "624.0"."""
    sim = simulator()
    s = make_setup(tmp_path, target, sim, initial_backfill="3m")
    r = run_once(s)
    assert r.returncode == 0, r.stderr
    assert "not numbers" not in r.stderr
    served = assert_served_landed(sim, target)
    zeros = [x for x in served if x["consumptionDelta"] == "0E+1"]
    assert zeros and all(x["demand"].endswith(".0") for x in served)
    got = {ts(x): x for x in rows(target)}
    for x in zeros:
        point = got[read_at(x)]
        assert float(point["consumption_delta_wh"]) == 0.0
        assert float(point["cost_delta_pence"]) == 0.0
    errors = target.query(
        '|> range(start: -1h) |> filter(fn: (r) => r._measurement == "wattkeeper_agent" '
        'and r._field == "poll_errors") |> last()'
    )
    assert float(errors[0]["_value"]) == 0.0


def test_truth_every_served_reading_lands_once_with_its_exact_value(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    """The agent as systemd runs it, several polls, the exponent forms of str(Decimal):
    "4E+4" (and "2.374256E+7" where a value ends in zeros), "0E+1", a tiny "1E-7"."""
    sim = simulator("--decimals", "exponent")
    s = make_setup(tmp_path, target, sim, calls_per_hour=30, budget_period="30s")
    log = run_daemon(s, 12)
    assert "not numbers" not in log and "poll failed" not in log, log
    served = assert_served_landed(sim, target)
    polls = [t for t in sim.stats()["telemetry"] if t["rows"]]
    assert len(polls) >= 2
    forms = {x[f] for x in served for f in FIELDS.values()}
    assert "4E+4" in forms and "0E+1" in forms and "1E-7" in forms
    print(f"\ntruth: {len(served)} readings served in {len(polls)} polls, all landed once")


# -- 2. a Home Mini without TEN_SECONDS; HOURLY ------------------------------------------------


def test_empty_ten_seconds_window_is_asked_one_grouping_coarser_said_once(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    sim = simulator("--mini", "no-ten-seconds")
    s = make_setup(
        tmp_path, target, sim, initial_backfill="4m", settle="5s",
        calls_per_hour=30, budget_period="30s",
    )  # fmt: skip
    log = run_daemon(s, 8)
    said = [x for x in log.splitlines() if "the Home Mini sent no TEN_SECONDS readings" in x]
    assert len(said) == 1 and "asking for ONE_MINUTE from now on" in said[0], log
    served = assert_served_landed(sim, target)
    assert {x["grouping"] for x in served} == {"ONE_MINUTE"} and len(served) >= 3
    got = rows(target)
    assert all(ts(x) % 60 == 0 for x in got)
    for x in got:
        assert float(x["demand_w"]) == float(
            household.reading("plain", ts(x), "ONE_MINUTE")["demand"]
        )
    # Later polls ask for ONE_MINUTE straight away.
    tele = sim.stats()["telemetry"]
    first = next(i for i, t in enumerate(tele) if t["grouping"] == "ONE_MINUTE")
    assert {t["grouping"] for t in tele[first + 1 :]} <= {
        "ONE_MINUTE", "FIVE_MINUTES", "HALF_HOURLY", "HOURLY",
    }  # fmt: skip

    # HOURLY is a grouping of its own.
    (tmp_path / "h").mkdir()
    h = make_setup(
        tmp_path / "h", target, sim, grouping="HOURLY", initial_backfill="3h",
        backfill_window="3h",
    )  # fmt: skip
    before = len(sim.stats()["telemetry"])
    r = run_once(h)
    assert r.returncode == 0, r.stderr
    hourly = [x for x in rows(target) if ts(x) % 3600 == 0 and ts(x) < sim.now() - 3600]
    assert [t["grouping"] for t in sim.stats()["telemetry"][before:]] == ["HOURLY"]
    assert len(hourly) >= 2
    for x in hourly[-2:]:
        truth = household.reading("plain", ts(x), "HOURLY")
        assert float(x["consumption_delta_wh"]) == float(truth["consumptionDelta"])


# -- 3. the group still filling ---------------------------------------------------------------


def test_partial_current_group_is_never_stored_and_lands_complete_later(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    sim = simulator("--partial-groups")
    now = sim.now()
    sim.advance((now // 60 + 1) * 60 + 30 - now)  # the server's clock: a minute and 30 s
    s = make_setup(tmp_path, target, sim, grouping="ONE_MINUTE", initial_backfill="4m")
    r = run_once(s)
    assert r.returncode == 0, r.stderr
    filling = [x for x in sim.served() if x["partial"]]
    assert filling, sim.stats()["telemetry"]
    t = read_at(filling[-1])
    assert t not in {ts(x) for x in rows(target)}
    cursor = buffer_state(s.buffer, f"octopus.{DEVICE}.next_start")
    assert isinstance(cursor, float) and cursor <= t
    assert_served_landed(sim, target)

    sim.advance(60)  # the minute is complete now
    r = run_once(s)
    assert r.returncode == 0, r.stderr
    full = {ts(x): x for x in rows(target)}[t]
    truth = household.reading("plain", t, "ONE_MINUTE")
    assert float(full["consumption_delta_wh"]) == float(truth["consumptionDelta"])
    assert float(full["consumption_delta_wh"]) > float(filling[-1]["consumptionDelta"])
    assert_served_landed(sim, target)


# -- 4. a replaced meter, a meter without a Home Mini -----------------------------------------


def test_replaced_meter_is_found_again_once_and_no_home_mini_stops_with_advice(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    sim = simulator()
    s = make_setup(tmp_path, target, sim)
    assert run_once(s).returncode == 0
    before = rows(target)
    new = sim.swap(DEVICE)
    sim.advance(60)  # for the API, a minute passes with the new meter
    r = run_once(s)
    assert r.returncode == 0, r.stderr
    assert f"device {DEVICE} is unknown to Octopus (KT-GB-4050" in r.stderr
    assert f"continuing with the account's device {new}" in r.stderr
    assert len(calls(sim, "account")) == 2
    after = [x for x in rows(target) if x["device_id"] == new]
    # The new device continues where the old one stopped: no gap, nothing twice.
    assert ts(after[0]) == ts(before[-1]) + 10
    assert_served_landed(sim, target)
    r = run_once(s)  # the new device is remembered
    assert r.returncode == 0 and len(calls(sim, "account")) == 2, r.stderr

    # A configured device that was replaced: the user must change the file.
    (tmp_path / "b").mkdir()
    pinned = make_setup(tmp_path / "b", target, sim, device_id=DEVICE)
    r = run_once(pinned)
    assert r.returncode == 78, r.stderr
    line = next(x for x in r.stderr.splitlines() if "KT-GB-4050" in x)
    assert "octopus.device_id" in line and "remove octopus.device_id" in line

    # No Home Mini on the meter: exit 78 at once, with what to do, no retry.
    unpaired = simulator("--mini", "unpaired")
    (tmp_path / "c").mkdir()
    c = make_setup(tmp_path / "c", target, unpaired)
    r = run_once(c)
    assert r.returncode == 78, r.stderr
    line = next(x for x in r.stderr.splitlines() if "KT-GB-4056" in x)
    assert "octopus.account_number" in line and str(c.config) in line
    assert "Pair it in the Octopus app" in line and "Traceback" not in r.stderr
    assert len(calls(unpaired, "telemetry")) == 1


# -- 5. KT-CT-1199 -----------------------------------------------------------------------------


def test_kt_ct_1199_backs_off_like_kt_gb_4042(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    sim = simulator(
        "--rate-limit-code", "KT-CT-1199", "--rate-limit", "20", "--rate-period", "20s"
    )  # fmt: skip
    s = make_setup(tmp_path, target, sim, calls_per_hour=30, budget_period="30s")
    sim.app_calls(25)  # the app used the whole allowance
    r = run_once(s)
    assert r.returncode == 75, r.stderr
    assert "KT-CT-1199 Too many requests.; backing off" in r.stderr

    # The daemon waits twice its poll interval before it calls again, as for KT-GB-4042
    # (and longer each time: the same code, tested with KT-GB-4042 in test_octopus).
    other = simulator()
    (tmp_path / "d").mkdir()
    d = make_setup(tmp_path / "d", target, other, calls_per_hour=30, budget_period="30s")

    def limited() -> None:
        wait_for(lambda: bool(calls(other, "telemetry")), 10, "a poll")
        other.fault("KT-CT-1199", "telemetry")
        wait_for(lambda: recovered(other, "KT-CT-1199"), 40, "a poll after the backoff")

    log = run_daemon(d, 1, limited)
    waits = [x.rsplit("backing off ", 1)[1] for x in log.splitlines() if "KT-CT-1199" in x]
    assert waits == ["2s"], log
    made = [c for c in calls(other) if c["op"] == "telemetry"]
    at = next(i for i, c in enumerate(made) if c["outcome"] == "KT-CT-1199")
    assert made[at + 1]["wall"] - made[at]["wall"] >= 2 * 30 / 27 - 0.1
    assert made[-1]["outcome"] == "ok"
    assert_served_landed(other, target)


# -- 6. a frozen Home Mini -----------------------------------------------------------------------


class Hook(http.server.BaseHTTPRequestHandler):
    received: list[str]

    def do_POST(self) -> None:
        self.received.append(
            json.loads(self.rfile.read(int(self.headers["Content-Length"])))["text"]
        )
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def slack() -> Iterator[tuple[str, list[str]]]:
    """A local Slack incoming webhook: its URL and the texts it received."""
    received: list[str] = []
    handler = type("H", (Hook,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()


def test_frozen_home_mini_alerts_reports_stale_and_alerts_again_when_it_resumes(
    tmp_path: Path,
    target: Target,
    simulator: Callable[..., Sim],
    slack: tuple[str, list[str]],
) -> None:
    sim = simulator()
    url, received = slack
    hook_file = tmp_path / "slack.url"
    hook_file.write_text(url + "\n")
    hook_file.chmod(0o600)
    key = tmp_path / "octopus.apikey"
    key.write_text("sk_live_simulated0000000000000000\n")
    key.chmod(0o600)
    cfg = agent_config(
        tmp_path, target, "octopus",
        {"account_number": "A-DEMO0001", "api_key_file": key, "api_url": sim.url,
         "timeout": "3s", "initial_backfill": "1m", "calls_per_hour": 30,
         "budget_period": "30s", "settle": "5s"},
        agent={"stale_after": "15s", "metrics_interval": "1s"},
        alerts={"slack_webhook_url_file": hook_file, "min_interval": "1s"},
    )  # fmt: skip
    notify = tmp_path / "notify.socket"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.settimeout(0.5)
    statuses: list[str] = []
    done = threading.Event()

    def listen() -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                statuses.extend(sock.recv(4096).decode().splitlines())

    threading.Thread(target=listen, daemon=True).start()
    log = tmp_path / "agent.log"
    proc = subprocess.Popen(
        [*wattkeeper_cmd(), "run", "octopus", "-c", str(cfg)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(PLUGINS), "NOTIFY_SOCKET": str(notify)},
    )
    stale = "no new readings"
    try:
        wait_for(lambda: len(rows(target)) >= 3, 30, "the first readings")
        assert not any(stale in x for x in received)
        sim.mini("frozen")
        wait_for(lambda: any(stale in x for x in received), 40, "the stale alert")
        alert = next(x for x in received if stale in x)
        newest = max(ts(x) for x in rows(target))
        since = datetime.fromtimestamp(newest + 10, UTC).strftime("%H:%M UTC")
        assert f"No readings from the Home Mini since {since}" in alert, (alert, since)
        wait_for(
            lambda: any("no readings from the Home Mini since" in x for x in statuses),
            10, "STATUS= saying so",
        )  # fmt: skip
        wait_for(lambda: stale_seconds(target) >= 15, 20, "stale_seconds in wattkeeper_agent")
        sim.mini("ok")
        sim.advance(10)  # for the API, the next reading is complete at once
        wait_for(lambda: any("readings again" in x for x in received), 40, "the resumed alert")
        wait_for(lambda: 0 <= stale_seconds(target) < 15, 20, "stale_seconds back to normal")
    finally:
        done.set()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
        sock.close()
    text = log.read_text()
    assert rc == 0, text
    assert sum("no readings from the Home Mini since" in x for x in text.splitlines()) == 1, text
    resumed = next(x for x in received if "readings again" in x)
    assert "Readings from the Home Mini again" in resumed and f"none had come in since {since}" in (
        resumed
    )
    after = [x for x in rows(target) if ts(x) > newest]
    assert after, "readings after the freeze ended"
    off = sim.stats()["options"]["offline"]
    assert off and all(not (a <= ts(x) < b) for x in rows(target) for a, b in off)


def stale_seconds(target: Target) -> float:
    got = target.query(
        '|> range(start: -1h) |> filter(fn: (r) => r._measurement == "wattkeeper_agent" '
        'and r._field == "stale_seconds") |> last()'
    )
    return float(got[0]["_value"]) if got else -1.0
