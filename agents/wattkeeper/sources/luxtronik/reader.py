"""Read every value of a Luxtronik 2 controller with python-luxtronik, safely.

python-luxtronik owns the protocol (commands 3003/3004/3005, the version string, the unit
conversions); this module only makes its socket strict. The library 0.3.14 connects in its
constructor, has no timeout, and swallows a short ``recv`` as a debug message, so a
firmware that closes the socket mid-answer would silently hand back a truncated, shifted
list. We give it a socket whose ``recv(n)`` returns exactly n bytes or raises, under one
deadline for the whole poll. Nothing here ever writes to the controller.

python-luxtronik turns a selection code it has no name for into None (SelectionBase;
a newer model's HeatpumpCode, for one: Bouni/python-luxtronik#197). Such a value is not
dropped: its raw integer is written as ``NAME_raw``.
"""

from __future__ import annotations

import logging
import math
import socket
import struct
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import luxtronik
from luxtronik.calculations import Calculations
from luxtronik.datatypes import SelectionBase
from luxtronik.parameters import Parameters
from luxtronik.visibilities import Visibilities

GROUPS = ("parameters", "calculations", "visibilities")
RAW_SUFFIX = "_raw"
# Calculations 81-90 are one value (the firmware version), read from ten words.
_VERSION_WORDS = range(81, 91)

Value = float | str
Values = dict[str, dict[str, Value]]


class ReadError(Exception):
    """The controller did not give a complete answer (closed, timed out, garbled)."""


class _StrictSocket:
    """The three socket methods python-luxtronik uses, with exact reads and a deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline
        self._rfile = sock.makefile("rb")

    def _arm(self) -> None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the controller did not finish answering in time")
        self._sock.settimeout(left)

    def sendall(self, data: bytes) -> None:
        self._arm()
        self._sock.sendall(data)

    def recv(self, n: int) -> bytes:
        self._arm()
        data = self._rfile.read(n)
        if len(data) < n:
            raise ReadError("the controller closed the connection mid-answer")
        return data

    def close(self) -> None:
        self._rfile.close()
        self._sock.close()


class _RawWords:
    """Keeps the words python-luxtronik parsed last, for values it cannot convert."""

    raw: list[int]

    def parse(self, raw_data: list[int]) -> None:
        self.raw = list(raw_data)
        super().parse(raw_data)  # type: ignore[misc]


class _Calculations(_RawWords, Calculations):  # type: ignore[misc]
    pass


class _Parameters(_RawWords, Parameters):  # type: ignore[misc]
    pass


class _Visibilities(_RawWords, Visibilities):  # type: ignore[misc]
    pass


def raw_field_names() -> list[str]:
    """``NAME_raw`` of every value python-luxtronik may turn into None (a selection)."""
    tables = (Parameters.parameters, Calculations.calculations, Visibilities.visibilities)
    return sorted(
        {e.name + RAW_SUFFIX for t in tables for e in t.values() if isinstance(e, SelectionBase)}
    )


class _Client(luxtronik.Luxtronik):  # type: ignore[misc]
    """python-luxtronik's client, connecting per read (not in the constructor), read-only."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        # Deliberately not calling super().__init__: it would connect right away.
        self._host = host
        self._port = port
        self._timeout = timeout
        self._socket: _StrictSocket | None = None
        self.calculations = _Calculations()
        self.parameters = _Parameters(safe=True)
        self.visibilities = _Visibilities()

    def _connect(self) -> None:
        deadline = time.monotonic() + self._timeout
        sock = socket.create_connection((self._host, self._port), timeout=self._timeout)
        self._socket = _StrictSocket(sock, deadline)

    def drop(self) -> None:
        """Close the connection whatever happened (the library skips this on errors)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def write(self) -> None:  # pragma: no cover - guard against a future caller
        raise RuntimeError("wattkeeper reads the heat pump; it never writes to it")

    def tables(self) -> dict[str, dict[int, Any]]:
        return {
            "parameters": self.parameters.parameters,
            "calculations": self.calculations.calculations,
            "visibilities": self.visibilities.visibilities,
        }

    def words(self) -> dict[str, list[int]]:
        """The raw words of the last read, per group."""
        return {
            "parameters": self.parameters.raw,
            "calculations": self.calculations.raw,
            "visibilities": self.visibilities.raw,
        }


def field_value(value: Any) -> Value | None:
    """A converted python-luxtronik value as an InfluxDB field value (None = skip).

    Numbers become floats; booleans 0.0/1.0 (so they graph and average as duty cycles);
    timestamps Unix seconds; selections, IP addresses and the firmware version strings.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, datetime):
        return float(value.timestamp())
    return str(value)


class Reader:
    """Reads parameters, calculations and visibilities in one connection per poll."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host = host
        self.port = port
        self.client = _Client(host, port, timeout)
        # NAME_raw -> code of the last read, for values python-luxtronik turned into None.
        self.raw_values: dict[str, int] = {}
        # The library logs every connect at INFO: 4 lines per poll in the journal.
        lib_log = logging.getLogger("Luxtronik")
        if lib_log.level == logging.NOTSET:
            lib_log.setLevel(logging.WARNING)

    def read(self) -> Values:
        """One complete read, or ReadError/OSError; never a partial result."""
        tables = self.client.tables()
        # python-luxtronik keeps values in class-level tables: clear the previous poll's
        # values so a value this poll did not deliver cannot reappear.
        for table in tables.values():
            for entry in table.values():
                entry.value = None
        for words in (self.client.parameters, self.client.calculations, self.client.visibilities):
            words.raw = []
        self.raw_values = {}
        try:
            self.client.read()
        except (struct.error, ValueError, OverflowError) as exc:
            # A shifted or corrupt answer that python-luxtronik cannot convert.
            raise ReadError(f"garbled answer: {exc}") from exc
        finally:
            self.client.drop()
        out: Values = {}
        delivered = self.client.words()
        for group, table in tables.items():
            values: dict[str, Value] = {}
            raw = delivered[group]
            for index, entry in sorted(table.items()):
                v = field_value(entry.value)
                if v is not None:
                    values[entry.name] = v
                elif (
                    entry.value is None
                    and index < len(raw)
                    and not (group == "calculations" and index in _VERSION_WORDS)
                ):
                    name = entry.name + RAW_SUFFIX
                    values[name] = float(raw[index])
                    self.raw_values[name] = raw[index]
            out[group] = values
        return out


def iter_values(values: Values) -> Iterator[tuple[str, str, Value]]:
    for group in GROUPS:
        for name, value in values.get(group, {}).items():
            yield group, name, value


def unit_map() -> dict[tuple[str, str], str]:
    """(group, name) -> the unit python-luxtronik gives the value, for human CSV headers."""
    tables = {
        "parameters": Parameters.parameters,
        "calculations": Calculations.calculations,
        "visibilities": Visibilities.visibilities,
    }
    out: dict[tuple[str, str], str] = {}
    for group, table in tables.items():
        for entry in table.values():
            unit = _UNITS.get(str(entry.measurement_type), "")
            if unit:
                out[(group, entry.name)] = unit
    return out


_UNITS = {
    "celsius": "°C",
    "kelvin": "K",
    "bar": "bar",
    "energy": "kWh",
    "W": "W",
    "Hz": "Hz",
    "rpm": "rpm",
    "seconds": "s",
    "hours": "h",
    "percent": "%",
    "voltage": "V",
    "flow": "l/h",
    "pulses": "pulses",
    "count": "count",
    "timestamp": "Unix s",
    "boolean": "0/1",
}
