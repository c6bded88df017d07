"""The MQTT publisher: one thread with paho-mqtt, beside (never inside) the commit path.

Everything network-bound happens in this thread: connecting (TCP, TLS), reconnecting with
backoff, discovery, states. The runner only updates the live view's snapshot. Memory stays
bounded whatever the broker does: states are taken from the snapshot (one entry per
sensor, the newest wins) and handed to paho only when its outgoing buffer is empty, so a
broker that stops reading holds at most one round of messages; QoS 1 messages (discovery,
availability) are capped by paho's inflight and queue limits. A broker that accepts the
connection and never answers is dropped after ``keepalive`` by paho itself.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from wattkeeper.config import MqttSection
from wattkeeper.mqtt.discovery import (
    HEALTH,
    OFFLINE,
    ONLINE,
    Identity,
    sensor_config,
    slug,
    stale_config,
)
from wattkeeper.mqtt.live import Entry, LiveView, shown_value
from wattkeeper.sensors import Sensor

if TYPE_CHECKING:
    from wattkeeper.config import AgentConfig
    from wattkeeper.source import SourcePlugin

log = logging.getLogger("wattkeeper.mqtt")

# QoS 1 messages paho may hold (discovery and availability); beyond that publish() refuses
# and the message is sent again at the next round.
MAX_QUEUED = 1000
MAX_INFLIGHT = 20
# Health sensors are published this often even when nothing else changes.
HEALTH_EVERY = 30.0
# While the broker cannot be reached: one warning, then a reminder this often.
REMIND_EVERY = 600.0


class Publisher:
    """Publishes the live view of one agent to one broker, from its own thread."""

    def __init__(
        self,
        cfg: MqttSection,
        view: LiveView,
        ident: Identity,
        pending: Callable[[], int],
        *,
        oneshot: bool = False,
    ) -> None:
        self.cfg = cfg
        self.view = view
        self.ident = ident
        self.pending = pending
        self.oneshot = oneshot
        self.stale_after = cfg.stale_after or (2 * 86400.0 if oneshot else 900.0)
        self.where = f"{'mqtts' if cfg.tls else 'mqtt'}://{cfg.host}:{cfg.port}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connected = threading.Event()
        self._resend = True
        self._announced: set[str] = set()
        # QoS 1 messages the broker has not acknowledged yet. A stop waits for them: a
        # socket closed with the broker's PUBACKs unread is reset (RST), and the broker
        # then drops whatever it had not read yet, the last round of states included.
        self._unacked: list[paho.MQTTMessageInfo] = []
        self._last_health = 0.0
        self._health_reading: int | None = None
        self._final_sent = False
        self._published: dict[str, str] = {}
        self._last_decay = 0.0
        self._last_states = 0.0
        self._failing_since: float | None = None
        self._reminded = 0.0
        self._attempts = 0
        self.connects = 0
        self.client = self._make_client()

    # -- setup ----------------------------------------------------------------------------

    def _make_client(self) -> paho.Client:
        client_id = self.cfg.client_id or slug(f"wattkeeper-{self.ident.source}-{self.ident.host}")
        c = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv311,
            clean_session=True,
        )
        if self.cfg.username:
            c.username_pw_set(self.cfg.username, self.cfg.password)
        if self.cfg.tls:
            # Verifies the broker's certificate chain and host name (paho's default).
            c.tls_set(ca_certs=str(self.cfg.ca_file) if self.cfg.ca_file else None,
                      cert_reqs=ssl.CERT_REQUIRED)  # fmt: skip
        if not self.oneshot:
            c.will_set(self.ident.availability, OFFLINE, qos=1, retain=True)
        c.max_inflight_messages_set(MAX_INFLIGHT)
        c.max_queued_messages_set(MAX_QUEUED)
        c.connect_timeout = min(10.0, self.cfg.keepalive)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        return c

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Publish what is left (bounded by ``timeout``), say offline, disconnect."""
        deadline = time.monotonic() + timeout
        self._drain_deadline = deadline
        self._stop.set()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))

    _drain_deadline = 0.0

    # -- paho callbacks (in this thread, from client.loop) --------------------------------

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            self._failed(f"the broker refused the connection: {rc}")
            return
        self._connected.set()
        self.connects += 1
        self._resend = True
        self._unacked = []  # the resend publishes everything again, tracked anew
        if self._failing_since is not None:
            log.info("MQTT broker %s reached again", self.where)
        elif self.connects == 1:
            log.info("MQTT: publishing to %s as device %s", self.where, self.ident.node)
        self._failing_since = None
        client.subscribe(self.ident.ha_status, qos=1)

    def _on_disconnect(self, _c: paho.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if not self._stop.is_set():
            self._failed(f"connection lost ({rc})" if was else f"no answer ({rc})")

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        # Home Assistant announces itself (birth message) after a restart: send discovery
        # again, so that it finds us even if the broker lost the retained configs.
        if msg.topic == self.ident.ha_status and msg.payload.strip() == ONLINE.encode():
            self._resend = True

    def _failed(self, why: str) -> None:
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = self._reminded = now
            log.warning("MQTT broker %s: %s; retrying (readings are not affected)", self.where, why)
        elif now - self._reminded >= REMIND_EVERY:
            self._reminded = now
            log.warning("MQTT broker %s unreachable for %.0f min: %s", self.where,
                        (now - self._failing_since) / 60, why)  # fmt: skip

    # -- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:  # a bug here must never take the agent down
            log.exception("MQTT publisher stopped")

    def _loop(self) -> None:
        client = self.client
        next_try = 0.0
        delay = 1.0
        while not self._finished():
            if client.socket() is None:
                now = time.monotonic()
                if now >= next_try:
                    self._connect()
                    next_try = now + delay
                    delay = min(delay * 2, 60.0)
                if client.socket() is None:
                    self._stop.wait(min(0.5, max(0.05, next_try - time.monotonic())))
                continue
            client.loop(timeout=0.2)
            if self._connected.is_set():
                delay = 1.0
                self._publish_round(client, final=self._stop.is_set())
        self._goodbye(client)

    def _finished(self) -> bool:
        """Stopping, and either everything went out, or it cannot, or time is up."""
        if not self._stop.is_set():
            return False
        if time.monotonic() >= self._drain_deadline:
            return True
        if self._connected.is_set():
            return self._drained()
        return self._failing_since is not None

    def _connect(self) -> bool:
        self._attempts += 1
        try:
            self.client.connect(self.cfg.host, self.cfg.port, keepalive=int(self.cfg.keepalive))
        except ssl.SSLCertVerificationError as exc:
            why = exc.verify_message or exc.reason
            self._failed(
                f"certificate verify failed: {why} (check [mqtt] ca_file and the host name)"
            )
        except (OSError, ValueError) as exc:
            self._failed(str(exc) or type(exc).__name__)
        else:
            return True
        return False

    def _goodbye(self, client: paho.Client) -> None:
        if client.socket() is None:
            return
        end = time.monotonic() + 1.0
        if not self.oneshot and self._connected.is_set():
            self._unacked.append(
                client.publish(self.ident.availability, OFFLINE, qos=1, retain=True)
            )
        # Acknowledged before the socket closes (see _unacked), within the second we take.
        while self._unacked and client.socket() is not None and time.monotonic() < end:
            client.loop(timeout=0.05)
            self._unacked = [i for i in self._unacked if not i.is_published()]
        client.disconnect()
        end = time.monotonic() + 1.0
        while client.socket() is not None and time.monotonic() < end:
            client.loop(timeout=0.1)

    def _drained(self) -> bool:
        self._unacked = [i for i in self._unacked if not i.is_published()]
        return (
            self._final_sent
            and not self._resend
            and not self.view.changed.is_set()
            and not self.client.want_write()
            and not self._unacked
        )

    # -- publishing -----------------------------------------------------------------------

    def _publish_round(self, client: paho.Client, final: bool = False) -> None:
        self._unacked = [i for i in self._unacked if not i.is_published()]
        if client.want_write():
            return  # the broker has not taken the last round yet: the newest values wait
        now = time.monotonic()
        if self._resend:
            self._resend = False
            self._announced.clear()
            if not self.oneshot:
                self._unacked.append(
                    client.publish(self.ident.availability, ONLINE, qos=1, retain=True)
                )
            self._announce_health(client)
            entries = self.view.everything()
            self.view.take()
            self._send_states(client, entries)
            self._last_states = now
        elif final or now - self._last_states >= self.cfg.interval:
            entries = self.view.take()
            if entries:
                self._send_states(client, entries)
                self._last_states = now
        if now - self._last_decay >= max(self.cfg.interval, 5.0):
            self._last_decay = now
            self._send_decayed(client)
        # Health: every HEALTH_EVERY, and soon after a new reading (the age starts again).
        fresh = self.view.last_reading_ns != self._health_reading
        due = now - self._last_health >= (self.cfg.interval if fresh else HEALTH_EVERY)
        self._final_sent = final
        if final or due or self._last_health == 0:
            self._health_reading = self.view.last_reading_ns
            self._send_health(client)
            self._last_health = now

    def _expire_after(self) -> int | None:
        # A oneshot says nothing between runs: HA marks its values unavailable when the
        # runs stop, instead of showing old values as current.
        return int(self.stale_after) if self.oneshot else None

    def _announce(self, client: paho.Client, component: str, key: str, cfg: dict[str, Any]) -> bool:
        info = client.publish(self.ident.config(component, key), json.dumps(cfg), qos=1,
                              retain=True)  # fmt: skip
        # Queued is as good as sent (paho answers AGAIN while the socket is busy); only a
        # full queue or no connection means "try again later".
        if info.rc in (paho.MQTT_ERR_QUEUE_SIZE, paho.MQTT_ERR_NO_CONN):
            return False
        self._unacked.append(info)
        self._announced.add(key)
        return True

    def _announce_health(self, client: paho.Client) -> None:
        avail = not self.oneshot
        for s in HEALTH:
            cfg = sensor_config(self.ident, s, None, s.key, availability=avail,
                                expire_after=self._expire_after(), diagnostic=True)  # fmt: skip
            self._announce(client, "sensor", s.key, cfg)
        stale = stale_config(self.ident, availability=avail, expire_after=self._expire_after())
        self._announce(client, "binary_sensor", "stale", stale)

    def _send_states(self, client: paho.Client, entries: dict[str, Entry]) -> None:
        unsent: dict[str, Entry] = {}
        for key, e in entries.items():
            if key not in self._announced:
                cfg = sensor_config(self.ident, e.sensor, e.tag, key,
                                    availability=not self.oneshot,
                                    expire_after=self._expire_after())  # fmt: skip
                if not self._announce(client, "sensor", key, cfg):
                    unsent[key] = e
                    continue
            payload = format_value(e.sensor, shown_value(e, time.time()))
            client.publish(self.ident.state(key), payload, retain=True)
            self._published[key] = payload
            if e.sensor.with_time:
                attrs = {"reading_time": _iso(e.time_ns)}
                client.publish(self.ident.attributes(key), json.dumps(attrs), retain=True)
        if unsent:
            self.view.give_back(unsent)

    def _send_decayed(self, client: paho.Client) -> None:
        """Powers between pulses that fall while no pulse comes (Sensor.per_reading_wh)."""
        wall = time.time()
        for key, e in self.view.everything().items():
            if e.bound_wh is None or key not in self._announced:
                continue
            payload = format_value(e.sensor, shown_value(e, wall))
            if payload != self._published.get(key):
                client.publish(self.ident.state(key), payload, retain=True)
                self._published[key] = payload

    def _send_health(self, client: paho.Client) -> None:
        last = self.view.last_reading_ns
        age = None if last is None else max(0.0, time.time() - last / 1e9)
        values: dict[str, str] = {"buffer_rows": str(self.pending())}
        if last is not None and age is not None:
            values["last_reading"] = _iso(last)
            values["reading_age"] = str(int(age))
        for key, payload in values.items():
            client.publish(self.ident.state(key), payload, retain=True)
        stale = age is None or age > self.stale_after
        client.publish(self.ident.state("stale"), "ON" if stale else "OFF", retain=True)


def open_live_view(
    cfg: AgentConfig, plugin: SourcePlugin, stored: Any, pending: Callable[[], int]
) -> tuple[LiveView, Publisher]:
    """The live view of an agent with an [mqtt] section, and its (unstarted) publisher.

    Raises ValueError naming the [mqtt] sensors entries this source does not have.
    """
    view = LiveView(plugin.sensors, cfg.mqtt.sensors, plugin.describe_sensor)
    if view.unknown:
        raise ValueError(f"{', '.join(view.unknown)}: not a value of the {plugin.name} source")
    view.restore(stored)
    ident = Identity(
        host=cfg.agent.host,
        source=plugin.name,
        description=plugin.description,
        topic_prefix=cfg.mqtt.topic_prefix,
        discovery_prefix=cfg.mqtt.discovery_prefix,
    )
    return view, Publisher(cfg.mqtt, view, ident, pending, oneshot=plugin.kind == "oneshot")


def check_broker(cfg: MqttSection, timeout: float = 10.0) -> str:
    """``wattkeeper check``: log in to the broker once; a line saying so, or an exception."""
    result: list[Any] = []
    c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    if cfg.username:
        c.username_pw_set(cfg.username, cfg.password)
    if cfg.tls:
        c.tls_set(ca_certs=str(cfg.ca_file) if cfg.ca_file else None, cert_reqs=ssl.CERT_REQUIRED)
    c.on_connect = lambda _c, _u, _f, rc, _p: result.append(rc)
    c.connect_timeout = timeout
    where = f"{'mqtts' if cfg.tls else 'mqtt'}://{cfg.host}:{cfg.port}"
    try:
        c.connect(cfg.host, cfg.port, keepalive=int(cfg.keepalive))
    except ssl.SSLCertVerificationError as exc:
        raise ConnectionError(f"{where}: certificate verify failed: {exc.verify_message}") from None
    except OSError as exc:
        raise ConnectionError(f"{where}: {exc}") from None
    deadline = time.monotonic() + timeout
    while not result and time.monotonic() < deadline and c.socket() is not None:
        c.loop(timeout=0.2)
    c.disconnect()
    if not result:
        raise ConnectionError(f"{where}: no answer to CONNECT within {timeout:.0f}s")
    if result[0].is_failure:
        raise ConnectionError(f"{where}: the broker refused the login: {result[0]}")
    return f"{where}" + (f" as {cfg.username}" if cfg.username else "") + ": logged in"


def format_value(sensor: Sensor, value: float | str) -> str:
    """A state payload: numbers scaled to the sensor's unit, enums and text as they are."""
    if isinstance(value, str):
        return value
    if sensor.device_class == "timestamp":
        return _iso(int(value * 1e9))
    v = value * sensor.scale
    return repr(round(v, 6)) if v != int(v) else str(int(v))


def _iso(time_ns: int) -> str:
    return datetime.fromtimestamp(time_ns / 1e9, UTC).isoformat(timespec="seconds")
