"""What every simulator's command line shares: its address, durations, and a server that
runs until SIGTERM or Ctrl-C and then closes cleanly (tests stop simulators with SIGTERM
and read their truth files afterwards, so the close must happen)."""

from __future__ import annotations

import argparse
import signal
import socketserver
import threading
from collections.abc import Callable
from types import FrameType

from wattkeeper.config import parse_duration


def listen_address(text: str) -> tuple[str, int]:
    """HOST:PORT for ``--listen`` (an IPv6 host may be bracketed)."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def duration(text: str) -> float:
    """A duration such as "30s", "15m" or "2h"."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def signed_duration(text: str) -> float:
    """A duration such as "30s" or "2h"; a leading "-" makes it negative (clock offsets)."""
    sign = -1.0 if text.startswith("-") else 1.0
    return sign * duration(text.lstrip("+-"))


def serve_until_signalled(
    server: socketserver.BaseServer, on_stop: Callable[[], None] | None = None
) -> int:
    """Serve until SIGTERM/SIGINT; ``on_stop`` runs in the handler (e.g. to end streams)."""

    def stop(_signum: int, _frame: FrameType | None) -> None:
        if on_stop is not None:
            on_stop()
        # shutdown() waits for serve_forever, which runs in this very thread: not inline.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0
