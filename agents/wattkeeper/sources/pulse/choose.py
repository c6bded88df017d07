"""Pick the pin backend: the one the config names, or for "auto" the best that works here.

"auto" prefers libgpiod v2 (kernel timestamps and loss counting; the only choice on a
Pi 5), then the RPi.GPIO API. It never picks the simulator: fake pulses in a real
installation would be worse than an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wattkeeper.source import SourceFatal
from wattkeeper.sources.pulse.backend import PinBackend
from wattkeeper.sources.pulse.config import PulseSection

log = logging.getLogger("wattkeeper.pulse")

INSTALL_HINT = (
    "install the gpiod extra (pip install 'wattkeeper[gpiod]', libgpiod v2) or, on a Pi 1-4, "
    "RPi.GPIO (Pi 5: rpi-lgpio)"
)


def _import_gpiod() -> Any:
    from wattkeeper.sources.pulse.gpiod_backend import import_gpiod

    return import_gpiod()


def _import_rpigpio() -> Any:
    from wattkeeper.sources.pulse.rpigpio_backend import import_rpigpio

    return import_rpigpio()


def choose_backend(
    cfg: PulseSection,
    *,
    chips: Callable[[], list[str]] | None = None,
    import_gpiod: Callable[[], Any] = _import_gpiod,
    import_rpigpio: Callable[[], Any] = _import_rpigpio,
) -> PinBackend:
    """Return an unopened backend, or raise SourceFatal saying what is missing."""
    name = cfg.backend
    if name == "simulated":
        from wattkeeper.sources.pulse.simulated_backend import SimulatedBackend

        log.info("pulse backend: simulated (simulator at %s)", cfg.simulator)
        return SimulatedBackend(cfg.simulator, cfg.connect_timeout)
    if name == "gpiod":
        try:
            import_gpiod()
        except ImportError as exc:
            raise SourceFatal(
                f'backend "gpiod": {exc}; {INSTALL_HINT}', key="pulse.backend"
            ) from None
        return _gpiod(cfg)
    if name == "rpigpio":
        try:
            module = import_rpigpio()
        except ImportError as exc:
            raise SourceFatal(
                f'backend "rpigpio": {exc}; {INSTALL_HINT}', key="pulse.backend"
            ) from None
        return _rpigpio(module)
    # auto
    reasons: list[str] = []
    found = chips() if chips is not None else _chips()
    if not found:
        reasons.append("gpiod: no /dev/gpiochip* on this host")
    else:
        try:
            import_gpiod()
        except ImportError as exc:
            reasons.append(f"gpiod: {exc}")
        else:
            log.info("pulse backend: gpiod (auto; chips: %s)", ", ".join(found))
            return _gpiod(cfg)
    try:
        module = import_rpigpio()
    except ImportError as exc:
        reasons.append(f"RPi.GPIO: {exc}")
    else:
        log.info("pulse backend: RPi.GPIO (auto; %s)", "; ".join(reasons))
        return _rpigpio(module)
    raise SourceFatal(
        f"no GPIO backend works on this host ({'; '.join(reasons)}); {INSTALL_HINT}",
        key="pulse.backend",
    )


def _chips() -> list[str]:
    return sorted(str(c) for c in Path("/dev").glob("gpiochip*"))


def _gpiod(cfg: PulseSection) -> PinBackend:
    from wattkeeper.sources.pulse.gpiod_backend import GpiodBackend

    return GpiodBackend(cfg.chip_path)


def _rpigpio(module: Any) -> PinBackend:
    from wattkeeper.sources.pulse.rpigpio_backend import RpiGpioBackend

    return RpiGpioBackend(module)
