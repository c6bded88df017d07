"""A reading as InfluxDB sees it, and its line-protocol encoding.

Sources build Points; the core stores their encoded lines, so the buffer never has to
understand a source's schema. Floats are checked here: a NaN or infinity cannot be
written to InfluxDB, and a string where a number belongs is a source bug worth catching.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

FieldValue = float | int | bool | str


class Integer(int):
    """Marks a field to be written as an InfluxDB integer (``1i``), not a float."""


def _escape_key(s: str) -> str:
    return s.replace("\\", "\\\\").replace(",", r"\,").replace("=", r"\=").replace(" ", r"\ ")


def _escape_measurement(s: str) -> str:
    return s.replace("\\", "\\\\").replace(",", r"\,").replace(" ", r"\ ")


def _escape_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _field_value(name: str, v: FieldValue) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Integer):
        return f"{int(v)}i"
    if isinstance(v, int | float):
        f = float(v)
        if not math.isfinite(f):
            raise ValueError(f"field {name!r} is {f}, which InfluxDB cannot store")
        return repr(f)
    if isinstance(v, str):
        return _escape_str(v)
    raise TypeError(f"field {name!r} has unsupported type {type(v).__name__}")


def to_ns(t: datetime) -> int:
    """Nanoseconds since the epoch for an aware datetime (naive is refused: no guessing)."""
    if t.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware (UTC)")
    delta = t.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


@dataclass(slots=True)
class Point:
    """One reading: measurement, tags, fields and the source's own timestamp (ns, UTC)."""

    measurement: str
    fields: dict[str, FieldValue]
    time_ns: int
    tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def at(
        cls,
        measurement: str,
        when: datetime,
        fields: dict[str, FieldValue],
        tags: dict[str, str] | None = None,
    ) -> Point:
        return cls(measurement, fields, to_ns(when), tags or {})

    def to_line(self) -> str:
        """Encode as one line of InfluxDB line protocol with nanosecond precision."""
        if not self.fields:
            raise ValueError(f"point of {self.measurement!r} has no fields")
        parts = [_escape_measurement(self.measurement)]
        for k in sorted(self.tags):
            v = self.tags[k]
            if v != "":
                parts.append(f"{_escape_key(k)}={_escape_key(v)}")
        head = ",".join(parts)
        body = ",".join(
            f"{_escape_key(k)}={_field_value(k, v)}" for k, v in sorted(self.fields.items())
        )
        return f"{head} {body} {self.time_ns}"
