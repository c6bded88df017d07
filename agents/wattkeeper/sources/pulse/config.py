"""The [pulse] section: which pins to watch and what one pulse is worth.

Channels are required (no silent defaults): a meter wired to the wrong pin, or counted
with the wrong pulses per kWh, would produce plausible but wrong energy for months.
The pins of the original PowerLogger (import 20, export 26, generate 21) are in the docs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from wattkeeper.config import ConfigError, Duration

Edge = Literal["rising", "falling"]
Bias = Literal["auto", "pull-down", "pull-up", "disabled", "as-is"]
BackendName = Literal["auto", "gpiod", "rpigpio", "simulated"]

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_HOSTPORT = re.compile(r"^\[?[^\s\]]+\]?:\d{1,5}$")


@dataclass
class ChannelSection:
    """One meter output on one GPIO line (BCM numbering = the chip's line offset)."""

    # The channel tag of its points (import, export, generate ...).
    name: str
    # GPIO line (BCM number) the output is wired to.
    pin: int
    # The meter's constant, printed on its label as imp/kWh (S0) or as the LED's rate.
    pulses_per_kwh: float
    # Which edge of a pulse counts.
    edge: Edge = "rising"
    # Pulses shorter than this after the edge are contact bounce (S0 pulses last >= 30 ms).
    debounce: Duration = 0.005
    # "auto": pull-down for rising edges (S0 switching to 3.3 V), pull-up for falling ones.
    bias: Bias = "auto"

    def resolved_bias(self) -> Bias:
        if self.bias != "auto":
            return self.bias
        return "pull-down" if self.edge == "rising" else "pull-up"


@dataclass
class PulseSection:
    """[pulse]: channels, the GPIO backend and the chip."""

    # The meter outputs to count, each {name, pin, pulses_per_kwh}.
    channels: list[ChannelSection]
    # auto: libgpiod v2 if a /dev/gpiochip* exists and `gpiod` imports, else RPi.GPIO.
    backend: BackendName = "auto"
    # The 40-pin header's chip. Pi 5: /dev/gpiochip4 on kernels before 6.6.45, then gpiochip0.
    chip: str = "/dev/gpiochip0"
    # Pulses held in memory between two buffer commits ([buffer] commit_interval).
    queue_size: int = 100_000
    # HOST:PORT of `wattkeeper simulate pulse` (backend = "simulated" only).
    simulator: str = ""
    # Seconds to wait for the simulator before giving up at start.
    connect_timeout: Duration = 5.0

    @property
    def top_line(self) -> int:
        """The highest line number a pin may have: the header chip of a Pi has BCM lines
        0-53 (whatever the model); another chip may have more."""
        header = self.backend != "simulated" and self.chip_path == "/dev/gpiochip0"
        return 53 if header else 1023

    @property
    def chip_path(self) -> str:
        return self.chip if self.chip.startswith("/") else f"/dev/{self.chip}"

    def validate(self, where: str, file: Path) -> None:
        if not self.channels:
            raise ConfigError(f"{where}.channels", file, "at least one channel is required")
        names: set[str] = set()
        pins: set[int] = set()
        for i, ch in enumerate(self.channels):
            key = f"{where}.channels[{i}]"
            if not _NAME.match(ch.name):
                raise ConfigError(f"{key}.name", file, f"{ch.name!r}: use letters, digits, _.-")
            if ch.name in names:
                raise ConfigError(f"{key}.name", file, f"channel {ch.name!r} is listed twice")
            if ch.pin in pins:
                raise ConfigError(f"{key}.pin", file, f"pin {ch.pin} is used by two channels")
            if not 0 <= ch.pin <= self.top_line:
                raise ConfigError(
                    f"{key}.pin", file, f"{ch.pin} is not a GPIO line number (0-{self.top_line})"
                )
            if not 0 < ch.pulses_per_kwh <= 1e6:
                raise ConfigError(
                    f"{key}.pulses_per_kwh", file, "must be positive (the imp/kWh on the label)"
                )
            if not 0 <= ch.debounce < 1:
                raise ConfigError(f"{key}.debounce", file, "must be between 0 and 1s")
            names.add(ch.name)
            pins.add(ch.pin)
        if self.queue_size < 100:
            raise ConfigError(f"{where}.queue_size", file, "must be at least 100")
        if self.backend == "simulated" and not _HOSTPORT.match(self.simulator):
            raise ConfigError(
                f"{where}.simulator", file, 'backend "simulated" needs simulator = "HOST:PORT"'
            )
