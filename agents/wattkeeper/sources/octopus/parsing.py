"""Strict parsing of Kraken answers: decimal strings, readAt times, telemetry rows.

Kraken serialises its ``Decimal`` scalar with Python's ``str(Decimal)``: "624.0", a zero
as "0E+1" (a real TEN_SECONDS answer in inigo/octopusviz's GraphQlClientTest.scala), tiny
values as "1E-7". ``float()`` would also accept "nan", "inf", " 12 " or "1_0", none of
which is a meter reading, so the grammar is spelled out here: exactly the finite forms
``str(Decimal)`` writes. A value that fails it is counted and logged, never written.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Every finite form of str(Decimal): sign, digits (no leading zero), fraction, an exponent
# with its sign ("0E+1", "1E-7", "1.25E+6"). ASCII digits only: no "1٢".
_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:E[+-][0-9]+)?")

# The telemetry fields we ask for, in the API's names.
TELEMETRY_FIELDS = (
    "readAt",
    "consumption",
    "demand",
    "export",
    "consumptionDelta",
    "costDelta",
    "costDeltaWithTax",
)
NUMERIC_FIELDS = TELEMETRY_FIELDS[1:]


class MalformedAnswer(ValueError):
    """The answer is not shaped as the API documents it; the whole answer is refused."""


def parse_decimal(value: Any) -> float:
    """A decimal string as str(Decimal) writes it ("84.0000", "0E+1", "1E-7") or a JSON
    number; ValueError for anything else. A zero in any form is 0.0 (never -0.0)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    if isinstance(value, int | float) or (isinstance(value, str) and _DECIMAL.fullmatch(value)):
        f = float(value)
    else:
        raise ValueError(f"{value!r} is not a decimal number")
    if not math.isfinite(f):
        raise ValueError(f"{value!r} is not finite")
    return f + 0.0  # "-0", "-0E+1": a zero lands as 0


def parse_time(value: Any) -> datetime:
    """An ISO 8601 time with an offset, as UTC; a time without offset is refused."""
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a time string")
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 time") from None
    if t.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset")
    return t.astimezone(UTC)


def format_time(t: datetime) -> str:
    """The form sent to the API: UTC, seconds, explicit offset."""
    return t.astimezone(UTC).replace(microsecond=0).isoformat()


@dataclass
class Reading:
    """One telemetry row: readAt and whichever numbers it carried (API units)."""

    read_at: datetime
    values: dict[str, float]


@dataclass
class ParsedTelemetry:
    readings: list[Reading] = field(default_factory=list)
    # (readAt or "?", field, raw value) for every value that was not a number.
    rejected: list[tuple[str, str, str]] = field(default_factory=list)


def parse_telemetry(rows: Any, fields: tuple[str, ...] = TELEMETRY_FIELDS) -> ParsedTelemetry:
    """Parse ``smartMeterTelemetry``; a row lacking a requested key refuses the answer.

    A missing key means a truncated or changed answer: taking the rest would move the
    cursor past readings we never got. A ``null`` value is the API saying "no value" and is
    simply not written; a non-number is rejected on its own. A ``null`` list (without an
    error) is refused too: taken as "no readings", an old window would be skipped for good.
    """
    if rows is None:
        raise MalformedAnswer("smartMeterTelemetry is null")
    if not isinstance(rows, list):
        raise MalformedAnswer(f"smartMeterTelemetry is a {type(rows).__name__}, not a list")
    out = ParsedTelemetry()
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise MalformedAnswer(f"telemetry row {i} is not an object")
        missing = [f for f in fields if f not in row]
        if missing:
            raise MalformedAnswer(f"telemetry row {i} lacks {', '.join(missing)}")
        try:
            read_at = parse_time(row["readAt"])
        except ValueError as exc:
            out.rejected.append(("?", "readAt", str(exc)))
            continue
        values: dict[str, float] = {}
        for name in fields:
            if name == "readAt" or row[name] is None:
                continue
            try:
                values[name] = parse_decimal(row[name])
            except ValueError:
                out.rejected.append((row["readAt"], name, repr(row[name])[:40]))
        out.readings.append(Reading(read_at, values))
    out.readings.sort(key=lambda r: r.read_at)
    return out
