"""A tiny deterministic source for testing the core: reading n has seq=n at BASE + n s.

Its cursor (the next seq) is stored with each batch, so after any crash the readings that
were committed are never generated again and those that were not are generated again
with the same timestamps: exactly what a real source with a reading-time cursor does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from wattkeeper.config import Duration
from wattkeeper.downsample import Rollup
from wattkeeper.point import Point
from wattkeeper.sensors import Sensor
from wattkeeper.source import Batch, SourceContext, SourceError, SourcePlugin

BASE_NS = 1_700_000_000 * 10**9


@dataclass
class TinySection:
    points_per_poll: int = 10
    interval: Duration = 0.1
    # Stop generating after this many readings (0 = never).
    total: int = 0
    # Every Nth reading carries its value as a string: a field type conflict in InfluxDB.
    bad_every: int = 0
    # Every Nth poll fails with a SourceError.
    fail_every: int = 0
    run: str = "r1"
    # Reading n is stamped at base + n s (Unix seconds; the default is 2023-11-14).
    base: int = BASE_NS // 10**9
    # The live view's tests: each poll also gives the live view (not the buffer) one value
    # per `lane` (a sensor each), a text of `pad` characters; "now" stamps readings with
    # the poll time (to see the polling cadence in InfluxDB) instead of BASE + seq s.
    lanes: int = 1
    pad: int = 0
    clock: str = "seq"


class TinySource:
    def __init__(self, ctx: SourceContext) -> None:
        self.cfg: TinySection = ctx.config.source
        self.state = ctx.state
        self.polls = 0

    def next_delay(self) -> float:
        return self.cfg.interval

    def poll(self) -> Batch:
        self.polls += 1
        if self.cfg.fail_every and self.polls % self.cfg.fail_every == 0:
            raise SourceError("simulated source failure")
        start = int(self.state.get_state("tiny.next", 0))
        n = self.cfg.points_per_poll
        if self.cfg.total:
            n = max(0, min(n, self.cfg.total - start))
        points = []
        now_ns = time.time_ns()
        for i, seq in enumerate(range(start, start + n)):
            bad = self.cfg.bad_every and seq % self.cfg.bad_every == self.cfg.bad_every - 1
            value: float | str = f"bad{seq}" if bad else float(seq)
            t = now_ns + i if self.cfg.clock == "now" else (self.cfg.base + seq) * 10**9
            points.append(Point("tiny", {"seq": value}, t, {"run": self.cfg.run}))
        live = [
            Point("tiny_live", {"pad": f"{start}-{lane}".ljust(self.cfg.pad, "x")}, now_ns,
                  {"lane": f"l{lane}"})
            for lane in range(self.cfg.lanes if self.cfg.pad else 0)
        ]  # fmt: skip
        return Batch(points=points, state={"tiny.next": start + n}, live=live)

    def check(self) -> str:
        return "tiny source ready"

    def close(self) -> None:
        pass


PLUGIN = SourcePlugin(
    name="tiny",
    config_class=TinySection,
    factory=TinySource,
    rollups=(Rollup("tiny", {"seq": "sum"}),),
    sensors=(
        Sensor("seq", "Sequence", "tiny", "seq", state_class="measurement"),
        Sensor("pad", "Pad", "tiny_live", "pad", per_tag="lane"),
    ),
)
