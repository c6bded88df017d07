"""Luxtronik 2 heat pump controller (TCP, port 8889 protocol) on a plausible heating day.

Speaks the binary protocol python-luxtronik and the vendor tools use: big-endian int32
words; ``3003 0`` answers ``3003, n, n parameters``; ``3004 0`` answers ``3004, status, n,
n calculations`` (the firmware version as characters in calculations 81-90); ``3005 0``
answers ``3005, n, n visibilities`` as int8; ``3002 index value`` (a write) is acknowledged
as a real controller does (``3002, index``) but never changes anything. Like the real
controller it serves one connection at a time.

Values follow a simulated clock (``--start``, ``--time-scale``, or ``--freeze-at``):
outside temperature with a night low, a heating curve, compressor cycles, counters and
heat quantities that only grow. Faults on demand, by flag (every Nth connection) or by a
control command on the same port (``9000 + kind, count``: the next ``count`` connections):
``close`` (the socket is closed mid-answer), ``slow`` (the answer comes late), ``short``
(well-formed answers with only a few values), ``stall`` (half an answer, then silence),
``garble`` (words no conversion accepts: -1 as firmware version characters).

With ``--truth FILE`` every connection that received all three answers in full is
appended as one line ``ID_WEB_AktuelleTimeStamp,unix time``: the readings a client was
given, for tests that count generated against landed (the timestamp is the simulated
clock's, unique per answer when ``--time-scale`` is large enough). ``--truth-words FILE``
appends the same readings with every word served, one JSON line each.

Real behaviours the tests switch on: ``--interface-off`` (since firmware 3.90 the web
server and the interface are switched on separately, and users found them off after the
update: BenPru/luxtronik#262; that the port then refuses connections, rather than
dropping them, is an assumption: the thread does not say), ``--unknown-codes``
(selection codes python-luxtronik has no name for, as a newer model's HeatpumpCode:
Bouni/python-luxtronik#197).

This module uses the standard library only (not python-luxtronik), so it ships in the
agent wheel and cannot share a bug with the client it is tested against.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import signal
import socket
import socketserver
import struct
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from wattkeeper.simulate._serving import listen_address, serve_until_signalled

log = logging.getLogger("wattkeeper.simulate.luxtronik")

CMD_WRITE = 3002
CMD_PARAMETERS = 3003
CMD_CALCULATIONS = 3004
CMD_VISIBILITIES = 3005
CMD_CONTROL = 9000  # 9000 clear, 9001 close ... 9005 garble (test only)
FAULTS = {1: "close", 2: "slow", 3: "short", 4: "stall", 5: "garble"}

# A recent V3.9x firmware; python-luxtronik 0.3.14 defines 1126 / 260 / 355 and names the
# rest Unknown_*. 1190 + 258 + 366 = 1814 values after the version folds into one string.
DEFAULT_COUNTS = {"parameters": 1190, "calculations": 267, "visibilities": 366}
MIN_COUNTS = {"parameters": 1126, "calculations": 260, "visibilities": 355}

VERSION_FIRST, VERSION_LEN = 81, 10
TIMESTAMP = 134  # ID_WEB_AktuelleTimeStamp


def _ip(text: str) -> int:
    n = int.from_bytes(socket.inet_aton(text), "big")
    return n - 2**32 if n >= 2**31 else n


@dataclass
class Clock:
    """The simulated time: wall clock, scaled from a start, or frozen."""

    start: float
    scale: float = 1.0
    frozen: bool = False
    _t0: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        if self.frozen:
            return self.start
        return self.start + (time.monotonic() - self._t0) * self.scale


# A counter's value at BASE, and the base time counters grow from.
BASE = datetime(2023, 9, 1, tzinfo=UTC).timestamp()  # commissioning


class HeatPump:
    """The controller's memory: raw int32 words as the firmware would send them."""

    def __init__(
        self, counts: dict[str, int], firmware: str, clock: Clock, unknown_codes: bool = False
    ) -> None:
        self.counts = counts
        self.unknown_codes = unknown_codes
        self.firmware = firmware
        self.clock = clock
        rng = random.Random(4)
        # Settings: mostly small integers and zeros, like a real parameter dump.
        self.parameters = [
            rng.choice((0, 0, 0, 1, 2, 5, 10, 50, 100, 200)) for _ in range(counts["parameters"])
        ]
        self.parameters[1] = 0  # ID_Einst_WK_akt: heating curve offset 0.0 K
        self.parameters[2] = 500  # ID_Einst_BWS_akt: hot water setpoint 50.0 °C
        self.parameters[3] = 0  # ID_Ba_Hz_akt: Automatic
        self.parameters[4] = 0  # ID_Ba_Bw_akt: Automatic
        for i in (108, 119, 779, 881, 894):  # cooling, pool, MK3, solar, ventilation modes
            self.parameters[i] = 0  # Off / Automatic: a code every firmware knows
        self.visibilities = [rng.choice((0, 1)) for _ in range(counts["visibilities"])]
        self._static_calcs = [rng.choice((0, 0, 0, 1, 3, 7)) for _ in range(counts["calculations"])]
        self.writes_refused = 0

    def calculations(self) -> list[int]:
        """The live values at the simulated now."""
        t = self.clock.now()
        c = list(self._static_calcs)
        hour = (t % 86400) / 3600
        ta = 1.0 + 4.5 * math.sin(2 * math.pi * (hour - 9) / 24)  # low ~ -3.5 °C at 03:00
        target_rl = 30.0 - 0.6 * ta
        # Compressor: one start an hour, longer runs when it is colder.
        on_minutes = min(55.0, max(15.0, 30.0 + (5.0 - ta) * 3.0))
        minute = (t % 3600) / 60
        on = minute < on_minutes
        phase = minute / on_minutes if on else (minute - on_minutes) / (60 - on_minutes)
        trl = target_rl - 1.0 + 2.0 * phase if on else target_rl + 1.0 - 2.0 * phase
        tvl = trl + (5.0 if on else 0.4)
        duty = 0.35
        run_s = (t - BASE) * duty
        heat_kw = 6.5
        set_t = {
            10: tvl,
            11: trl,
            12: target_rl,
            13: trl,
            14: 72.0 if on else 31.0,
            15: ta,
            16: 1.0,
            17: 48.3,
            18: 50.0,
            19: ta,
            20: ta - (3.5 if on else 0.0),
            21: 20.5,
            22: tvl,
            23: 21.0,
            175: ta - 6.0,
            176: ta - 1.0,
            177: 68.0 if on else 30.0,
            227: 21.2,
            228: 21.0,
            229: 49.0,
        }
        for i, v in set_t.items():
            c[i] = round(v * 10)
        c[178] = 50 if on else 0  # ID_WEB_LIN_UH superheat 5.0 K
        c[179] = 50
        c[180] = 2250 if on else 1200  # ID_WEB_LIN_HD high pressure 22.50 bar
        c[181] = 780 if on else 1100  # ID_WEB_LIN_ND low pressure 7.80 bar
        on_i = int(on)
        for i in (44, 39):  # VD1out (compressor), HUPout (heating pump)
            c[i] = on_i
        c[39] = 1
        c[56] = int(run_s)  # compressor 1 operating seconds
        c[57] = int((t - BASE) // 3600)  # compressor 1 starts: one an hour
        c[63] = int(run_s)
        c[64] = int(run_s * 0.85)
        c[65] = int(run_s * 0.15)
        c[67] = int(minute * 60) if on else 0
        c[78] = c[230] = 8  # ID_WEB_Code_WP_akt(_2): L2A
        c[191] = 2 if on else 0  # ID_WEB_SEC_BZ: heating / off
        for i in range(217, 222):  # second switch-off file: "no request"
            c[i] = 9
        c[79] = 1
        c[80] = 0 if on else 5  # heating / no request
        for k in range(VERSION_LEN):
            ch = self.firmware[k] if k < len(self.firmware) else "\x00"
            c[VERSION_FIRST + k] = ord(ch)
        c[91] = _ip("192.168.20.180")
        c[92] = _ip("255.255.255.0")
        c[93] = _ip("192.168.20.255")
        c[94] = _ip("192.168.20.1")
        for k in range(5):  # error and switch-off history: times in the past
            c[95 + k] = int(BASE + 86400 * (30 + 7 * k))
            c[100 + k] = (715, 716, 0, 0, 0)[k]
            c[106 + k] = (9, 9, 3, 5, 9)[k]
            c[111 + k] = int(BASE + 86400 * (40 + 3 * k))
        c[105] = 2
        c[117] = 0 if on else 1
        c[118] = 0
        c[119] = 0 if on else 1
        c[120] = int((minute if on else minute - on_minutes) * 60)
        c[TIMESTAMP] = int(t)  # ID_WEB_AktuelleTimeStamp
        if self.unknown_codes:
            # A heat pump model newer than python-luxtronik 0.3.14's HeatpumpCode map
            # (codes 0-75; users of BenPru/luxtronik saw "None" for their model, as
            # Bouni/python-luxtronik#197 reports) ...
            c[78] = c[230] = 76
            # ... and an operation mode outside OperationMode's 0-7. Evidence is thin:
            # #197 only asks whether new modes will come; no firmware is known to send 8.
            c[80] = 8
        heat_heating = 25_000.0 + run_s / 3600 * heat_kw * 0.85
        heat_water = 4_000.0 + run_s / 3600 * heat_kw * 0.15
        c[151] = int(heat_heating * 10)  # kWh * 10
        c[152] = int(heat_water * 10)
        c[153] = 0
        c[154] = c[151] + c[152]
        c[155] = 1150 if on else 0  # l/h
        c[173] = 0
        c[183] = 80 if on else 0
        c[184] = 450 if on else 0
        c[231] = 55 if on else 0  # compressor frequency Hz
        c[241] = 100 if on else 0
        c[254] = 1150 if on else 0
        c[257] = int(heat_kw * 1000) if on else 0  # W
        return c


@dataclass
class Faults:
    """Which fault the next connections get: by flag (every Nth) or queued by control."""

    every_kind: str = "none"
    every: int = 0
    slow_seconds: float = 5.0
    short_count: int = 30
    queued: list[str] = field(default_factory=list)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_connection(self) -> str:
        with self.lock:
            self.connections += 1
            if self.queued:
                return self.queued.pop(0)
            if self.every_kind != "none" and self.every and self.connections % self.every == 0:
                return self.every_kind
            return "none"

    def control(self, code: int, count: int) -> None:
        with self.lock:
            if code == 0:
                self.queued.clear()
            else:
                self.queued.extend([FAULTS[code]] * max(0, count))


def _words(values: list[int]) -> bytes:
    return struct.pack(f">{len(values)}i", *values)


class Handler(socketserver.BaseRequestHandler):
    server: Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(120)
        pump = self.server.pump
        fault = "pending"
        answered: dict[int, int] = {}  # command -> the calculations' timestamp word
        words: dict[int, list[int]] = {}  # command -> the words served
        try:
            while True:
                head = self._recv_exact(sock, 8)
                if head is None:
                    return
                cmd, arg = struct.unpack(">ii", head)
                if cmd >= CMD_CONTROL and cmd - CMD_CONTROL in (0, *FAULTS):
                    self.server.faults.control(cmd - CMD_CONTROL, arg)
                    sock.sendall(struct.pack(">ii", cmd, arg))
                    log.info(
                        "control: %s for the next %d connections",
                        FAULTS.get(cmd - CMD_CONTROL, "clear"),
                        arg,
                    )
                    return
                if fault == "pending":
                    fault = self.server.faults.next_connection()
                    if fault != "none":
                        log.info("fault on this connection: %s", fault)
                if cmd == CMD_WRITE:
                    value = self._recv_exact(sock, 4)
                    pump.writes_refused += 1
                    log.warning("write of parameter %d ignored (simulator is read-only)", arg)
                    sock.sendall(struct.pack(">ii", CMD_WRITE, arg))
                    if value is None:
                        return
                    continue
                if fault == "slow":
                    time.sleep(self.server.faults.slow_seconds)
                if cmd == CMD_PARAMETERS:
                    values = pump.parameters
                    head_words = [CMD_PARAMETERS]
                elif cmd == CMD_CALCULATIONS:
                    values = pump.calculations()
                    head_words = [CMD_CALCULATIONS, 0]  # status word: 0 = data valid
                elif cmd == CMD_VISIBILITIES:
                    values = pump.visibilities
                    head_words = [CMD_VISIBILITIES]
                else:
                    log.warning("unknown command %d: closing", cmd)
                    return
                if fault == "short":
                    values = values[: self.server.faults.short_count]
                if fault == "garble" and cmd == CMD_CALCULATIONS:
                    values = values[:VERSION_FIRST] + [-1] * VERSION_LEN + values[91:]
                if cmd == CMD_VISIBILITIES:
                    body = struct.pack(f">{len(values)}b", *values)
                else:
                    body = _words(values)
                data = _words([*head_words, len(values)]) + body
                if fault in ("close", "stall"):
                    sock.sendall(data[: len(data) // 2])
                    log.info("%s mid-answer after %d of %d bytes", fault, len(data) // 2, len(data))
                    if fault == "stall":  # the rest never comes; the socket stays open a while
                        time.sleep(self.server.faults.slow_seconds)
                    return
                sock.sendall(data)
                if fault != "short":  # a short answer is no reading: clients reject it
                    answered[cmd] = values[TIMESTAMP] if cmd == CMD_CALCULATIONS else 0
                    words[cmd] = list(values)
        except OSError as exc:
            log.info("connection ended: %s", exc)
        finally:
            self.server.record_truth(answered, words)

    @staticmethod
    def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf


class Server(socketserver.TCPServer):
    """Single-threaded on purpose: a Luxtronik controller serves one client at a time."""

    allow_reuse_address = True

    def __init__(
        self,
        addr: tuple[str, int],
        pump: HeatPump,
        faults: Faults,
        truth: str = "",
        truth_words: str = "",
    ) -> None:
        self.pump = pump
        self.faults = faults
        self.truth = Path(truth) if truth else None
        self.truth_words = Path(truth_words) if truth_words else None
        super().__init__(addr, Handler)

    def record_truth(self, answered: dict[int, int], words: dict[int, list[int]]) -> None:
        """A client that got parameters, calculations and visibilities in full got a reading."""
        full = {CMD_PARAMETERS, CMD_CALCULATIONS, CMD_VISIBILITIES} <= answered.keys()
        if self.truth is not None and full:
            with self.truth.open("a", encoding="utf-8") as fh:
                fh.write(f"{answered[CMD_CALCULATIONS]},{time.time():.3f}\n")
        if self.truth_words is not None and full:
            doc = {
                "parameters": words[CMD_PARAMETERS],
                "calculations": words[CMD_CALCULATIONS],
                "visibilities": words[CMD_VISIBILITIES],
            }
            with self.truth_words.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(doc, separators=(",", ":")) + "\n")


def refuse_until_signalled(addr: tuple[str, int], firmware: str) -> int:
    """The port bound but not listening: every connection is refused (RST), as by a
    controller whose interface is switched off; runs until SIGTERM/SIGINT."""
    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _s, _f: stopped.set())
    sock = socket.socket(socket.AF_INET6 if ":" in addr[0] else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(addr)
    log.info(
        "Luxtronik simulator %s on %s:%s: interface switched off, connections refused",
        firmware,
        *addr,
    )
    try:
        while not stopped.wait(0.5):
            pass
    finally:
        sock.close()
    return 0


def _when(text: str) -> float:
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", type=listen_address, required=True, metavar="HOST:PORT")
    for name, n in DEFAULT_COUNTS.items():
        parser.add_argument(
            f"--{name}",
            type=int,
            default=n,
            metavar="N",
            help=f"how many {name} the controller sends (default {n})",
        )
    parser.add_argument("--firmware", default="V3.88.1", help="version string (<= 10 chars)")
    parser.add_argument("--start", type=_when, help="simulated time at start (default now)")
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="simulated seconds per real second"
    )
    parser.add_argument(
        "--freeze-at", type=_when, metavar="TIME", help="hold every value at this simulated time"
    )
    parser.add_argument("--fault", choices=["none", *FAULTS.values()], default="none")
    parser.add_argument(
        "--fault-every",
        type=int,
        default=1,
        metavar="N",
        help="apply --fault to every Nth connection (default every one)",
    )
    parser.add_argument("--slow-seconds", type=float, default=5.0)
    parser.add_argument(
        "--short-count", type=int, default=30, help="values per answer in a short answer"
    )
    parser.add_argument(
        "--truth", default="", metavar="FILE", help="append every complete reading served here"
    )
    parser.add_argument(
        "--truth-words",
        default="",
        metavar="FILE",
        help="append every complete reading served here with all its words (JSON lines)",
    )
    parser.add_argument(
        "--interface-off",
        action="store_true",
        help="a 3.90 controller with the interface switched off: the port refuses connections",
    )
    parser.add_argument(
        "--unknown-codes",
        action="store_true",
        help="send selection codes python-luxtronik has no name for (heat pump model 76, "
        "operation mode 8)",
    )


def serve(args: argparse.Namespace) -> int:
    counts = {name: getattr(args, name) for name in DEFAULT_COUNTS}
    for name, n in counts.items():
        if n < MIN_COUNTS[name]:
            log.warning(
                "--%s %d is fewer than python-luxtronik defines (%d)", name, n, MIN_COUNTS[name]
            )
    if args.freeze_at is not None:
        clock = Clock(args.freeze_at, frozen=True)
    else:
        clock = Clock(args.start if args.start is not None else time.time(), args.time_scale)
    if args.interface_off:
        return refuse_until_signalled(args.listen, args.firmware)
    pump = HeatPump(counts, args.firmware[:VERSION_LEN], clock, args.unknown_codes)
    faults = Faults(args.fault, args.fault_every, args.slow_seconds, args.short_count)
    server = Server(args.listen, pump, faults, args.truth, args.truth_words)

    host, port = server.server_address[:2]
    log.info(
        "Luxtronik simulator on %s:%s: %s, %d parameters, %d calculations, %d visibilities",
        host,
        port,
        pump.firmware,
        *counts.values(),
    )
    return serve_until_signalled(server)
