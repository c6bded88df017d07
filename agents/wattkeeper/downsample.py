"""Flux downsampling tasks, generated from each source's declared roll-ups.

One generator for every source and tier, so the aggregate of a field is declared once
(next to the source that writes it) and the InfluxDB role, the tests and the docs all use
the same Flux.

A tier task does not trust its schedule. Each run reads the tier's *checkpoint* (a point
it wrote into its own bucket at the end of its last successful run) and aggregates the
whole windows from there up to now, so a run InfluxDB skipped or failed is made up by the
next one. Points that reach the source bucket after their window was aggregated come with
a *late marker*: the agent that delivered them writes a small ``wattkeeper_late`` point
(their reading-time range) into the same bucket, and the next run re-aggregates those
windows. The work of one run is bounded (``chunk`` of windows before now and ``chunk`` of
late windows); what is left stays in the checkpoint for the next run. See
docs/architecture.md, "Tiers".
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from importlib import resources

from wattkeeper.config import parse_duration

AGGREGATES = ("sum", "mean", "last", "max", "min", "count")
_DURATION = re.compile(r"^\d+(ms|s|m|h|d|w)$")

# Internal measurements. Agents write markers into their raw bucket; tasks write
# checkpoints (and, when a coarser tier reads theirs, markers) into their tier bucket.
CHECKPOINT = "wattkeeper_checkpoint"
LATE = "wattkeeper_late"
INTERNAL_MEASUREMENTS = (CHECKPOINT, LATE)

# How a coarser tier re-aggregates a finer one exactly: sums add up, the last of the
# lasts is the last, extremes stay extremes, counts are summed. A mean of means is not
# the mean, so mean fields are always aggregated from raw.
_CASCADE_FN = {"sum": "sum", "last": "last", "max": "max", "min": "min", "count": "sum"}


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


@dataclass(frozen=True)
class _Stream:
    """One aggregateWindow call: fields of a measurement, one function, one bucket."""

    measurement: str
    fn: str
    bucket: str
    fields: tuple[str, ...] = ()  # empty with ``exclude``: the rest of the numeric fields
    exclude: tuple[str, ...] | None = None

    def flux(self, every: str, start: str, stop: str) -> str:
        m = _flux_str(self.measurement)
        head = f"from(bucket: {_flux_str(self.bucket)})\n    |> range(start: {start}, stop: {stop})"
        if self.exclude is None:
            cond = " or ".join(f"r._field == {_flux_str(n)}" for n in self.fields)
            body = f"\n    |> filter(fn: (r) => r._measurement == {m} and ({cond}))"
        else:
            cond = "".join(f" and r._field != {_flux_str(n)}" for n in self.exclude)
            body = f"\n    |> filter(fn: (r) => r._measurement == {m}{cond})"
            body += "\n    |> filter(fn: (r) => types.isNumeric(v: r._value))\n    |> toFloat()"
        return (
            head
            + body
            + f"\n    |> aggregateWindow(every: {every}, fn: {self.fn}, createEmpty: false, "
            'timeSrc: "_start")'
        )


def _streams(rollups: list[Rollup], src: str, raw: str | None = None) -> list[_Stream]:
    """The aggregate streams of a tier. ``raw`` given (and not ``src``): ``src`` is the
    finer tier, read for the aggregates that compose; mean fields read ``raw``."""
    cascade = raw is not None and raw != src
    out: list[_Stream] = []
    for r in rollups:
        by: dict[tuple[str, str], list[str]] = {}
        for fname, fn in r.fields.items():
            key = (_CASCADE_FN[fn], src) if cascade and fn in _CASCADE_FN else (fn, raw or src)
            by.setdefault(key, []).append(fname)
        for (fn, bucket), names in sorted(by.items()):
            out.append(_Stream(r.measurement, fn, bucket, tuple(sorted(names))))
        if r.default:
            fn, bucket = (
                (_CASCADE_FN[r.default], src)
                if cascade and r.default in _CASCADE_FN
                else (r.default, raw or src)
            )
            out.append(_Stream(r.measurement, fn, bucket, exclude=tuple(sorted(r.fields))))
    if not out:
        raise ValueError("nothing to roll up")
    return out


def _union(parts: list[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return "union(tables: [\n" + ",\n".join(_indent(p) for p in parts) + ",\n])"


def _indent(text: str, n: int = 4) -> str:
    return "\n".join(" " * n + line for line in text.splitlines())


def rollup_query(
    rollups: list[Rollup],
    src_bucket: str,
    every: str,
    start: str,
    stop: str,
    *,
    preamble: str = "",
    raw_bucket: str | None = None,
) -> str:
    """A Flux script (without ``to``) aggregating [start, stop) of ``src_bucket``;
    ``preamble`` goes after the imports. With ``raw_bucket`` (a cascade), ``src_bucket``
    is the finer tier and mean fields come from raw, as the task computes them."""
    _check_duration(every)
    streams = _streams(rollups, src_bucket, raw_bucket)
    body = _union([s.flux(every, start, stop) for s in streams])
    return 'import "types"\n\n' + preamble + body + "\n"


def _measurement_filter(rollups: list[Rollup]) -> str:
    return " or ".join(f"r._measurement == {_flux_str(r.measurement)}" for r in rollups)


@dataclass(frozen=True)
class TierTask:
    """Everything a tier task needs to know; ``flux()`` is the task's script."""

    name: str
    rollups: tuple[Rollup, ...]
    src_bucket: str  # raw, or the finer tier when cascading
    dst_bucket: str
    org: str
    every: str
    offset: str = "30s"
    # The raw bucket when ``src_bucket`` is a finer tier (mean fields are read from it).
    raw_bucket: str | None = None
    # The most one run aggregates of dense data: this span of windows since the last run,
    # and as much again of windows late points landed in. A catch-up after an outage
    # takes several runs. Sparse data goes faster: up to ``sparse`` per run while that
    # holds at most ``budget`` values.
    chunk: str = "1d"
    sparse: str = "7d"
    budget: int = 50_000_000
    # Where a tier without a checkpoint starts (a new or converted installation): this
    # far before now; "0" starts at the oldest point in the source bucket.
    first: str = "30d"
    # Write markers for the tier that reads this one (cascade).
    announce: bool = False
    # How long a late point's marker may take to reach this tier through the finer
    # tiers it reads (cascade): their windows and offsets. verify.yml's check allows it.
    lag: str = "0s"

    def __post_init__(self) -> None:
        for d in (self.every, self.offset, self.chunk, self.sparse, self.lag):
            _check_duration(d)
        if duration_seconds(self.chunk) < duration_seconds(self.every):
            raise ValueError(f"chunk {self.chunk} is shorter than a window ({self.every})")
        if self.first != "0":
            _check_duration(self.first)

    @property
    def cascade(self) -> bool:
        return self.raw_bucket is not None and self.raw_bucket != self.src_bucket

    def flux(self) -> str:
        streams = _streams(list(self.rollups), self.src_bucket, self.raw_bucket)
        return _template("tier_task.flux").substitute(
            name=_flux_str(self.name),
            every=self.every,
            offset=self.offset,
            chunk=self.chunk,
            sparse=self.sparse,
            budget=self.budget,
            src=_flux_str(self.src_bucket),
            dst=_flux_str(self.dst_bucket),
            org=_flux_str(self.org),
            lookback=_times(self.every, 3),
            origin="time(v: 0)" if self.first == "0" else f"date.sub(d: {self.first}, from: due)",
            checkpoint=_flux_str(CHECKPOINT),
            late=_flux_str(LATE),
            measurements=_measurement_filter(list(self.rollups)),
            upstream=_CASCADE_UPSTREAM if self.cascade else _RAW_UPSTREAM,
            announce="true" if self.announce else "false",
            aggregates=_indent(
                _union([s.flux(self.every, f"{p}.lo", f"{p}.hi") for p in "ab" for s in streams])
            ),
        )


def _template(name: str) -> string.Template:
    """A Flux script of the package's flux/ directory, with $placeholders."""
    return string.Template((resources.files("wattkeeper") / "flux" / name).read_text())


# The source bucket is raw: every window up to now is due; agents' markers are read as
# they arrive.
_RAW_UPSTREAM = """\
bound = due
upper = run
"""

# The source bucket is a finer tier: only the windows it has aggregated are due, and its
# markers are read up to its own checkpoint (everything it wrote before is visible then).
_CASCADE_UPSTREAM = """\
up = checkpoint(bucket: src)
bound =
    if exists up.stop then
        tmin(a: due, b: date.truncate(t: time(v: up.stop), unit: every))
    else
        stop0
upper = if exists up.stop then date.add(d: 1ns, to: tmin(a: run, b: up._time)) else seen0
"""


def task_flux(
    name: str,
    rollups: list[Rollup],
    *,
    src_bucket: str,
    dst_bucket: str,
    org: str,
    every: str,
    offset: str = "30s",
    raw_bucket: str | None = None,
    chunk: str = "1d",
    first: str = "30d",
    announce: bool = False,
) -> str:
    """A complete InfluxDB task script for one tier (see ``TierTask``)."""
    return TierTask(
        name,
        tuple(rollups),
        src_bucket,
        dst_bucket,
        org,
        every,
        offset,
        raw_bucket=raw_bucket,
        chunk=chunk,
        first=first,
        announce=announce,
    ).flux()


def duration_seconds(d: str) -> float:
    """Seconds of a simple duration literal (``1m``, ``7d``): the agent's own grammar."""
    return parse_duration(_check_duration(d))


def default_chunk(every: str) -> str:
    """A run's bound of dense data when the tier names none: a day (at least a window)."""
    return "1d" if duration_seconds(every) <= 86400 else every


def _retention_literal(retention: object) -> str:
    """A bucket's retention as the ``first`` of a tier task ("0": forever)."""
    text = str(retention).strip().lower()
    if text in ("", "0", "forever", "inf", "infinite", "none"):
        return "0"
    if text.isdigit():
        return f"{text}s"
    return _check_duration(text)


def tier_tasks(
    source: str,
    rollups: list[Rollup],
    tiers: list[dict[str, object]],
    *,
    org: str,
    cascade: bool = False,
    pattern: str = "{source}_{tier}",
    offset: str = "30s",
) -> list[TierTask]:
    """The tasks of one source: one per tier with an ``every`` (``tiers[0]`` is raw).

    ``cascade``: each tier reads the one before it (mean fields still read raw). A tier
    task without a checkpoint re-aggregates what raw holds, so ``first`` is raw's
    retention.
    """
    if not tiers or tiers[0].get("every"):
        raise ValueError("the first tier must be the raw one (no every)")
    raw = pattern.format(source=source, tier=tiers[0]["name"])
    first = _retention_literal(tiers[0].get("retention", 0))
    out: list[TierTask] = []
    previous = raw
    rolled = [t for t in tiers[1:] if t.get("every")]
    lag = 0.0
    for i, tier in enumerate(rolled):
        every = str(tier["every"])
        bucket = pattern.format(source=source, tier=tier["name"])
        out.append(
            TierTask(
                name=f"wattkeeper_{source}_{tier['name']}",
                rollups=tuple(rollups),
                src_bucket=previous if cascade else raw,
                dst_bucket=bucket,
                org=org,
                every=every,
                offset=offset,
                raw_bucket=raw,
                chunk=str(tier.get("chunk") or default_chunk(every)),
                budget=int(str(tier.get("budget") or TierTask.budget)),
                first=first,
                announce=cascade and i + 1 < len(rolled),
                lag=f"{int(lag)}s",
            )
        )
        if cascade:
            lag += duration_seconds(every) + duration_seconds(offset)
        previous = bucket
    return out


def check_query(task: TierTask, span: str = "1d") -> str:
    """A Flux query telling whether a tier is complete: one row with its newest
    checkpoint (time, stop, pending late windows) and, for the windows of the last
    ``span`` it has aggregated, how many (series x window) there are in raw and in how
    many of them the tier differs from raw's aggregates (a field missing, extra or
    unequal). verify.yml runs it for every source and tier."""
    _check_duration(span)
    measurements = _measurement_filter(list(task.rollups))
    want = _union(
        [
            s.flux(task.every, "start", "stop")
            for s in _streams(list(task.rollups), task.raw_bucket or task.src_bucket)
        ]
    )
    return _template("tier_check.flux").substitute(
        raw=_flux_str(task.raw_bucket or task.src_bucket),
        late=_flux_str(LATE),
        lag=task.lag,
        every=task.every,
        span=span,
        dst=_flux_str(task.dst_bucket),
        checkpoint=_flux_str(CHECKPOINT),
        measurements=measurements,
        want=_indent(want),
    )
