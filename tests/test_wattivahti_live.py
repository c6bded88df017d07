"""WattiVahti as the live portal answers (issue 13, items 7-11), and the truth test.

Each test runs the real CLI against `wattkeeper simulate wattivahti` with one of the
portal's real behaviours switched on, and a real InfluxDB. The truth test compares every
entry the simulator served (its --truth log) with what landed in the bucket.
"""

from __future__ import annotations

import http.server
import json
import stat
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import Target, run_wattkeeper
from test_wattivahti import (
    API_PATH,
    MP,
    Q,
    Setup,
    Sim,
    assert_quarters,
    make_setup,
    points,
    run_once,
    simulators,
    ts,
)

from wattkeeper.simulate.wattivahti.data import hour_kwh, local_midnight, quarter_kwh


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[Callable[..., Sim]]:
    yield from simulators(tmp_path)


class Hook(http.server.ThreadingHTTPServer):
    """A Slack webhook stand-in that keeps the texts it received."""

    def __init__(self) -> None:
        received: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append(json.loads(body or b"{}").get("text", ""))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.received = received
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.shutdown()


def setup(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim], *sim_args: str, **kw: Any
) -> Setup:
    """make_setup with one day back by default."""
    return make_setup(tmp_path, target, simulator, *sim_args, **{"initial_days": 1, **kw})


def sync(s: Setup, first: str, last: str) -> Any:
    return run_wattkeeper(
        "sync", "wattivahti", "-c", s.config, "--start-date", first, "--end-date", last
    )


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# -- item 7: B2C's transient invalid_grant ----------------------------------------------


def test_transient_invalid_grant_is_retried_then_alerted_only_after_the_threshold(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim], hook: Hook
) -> None:
    s = setup(
        tmp_path,
        target,
        simulator,
        "--quarter-hour-since",
        "2020-01-01",
        sections={
            "agent": {"failure_threshold": 2},
            "alerts": {"slack_webhook_url": hook.url, "min_interval": "1s"},
        },
    )
    # One AADB2C90085 (invalid_grant, as B2C sends it): retried in the same run.
    s.sim.fault("b2c_transient")
    t0 = s.token_file.read_text()
    r = run_once(s)
    assert r.returncode == 0, r.stderr
    assert "AADB2C90085" in r.stderr and "transient, attempt 1 of 3" in r.stderr
    assert s.token_file.read_text() != t0  # the retry got through and rotated the token
    assert target.count("wattivahti", "consumption_wh") > 0

    # It goes on: each run fails after 3 attempts (exit 75, token kept, no exit 78); the
    # alert comes with the run that reaches failure_threshold, and one when it recovers.
    s.sim.fault("b2c_transient", 6)
    kept = s.token_file.read_text()
    r = run_once(s)
    assert r.returncode == 75, r.stderr
    assert "refused the refresh 3 times" in r.stderr and "poll failed (1 in a row)" in r.stderr
    assert s.token_file.read_text() == kept
    assert not [t for t in hook.received if "polls in a row failed" in t]
    r = run_once(s)
    assert r.returncode == 75, r.stderr
    assert "poll failed (2 in a row)" in r.stderr
    failing = [t for t in hook.received if "2 polls in a row failed" in t]
    assert len(failing) == 1 and "AADB2C90085" in failing[0], hook.received
    r = run_once(s)
    assert r.returncode == 0, r.stderr
    assert any("Polling works again after 2 failures" in t for t in hook.received)
    assert "Traceback" not in r.stderr
    assert s.sim.stats()["faults_served"] == {"b2c_transient": 7}

    # A code that means the token is dead still stops at once (exit 78), naming the file.
    s.token_file.write_text("not-a-b2c-token\n")
    r = run_once(s)
    assert r.returncode == 78, r.stderr
    assert "AADB2C90090" in r.stderr and "is malformed" in r.stderr
    assert str(s.token_file) in r.stderr and "login wattivahti" in r.stderr


# -- item 8: never ask about the future -------------------------------------------------


def test_requests_end_at_now_rounded_up_to_their_resolution(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    # PT1H for yesterday and earlier, quarter-hours from today: both kinds of request.
    since = (datetime.now(UTC) - timedelta(hours=30)).date().isoformat()
    s = setup(tmp_path, target, simulator, "--quarter-hour-since", since, initial_days=3)
    r = run_once(s)
    assert r.returncode == 0, r.stderr
    reqs = s.sim.stats()["meterdata_requests"]
    assert {q["resultStep"] for q in reqs} == {"PT15MIN", "PT1H"}, reqs
    last_stop: dict[str, datetime] = {}
    for q in reqs:
        step = Q if q["resultStep"] == "PT15MIN" else timedelta(hours=1)
        received = utc(q["received"])
        ceiling = datetime.fromtimestamp(
            -(-received.timestamp() // step.total_seconds()) * step.total_seconds(), UTC
        )
        stop = utc(q["stop"])
        assert stop <= ceiling + timedelta(seconds=5), (q, ceiling)
        last_stop[q["resultStep"]] = max(stop, last_stop.get(q["resultStep"], stop))
    # The newest window ends at now, not at the next local midnight.
    for step, stop in last_stop.items():
        assert stop - datetime.now(UTC) < timedelta(hours=1), (step, stop)
    rows = points(target, datetime.now(UTC) - timedelta(days=5), datetime.now(UTC) + Q)
    assert ts(rows[-1]) >= datetime.now(UTC) - 3 * Q


# -- item 9: an error instead of an empty answer for an old period ----------------------


def test_pt15min_error_for_an_old_period_falls_back_to_pt1h(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    s = setup(
        tmp_path,
        target,
        simulator,
        "--quarter-hour-since",
        "2024-06-01",
        "--pt15min-old-error",
        chunk="1d",
    )
    r = sync(s, "2024-05-30", "2024-06-01")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("HTTP 500") == 2 and "falling back to PT1H" in r.stderr
    rows = points(target, datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 7, 1, tzinfo=UTC))
    hourly = [x for x in rows if x["resolution"] == "PT1H"]
    switch = datetime(2024, 5, 31, 21, tzinfo=UTC)  # 2024-06-01 00:00 EEST
    assert [ts(x) for x in hourly] == [switch - timedelta(hours=48 - i) for i in range(48)]
    for x in hourly:
        assert float(x["consumption_wh"]) == pytest.approx(hour_kwh(1, ts(x)) * 1000)
    assert_quarters([x for x in rows if x["resolution"] == "PT15MIN"], switch, switch + 95 * Q)
    # Where quarter-hours are known, an error stays an error (retried, exit 75).
    s.sim.fault("500")
    r = sync(s, "2024-06-02", "2024-06-02")
    assert r.returncode == 75 and "falling back" not in r.stderr, r.stderr


# -- item 10: the spring night's impossible labels --------------------------------------


def portal_answer(s: Setup, day: str, resolution: str) -> dict[str, Any]:
    """meterdata2 as a browser would get it, with a token of the test's own."""
    token = f"rt-{uuid.uuid4().hex}"
    requests.post(s.sim.base + "/_tokens", json={"refresh_token": token}, timeout=5)
    access = s.sim.refresh(token).json()["access_token"]
    start = local_midnight(datetime.fromisoformat(day).date())
    resp = requests.get(
        s.sim.base + API_PATH,
        params={
            "meteringPointCode": MP,
            "measurementType": "1",
            "start": start.isoformat(),
            "stop": (start + timedelta(hours=23)).isoformat(),
            "resultStep": resolution,
        },
        headers={"Authorization": f"Bearer {access}"},
        timeout=10,
    )
    resp.raise_for_status()
    return dict(resp.json()["getconsumptionsresult"]["consumptiondata"])


@pytest.mark.parametrize(
    ("resolution", "since"), [("PT15MIN", "2023-01-01"), ("PT1H", "2024-01-01")]
)
def test_spring_night_labels_land_and_the_day_total_equals_the_portal_sum(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim], resolution: str, since: str
) -> None:
    s = setup(tmp_path, target, simulator, "--quarter-hour-since", since, "--spring-labels")
    day = "2023-03-26"
    portal = portal_answer(s, day, resolution)
    labels = [e["time"][11:16] for e in portal["timeseries"]["values"]["tsv"]]
    assert "03:00" in labels and "06:00" not in labels  # as in the public sample
    r = sync(s, day, day)
    assert r.returncode == 0, r.stderr
    assert "read in winter time" in r.stderr and "rejected" not in r.stderr
    start = datetime(2023, 3, 25, 22, tzinfo=UTC)
    rows = points(target, start, start + timedelta(hours=23))
    step = Q if resolution == "PT15MIN" else timedelta(hours=1)
    assert [ts(x) for x in rows] == [
        start + i * step for i in range(23 * 3600 // int(step.total_seconds()))
    ]
    truth = quarter_kwh if resolution == "PT15MIN" else hour_kwh
    for x in rows:
        assert x["resolution"] == resolution
        assert float(x["consumption_wh"]) == pytest.approx(truth(1, ts(x)) * 1000), x
    total = target.query(
        f"|> range(start: {start.isoformat()}, stop: {(start + timedelta(hours=23)).isoformat()})"
        ' |> filter(fn: (r) => r._measurement == "wattivahti" and r._field == "consumption_wh")'
        " |> group() |> sum()"
    )
    assert float(total[0]["_value"]) == pytest.approx(portal["sum"]["quantity"] * 1000, abs=1e-6)


# -- item 11: what is known about refresh-token reuse -----------------------------------


def test_agent_uses_only_the_newest_token_when_old_ones_stay_valid(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    """Microsoft documents that old refresh tokens are not revoked on use; the agent must
    not rely on either behaviour: it stores each new token atomically and uses only it."""
    s = setup(tmp_path, target, simulator, "--old-refresh-tokens-stay-valid")
    seen = [s.token_file.read_text().strip()]
    for _ in range(2):
        r = run_once(s)
        assert r.returncode == 0, r.stderr
        assert "refresh token rotated; the new one expires in 14 days" in r.stderr
        seen.append(s.token_file.read_text().strip())
        assert stat.S_IMODE(s.token_file.stat().st_mode) == 0o600
    assert len(set(seen)) == 3
    st = s.sim.stats()
    assert st["refresh_tokens_issued"] == 2 and st["refresh_tokens_reused"] == 0
    assert s.sim.refresh(seen[0]).status_code == 200  # the simulator models the docs
    assert sorted(p.name for p in s.token_file.parent.iterdir()) == ["refresh_token"]


# -- the truth test -----------------------------------------------------------------------


def test_every_served_reading_lands_once_with_its_served_value(
    tmp_path: Path, target: Target, simulator: Callable[..., Sim]
) -> None:
    """Hourly days, the autumn and the spring nights (with the portal's spring labels),
    consumption and production (zeros included): every measured entry the simulator
    served is in the bucket at its instant with quantity x 1000 Wh, none missing, none
    extra."""
    truth_file = tmp_path / "served.jsonl"
    s = setup(
        tmp_path,
        target,
        simulator,
        "--quarter-hour-since",
        "2024-10-27",
        "--spring-labels",
        "--truth",
        str(truth_file),
        production=True,
        chunk="1d",
    )
    for first, last in (("2024-10-26", "2024-10-27"), ("2025-03-30", "2025-03-30")):
        r = sync(s, first, last)
        assert r.returncode == 0, r.stderr
        assert "rejected" not in r.stderr
    field = {1: "consumption_wh", 6: "production_wh"}
    served: dict[tuple[datetime, str], tuple[float, str]] = {}
    for line in truth_file.read_text().splitlines():
        e = json.loads(line)
        key = (datetime.fromtimestamp(e["utc"], UTC), field[e["measurement_type"]])
        value = (round(e["quantity"] * 1000, 6), e["resolution"])
        assert served.setdefault(key, value) == value, (key, value)  # served twice: same
    assert any(v == 0 for v, _ in served.values())  # zeros were served
    rows = points(target, datetime(2024, 10, 1, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC))
    landed: dict[tuple[datetime, str], tuple[float, str]] = {}
    for x in rows:
        for name in field.values():
            if name in x and x[name] != "":
                landed[(ts(x), name)] = (float(x[name]), x["resolution"])
    missing = sorted(set(served) - set(landed))[:5]
    extra = sorted(set(landed) - set(served))[:5]
    assert not missing and not extra, (missing, extra)
    wrong = [(k, served[k], landed[k]) for k in served if served[k] != landed[k]]
    assert not wrong, wrong[:5]
    # 24 hours + 100 + 92 quarter-hours, consumption and production each.
    assert len(served) == 2 * (24 + 100 + 92)
    assert target.count("wattivahti", "consumption_wh") == 24 + 100 + 92
