"""Bad input from every source, generated: no crash, no string where a number belongs,
every rejection counted.

Hypothesis feeds the parsers random and mutated answers: Kraken GraphQL telemetry rows,
WattiVahti portal JSON, and Luxtronik frames over a real TCP socket to the production
reader. What comes out must either be refused with the source's own error (which the
runner counts as a failed poll) or be numbers that InfluxDB can store, and nothing may
vanish uncounted: every value offered is a reading or a counted rejection (exactly, for
Kraken rows; for portal entries, only "not measured yet" may pass without a count). A
Luxtronik field is text only where python-luxtronik's datatype is text, so a field never
changes type in InfluxDB.

The counting then goes through the runner: the production Agent over hypothesis-drawn
polls (refusals, unstorable points, failing polls) must report exactly their sum as
poll_errors in its own metrics, and the real WattiVahti agent against the portal
simulator answering with non-numbers must count each one. (Through the agent as well:
Luxtronik's garbled and short answers in test_luxtronik.py, a Kraken value that is not a
number in test_octopus.py.)
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import socket
import sqlite3
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Target
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wattkeeper.config import load_config
from wattkeeper.point import Point
from wattkeeper.runner import Agent
from wattkeeper.source import Batch, SourceContext, SourceError, SourcePlugin

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["84.0000", "-3", "1e3", "NaN", "Infinity", " 1.0", "1,5", "", "0x10"])
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


# -- Octopus: smartMeterTelemetry rows ----------------------------------------------------

octopus = pytest.importorskip("wattkeeper.sources.octopus.parsing")

# readAt values the API could send, each with whether it names an instant (has an offset).
GOOD_TIMES = st.sampled_from(
    ["2024-05-01T12:00:00+00:00", "2024-05-01T13:00:10+01:00", "2024-05-01T12:00:00Z"]
) | st.datetimes(timezones=st.just(UTC)).map(lambda t: t.isoformat())
BAD_TIMES = (
    st.sampled_from(["2024-05-01T12:00:00", "yesterday", "", "2024-13-01T00:00:00Z"])
    | JSON_SCALARS.filter(lambda v: not isinstance(v, str))
    | st.text(max_size=25).filter(lambda t: not _is_aware_iso(t))
)


def _is_aware_iso(text: str) -> bool:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).tzinfo is not None
    except ValueError:
        return False


def _is_decimal(value: Any) -> bool:
    """The API's number grammar (what str(Decimal) writes, finite), spelled out
    independently of the parser."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return math.isfinite(float(value))
    if not isinstance(value, str) or not value.isascii():
        return False
    body = value[1:] if value.startswith("-") else value
    mantissa, e, exponent = body.partition("E")
    if e and not (exponent[:1] in ("+", "-") and exponent[1:].isdigit()):
        return False
    whole, dot, frac = mantissa.partition(".")
    ok_whole = whole == "0" or (whole.isdigit() and not whole.startswith("0"))
    return ok_whole and (not dot or frac.isdigit()) and math.isfinite(float(value))


# The forms str(Decimal) writes: "624.0", "0E+1", "1E-7", "1.25E+6".
DECIMAL_TEXT = r"-?(0|[1-9][0-9]{0,5})(\.[0-9]{1,4})?(E[+-][0-9]{1,3})?"


@st.composite
def telemetry_row(draw: st.DrawFn) -> tuple[dict[str, Any], bool]:
    """A row and whether its readAt is a usable instant."""
    good = draw(st.booleans())
    row: dict[str, Any] = {"readAt": draw(GOOD_TIMES if good else BAD_TIMES)}
    for name in octopus.NUMERIC_FIELDS:
        if draw(st.integers(0, 19)) == 0:
            continue  # a missing key: the answer was truncated or changed
        row[name] = draw(st.from_regex(DECIMAL_TEXT, fullmatch=True) | JSON_VALUES)
    return row, good


@settings(max_examples=300, deadline=None)
@given(st.lists(telemetry_row(), max_size=8) | st.none() | JSON_VALUES)
def test_octopus_telemetry_parser(drawn: Any) -> None:
    """Every value offered is taken as a finite float or counted as rejected; a row with a
    bad readAt is one rejection; a row lacking a key refuses the whole answer."""
    is_rows = isinstance(drawn, list) and all(
        isinstance(x, tuple) and len(x) == 2 and isinstance(x[1], bool) for x in drawn
    )
    rows = [r for r, _ in drawn] if is_rows else drawn
    try:
        parsed = octopus.parse_telemetry(rows)
    except octopus.MalformedAnswer:
        assert not is_rows or any(set(octopus.TELEMETRY_FIELDS) - set(r) for r, _ in drawn)
        return  # refused whole: the runner counts a failed poll, the cursor stays
    for reading in parsed.readings:
        assert reading.read_at.tzinfo is not None
        for value in reading.values.values():
            assert type(value) is float and math.isfinite(value)
    assert [r.read_at for r in parsed.readings] == sorted(r.read_at for r in parsed.readings)
    if not is_rows:
        assert drawn in (None, []) and not parsed.readings and not parsed.rejected
        return
    good_rows = [r for r, good in drawn if good]
    assert len(parsed.readings) == len(good_rows)
    time_refusals = [x for x in parsed.rejected if x[1] == "readAt"]
    assert len(time_refusals) == len(drawn) - len(good_rows)
    offered = [r[f] for r in good_rows for f in octopus.NUMERIC_FIELDS if r[f] is not None]
    taken = sum(len(r.values) for r in parsed.readings)
    assert taken == sum(1 for v in offered if _is_decimal(v))
    assert len(parsed.rejected) - len(time_refusals) == sum(
        1 for v in offered if not _is_decimal(v)
    )


@given(st.from_regex(DECIMAL_TEXT, fullmatch=True) | st.decimals(allow_nan=False).map(str))
def test_octopus_decimal_strings_parse_exactly(text: str) -> None:
    """Every finite str(Decimal) form, as float() reads it; a zero is 0, never -0."""
    if not math.isfinite(float(text)):
        return  # "1E+999": finite as a Decimal, not as a float: refused (see the parser)
    value = octopus.parse_decimal(text)
    assert value == float(text)
    assert value != 0 or math.copysign(1.0, value) == 1.0


@given(st.text(min_size=1, max_size=8).filter(lambda t: not t.isascii()))
def test_octopus_non_ascii_numbers_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        octopus.parse_decimal(text)


# -- WattiVahti: getconsumptionsresult ---------------------------------------------------

wattivahti_api = pytest.importorskip("wattkeeper.sources.wattivahti.api")

LOCAL_TIMES = st.sampled_from(
    [
        "2024-10-27T03:00:00",
        "2024-10-27T03:15:00",
        "2024-03-31T03:00:00",
        "2024-05-01T00:00:00",
        "2024-05-01T00:15:00",
        "not a time",
        "2024-13-01T00:00:00",
    ]
) | st.text(max_size=20)


@st.composite
def portal_doc(draw: st.DrawFn) -> Any:
    tsv = draw(
        st.lists(
            # Mostly well-formed entries with hostile quantities; sometimes anything at all.
            st.fixed_dictionaries(
                {
                    "time": st.sampled_from(["2024-05-01T00:00:00", "2024-05-01T00:15:00"])
                    | LOCAL_TIMES,
                    "quantity": st.floats(allow_nan=True, allow_infinity=True) | JSON_SCALARS,
                },
                optional={"unit": st.sampled_from(["kWh", "Wh", "MWh", ""])},
            )
            | JSON_VALUES,
            max_size=8,
        )
    )
    doc: Any = {
        "getconsumptionsresult": {
            "consumptiondata": {
                "sum": {"unit": draw(st.sampled_from(["kWh", "Wh"]))},
                "timeseries": {"values": {"tsv": tsv}},
            }
        }
    }
    if draw(st.integers(0, 5)) == 0:
        doc = draw(JSON_VALUES)
    return doc


def _wire(doc: Any) -> Any:
    """Through real JSON text, as the client decodes it (NaN and Infinity included)."""
    return json.loads(json.dumps(doc))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(portal_doc())
def test_wattivahti_portal_parser(doc: Any) -> None:
    client = wattivahti_api.PortalClient(
        None,
        None,
        "http://127.0.0.1:9",
        1.0,
        logging.getLogger("test"),  # type: ignore[arg-type]
    )
    wire = _wire(doc)
    try:
        series = client._parse(wire, "PT15MIN", "consumption")
    except SourceError:
        assert not isinstance(wire, dict) or "getconsumptionsresult" not in wire
        return
    seen = set()
    for r in series.readings:
        assert type(r.wh) is float and math.isfinite(r.wh)
        assert r.utc.tzinfo is not None and r.utc.utcoffset().total_seconds() == 0
        assert r.utc not in seen  # no two readings for one instant
        seen.add(r.utc)
        Point("wattivahti", {"consumption_wh": r.wh}, 1).to_line()
    # Nothing vanishes silently: every entry that is not an object, or that carries a
    # quantity, is either a reading or a counted rejection; only "not measured yet"
    # (a null quantity) may be skipped without a count.
    tsv = wire.get("getconsumptionsresult", {})
    for key in ("consumptiondata", "timeseries", "values", "tsv"):
        tsv = tsv.get(key) if isinstance(tsv, dict) else None
    entries = tsv if isinstance(tsv, list) else []
    must_count = sum(
        1 for e in entries if not isinstance(e, dict) or e.get("quantity", e.get("q")) is not None
    )
    assert must_count <= len(series.readings) + series.rejected <= len(entries)


# -- Luxtronik: frames over TCP --------------------------------------------------------------

luxtronik_reader = pytest.importorskip("wattkeeper.sources.luxtronik.reader")


def _frame(cmd: int, values: list[int], status: int | None = None, fmt: str = ">i") -> bytes:
    head = struct.pack(">i", cmd)
    if status is not None:
        head += struct.pack(">i", status)
    return head + struct.pack(">i", len(values)) + b"".join(struct.pack(fmt, v) for v in values)


class FrameServer:
    """Answers each Luxtronik request with the frame the test prepared (one per command)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.answers: dict[int, bytes] = {}
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    while True:
                        req = conn.recv(8)
                        if len(req) < 8:
                            break
                        cmd = struct.unpack(">i", req[:4])[0]
                        conn.sendall(self.answers.get(cmd, b""))
                        if cmd not in self.answers or self.answers.get(-cmd) == b"close":
                            break
                except OSError:
                    pass


@pytest.fixture(scope="module")
def frame_server() -> Iterator[FrameServer]:
    s = FrameServer()
    yield s
    s.sock.close()


def _mutate(data: bytes, cut: int | None, flips: list[tuple[int, int]]) -> bytes:
    b = bytearray(data)
    for pos, val in flips:
        if b:
            b[pos % len(b)] = val
    return bytes(b[:cut] if cut is not None else b)


@pytest.mark.slow
@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    params=st.lists(st.integers(-(2**31), 2**31 - 1), max_size=40),
    calcs=st.lists(st.integers(-(2**31), 2**31 - 1), max_size=40),
    vis=st.lists(st.integers(-128, 127), max_size=40),
    target=st.sampled_from([3003, 3004, 3005]),
    cut=st.none() | st.integers(0, 64),
    flips=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=4),
)
def test_luxtronik_reader_on_mutated_frames(
    frame_server: FrameServer,
    params: list[int],
    calcs: list[int],
    vis: list[int],
    target: int,
    cut: int | None,
    flips: list[tuple[int, int]],
) -> None:
    frames = {
        3003: _frame(3003, params),
        3004: _frame(3004, calcs, status=0),
        3005: _frame(3005, vis, fmt=">b"),
    }
    frames[target] = _mutate(frames[target], cut, flips)
    frame_server.answers = frames
    reader = luxtronik_reader.Reader("127.0.0.1", frame_server.port, timeout=2.0)
    try:
        values = reader.read()
    except (luxtronik_reader.ReadError, OSError):
        return  # a poll error: counted by the runner, connection dropped
    kinds = _luxtronik_kinds()
    for group, fields in values.items():
        assert group in ("parameters", "calculations", "visibilities")
        for name, value in fields.items():
            # A field keeps one type for ever (InfluxDB refuses a change): text only where
            # python-luxtronik's datatype is text, a finite float everywhere else.
            if kinds[(group, name)]:
                assert isinstance(value, str), (name, value)
            else:
                assert type(value) is float and math.isfinite(value), (name, value)
            Point("luxtronik", {name: value}, 1).to_line()


def _luxtronik_kinds() -> dict[tuple[str, str], bool]:
    """(group, name) -> whether python-luxtronik's datatype gives text."""
    from luxtronik.calculations import Calculations
    from luxtronik.datatypes import IPAddress, SelectionBase, Version
    from luxtronik.parameters import Parameters
    from luxtronik.visibilities import Visibilities

    tables = {
        "parameters": Parameters.parameters,
        "calculations": Calculations.calculations,
        "visibilities": Visibilities.visibilities,
    }
    kinds = {
        (group, e.name): isinstance(e, SelectionBase | IPAddress | Version)
        for group, table in tables.items()
        for e in table.values()
    }
    # A selection code python-luxtronik has no name for is written raw, as a float.
    kinds.update(
        ((group, e.name + "_raw"), False)
        for group, table in tables.items()
        for e in table.values()
        if isinstance(e, SelectionBase)
    )
    return kinds


def test_naive_or_shifted_times_never_reach_influx() -> None:
    """A reading time without an offset is refused by the core, not guessed."""
    with pytest.raises(ValueError, match="timezone-aware"):
        Point.at("m", datetime(2024, 1, 1), {"v": 1.0})
    assert Point.at("m", datetime(2024, 1, 1, tzinfo=UTC), {"v": 1.0}).time_ns == 1704067200 * 10**9


# -- through the runner: every refusal reaches poll_errors ---------------------------------


@dataclass
class _ScriptSection:
    """[scripted]: nothing to configure; the test hands the poll over directly."""


_SCRIPT: list[Any] = []

FIELD_VALUES = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(-(10**6), 10**6)
    | st.booleans()
    | st.text(max_size=5)
)


@st.composite
def scripted_poll(draw: st.DrawFn) -> Any:
    """What one poll of a source hands the runner: points (some unstorable) and a count
    of readings it refused itself, or an exception."""
    kind = draw(st.sampled_from(["batch", "batch", "batch", "error", "bug"]))
    if kind == "error":
        return SourceError("the service answered 503")
    if kind == "bug":
        return ValueError("a parser bug")
    points = [
        Point(
            "scripted",
            draw(st.dictionaries(st.sampled_from("abc"), FIELD_VALUES, max_size=3)),
            10**18 + i,
        )
        for i in range(draw(st.integers(0, 6)))
    ]
    return Batch(points=points, rejected=draw(st.integers(0, 3)))


def _storable(p: Point) -> bool:
    return bool(p.fields) and all(
        not isinstance(v, float) or math.isfinite(v) for v in p.fields.values()
    )


def _scripted_factory(ctx: SourceContext) -> Any:
    class Scripted:
        def next_delay(self) -> float:
            return 0.0

        def poll(self) -> Batch:
            step = _SCRIPT.pop(0)
            if isinstance(step, Exception):
                raise step
            return step  # type: ignore[no-any-return]

        def check(self) -> str:
            return "scripted"

        def close(self) -> None:
            pass

    return Scripted()


SCRIPTED = SourcePlugin(name="scripted", config_class=_ScriptSection, factory=_scripted_factory)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(scripted_poll(), min_size=1, max_size=5))
def test_runner_counts_every_refusal(polls: list[Any]) -> None:
    """Runs of `run --once` (the production Agent) over scripted polls: poll_errors in the
    agent's own metrics equals the readings the source refused, plus the points InfluxDB
    could not store (NaN, infinity, no field), plus the failed polls; every storable
    point is in the buffer exactly once."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        cfg_file = tmp / "scripted.toml"
        cfg_file.write_text(
            '[agent]\nlog_target = "stderr"\nflush_timeout = "1s"\n'
            '[influxdb]\nurl = "http://127.0.0.1:9"\norg = "home"\nbucket = "b"\n'
            f'token = "xxxxxxxx"\ntimeout = "1s"\n[buffer]\npath = "{tmp / "buf.sqlite"}"\n'
        )
        cfg = load_config(cfg_file, "scripted", _ScriptSection, set())
        stored: list[str] = []
        for step in polls:
            _SCRIPT[:] = [step]
            code = Agent(cfg, SCRIPTED, once=True).run()
            # 75: InfluxDB is unreachable here, so whatever was taken stays buffered.
            assert code == 75
            if isinstance(step, Batch):
                stored += [p.to_line() for p in step.points if _storable(p)]
            expected = (
                1
                if isinstance(step, Exception)
                else step.rejected + sum(1 for p in step.points if not _storable(p))
            )
            db = sqlite3.connect(tmp / "buf.sqlite")
            metrics = db.execute(
                "SELECT line FROM points WHERE line LIKE 'wattkeeper_agent,%' "
                "ORDER BY id DESC LIMIT 1"
            ).fetchone()[0]
            lines = [
                r[0] for r in db.execute("SELECT line FROM points WHERE line LIKE 'scripted%'")
            ]
            db.close()
            fields = dict(f.split("=", 1) for f in metrics.split(" ")[1].split(","))
            assert float(fields["poll_errors"]) == expected, (step, metrics)
            assert lines == stored


def test_wattivahti_bad_values_are_counted_through_the_agent(
    tmp_path: Path, target: Target
) -> None:
    """The real agent against the portal simulator answering with quantities that are not
    numbers: those instants are not written (never as strings), each is counted in the
    agent's poll_errors, and the rest of the day lands."""
    from test_wattivahti import make_setup, points, run_once, simulators

    sims = simulators(tmp_path)
    start = next(sims)
    try:
        s = make_setup(
            tmp_path, target, start, "--quarter-hour-since", "2020-01-01", initial_days=1
        )
        s.sim.fault("badvalue", 2)  # the first two answers: 4 bad quantities each
        r = run_once(s)
        assert r.returncode == 0, r.stderr
        reqs = s.sim.stats()["meterdata_requests"]
    finally:
        with contextlib.suppress(StopIteration):
            next(sims)
    assert len(reqs) >= 2
    rows = points(target, datetime(2020, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(days=1))
    assert rows and all(isinstance(float(r["consumption_wh"]), float) for r in rows)
    metrics = target.query(
        '|> range(start: -1h) |> filter(fn: (r) => r._measurement == "wattkeeper_agent" '
        'and r._field == "poll_errors") |> last()'
    )
    assert float(metrics[0]["_value"]) == 8.0
    assert r.stderr.count("is not a number") == 8
