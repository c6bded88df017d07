"""Bad input from every source, generated: no crash, no string where a number belongs,
every rejection counted.

Hypothesis feeds the parsers random and mutated answers: Kraken GraphQL telemetry rows,
WattiVahti portal JSON, and Luxtronik frames over a real TCP socket to the production
reader. What comes out must either be refused with the source's own error (which the
runner counts as a failed poll) or be numbers that InfluxDB can store.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import struct
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wattkeeper.point import Point
from wattkeeper.source import SourceError

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

TIMES = st.sampled_from(
    [
        "2024-05-01T12:00:00+00:00",
        "2024-05-01T13:00:10+01:00",
        "2024-05-01T12:00:00Z",
        "2024-05-01T12:00:00",
        "yesterday",
        "",
    ]
) | st.text(max_size=25)


@st.composite
def telemetry_row(draw: st.DrawFn) -> dict[str, Any]:
    row: dict[str, Any] = {"readAt": draw(TIMES | JSON_SCALARS)}
    for name in octopus.NUMERIC_FIELDS:
        if draw(st.integers(0, 9)) == 0:
            continue  # a missing key: the answer was truncated or changed
        row[name] = draw(JSON_VALUES)
    return row


@settings(max_examples=300, deadline=None)
@given(st.none() | st.lists(telemetry_row(), max_size=8) | JSON_VALUES)
def test_octopus_telemetry_parser(rows: Any) -> None:
    try:
        parsed = octopus.parse_telemetry(rows)
    except octopus.MalformedAnswer:
        return  # refused whole: the runner counts a failed poll, the cursor stays
    offered = 0
    for reading in parsed.readings:
        assert reading.read_at.tzinfo is not None
        for value in reading.values.values():
            assert type(value) is float and math.isfinite(value)
    if isinstance(rows, list):
        for row in rows:
            offered += sum(
                1
                for f in octopus.NUMERIC_FIELDS
                if isinstance(row, dict) and row.get(f) is not None
            )
        taken = sum(len(r.values) for r in parsed.readings)
        refused_rows = sum(1 for r in parsed.rejected if r[1] == "readAt")
        # Every value offered is either taken or counted as rejected (or its row was).
        assert taken + len(parsed.rejected) - refused_rows <= offered
        assert [r.read_at for r in parsed.readings] == sorted(r.read_at for r in parsed.readings)


@given(st.from_regex(r"-?(0|[1-9][0-9]{0,5})(\.[0-9]{1,4})?", fullmatch=True))
def test_octopus_decimal_strings_parse_exactly(text: str) -> None:
    assert octopus.parse_decimal(text) == float(text)


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
    try:
        series = client._parse(_wire(doc), "PT15MIN", "consumption")
    except SourceError:
        return
    seen = set()
    for r in series.readings:
        assert type(r.wh) is float and math.isfinite(r.wh)
        assert r.utc.tzinfo is not None and r.utc.utcoffset().total_seconds() == 0
        assert r.utc not in seen  # no two readings for one instant
        seen.add(r.utc)
        Point("wattivahti", {"consumption_wh": r.wh}, 1).to_line()


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
    for group, fields in values.items():
        assert group in ("parameters", "calculations", "visibilities")
        for name, value in fields.items():
            assert isinstance(value, float | str), (name, value)
            if isinstance(value, float):
                assert math.isfinite(value)
            Point("luxtronik", {name: value}, 1).to_line()


def test_naive_or_shifted_times_never_reach_influx() -> None:
    """A reading time without an offset is refused by the core, not guessed."""
    with pytest.raises(ValueError, match="timezone-aware"):
        Point.at("m", datetime(2024, 1, 1), {"v": 1.0})
    assert Point.at("m", datetime(2024, 1, 1, tzinfo=UTC), {"v": 1.0}).time_ns == 1704067200 * 10**9
