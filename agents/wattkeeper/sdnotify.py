"""The systemd notify protocol (READY=1, WATCHDOG=1, STATUS=, STOPPING=1).

A datagram to $NOTIFY_SOCKET; a no-op when not started by systemd with Type=notify.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    def __init__(self) -> None:
        addr = os.environ.get("NOTIFY_SOCKET", "")
        if addr.startswith("@"):
            addr = "\0" + addr[1:]
        self._addr = addr or None
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        enabled = usec is not None and (pid is None or pid == str(os.getpid()))
        self.watchdog_interval: float | None = int(usec) / 2e6 if enabled and usec else None

    @property
    def enabled(self) -> bool:
        return self._addr is not None

    def send(self, *assignments: str) -> None:
        if self._addr is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.sendto("\n".join(assignments).encode(), self._addr)
        except OSError:
            pass  # systemd gone (shutdown) or not ours: nothing to tell

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1")
