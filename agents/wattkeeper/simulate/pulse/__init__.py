"""Meter pulses on simulated GPIO lines, served over TCP to the simulated pulse backend.

The simulator is the kernel of a fake Raspberry Pi: it timestamps each edge itself (so
timestamps are exact whatever the scheduling), numbers edges per line, and drops edges
when the agent reads too slowly, like the kernel's bounded event FIFO. With --truth it
writes every edge it generated, so tests compare against the exact truth.
"""

from __future__ import annotations

import argparse

from wattkeeper.simulate._serving import listen_address
from wattkeeper.simulate.pulse.server import serve

__all__ = ["add_arguments", "serve"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", type=listen_address, required=True, metavar="HOST:PORT")
    parser.add_argument(
        "--channels",
        default="import:20,export:26,generate:21",
        help="NAME:PIN[:IMP_PER_KWH],... (the seed's pins by default)",
    )
    parser.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="[CHANNEL=]SPEC",
        help="constant:W | steps:W1,W2,...@PERIOD | household-day; repeat per channel",
    )
    parser.add_argument("--pulses-per-kwh", type=float, default=1000.0)
    parser.add_argument("--rate-scale", type=float, default=1.0, help="multiply every power")
    parser.add_argument(
        "--speed", type=float, default=1.0, help="simulated seconds per real second (replay)"
    )
    parser.add_argument(
        "--start", default="now", help="UTC time of the train's start (ISO 8601) or 'now'"
    )
    parser.add_argument("--count", type=int, default=0, help="stop after N pulses per channel")
    parser.add_argument("--duration", default="", help="stop after this much simulated time")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--truth", default="", metavar="FILE", help="append every edge here")
    parser.add_argument(
        "--fifo", type=int, default=1024, help="edges held for a slow reader before dropping"
    )
    parser.add_argument(
        "--unavailable",
        action="append",
        default=[],
        metavar="PIN:WHY",
        help="a pin that cannot be opened: denied, busy or missing",
    )
    parser.add_argument("--lines", type=int, default=54, help="lines of the simulated chip")
