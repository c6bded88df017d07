"""Line protocol encoding: what InfluxDB parses is what the source meant."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from wattkeeper.point import Integer, Point, to_ns


def test_encoding_escapes_and_types() -> None:
    p = Point(
        "my meas,x",
        {"f 1": 1.5, "n": Integer(3), "b": True, "s": 'say "hi"\\'},
        1_700_000_000_000_000_123,
        {"tag key": "a=b,c d", "empty": ""},
    )
    assert p.to_line() == (
        r"my\ meas\,x,tag\ key=a\=b\,c\ d "
        r'b=true,f\ 1=1.5,n=3i,s="say \"hi\"\\" 1700000000000000123'
    )


def test_float_fields_are_floats_and_ints_are_marked() -> None:
    line = Point("m", {"a": 84, "b": Integer(84)}, 1).to_line()
    assert "a=84.0" in line and "b=84i" in line


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_values_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="cannot store"):
        Point("m", {"v": bad}, 1).to_line()


def test_timestamps_are_utc_nanoseconds_and_naive_is_refused() -> None:
    helsinki_summer = timezone(timedelta(hours=3))
    t = datetime(2024, 10, 27, 3, 30, tzinfo=helsinki_summer)
    assert to_ns(t) == to_ns(datetime(2024, 10, 27, 0, 30, tzinfo=UTC))
    assert to_ns(datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=UTC)) == 1_000_005_000
    with pytest.raises(ValueError, match="timezone-aware"):
        to_ns(datetime(2024, 1, 1))


def test_point_without_fields_is_refused() -> None:
    with pytest.raises(ValueError, match="no fields"):
        Point("m", {}, 1).to_line()
