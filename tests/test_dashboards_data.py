"""The dashboards' queries against data the real agents wrote from the simulators.

The four agents write two to three days around the night Europe/Helsinki leaves summer
time (Sunday 25 October 2026, a 25-hour day) into an InfluxDB of this module's own, with
the production bucket names (support/history.py says how each agent gets its past
quickly). Every panel's query then runs as Grafana sends it (support/grafana.py), with a
read-only token of the source buckets, for a short range (raw) and a long one (the 1h
tier), and the daily energy, cost and COP are held to sums computed here from the raw
points.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import ROOT
from support.grafana import interpolate, panel_range
from support.history import FAKETIME_LIB, HEATPUMP_CHANNEL, Landed, land_history
from support.influxd import InfluxServer
from support.simproc import simulator_processes

sys.path.insert(0, str(ROOT / "dashboards"))

from wkdash import build_boards

TZ = "Europe/Helsinki"
HEL = ZoneInfo(TZ)
DAY = date(2026, 10, 25)  # summer time ends at 04:00 local: 25 hours
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
    "heatpump_meter": HEATPUMP_CHANNEL,
}


@pytest.fixture(scope="module")
def stack(influxd_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Landed]:
    tmp = tmp_path_factory.mktemp("dashboards")
    server = InfluxServer(influxd_binary, tmp / "influxd")
    server.start()
    try:
        with simulator_processes("all", tmp) as started:
            yield land_history(server, tmp, started)
    finally:
        server.stop()


# -- running a panel's query as Grafana does ---------------------------------------------


def _dashboards() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((ROOT / "dashboards").glob("*.json"))}


def _targets(board: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            yield panel, target


def _run(
    stack: Landed,
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


def test_every_panel_query_returns_what_its_panel_draws(stack: Landed) -> None:
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


def _raw(stack: Landed, bucket: str, predicate: str) -> list[tuple[datetime, str, float]]:
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


def test_daily_energy_and_cost_equal_the_raw_readings_of_the_local_day(stack: Landed) -> None:
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


def _heat_increase(stack: Landed, d: date) -> float | None:
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


def test_cop_is_heat_increase_over_electricity_and_no_value_without_both(stack: Landed) -> None:
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


def test_short_recent_ranges_read_raw_and_long_or_old_ones_the_1h_tier(stack: Landed) -> None:
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
