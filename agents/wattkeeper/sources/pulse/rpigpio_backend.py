"""The RPi.GPIO API: RPi.GPIO itself on a Pi 1-4, rpi-lgpio (same import) on a Pi 5.

Less exact than gpiod: the library gives no kernel timestamp and no sequence number, so
the time is taken when the callback runs (time.monotonic_ns() mapped to UTC: scheduling
latency, typically 0.1-2 ms, adds jitter to each interval) and edges the library missed
cannot be counted. Use it where libgpiod v2 is not available.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from wattkeeper.source import SourceFatal
from wattkeeper.sources.pulse.backend import MonotonicToUtc, OnEdge, PinSpec

log = logging.getLogger("wattkeeper.pulse")


def import_rpigpio() -> Any:
    """Import RPi.GPIO; on a non-Pi it raises RuntimeError at import, which we normalise."""
    try:
        import RPi.GPIO as GPIO  # type: ignore[import-not-found,unused-ignore]
    except RuntimeError as exc:  # "This module can only be run on a Raspberry Pi!"
        raise ImportError(str(exc)) from exc
    return GPIO


class RpiGpioBackend:
    name = "rpigpio"

    def __init__(self, module: Any = None) -> None:
        self._gpio = module if module is not None else import_rpigpio()
        self._pins: Sequence[PinSpec] = ()
        self._to_utc = MonotonicToUtc()
        self._started = False

    def open(self, pins: Sequence[PinSpec]) -> str:
        g = self._gpio
        g.setwarnings(False)
        g.setmode(g.BCM)
        pud = {"pull-down": g.PUD_DOWN, "pull-up": g.PUD_UP}
        for p in pins:
            try:
                g.setup(p.pin, g.IN, pull_up_down=pud.get(p.bias, g.PUD_OFF))
            except (RuntimeError, ValueError, OSError) as exc:
                raise SourceFatal(
                    f"cannot open GPIO pin {p.pin} with RPi.GPIO: {exc} (the agent's user must "
                    "be in the 'gpio' group for /dev/gpiomem; on a Pi 5 install rpi-lgpio "
                    "or better gpiod)",
                    key="pulse.channels",
                ) from None
        self._pins = pins
        return f"RPi.GPIO, pins {', '.join(str(p.pin) for p in pins)}, callback timestamps"

    def start(self, on_edge: OnEdge) -> None:
        g = self._gpio
        for p in self._pins:
            edge = g.RISING if p.edge == "rising" else g.FALLING

            def callback(_channel: int, index: int = p.index) -> None:
                on_edge(index, self._to_utc(time.monotonic_ns()))

            kwargs: dict[str, Any] = {"callback": callback}
            bounce_ms = round(p.debounce_s * 1000)
            if bounce_ms > 0:
                kwargs["bouncetime"] = bounce_ms
            try:
                g.add_event_detect(p.pin, edge, **kwargs)
            except (RuntimeError, ValueError) as exc:
                raise SourceFatal(
                    f"cannot watch edges on GPIO pin {p.pin} with RPi.GPIO: {exc} "
                    '(on a Pi 5 RPi.GPIO fails: use backend = "gpiod" or rpi-lgpio)',
                    key="pulse.channels",
                ) from None
        self._started = True

    def stop(self) -> None:
        if self._started:
            for p in self._pins:
                try:
                    self._gpio.remove_event_detect(p.pin)
                except (RuntimeError, ValueError):
                    log.debug("remove_event_detect(%d) failed", p.pin)
            self._started = False

    def missed(self) -> int:
        return 0  # RPi.GPIO has no sequence numbers: a missed edge is invisible.

    def close(self) -> None:
        self.stop()
        if self._pins:
            self._gpio.cleanup([p.pin for p in self._pins])
            self._pins = ()
