"""One-line explanations for lines that cannot be opened: which pin, which chip, what to do."""

from __future__ import annotations

import errno
import grp
from pathlib import Path

from wattkeeper.source import SourceFatal


def _owner_group(path: str) -> str:
    try:
        return grp.getgrgid(Path(path).stat().st_gid).gr_name
    except (OSError, KeyError):
        return "gpio"


def open_failure(pin: int, chip: str, exc: BaseException) -> SourceFatal:
    """Turn an OSError/ValueError from opening ``pin`` on ``chip`` into a fix-it message."""
    code = getattr(exc, "errno", None)
    where = f"cannot open GPIO pin {pin} on {chip}"
    if isinstance(exc, FileNotFoundError) or code == errno.ENOENT:
        msg = (
            f"{where}: {chip} does not exist (list the chips with `gpiodetect`; on a Pi 5 the "
            "40-pin header is /dev/gpiochip4 with kernels before 6.6.45, /dev/gpiochip0 after)"
        )
        return SourceFatal(msg, key="pulse.chip")
    if isinstance(exc, PermissionError) or code in (errno.EACCES, errno.EPERM):
        group = _owner_group(chip)
        msg = (
            f"{where}: permission denied; the agent's user must be in the '{group}' group "
            f"that owns {chip} (sudo usermod -aG {group} USER, then restart the agent) "
            f"or {chip} must be readable and writable by it (udev rule)"
        )
        return SourceFatal(msg, key="pulse.chip")
    if code == errno.EBUSY:
        msg = (
            f"{where}: the line is busy (another program, a dtoverlay or a kernel driver "
            "such as w1-gpio holds it; `gpioinfo` names the consumer)"
        )
        return SourceFatal(msg, key="pulse.channels")
    if code == errno.ENOTTY:
        msg = f"{where}: {chip} is not a GPIO chip character device (pulse.chip)"
        return SourceFatal(msg, key="pulse.chip")
    if isinstance(exc, ValueError) or code == errno.EINVAL:
        msg = f"{where}: the chip has no such line or refused the settings ({exc})"
        return SourceFatal(msg, key="pulse.channels")
    return SourceFatal(f"{where}: {exc}", key="pulse.chip")
