"""Power profiles and the exact pulse trains they produce.

A meter emits one pulse each time 1/pulses_per_kwh kWh has flowed, so the pulse times are
found by integrating the power: that makes the interval-derived power of the agent equal
to the mean power over each interval, which the tests can compute independently.
Times are seconds relative to the train's start (floats stay exact to picoseconds over
days); the absolute start only matters for the time-of-day of "household-day".
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from wattkeeper.config import parse_duration


class Profile(Protocol):
    def power(self, t: float) -> float:
        """Watts at ``t`` seconds after the start."""
        ...

    def next_change(self, t: float) -> float:
        """The first time after ``t`` at which the power may change (inf: never)."""
        ...


@dataclass
class Constant:
    watts: float

    def power(self, t: float) -> float:
        return self.watts

    def next_change(self, t: float) -> float:
        return math.inf


@dataclass
class Steps:
    """W1, W2, ... each for ``period`` seconds, repeating."""

    watts: list[float]
    period: float

    def power(self, t: float) -> float:
        return self.watts[int(t // self.period) % len(self.watts)]

    def next_change(self, t: float) -> float:
        return (math.floor(t / self.period) + 1) * self.period


@dataclass
class HouseholdDay:
    """A plausible day by the minute (UTC time of day): base load, cooking peaks, solar.

    ``kind`` picks the meter: "import" draws load minus solar, "export" the surplus,
    "generate" the solar output, anything else the whole load.
    """

    start_epoch: float
    kind: str
    seed: int = 1

    def _minute(self, t: float) -> int:
        return math.floor((self.start_epoch + t) / 60)

    def _load(self, minute: int) -> float:
        hour = (minute % 1440) / 60
        rng = random.Random(self.seed * 1_000_003 + minute)
        load = 180.0 + 60 * rng.random()
        if 6.5 <= hour < 8.5:
            load += 900 * rng.random() + 400
        if 17 <= hour < 21:
            load += 1800 * rng.random() + 600
        if rng.random() < 0.03:  # a kettle, an oven, a washing machine
            load += 2000
        return load

    def _solar(self, minute: int) -> float:
        hour = (minute % 1440) / 60
        if not 6 <= hour < 18:
            return 0.0
        clouds = 0.6 + 0.4 * random.Random(self.seed * 7_000_003 + minute // 10).random()
        return 3500 * math.sin(math.pi * (hour - 6) / 12) * clouds

    def power(self, t: float) -> float:
        m = self._minute(t)
        load, solar = self._load(m), self._solar(m)
        if self.kind == "import":
            return max(0.0, load - solar)
        if self.kind == "export":
            return max(0.0, solar - load)
        if self.kind == "generate":
            return solar
        return load

    def next_change(self, t: float) -> float:
        return (self._minute(t) + 1) * 60 - self.start_epoch


def parse_profile(spec: str, channel: str, start_epoch: float, seed: int) -> Profile:
    """constant:W | steps:W1,W2,...@PERIOD | household-day."""
    kind, _, arg = spec.partition(":")
    try:
        if kind == "constant":
            return Constant(float(arg))
        if kind == "steps":
            values, _, period = arg.partition("@")
            return Steps([float(v) for v in values.split(",")], parse_duration(period or "1m"))
        if kind == "household-day":
            return HouseholdDay(start_epoch, channel, seed)
    except ValueError as exc:
        raise ValueError(f"profile {spec!r}: {exc}") from None
    raise ValueError(f"profile {spec!r}: use constant:W, steps:W1,W2@PERIOD or household-day")


def pulse_offsets(profile: Profile, pulses_per_kwh: float, scale: float = 1.0) -> Iterator[float]:
    """Seconds after the start at which the meter pulses (power multiplied by ``scale``)."""
    joules = 3.6e6 / pulses_per_kwh
    t = 0.0
    need = joules
    while True:
        p = profile.power(t) * scale
        nxt = profile.next_change(t)
        if p <= 0:
            if math.isinf(nxt):
                return
            t = nxt
            continue
        dt = need / p
        if t + dt <= nxt:
            t += dt
            need = joules
            yield t
        else:
            need -= p * (nxt - t)
            t = nxt
