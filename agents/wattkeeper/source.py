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
from typing import TYPE_CHECKING, Any, Literal, Protocol

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
class Secret:
    """A config key naming a secret file, which the role writes from a Vault variable
    (``wattkeeper_SOURCE_KEY`` without ``_file``), mode 0600, owned by the agent's user."""

    key: str
    # Where the role writes it on the host.
    path: str
    # One line for the variable's documentation (what the secret is, where to get it).
    help: str
    # The agent renews the file itself (a rotating refresh token): the role only seeds it,
    # so a re-run never puts back a stale value.
    rotates: bool = False


@dataclass(frozen=True)
class Timer:
    """A systemd timer's schedule (OnCalendar=, RandomizedDelaySec=)."""

    on_calendar: str = "hourly"
    randomized_delay: str = "15min"


@dataclass(frozen=True)
class Report:
    """A second command of the source on a daily timer (CSV roll-ups)."""

    # The arguments after `wattkeeper` (then `-c FILE`).
    args: str
    # The config key holding the time of day (HH:MM) it runs at, and its default.
    time_key: str
    time_default: str


@dataclass(frozen=True)
class Simulated:
    """How `wattkeeper simulate SOURCE` stands in for the source (demo, tests)."""

    port: int
    # Extra command-line flags of the simulator.
    args: Sequence[str] = ()
    # Keys of the [SOURCE] section that point the agent at the simulator.
    config: dict[str, Any] = field(default_factory=dict)
    # Secret values the simulator accepts, by config key of the secret file.
    secrets: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Unit:
    """The systemd shape of the agent: the role derives its units from this."""

    # "daemon" runs forever (Type=notify); "oneshot" is started by ``timer``.
    kind: Literal["daemon", "oneshot"] = "daemon"
    timer: Timer | None = None
    report: Report | None = None
    # pip extras of the wattkeeper package the source needs.
    extras: Sequence[str] = ()
    # Supplementary groups and device nodes (DeviceAllow=) of the unit.
    groups: Sequence[str] = ()
    devices: Sequence[str] = ()
    # The agent also reads its own raw bucket (sync and backfill checks).
    token_read: bool = False


@dataclass(frozen=True)
class SourcePlugin:
    """A source, declared once: its name, config section, factory, systemd shape, secrets,
    roll-ups, simulator and live view. The role's argument specs, defaults, validation
    and table of sources, and the docs' settings tables, are derived from it
    (scripts/generate.py); see docs/adding-a-source.md."""

    name: str
    config_class: type | None
    factory: Callable[[SourceContext], Source]
    streaming: bool = False
    unit: Unit = field(default_factory=Unit)
    secrets: Sequence[Secret] = ()
    # Present when `wattkeeper simulate NAME` exists (wattkeeper.simulate.NAME).
    simulated: Simulated | None = None
    # The required keys of a working [NAME] section, with example values: the docs' sample
    # config and the role's examples show them.
    example: dict[str, Any] = field(default_factory=dict)
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

    @property
    def kind(self) -> str:
        """The systemd shape: "daemon" runs forever; "oneshot" is started by a timer."""
        return self.unit.kind
