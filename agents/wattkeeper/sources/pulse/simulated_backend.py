"""Edges from `wattkeeper simulate pulse` over TCP, for the tests and the demo.

The simulator plays the kernel's part: it decides each edge's timestamp and numbers the
edges per line, and it drops edges when we read too slowly (its FIFO is bounded like the
kernel's), so timestamps are exact whatever the scheduling jitter and losses show up as
sequence gaps exactly as with gpiod. Wire protocol (one line each, UTF-8):

    -> {"op": "open", "pins": [{"pin": 20, "edge": "rising", "debounce_ns": 5000000}]}
    <- {"ok": true, "device": "..."}  |  {"ok": false, "pin": 20, "errno": 13, "error": "..."}
    -> {"op": "start"}
    <- E <pin> <utc_ns> <line_seq> <global_seq>     (one per edge)
    <- {"end": true, "sent": N}                     (the simulator's pulse train is over)
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

from wattkeeper.source import SourceFatal
from wattkeeper.sources.pulse.backend import OnEdge, PinSpec, SeqGaps
from wattkeeper.sources.pulse.errors import open_failure

log = logging.getLogger("wattkeeper.pulse")

RCVBUF = 65536


class SimulatedBackend:
    name = "simulated"

    def __init__(self, address: str, connect_timeout: float = 5.0) -> None:
        host, _, port = address.rpartition(":")
        self.address = address
        self._addr = (host.strip("[]"), int(port))
        self._connect_timeout = connect_timeout
        self._pins: Sequence[PinSpec] = ()
        self._by_pin: dict[int, int] = {}
        self._sock: socket.socket | None = None
        self._gaps = SeqGaps()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.device = ""

    def _connect(self, timeout: float) -> tuple[socket.socket, Any]:
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_INET6 if ":" in self._addr[0] else socket.AF_INET)
            # A small receive buffer plays the kernel's bounded edge FIFO: a reader that
            # stalls loses edges (counted from the sequence gaps) instead of hiding the
            # stall in megabytes of socket buffer.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            sock.settimeout(5)
            try:
                sock.connect(self._addr)
                break
            except OSError as exc:
                sock.close()
                if time.monotonic() >= deadline:
                    raise ConnectionError(str(exc)) from None
                time.sleep(0.2)
        rfile = sock.makefile("rb")
        pins = [
            {"pin": p.pin, "edge": p.edge, "debounce_ns": int(p.debounce_s * 1e9)}
            for p in self._pins
        ]
        sock.sendall(json.dumps({"op": "open", "pins": pins}).encode() + b"\n")
        reply = json.loads(rfile.readline() or b"{}")
        if not reply.get("ok"):
            sock.close()
            if "errno" in reply:
                err = OSError(int(reply["errno"]), str(reply.get("error", "")))
                raise open_failure(int(reply.get("pin", -1)), self.chip_label, err)
            raise ConnectionError(f"simulator refused: {reply.get('error', reply)!r}")
        self.device = str(reply.get("device", "simulator"))
        sock.settimeout(None)
        return sock, rfile

    @property
    def chip_label(self) -> str:
        return f"the simulator at {self.address}"

    def open(self, pins: Sequence[PinSpec]) -> str:
        self._pins = pins
        self._by_pin = {p.pin: p.index for p in pins}
        try:
            sock, _ = self._connect(self._connect_timeout)
        except ConnectionError as exc:
            raise SourceFatal(
                f"cannot reach the pulse simulator at {self.address}: {exc}",
                key="pulse.simulator",
            ) from None
        sock.close()  # the lines are checked; start() opens the stream for good
        return f"simulated on {self.address} ({self.device}), pins " + ", ".join(
            str(p.pin) for p in pins
        )

    def start(self, on_edge: OnEdge) -> None:
        self._thread = threading.Thread(
            target=self._loop, args=(on_edge,), name="pulse-sim", daemon=True
        )
        self._thread.start()

    def _loop(self, on_edge: OnEdge) -> None:
        delay = 0.2
        while not self._stop.is_set():
            try:
                sock, rfile = self._connect(self._connect_timeout)
            except (ConnectionError, SourceFatal, OSError, ValueError) as exc:
                log.warning("simulator %s: %s; retrying in %.1fs", self.address, exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.2
            self._sock = sock
            self._gaps.reset()
            try:
                sock.sendall(b'{"op": "start"}\n')
                self._read(rfile, on_edge)
            except OSError as exc:
                if not self._stop.is_set():
                    log.warning("simulator %s: connection lost: %s", self.address, exc)
            finally:
                self._sock = None
                sock.close()

    def _read(self, rfile: Any, on_edge: OnEdge) -> None:
        by_pin = self._by_pin
        gaps = self._gaps
        for line in rfile:
            if line[:1] == b"E":
                _, pin_s, t_s, seq_s, _g = line.split()
                pin = int(pin_s)
                gaps.observe(pin, int(seq_s))
                on_edge(by_pin[pin], int(t_s))
            elif line.startswith(b"{"):
                msg = json.loads(line)
                if msg.get("end"):
                    log.info("simulator %s: pulse train over (%s edges)", self.address, msg)
        if not self._stop.is_set():
            raise OSError("the simulator closed the connection")

    def stop(self) -> None:
        self._stop.set()
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)

    def missed(self) -> int:
        return self._gaps.missed

    def close(self) -> None:
        self.stop()
