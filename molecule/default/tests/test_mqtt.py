"""Home Assistant's view: the server's mosquitto (TLS, password) has every agent's discovery
messages and availability, each one a message Home Assistant accepts."""

from __future__ import annotations

import ssl
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as paho
from conftest import ROOT, SECRETS, SERVER, container_ip
from paho.mqtt.enums import CallbackAPIVersion
from sources import DAEMONS, SOURCES

sys.path.insert(0, str(ROOT / "tests"))
from support.hass import check_config, check_state

MQTT_PASSWORD = "molecule-mqtt-password-0123"  # noqa: S105 - molecule.yml's


def _retained(timeout: float = 20.0) -> dict[str, str]:
    """Every retained message on the broker, as Home Assistant gets them when it subscribes."""
    got: dict[str, str] = {}
    lock = threading.Lock()
    c = paho.Client(CallbackAPIVersion.VERSION2)
    c.username_pw_set("wattkeeper", MQTT_PASSWORD)
    c.tls_set(ca_certs=str(SECRETS / "mosquitto" / "ca.crt"), cert_reqs=ssl.CERT_REQUIRED)

    def on_message(_c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        with lock:
            got[msg.topic] = msg.payload.decode()

    c.on_message = on_message
    c.on_connect = lambda cl, *_: [cl.subscribe(t) for t in ("homeassistant/#", "wattkeeper/#")]
    c.connect(container_ip(SERVER), 8883)
    c.loop_start()
    deadline = time.monotonic() + timeout
    want = {f"_{s}/stale/config" for s in SOURCES}
    while time.monotonic() < deadline:
        with lock:
            if all(any(t.endswith(w) for t in got) for w in want):
                break
        time.sleep(0.5)
    time.sleep(1.0)  # the rest of the retained set
    c.loop_stop()
    c.disconnect()
    return got


def test_home_assistant_sees_every_agent() -> None:
    got = _retained()
    for source in SOURCES:
        configs = {
            t: check_config(t, p)
            for t, p in got.items()
            if t.startswith("homeassistant/") and f"_{source}/" in t and p
        }
        assert len(configs) >= 5, f"{source}: discovery messages {sorted(configs)}"
        for cfg in configs.values():
            if cfg["state_topic"] in got:
                check_state(cfg, got[cfg["state_topic"]])
        avail = [p for t, p in got.items() if t.endswith(f"/{source}/availability")]
        assert avail == (["online"] if source in DAEMONS else []), f"{source}: {avail}"
    if "luxtronik" in SOURCES:  # wattkeeper_mqtt_sensors: an opt-in value appears too
        assert any(t.endswith("/id_web_freq_vd/config") for t in got)


def test_the_broker_refuses_a_wrong_password_and_keeps_no_plain_one(server: Any) -> None:
    c = paho.Client(CallbackAPIVersion.VERSION2)
    c.username_pw_set("wattkeeper", "wrong-password")
    c.tls_set(ca_certs=str(SECRETS / "mosquitto" / "ca.crt"), cert_reqs=ssl.CERT_REQUIRED)
    refused: list[Any] = []
    c.on_connect = lambda _c, _u, _f, rc, _p: refused.append(rc)
    c.connect(container_ip(SERVER), 8883)
    c.loop_start()
    deadline = time.monotonic() + 15
    while not refused and time.monotonic() < deadline:
        time.sleep(0.2)
    c.loop_stop()
    assert refused and refused[0].is_failure
    passwd = server.file("/etc/mosquitto/wattkeeper.passwd")
    assert passwd.mode == 0o640 and passwd.group == "mosquitto"
    assert MQTT_PASSWORD not in passwd.content_string


def test_agent_password_file(collector: Any) -> None:
    f = collector.file("/etc/wattkeeper/mqtt.password")
    assert f.mode == 0o600 and f.user == "wattkeeper"
