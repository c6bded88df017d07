"""Edge -> `pulse` point: energy of one pulse, power from the interval to the previous one.

Runs in the backend's edge thread, so it only does arithmetic and a non-blocking put.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from wattkeeper.point import Integer, Point
from wattkeeper.source import PointSink
from wattkeeper.sources.pulse.config import ChannelSection

MEASUREMENT = "pulse"


@dataclass
class _Channel:
    tags: dict[str, str]
    energy_wh: float
    # 3.6e6 W*s per kWh / pulses_per_kwh, in W*ns: power = this / interval_ns.
    power_ns: float
    last_edge_ns: int | None = None
    last_written_ns: int = -1
    pulses: int = 0


class PulseCounter:
    """Builds one point per edge. Thread-safe: RPi.GPIO may call back from several threads."""

    def __init__(self, channels: Sequence[ChannelSection], sink: PointSink) -> None:
        self._sink = sink
        self._lock = threading.Lock()
        self._channels = [
            _Channel(
                tags={"channel": ch.name},
                energy_wh=1000.0 / ch.pulses_per_kwh,
                power_ns=3.6e6 * 1e9 / ch.pulses_per_kwh,
            )
            for ch in channels
        ]
        self.bumped = 0

    def on_edge(self, index: int, t_ns: int) -> None:
        ch = self._channels[index]
        with self._lock:
            fields: dict[str, float | int | bool | str] = {
                "pulses": Integer(1),
                "energy_wh": ch.energy_wh,
            }
            last = ch.last_edge_ns
            # No power for the first pulse after start (no interval), nor when the clock
            # stepped backwards (no honest interval).
            if last is not None and t_ns > last:
                fields["power_w"] = ch.power_ns / (t_ns - last)
            ch.last_edge_ns = t_ns
            # InfluxDB keeps one point per series and timestamp: a second pulse in the same
            # nanosecond would overwrite the first. Move it 1 ns later instead.
            when = t_ns
            if when <= ch.last_written_ns:
                when = ch.last_written_ns + 1
                self.bumped += 1
            ch.last_written_ns = when
            ch.pulses += 1
        self._sink.put(Point(MEASUREMENT, fields, when, ch.tags))

    def counts(self) -> list[int]:
        with self._lock:
            return [c.pulses for c in self._channels]
