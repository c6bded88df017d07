"""What every pin backend offers, and the small helpers they share.

A backend turns edges on GPIO lines into ``on_edge(channel_index, utc_ns)`` calls from
its own thread. It must never block on disk or network in that thread: the callback only
builds a point and puts it in the in-memory sink.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from wattkeeper.sources.pulse.config import Bias, Edge

OnEdge = Callable[[int, int], None]


@dataclass(frozen=True)
class PinSpec:
    """One line to watch; ``index`` is the channel's position in the config."""

    index: int
    name: str
    pin: int
    edge: Edge
    bias: Bias
    debounce_s: float


class PinBackend(Protocol):
    """Opens lines, reports their edges with timestamps, counts the edges it missed."""

    name: str

    def open(self, pins: Sequence[PinSpec]) -> str:
        """Claim the lines (raise SourceFatal naming pin, chip and permission); describe."""
        ...

    def start(self, on_edge: OnEdge) -> None:
        """Start delivering edges to ``on_edge`` from the backend's own thread."""
        ...

    def stop(self) -> None: ...

    def missed(self) -> int:
        """Edges the backend knows it lost (kernel sequence gaps), cumulative."""
        ...

    def close(self) -> None: ...


class SeqGaps:
    """Counts missed edges from per-line sequence numbers (the kernel numbers each edge).

    A gap between two consecutive numbers on a line is edges the kernel dropped because
    its event FIFO was full; that is the only loss a GPIO reader can know about.
    """

    def __init__(self) -> None:
        self._last: dict[int, int] = {}
        self.missed = 0

    def observe(self, line: int, seq: int) -> None:
        last = self._last.get(line)
        if last is not None and seq > last + 1:
            self.missed += seq - last - 1
        self._last[line] = seq

    def reset(self) -> None:
        """Sequence numbers restart when the lines are requested again."""
        self._last.clear()


class MonotonicToUtc:
    """Maps CLOCK_MONOTONIC nanoseconds to UTC wall time.

    Intervals between pulses stay exact (both ends use the same monotonic clock); the
    offset to wall time is re-sampled now and then so that NTP corrections reach the
    timestamps without making an interval negative on a step.
    """

    def __init__(self, resample_s: float = 60.0) -> None:
        self._resample_ns = int(resample_s * 1e9)
        self._lock = threading.Lock()
        self._offset = 0
        self._sampled_at = -(2**62)

    def _sample(self, mono: int) -> None:
        # Take the pair as close together as possible: the smaller window wins.
        best = None
        for _ in range(3):
            a = time.monotonic_ns()
            wall = time.time_ns()
            b = time.monotonic_ns()
            if best is None or b - a < best[0]:
                best = (b - a, wall - (a + b) // 2)
        assert best is not None
        self._offset = best[1]
        self._sampled_at = mono

    def __call__(self, mono_ns: int) -> int:
        with self._lock:
            if mono_ns - self._sampled_at > self._resample_ns:
                self._sample(mono_ns)
            return mono_ns + self._offset
