"""The contract between a source and the core.

A source only gathers readings. Everything else (buffering, delivery, retries, logging,
alerts, metrics) belongs to the core, in the way Telegraf separates inputs from outputs.

Two shapes exist:

* a *polling* source answers ``poll()`` with a :class:`Batch`; the runner commits the batch
  (points and the source's cursor, in one SQLite transaction) before the poll counts as done;
* a *streaming* source (GPIO pulses) is started with a :class:`PointSink` and pushes points
  into it from its own threads; the sink commits them in batches.

A source lives in one module under ``wattkeeper.sources`` that exposes ``PLUGIN``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from wattkeeper.downsample import Rollup
from wattkeeper.point import Point
from wattkeeper.sensors import Sensor

if TYPE_CHECKING:
    from wattkeeper.config import AgentConfig
    from wattkeeper.influx import InfluxClient


class SourceError(Exception):
    """A poll failed for a reason that may pass (network, 5xx, timeout). Retried."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SourceFatal(Exception):
    """The source cannot work with this configuration (wrong API key, no device).

    The agent exits 78 so that systemd (RestartPreventExitStatus=78) does not restart it
    in a loop; the message must say what to fix.
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


@dataclass
class Batch:
    """What one poll gathered: the points, and state to store atomically with them."""

    points: list[Point] = field(default_factory=list)
    # Source cursors (last reading time, etc.); committed in the same transaction.
    state: dict[str, Any] = field(default_factory=dict)
    # Readings the source refused (not a number, incomplete poll), for the poll_errors count.
    rejected: int = 0
    # Unix time the newest reading reaches, when its timestamp understates it (a reading
    # stamped at the start of its interval covers up to the interval's end). Else the
    # newest point's own time counts.
    newest: float | None = None
    # Values for the live view only (Home Assistant), never stored: summaries a source
    # alone can make, such as WattiVahti's last complete day and hour.
    live: list[Point] = field(default_factory=list)


class StateStore(Protocol):
    """Durable key/value state of a source, kept in the buffer file."""

    def get_state(self, key: str, default: Any = None) -> Any: ...


class PointSink(Protocol):
    """Where a streaming source puts points; thread-safe, never blocks on disk."""

    def put(self, point: Point) -> bool:
        """Queue a point; False if the queue is full (the loss is counted by the sink)."""
        ...


@dataclass
class SourceContext:
    """What the core hands a source: its config, state, logger and an InfluxDB reader."""

    config: AgentConfig
    state: StateStore
    log: logging.Logger
    influx: InfluxClient
    once: bool = False


class Source(Protocol):
    """A running source. Polling sources implement ``poll``; streaming ones ``start``."""

    def next_delay(self) -> float:
        """Seconds to wait before the next poll (a source may derive it from a budget)."""
        ...

    def poll(self) -> Batch: ...

    def check(self) -> str:
        """Reach the real device or service once; return a short description or raise."""
        ...

    def close(self) -> None: ...


class StreamingSource(Source, Protocol):
    def start(self, sink: PointSink) -> None: ...

    def stop(self) -> None: ...

    def lost(self) -> int:
        """Readings lost before they reached the sink (missed edges), cumulative."""
        ...


@dataclass(frozen=True)
class SourcePlugin:
    """How the CLI and runner find a source: its name, config section and factory."""

    name: str
    config_class: type | None
    factory: Callable[[SourceContext], Source]
    streaming: bool = False
    # The systemd shape: "daemon" runs forever; "oneshot" is started by a timer.
    kind: str = "daemon"
    # Extra subcommands (sync ranges, reports, migrations): called with the top-level
    # subparsers; each added parser sets ``func`` taking the parsed args, returning an exit code.
    add_commands: Callable[[argparse._SubParsersAction[Any]], None] | None = None
    description: str = ""
    # How the InfluxDB role downsamples this source's measurements (1m, 5m, 1h tiers).
    rollups: Sequence[Rollup] = ()
    # Alert when no reading is newer than this many seconds (None: never), unless
    # [agent] stale_after says otherwise; the alert names ``stale_subject``.
    stale_after: float | None = None
    stale_subject: str = "the source"
    # What the live view shows in Home Assistant (wattkeeper.sensors), declared as data.
    sensors: Sequence[Sensor] = ()
    # A field outside ``sensors`` that a user named in [mqtt] sensors, described (or None).
    describe_sensor: Callable[[str], Sensor | None] | None = None
