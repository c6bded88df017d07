"""The TCP server: per connection, open the requested lines, then play the pulse train.

Each connection that sends "start" gets its own train starting then (or at --start), so a
reconnecting agent is served like a restarted one. Timestamps come from the train, never
from the clock at send time; the real-time schedule only decides when edges are sent.
"""

from __future__ import annotations

import argparse
import errno
import heapq
import json
import logging
import socket
import socketserver
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from wattkeeper.config import parse_duration
from wattkeeper.simulate._serving import serve_until_signalled
from wattkeeper.simulate.pulse.profile import parse_profile, pulse_offsets

log = logging.getLogger("wattkeeper.simulate.pulse")

_WHY = {
    "denied": (errno.EACCES, "Permission denied"),
    "busy": (errno.EBUSY, "Device or resource busy"),
    "missing": (errno.ENOENT, "No such file or directory"),
}


@dataclass
class SimChannel:
    name: str
    pin: int
    pulses_per_kwh: float
    profile_spec: str


@dataclass
class Settings:
    channels: list[SimChannel]
    rate_scale: float
    speed: float
    start_ns: int | None
    count: int
    duration_s: float
    seed: int
    fifo: int
    unavailable: dict[int, str]
    lines: int
    truth: IO[str] | None
    truth_lock: threading.Lock
    stop: threading.Event


def parse_settings(args: argparse.Namespace) -> Settings:
    profiles: dict[str, str] = {}
    for spec in args.profile or ["constant:1000"]:
        name, sep, rest = spec.partition("=")
        profiles[name if sep else "*"] = rest if sep else spec
    channels = []
    for item in args.channels.split(","):
        parts = item.split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"--channels: {item!r} is not NAME:PIN[:IMP_PER_KWH]")
        ppk = float(parts[2]) if len(parts) == 3 else args.pulses_per_kwh
        spec = profiles.get(parts[0], profiles.get("*", "constant:1000"))
        channels.append(SimChannel(parts[0], int(parts[1]), ppk, spec))
    start_ns = None
    if args.start != "now":
        start_ns = (
            round(datetime.fromisoformat(args.start).astimezone(UTC).timestamp() * 1e6) * 1000
        )
    unavailable = {}
    for item in args.unavailable:
        pin, _, why = item.partition(":")
        if why not in _WHY:
            raise ValueError(f"--unavailable {item!r}: WHY is denied, busy or missing")
        unavailable[int(pin)] = why
    return Settings(
        channels=channels,
        rate_scale=args.rate_scale,
        speed=args.speed,
        start_ns=start_ns,
        count=args.count,
        duration_s=parse_duration(args.duration) if args.duration else 0.0,
        seed=args.seed,
        fifo=args.fifo,
        unavailable=unavailable,
        lines=args.lines,
        truth=Path(args.truth).open("a", encoding="utf-8") if args.truth else None,
        truth_lock=threading.Lock(),
        stop=threading.Event(),
    )


def _train(s: Settings, t0_ns: int, wanted: set[int]) -> Iterator[tuple[int, SimChannel, int]]:
    """(utc_ns, channel, n-th pulse) in time order, over the channels the client opened."""
    heap: list[tuple[int, int, int, Iterator[float]]] = []
    chans = [c for c in s.channels if c.pin in wanted]
    for i, c in enumerate(chans):
        prof = parse_profile(c.profile_spec, c.name, t0_ns / 1e9, s.seed + i)
        it = pulse_offsets(prof, c.pulses_per_kwh, s.rate_scale)
        first = next(it, None)
        if first is not None:
            heapq.heappush(heap, (t0_ns + round(first * 1e9), i, 1, it))
    limit_ns = t0_ns + int(s.duration_s * 1e9) if s.duration_s else None
    while heap:
        t, i, n, it = heapq.heappop(heap)
        if limit_ns is not None and t >= limit_ns:
            continue
        yield t, chans[i], n
        if s.count and n >= s.count:
            continue
        nxt = next(it, None)
        if nxt is not None:
            heapq.heappush(heap, (t0_ns + round(nxt * 1e9), i, n + 1, it))


class Handler(socketserver.StreamRequestHandler):
    settings: Settings

    def _reply(self, obj: dict[str, Any]) -> None:
        self.wfile.write(json.dumps(obj).encode() + b"\n")
        self.wfile.flush()

    def handle(self) -> None:
        s = self.settings
        try:
            req = json.loads(self.rfile.readline() or b"{}")
        except ValueError:
            self._reply({"ok": False, "error": "expected a JSON open request"})
            return
        if req.get("op") != "open":
            self._reply({"ok": False, "error": "first request must be open"})
            return
        pins = [int(p["pin"]) for p in req.get("pins", [])]
        for pin in pins:
            if pin in s.unavailable:
                code, text = _WHY[s.unavailable[pin]]
                self._reply({"ok": False, "pin": pin, "errno": code, "error": text})
                return
            if not 0 <= pin < s.lines:
                self._reply({"ok": False, "pin": pin, "errno": errno.EINVAL, "error": "no line"})
                return
        self._reply({"ok": True, "device": f"wattkeeper-sim ({s.lines} lines)"})
        line = self.rfile.readline()
        if not line or json.loads(line).get("op") != "start":
            return
        log.info("client %s started on pins %s", self.client_address, pins)
        self._play(set(pins))

    def _play(self, pins: set[int]) -> None:
        s = self.settings
        sock: socket.socket = self.connection
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        sock.setblocking(False)
        t0_ns = s.start_ns if s.start_ns is not None else time.time_ns()
        real0 = time.monotonic()
        pending: deque[bytes] = deque()
        out = bytearray()
        seqs: dict[int, int] = {}
        sent = dropped = 0
        truth: list[str] = []
        for gseq, (t_ns, ch, _n) in enumerate(_train(s, t0_ns, pins), start=1):
            due = real0 + (t_ns - t0_ns) / 1e9 / s.speed
            while not s.stop.is_set():
                self._send(sock, pending, out)
                self._write_truth(truth)
                wait = due - time.monotonic()
                if wait <= 0:
                    break
                time.sleep(min(wait, 0.05))
            if s.stop.is_set():
                return
            seq = seqs.get(ch.pin, 0) + 1
            seqs[ch.pin] = seq
            ok = len(pending) < s.fifo
            if ok:
                pending.append(f"E {ch.pin} {t_ns} {seq} {gseq}\n".encode())
                sent += 1
            else:
                dropped += 1
            if s.truth is not None:
                truth.append(f"{ch.name},{ch.pin},{t_ns},{seq},{int(ok)}\n")
        pending.append(json.dumps({"end": True, "sent": sent, "dropped": dropped}).encode() + b"\n")
        truth.append(f"# end sent={sent} dropped={dropped}\n")
        self._write_truth(truth)
        log.info("train over: %d edges sent, %d dropped", sent, dropped)
        while (pending or out) and not s.stop.is_set():
            if not self._send(sock, pending, out):
                time.sleep(0.01)
        # Stay connected, like a line with no more edges, until the client goes.
        sock.setblocking(True)
        sock.settimeout(0.5)
        while not s.stop.is_set():
            try:
                if not sock.recv(4096):
                    return
            except TimeoutError:
                continue
            except OSError:
                return

    def _write_truth(self, truth: list[str]) -> None:
        s = self.settings
        if truth and s.truth is not None:
            with s.truth_lock:
                s.truth.write("".join(truth))
                s.truth.flush()
            truth.clear()

    @staticmethod
    def _send(sock: socket.socket, pending: deque[bytes], out: bytearray) -> bool:
        """Send what the socket takes now; True if anything went out."""
        while pending and len(out) < 65536:
            out += pending.popleft()
        if not out:
            return False
        try:
            n = sock.send(out)
        except BlockingIOError:
            return False
        except OSError:
            pending.clear()
            out.clear()
            return False
        del out[:n]
        return n > 0


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def serve(args: argparse.Namespace) -> int:
    try:
        settings = parse_settings(args)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    handler = type("BoundHandler", (Handler,), {"settings": settings})
    server = Server(args.listen, handler)
    log.info(
        "pulse simulator on %s: %s",
        args.listen,
        ", ".join(f"{c.name}=pin {c.pin} {c.profile_spec}" for c in settings.channels),
    )
    serve_until_signalled(server, on_stop=settings.stop.set)
    if settings.truth is not None:
        settings.truth.close()
    return 0
