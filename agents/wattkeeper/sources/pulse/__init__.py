"""GPIO pulse source: counts the S0 / LED pulses of electricity meters on a Raspberry Pi.

One `pulse` point per pulse (tag `channel`): `pulses` = 1i, `energy_wh` = 1000 / imp_per_kWh,
`power_w` from the interval to the previous pulse of the channel. Backends: libgpiod v2,
the RPi.GPIO API, and a simulator for tests and the demo.
"""

from __future__ import annotations

from wattkeeper.downsample import Rollup
from wattkeeper.sensors import Sensor
from wattkeeper.source import Simulated, SourceContext, SourcePlugin, Unit
from wattkeeper.sources.pulse.config import PulseSection
from wattkeeper.sources.pulse.source import PulseSource

ROLLUPS = [Rollup("pulse", {"pulses": "sum", "energy_wh": "sum", "power_w": "mean"})]
# Home Assistant: per channel, the power of the last pulse interval (falling while no pulse
# comes) and the energy counted since the agent first published (a running total kept in
# the buffer with the pulses).
SENSORS = (
    Sensor("power", "Power", "pulse", "power_w", device_class="power",
           state_class="measurement", unit="W", per_tag="channel", precision=0,
           per_reading_wh="energy_wh"),
    Sensor("energy", "Energy", "pulse", "energy_wh", device_class="energy",
           state_class="total_increasing", unit="kWh", kind="total", per_tag="channel",
           scale=0.001, precision=3),
)  # fmt: skip


def _factory(ctx: SourceContext) -> PulseSource:
    return PulseSource(ctx)


PLUGIN = SourcePlugin(
    name="pulse",
    config_class=PulseSection,
    factory=_factory,
    streaming=True,
    # libgpiod v2's bindings; the unit opens the GPIO chips as the gpio group.
    unit=Unit(extras=("gpiod",), groups=("gpio",), devices=("char-gpiochip rw",)),
    example={
        "channels": [
            {"name": "import", "pin": 20, "pulses_per_kwh": 1000},
            {"name": "export", "pin": 26, "pulses_per_kwh": 1000},
        ]
    },
    simulated=Simulated(
        port=18083,
        args=("--channels", "import:20,export:26,generate:21", "--rate-scale", "5"),
        config={"backend": "simulated", "simulator": "127.0.0.1:18083"},
    ),
    description="electricity-meter pulses on GPIO pins (import / export / generation)",
    rollups=ROLLUPS,
    sensors=SENSORS,
)
