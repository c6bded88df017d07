"""The live view's snapshot: the newest value of every sensor, fed from committed readings.

The runner calls :meth:`LiveView.prepare` with a poll's points before committing them and
:meth:`LiveView.accept` once the commit held. ``prepare`` only reads; its result carries
the snapshot as buffer state, written in the same SQLite transaction as the points, so a
running total (pulse energy) includes exactly the committed readings, across crashes and
restarts. The publisher thread takes what changed with :meth:`take`; the snapshot is one
entry per sensor, so however slow the broker, memory stays bounded and the newest value
wins. Nothing here blocks on the network: the lock is held for dictionary updates only.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from wattkeeper.point import Point
from wattkeeper.sensors import Sensor, object_key

log = logging.getLogger("wattkeeper.mqtt")

STATE_KEY = "mqtt.live"
# Sensors per agent at most (one per pulse channel and sensor, curated Luxtronik values...):
# a bound on memory whatever tags a source invents.
MAX_SENSORS = 500
AGENT_MEASUREMENT = "wattkeeper_agent"

Value = float | str


@dataclass(frozen=True)
class Entry:
    """A sensor's newest value, in the field's own unit (scale is applied when published)."""

    sensor: Sensor
    tag: str | None
    time_ns: int
    value: Value
    # Sensor.per_reading_wh: the energy of the reading, bounding the power shown later.
    bound_wh: float | None = None


@dataclass
class Update:
    """What one commit changes: new entries, and the snapshot to store with the points."""

    entries: dict[str, Entry]
    last_reading_ns: int | None
    state: dict[str, Any]


class LiveView:
    """Sensor values from committed readings; thread-safe between runner and publisher."""

    def __init__(self, sensors: Sequence[Sensor], extra: Sequence[str] = (),
                 describe: Callable[[str], Sensor | None] | None = None) -> None:  # fmt: skip
        chosen = [s for s in sensors if s.default or s.field in extra or s.key in extra]
        known = {s.field for s in sensors} | {s.key for s in sensors}
        self.unknown = [name for name in extra if name not in known]
        if describe is not None:
            for name in list(self.unknown):
                found = describe(name)
                if found is not None:
                    chosen.append(found)
                    self.unknown.remove(name)
        self.sensors = chosen
        self._by_measurement: dict[str, list[Sensor]] = {}
        for s in chosen:
            self._by_measurement.setdefault(s.measurement, []).append(s)
        self._lock = threading.Lock()
        self._entries: dict[str, Entry] = {}
        self._dirty: set[str] = set()
        self._overflow_logged = False
        self.last_reading_ns: int | None = None
        self.changed = threading.Event()

    # -- restoring ------------------------------------------------------------------------

    def restore(self, stored: Any) -> None:
        """Take the snapshot stored with the last commit (a restart goes on from it)."""
        if not isinstance(stored, dict):
            return
        by_key = {s.key: s for s in self.sensors}
        entries = stored.get("entries", {})
        with self._lock:
            for key, e in entries.items() if isinstance(entries, dict) else ():
                try:
                    sensor = by_key[e["s"]]
                    entry = Entry(sensor, e.get("tag"), int(e["t"]), e["v"], e.get("b"))
                except (KeyError, TypeError, ValueError):
                    continue  # a sensor no longer configured
                self._entries[key] = entry
                self._dirty.add(key)
            last = stored.get("last_reading")
            self.last_reading_ns = int(last) if isinstance(last, int) else None
        self.changed.set()

    # -- the runner's side ----------------------------------------------------------------

    def prepare(self, points: Iterable[Point]) -> Update | None:
        """The changes these readings make, or None; nothing is applied yet."""
        with self._lock:
            current = dict(self._entries)
            last = self.last_reading_ns
        changed: dict[str, Entry] = {}
        for p in points:
            if p.measurement != AGENT_MEASUREMENT and (last is None or p.time_ns > last):
                last = p.time_ns
            for s in self._by_measurement.get(p.measurement, ()):
                v = p.fields.get(s.field)
                if v is None or (isinstance(v, bool) and s.kind == "total"):
                    continue
                tag = p.tags.get(s.per_tag) if s.per_tag else None
                key = object_key(s, tag)
                old = changed.get(key) or current.get(key)
                new = _merge(s, old, tag, p.time_ns, v)
                if new is not None and s.per_reading_wh:
                    bound = p.fields.get(s.per_reading_wh)
                    if isinstance(bound, int | float) and not isinstance(bound, bool):
                        new = Entry(s, tag, new.time_ns, new.value, float(bound))
                if new is not None and new != old:
                    if old is None and len(current) + len(changed) >= MAX_SENSORS:
                        self._overflow(key)
                        continue
                    changed[key] = new
        if not changed and last == self.last_reading_ns:
            return None
        snapshot = {**current, **changed}
        state = {
            STATE_KEY: {
                "entries": {
                    k: {
                        "s": e.sensor.key,
                        "tag": e.tag,
                        "t": e.time_ns,
                        "v": e.value,
                        "b": e.bound_wh,
                    }
                    for k, e in snapshot.items()
                },
                "last_reading": last,
            }
        }
        return Update(changed, last, state)

    def accept(self, update: Update) -> None:
        """The readings of ``update`` are committed: publish its values."""
        with self._lock:
            self._entries.update(update.entries)
            self._dirty.update(update.entries)
            self.last_reading_ns = update.last_reading_ns
        self.changed.set()

    def _overflow(self, key: str) -> None:
        if not self._overflow_logged:
            log.error("live view: more than %d sensors; %s and later ones are not published",
                      MAX_SENSORS, key)  # fmt: skip
            self._overflow_logged = True

    # -- the publisher's side -------------------------------------------------------------

    def take(self) -> dict[str, Entry]:
        """The entries changed since the last take (and forget that they changed)."""
        with self._lock:
            out = {k: self._entries[k] for k in self._dirty}
            self._dirty.clear()
            self.changed.clear()
        return out

    def give_back(self, entries: dict[str, Entry]) -> None:
        """Entries that could not be sent: mark them changed again (newer ones win)."""
        with self._lock:
            self._dirty.update(k for k in entries if k in self._entries)
        self.changed.set()

    def everything(self) -> dict[str, Entry]:
        """Every entry (after a reconnect or when Home Assistant restarted)."""
        with self._lock:
            return dict(self._entries)


def shown_value(entry: Entry, now: float) -> Value:
    """The value to show now: a power between readings is bounded by the reading's energy
    over the time since it (Sensor.per_reading_wh); anything else is as read."""
    if entry.bound_wh is None or isinstance(entry.value, str):
        return entry.value
    age = now - entry.time_ns / 1e9
    if age <= 0:
        return entry.value
    # Wh over seconds -> W; the same unit as the field (power_w).
    return min(entry.value, entry.bound_wh * 3600.0 / age)


def _merge(s: Sensor, old: Entry | None, tag: str | None, t: int, v: Any) -> Entry | None:
    """The entry after reading ``v`` at ``t``, or None to keep ``old``."""
    if s.kind == "total":
        if not isinstance(v, int | float) or v < 0:
            return None
        base = float(old.value) if old is not None else 0.0
        return Entry(s, tag, max(t, old.time_ns if old else t), base + float(v))
    if old is not None and t < old.time_ns:
        return None  # older than what was published: a backfill or a replayed range
    if s.state_class == "total_increasing" and old is not None:
        try:
            before, now = float(old.value), float(v)
        except (TypeError, ValueError):
            return None
        # Home Assistant reads a drop of more than 10 % as a new meter (a reset); a
        # smaller dip is a glitch that would be counted twice when the total climbs back.
        if 0.9 * before <= now < before:
            return None
    if isinstance(v, bool):
        v = 1.0 if v else 0.0
    return Entry(s, tag, t, v if isinstance(v, str) else float(v))
