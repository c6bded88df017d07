"""libgpiod v2 (`pip install gpiod`): kernel edge events with kernel timestamps.

Why this is the preferred backend: the kernel timestamps each edge in its interrupt
handler and numbers it per line, so the time is the edge's own (not when Python got
round to it) and a full event FIFO shows up as a sequence gap we can count. It is also
the interface that works on the Pi 5 (RP1), where RPi.GPIO does not.

Timestamps: libgpiod's default event clock is CLOCK_MONOTONIC. We ask for
CLOCK_REALTIME (UTC since the epoch, Linux >= 5.11) and fall back to MONOTONIC mapped to
UTC when the kernel refuses it. With kernel debounce the edge is reported once the line
has been stable for the debounce period, so all timestamps are shifted by about that
period; intervals (and so power) are not.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from wattkeeper.sources.pulse.backend import MonotonicToUtc, OnEdge, PinSpec, SeqGaps
from wattkeeper.sources.pulse.errors import open_failure

log = logging.getLogger("wattkeeper.pulse")

# Kernel FIFO per request, in events: ~ seconds of slack at meter rates before a gap.
EVENT_BUFFER = 1024


def import_gpiod() -> Any:
    """Import gpiod v2 or raise ImportError saying why (v1 has a different API)."""
    import gpiod  # type: ignore[import-not-found,unused-ignore]

    if not hasattr(gpiod, "request_lines"):
        raise ImportError("the installed gpiod is the v1 binding; wattkeeper needs gpiod >= 2")
    return gpiod


class GpiodBackend:
    name = "gpiod"

    def __init__(self, chip: str) -> None:
        self.chip = chip
        self._gpiod = import_gpiod()
        self._request: Any = None
        self._by_offset: dict[int, int] = {}
        self._realtime = True
        self._to_utc = MonotonicToUtc()
        self._gaps = SeqGaps()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1

    def _settings(self, spec: PinSpec, clock: Any) -> Any:
        g = self._gpiod
        line = g.line
        bias = {
            "pull-down": line.Bias.PULL_DOWN,
            "pull-up": line.Bias.PULL_UP,
            "disabled": line.Bias.DISABLED,
            "as-is": line.Bias.AS_IS,
        }[spec.bias]
        return g.LineSettings(
            direction=line.Direction.INPUT,
            edge_detection=line.Edge.RISING if spec.edge == "rising" else line.Edge.FALLING,
            bias=bias,
            debounce_period=timedelta(seconds=spec.debounce_s),
            event_clock=clock,
        )

    def _request_lines(self, pins: Sequence[PinSpec], clock: Any) -> Any:
        config = {p.pin: self._settings(p, clock) for p in pins}
        return self._gpiod.request_lines(
            self.chip, config=config, consumer="wattkeeper-pulse", event_buffer_size=EVENT_BUFFER
        )

    def _probe(self, pins: Sequence[PinSpec]) -> None:
        """Look at each line first, so that an error names the pin that failed."""
        pin = pins[0].pin
        try:
            with self._gpiod.Chip(self.chip) as chip:
                info = chip.get_info()
                log.info("gpiod: %s is %r with %d lines", self.chip, info.label, info.num_lines)
                for p in pins:
                    pin = p.pin
                    if p.pin >= info.num_lines:
                        raise ValueError(f"{info.label} has lines 0-{info.num_lines - 1}")
                    used = chip.get_line_info(p.pin)
                    if used.used:
                        raise OSError(errno.EBUSY, f"used by {used.consumer!r}")
        except (OSError, ValueError) as exc:
            raise open_failure(pin, self.chip, exc) from None

    def open(self, pins: Sequence[PinSpec]) -> str:
        self._probe(pins)
        self._by_offset = {p.pin: p.index for p in pins}
        clock = self._gpiod.line.Clock
        try:
            self._request = self._request_lines(pins, clock.REALTIME)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: kernel without the realtime event clock
                raise open_failure(pins[0].pin, self.chip, exc) from None
            log.info("gpiod: kernel refuses CLOCK_REALTIME event timestamps; using MONOTONIC")
            self._realtime = False
            try:
                self._request = self._request_lines(pins, clock.MONOTONIC)
            except OSError as exc2:
                raise open_failure(pins[0].pin, self.chip, exc2) from None
        clk = "realtime" if self._realtime else "monotonic->UTC"
        return f"gpiod on {self.chip}, pins {', '.join(str(p.pin) for p in pins)}, clock {clk}"

    def start(self, on_edge: OnEdge) -> None:
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(
            target=self._loop, args=(on_edge,), name="pulse-gpiod", daemon=True
        )
        self._thread.start()

    def _loop(self, on_edge: OnEdge) -> None:
        import select

        req = self._request
        poller = select.poll()
        poller.register(req.fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while not self._stop.is_set():
            ready = poller.poll(1000)
            if self._stop.is_set():
                break
            if not any(fd == req.fd for fd, _ in ready):
                continue
            try:
                events = req.read_edge_events(max_events=EVENT_BUFFER)
            except OSError as exc:
                log.error("gpiod: reading edge events failed: %s", exc)
                self._stop.wait(1.0)
                continue
            for ev in events:
                self._gaps.observe(ev.line_offset, ev.line_seqno)
                t = ev.timestamp_ns if self._realtime else self._to_utc(ev.timestamp_ns)
                on_edge(self._by_offset[ev.line_offset], t)

    def stop(self) -> None:
        self._stop.set()
        if self._wake_w >= 0:
            os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(5)

    def missed(self) -> int:
        return self._gaps.missed

    def close(self) -> None:
        self.stop()
        if self._request is not None:
            self._request.release()
            self._request = None
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1
