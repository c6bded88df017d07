"""Flux downsampling tasks, generated from each source's declared roll-ups.

One generator for every source and tier, so the aggregate of a field is declared once
(next to the source that writes it) and the InfluxDB role, the tests and the docs all use
the same Flux. Windows are aligned: a task run only aggregates whole windows that have
ended, re-covering the last few so that late points are folded in by overwriting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

AGGREGATES = ("sum", "mean", "last", "max", "min", "count")
_DURATION = re.compile(r"^\d+(ms|s|m|h|d|w)$")


@dataclass(frozen=True)
class Rollup:
    """How one measurement is downsampled: an aggregate per field, and one for the rest."""

    measurement: str
    fields: dict[str, str] = field(default_factory=dict)
    # Aggregate for numeric fields not listed (None: leave them out of the roll-up).
    default: str | None = None
    # Tags to keep apart (all tags are kept as the group key; this is for documentation).

    def __post_init__(self) -> None:
        for name, fn in {**self.fields, "(default)": self.default or "mean"}.items():
            if fn not in AGGREGATES:
                raise ValueError(f"{self.measurement}.{name}: unknown aggregate {fn!r}")


def _flux_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check_duration(d: str) -> str:
    if not _DURATION.match(d):
        raise ValueError(f"{d!r} is not a Flux duration literal such as 1m, 5m or 1h")
    return d


def _times(every: str, n: int) -> str:
    m = re.match(r"^(\d+)(\D+)$", every)
    assert m is not None
    return f"{int(m.group(1)) * n}{m.group(2)}"


def rollup_query(
    rollups: list[Rollup],
    src_bucket: str,
    every: str,
    start: str,
    stop: str,
    *,
    preamble: str = "",
) -> str:
    """A Flux script (without ``to``) aggregating [start, stop); ``preamble`` goes after
    the imports (task options, variables)."""
    _check_duration(every)
    parts = [
        f"data = from(bucket: {_flux_str(src_bucket)})\n    |> range(start: {start}, stop: {stop})"
    ]
    streams: list[str] = []
    for i, r in enumerate(rollups):
        m = _flux_str(r.measurement)
        by_fn: dict[str, list[str]] = {}
        for fname, fn in r.fields.items():
            by_fn.setdefault(fn, []).append(fname)
        for fn, names in sorted(by_fn.items()):
            cond = " or ".join(f"r._field == {_flux_str(n)}" for n in sorted(names))
            name = f"r{i}_{fn}"
            parts.append(
                f"{name} = data\n"
                f"    |> filter(fn: (r) => r._measurement == {m} and ({cond}))\n"
                f"    |> aggregateWindow(every: {every}, fn: {fn}, createEmpty: false, "
                'timeSrc: "_start")'
            )
            streams.append(name)
        if r.default:
            listed = " and ".join(f"r._field != {_flux_str(n)}" for n in sorted(r.fields))
            cond = f" and {listed}" if listed else ""
            name = f"r{i}_default"
            parts.append(
                f"{name} = data\n"
                f"    |> filter(fn: (r) => r._measurement == {m}{cond})\n"
                "    |> filter(fn: (r) => types.isNumeric(v: r._value))\n"
                "    |> toFloat()\n"
                f"    |> aggregateWindow(every: {every}, fn: {r.default}, createEmpty: false, "
                'timeSrc: "_start")'
            )
            streams.append(name)
    if not streams:
        raise ValueError("nothing to roll up")
    result = streams[0] if len(streams) == 1 else f"union(tables: [{', '.join(streams)}])"
    imports = 'import "date"\nimport "types"\n\n'
    return imports + preamble + "\n".join(parts) + f"\n{result}"


def task_flux(
    name: str,
    rollups: list[Rollup],
    *,
    src_bucket: str,
    dst_bucket: str,
    org: str,
    every: str,
    offset: str = "30s",
    lookback_windows: int = 3,
) -> str:
    """A complete InfluxDB task script: aggregate the last whole windows into ``dst_bucket``."""
    _check_duration(every)
    _check_duration(offset)
    lookback = _times(every, lookback_windows)
    preamble = (
        f"option task = {{name: {_flux_str(name)}, every: {every}, offset: {offset}}}\n\n"
        f"stop = date.truncate(t: now(), unit: {every})\n"
        f"start = date.sub(d: {lookback}, from: stop)\n\n"
    )
    body = rollup_query(rollups, src_bucket, every, "start", "stop", preamble=preamble)
    return body + f"\n    |> to(bucket: {_flux_str(dst_bucket)}, org: {_flux_str(org)})\n"
