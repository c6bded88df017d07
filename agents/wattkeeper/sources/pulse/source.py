"""The streaming pulse source: open the pins once, then count edges until stopped."""

from __future__ import annotations

import logging

from wattkeeper.source import Batch, PointSink, SourceContext
from wattkeeper.sources.pulse.backend import PinBackend, PinSpec
from wattkeeper.sources.pulse.choose import choose_backend
from wattkeeper.sources.pulse.config import PulseSection
from wattkeeper.sources.pulse.counter import PulseCounter

log = logging.getLogger("wattkeeper.pulse")


class PulseSource:
    """Claims the lines in the constructor so that `check` and a bad pin fail early."""

    def __init__(self, ctx: SourceContext, backend: PinBackend | None = None) -> None:
        self.cfg: PulseSection = ctx.config.source
        self.pins = [
            PinSpec(i, ch.name, ch.pin, ch.edge, ch.resolved_bias(), ch.debounce)
            for i, ch in enumerate(self.cfg.channels)
        ]
        self.backend = backend or choose_backend(self.cfg)
        self.description = self.backend.open(self.pins)
        self.counter: PulseCounter | None = None
        log.info(
            "pulse: %s; channels %s",
            self.description,
            ", ".join(
                f"{c.name}=pin {c.pin} ({c.pulses_per_kwh:g}/kWh)" for c in self.cfg.channels
            ),
        )

    def start(self, sink: PointSink) -> None:
        # The core's QueueSink has a public bound; honour [pulse] queue_size when it has one.
        if hasattr(sink, "maxsize"):
            sink.maxsize = self.cfg.queue_size
        self.counter = PulseCounter(self.cfg.channels, sink)
        self.backend.start(self.counter.on_edge)

    def stop(self) -> None:
        self.backend.stop()
        if self.counter is not None:
            counts = self.counter.counts()
            log.info(
                "pulse: counted %s",
                ", ".join(f"{c.name} {n}" for c, n in zip(self.cfg.channels, counts, strict=True)),
            )
            if self.counter.bumped:
                log.info("pulse: %d pulses moved 1 ns to keep them apart", self.counter.bumped)

    def lost(self) -> int:
        return self.backend.missed()

    def next_delay(self) -> float:
        return 1.0

    def poll(self) -> Batch:
        # `run pulse --once`: a pulse train has no "one poll"; the run just flushes the buffer.
        return Batch()

    def check(self) -> str:
        return self.description

    def close(self) -> None:
        self.backend.close()
