"""A real mosquitto broker (Debian's package) for the tests, and a subscriber to watch it.

Each broker has its own directory, free ports, a password file and, on request, a TLS
listener with a certificate signed by a CA made for the test, so tests run in parallel
without sharing anything. ``kill``/``start`` restart it on the same ports (without
persistence: retained messages are gone, as after a broker reinstall).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from support.agentproc import wait_for
from support.influxd import free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
USER = "wattkeeper"
PASSWORD = "mqtt-test-password-0123"


def _filters(file: str = "wattkeeper_render.py") -> Any:
    """One of the role's filter files, loaded by path."""
    name = f"wattkeeper_filters_for_mosquitto_{file.removesuffix('.py')}"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[2] / "ansible/plugins/filter" / file
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


def make_ca(d: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 / localhost (openssl CLI)."""
    d.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, crt = (
        d / n for n in ("ca.key", "ca.crt", "srv.key", "srv.csr", "srv.crt")
    )
    ext = d / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
        "-days",
        "2",
        "-subj",
        "/CN=wattkeeper test CA",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        "/CN=localhost",
    )
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(crt), "-days", "2", "-extfile", str(ext))  # fmt: skip
    return ca, crt, key


@dataclass
class Broker:
    """One mosquitto process: plain listener on ``port``, TLS on ``tls_port`` if asked."""

    dir: Path
    tls: bool = False
    port: int = field(default_factory=free_port)
    tls_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    ca_file: Path | None = None

    def __post_init__(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = self.dir / "mosquitto.log"
        self.password_file = self.dir / "client-password"
        self.password_file.write_text(PASSWORD + "\n")
        self.password_file.chmod(0o600)
        passwd = self.dir / "passwd"
        # Written by the mosquitto role's own filter: every broker of the tests proves
        # that mosquitto takes the hashes the role renders.
        passwd.write_text(_filters().mosquitto_passwd([{"name": USER, "password": PASSWORD}]))
        lines = [
            "user root",  # the tests run as root; no switch to the mosquitto user
            "persistence false",
            "allow_anonymous false",
            f"password_file {passwd}",
            f"listener {self.port} 127.0.0.1",
        ]
        if self.tls:
            self.tls_port = free_port()
            self.ca_file, crt, key = make_ca(self.dir / "tls")
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {self.ca_file}",
                      f"certfile {crt}", f"keyfile {key}"]  # fmt: skip
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def section(self, **extra: Any) -> dict[str, Any]:
        """An agent's [mqtt] section for this broker."""
        return {"url": self.url, "username": USER, "password_file": self.password_file,
                "interval": "200ms", **extra}  # fmt: skip

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=self.log.open("ab"), stderr=subprocess.STDOUT
        )
        proc = self.proc

        def up() -> bool:
            assert proc.poll() is None, self.log.read_text()
            try:
                c = paho.Client(CallbackAPIVersion.VERSION2)
                c.username_pw_set(USER, PASSWORD)
                c.connect("127.0.0.1", self.port)
                c.disconnect()
                return True
            except OSError:
                return False

        wait_for(up, 20, f"mosquitto on port {self.port}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Message:
    topic: str
    payload: str
    retain: bool
    at: float

    def json(self) -> Any:
        return json.loads(self.payload)


class Watcher:
    """Subscribes to everything on a broker and keeps what arrives, in order."""

    def __init__(self, broker: Broker, topics: tuple[str, ...] = ("#",)) -> None:
        self.messages: list[Message] = []
        self._lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2)
        self.client.username_pw_set(USER, PASSWORD)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: [c.subscribe(t, qos=1) for t in topics]
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(
                Message(msg.topic, msg.payload.decode(), bool(msg.retain), time.monotonic())
            )

    def all(self, prefix: str = "", since: float = 0.0) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if m.topic.startswith(prefix) and m.at >= since]

    def latest(self, prefix: str = "") -> dict[str, Message]:
        out: dict[str, Message] = {}
        for m in self.all(prefix):
            out[m.topic] = m
        return out

    def wait(self, pred: Any, timeout: float, what: str) -> None:
        wait_for(lambda: bool(pred()), timeout, what, step=0.1)

    def publish(self, topic: str, payload: str, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
