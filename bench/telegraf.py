"""wattkeeper side by side with Telegraf: same readings, same rate, same InfluxDB 2.

One generator (``Feed``) writes the same line protocol to every agent over TCP: Telegraf
takes it with ``socket_listener`` (data_format influx), wattkeeper with the bench-only
streaming source ``bench/plugins/linefeed_source.py``. The readings are home-like: a meter
reading every 10 s and three pulse channels; each reading carries a ``seq`` field and a
timestamp of its own, so what lands in InfluxDB can be counted against what was generated.
Each agent writes its own bucket of one InfluxDB 2 with its default settings.

Six agents run at once from the start: wattkeeper, Telegraf with its default memory buffer
and Telegraf with its disk buffer, twice. The first three measure steady state and the
outage; the second three are SIGKILLed in the middle of the outage and started again. A
sender that finds its agent gone keeps its lines and sends them once the agent listens
again (as a reconnecting client would), so a loss is a reading the agent had accepted.

After the outage the feed stops and every agent is frozen (SIGSTOP); InfluxDB starts and
the agents are let go (SIGCONT) one at a time, so each drains alone: the time from its
release to its last point landing, and its rate from its first point to its last.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from support.influxd import InfluxServer, find_influxd, free_port

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "scripts" / "build-telegraf.sh"
PLUGINS = Path(__file__).parent / "plugins"
Record = Callable[[str, str, float, str, str], None]
HZ = os.sysconf("SC_CLK_TCK")


def telegraf_binary() -> str:
    """The cached Telegraf, built from its Go module (niced) when it is missing."""
    env = os.environ.get("WATTKEEPER_TELEGRAF")
    if env:
        return env
    out = subprocess.run(["bash", str(BUILD)], check=True, stdout=subprocess.PIPE, text=True)
    return out.stdout.strip().splitlines()[-1]


# -- the readings -------------------------------------------------------------------------


class Sender:
    """One agent's TCP inlet: keeps unsent lines and reconnects when the agent is gone."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.queue: collections.deque[str] = collections.deque()
        self.wake = threading.Event()
        self.done = threading.Event()
        self.idle = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        conn: socket.socket | None = None
        chunk = b""
        while not (self.done.is_set() and not self.queue and not chunk):
            if not chunk:
                lines = [self.queue.popleft() for _ in range(min(len(self.queue), 5000))]
                if not lines:
                    self.idle.set()
                    self.wake.wait(0.2)
                    self.wake.clear()
                    continue
                self.idle.clear()
                chunk = "".join(lines).encode()
            try:
                if conn is None:
                    conn = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                conn.sendall(chunk)
                chunk = b""
            except OSError:
                # Agent gone (killed, not yet listening): send the whole chunk again later.
                # Lines sent twice land on the same series and time, so they overwrite.
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.1)
        if conn is not None:
            conn.close()
        self.idle.set()


class Feed:
    """A meter reading every ``meter_every`` s and ``channels`` pulse channels at ``rate``/s."""

    def __init__(self, ports: list[int]) -> None:
        self.senders = [Sender(p) for p in ports]
        self.rate = 0.0
        self.channels = 3
        self.meter_every = 10.0
        self.generated = 0
        self._pulses = [0] * self.channels
        self._meters = 0
        self._t0 = time.monotonic()
        self._t0_ns = time.time_ns()
        self._rate_since = self._t0  # when the rate last changed
        self._base = [0.0] * self.channels
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def set_rate(self, rate: float) -> None:
        now = time.monotonic()
        self._base = [float(n) for n in self._pulses]
        self._rate_since = now
        self.rate = rate

    def _run(self) -> None:
        period_ns = 5_000_000  # pulse k of a channel at t0 + 5 ms * k: unique and exact
        while not self._stop.wait(0.02):
            now = time.monotonic()
            lines: list[str] = []
            due = self._base[0] + (now - self._rate_since) * self.rate
            for ch in range(self.channels):
                while self._pulses[ch] < int(due):
                    k = self._pulses[ch]
                    lines.append(f"pulse,ch=c{ch} seq={k}i {self._t0_ns + k * period_ns}\n")
                    self._pulses[ch] += 1
            while self._meters <= (now - self._t0) / self.meter_every:
                k = self._meters
                ts = self._t0_ns + int(k * self.meter_every * 1e9)
                lines.append(f"meter,id=home energy_wh={k * 12.5},power_w=4500.0,seq={k}i {ts}\n")
                self._meters += 1
            self.generated += len(lines)
            for s in self.senders:
                s.queue.extend(lines)
                s.wake.set()

    def stop(self, timeout: float = 60) -> None:
        """Stop generating and wait until every sender has handed over its lines."""
        self._stop.set()
        self._thread.join()
        for s in self.senders:
            s.done.set()
            s.wake.set()
        for s in self.senders:
            s.thread.join(timeout)


# -- the agents -----------------------------------------------------------------------------


@dataclass
class Agent:
    name: str
    bucket: str
    cmd: list[str]
    env: dict[str, str]
    log: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (t, rss KiB, ticks)

    def start(self) -> None:
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                self.cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
            )

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def sample(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = self.proc.pid
            status = Path(f"/proc/{pid}/status").read_text()
            rss = next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmRSS:"))
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            self.samples.append((time.monotonic(), rss, int(stat[11]) + int(stat[12])))

    def window(self, t0: float, t1: float) -> tuple[float, float, float]:
        """Mean RSS (MiB), peak RSS (MiB) and CPU (% of a core) between t0 and t1."""
        s = [x for x in self.samples if t0 <= x[0] <= t1]
        if len(s) < 2:
            return 0.0, 0.0, 0.0
        rss = [x[1] / 1024 for x in s]
        cpu = (s[-1][2] - s[0][2]) / HZ / (s[-1][0] - s[0][0]) * 100
        return sum(rss) / len(rss), max(rss), cpu


def telegraf_config(
    path: Path, server: InfluxServer, bucket: str, port: int, disk: Path | None
) -> Path:
    """Telegraf's defaults, spelled out where the comparison depends on them."""
    buffer = (
        f'buffer_strategy = "disk"\n  buffer_directory = "{disk}"\n'
        if disk
        else 'buffer_strategy = "memory"\n'
    )
    path.write_text(
        f"""[agent]
  interval = "10s"
  flush_interval = "10s"
  metric_batch_size = 1000
  metric_buffer_limit = 10000
  {buffer}
[[inputs.socket_listener]]
  service_address = "tcp://127.0.0.1:{port}"
  data_format = "influx"

[[outputs.influxdb_v2]]
  urls = ["{server.url}"]
  token = "${{WK_BENCH_TOKEN}}"
  organization = "{server.org}"
  bucket = "{bucket}"
"""
    )
    return path


def wattkeeper_config(
    path: Path, server: InfluxServer, bucket: str, port: int, token: Path, commit: str = ""
) -> Path:
    """wattkeeper's defaults (batch 5,000, gzip, retry up to 30 s, commit every 1 s), or a
    shorter commit interval (``commit``)."""
    path.write_text(
        f"""[agent]
log_target = "stderr"

[influxdb]
url = "{server.url}"
org = "{server.org}"
bucket = "{bucket}"
token_file = "{token}"

[buffer]
path = "{path.with_suffix(".sqlite")}"
{f'commit_interval = "{commit}"' if commit else ""}

[linefeed]
listen = "127.0.0.1:{port}"
"""
    )
    return path


KINDS = ("wattkeeper", "telegraf-memory", "telegraf-disk")


def make_agents(
    server: InfluxServer, tmp: Path, telegraf: str, suffix: str, kinds: tuple[str, ...] = KINDS
) -> list[Agent]:
    agents = []
    for kind in kinds:
        bucket = f"{kind.replace('-', '_')}{suffix}"
        bucket_id = server.create_bucket(bucket)
        token = server.create_token(bucket_id, ("write", "read"))
        port = free_port()
        base = tmp / bucket
        log = base.with_suffix(".log")
        if kind.startswith("wattkeeper"):
            token_file = base.with_suffix(".token")
            token_file.write_text(token + "\n")
            token_file.chmod(0o600)
            commit = "100ms" if kind.endswith("commit") else ""
            cfg = wattkeeper_config(
                base.with_suffix(".toml"), server, bucket, port, token_file, commit
            )
            cmd = [
                sys.executable,
                "-m",
                "wattkeeper",
                "run",
                "linefeed_source:PLUGIN",
                "-c",
                str(cfg),
            ]
            env = {"PYTHONPATH": str(PLUGINS)}
            name = "wattkeeper" + (", buffer.commit_interval 100 ms" if commit else "")
        else:
            disk = base.with_name(bucket + "-wal") if kind.endswith("disk") else None
            cfg = telegraf_config(base.with_suffix(".conf"), server, bucket, port, disk)
            cmd = [telegraf, "--config", str(cfg)]
            env = {"WK_BENCH_TOKEN": token}
            name = "Telegraf, " + ("disk buffer" if disk else "memory buffer")
        agents.append(Agent(name, bucket, cmd, env, log, port))
    return agents


def landed(server: InfluxServer, bucket: str) -> int:
    rows = server.query(
        f'from(bucket: "{bucket}") |> range(start: 0) '
        '|> filter(fn: (r) => r._field == "seq") |> group() |> count()'
    )
    return int(rows[0]["_value"]) if rows else 0


# -- the run --------------------------------------------------------------------------------


def run(tmp: Path, record: Record, steady: float, outage: float) -> None:
    telegraf = telegraf_binary()
    version = subprocess.run([telegraf, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"telegraf: {version} vs wattkeeper; steady {steady:.0f}s per rate, outage {outage:.0f}s")
    server = InfluxServer(find_influxd(), tmp / "influxd-telegraf")
    server.start()
    plain = make_agents(server, tmp, telegraf, "")
    killed = make_agents(server, tmp, telegraf, "_killed", (*KINDS, "wattkeeper-commit"))
    agents = plain + killed
    stop_sampling = threading.Event()

    def sampler() -> None:
        while not stop_sampling.wait(1.0):
            for a in agents:
                a.sample()

    for a in agents:
        a.start()
    feed = Feed([a.port for a in agents])
    threading.Thread(target=sampler, daemon=True).start()
    try:
        _measure(server, feed, plain, killed, record, steady, outage)
    finally:
        stop_sampling.set()
        with contextlib.suppress(Exception):
            feed.stop(5)
        for a in agents:
            a.stop()
        server.stop()


def _steady(plain: list[Agent], record: Record, what: str, t0: float, t1: float) -> None:
    wk = plain[0].window(t0, t1)
    tg = plain[1].window(t0, t1)
    td = plain[2].window(t0, t1)
    for label, i in (("RSS (mean)", 0), ("CPU", 2)):
        unit = "MiB" if i == 0 else "% of a core"
        note = f"Telegraf disk buffer {td[i]:.2f}"
        record("telegraf", f"{what}: wattkeeper {label}", wk[i], unit, "")
        record("telegraf", f"{what}: Telegraf {label}", tg[i], unit, note)
        record(
            "telegraf",
            f"{what}: {label} ratio wattkeeper/Telegraf",
            wk[i] / tg[i],
            "x",
            "goal <= 1.5",
        )


def _measure(
    server: InfluxServer,
    feed: Feed,
    plain: list[Agent],
    killed: list[Agent],
    record: Record,
    steady: float,
    outage: float,
) -> None:
    warm = 20.0
    time.sleep(warm)  # agents start, connect, settle
    t0 = time.monotonic()
    time.sleep(steady)
    _steady(plain, record, "a reading every 10 s", t0, time.monotonic())
    feed.set_rate(200)
    time.sleep(warm)
    t0 = time.monotonic()
    time.sleep(steady)
    _steady(plain, record, "3 x 200 pulses/s + a reading every 10 s", t0, time.monotonic())

    print(f"telegraf: InfluxDB down for {outage:.0f}s at 3 x 200/s", flush=True)
    server.stop()
    down = time.monotonic()
    time.sleep(outage / 2)
    for a in killed:
        a.kill()
    time.sleep(2)
    for a in killed:
        a.start()
    time.sleep(max(0.0, down + outage - time.monotonic()))
    feed.stop()
    time.sleep(3)  # the last lines read and committed (wattkeeper commits every 1 s)
    generated = feed.generated
    for a in plain + killed:
        a.signal(signal.SIGSTOP)
    server.start()
    results = {}
    for a in plain + killed:
        results[a.bucket] = _drain(server, a, generated)
    minutes = f"{outage / 60:g}"
    figures: dict[str, tuple[float, float, float]] = {}
    for a in plain + killed:
        _, peak, _ = a.window(down, time.monotonic())
        before, got, wait, took = results[a.bucket]
        case = "SIGKILLed mid-outage" if a in killed else "outage"
        record(
            "telegraf",
            f"{minutes} min {case}: {a.name}, readings lost",
            generated - got,
            "readings",
            f"of {generated:,}",
        )
        if a in plain:
            rate = (got - before) / took if took else 0.0
            record(
                "telegraf",
                f"{minutes} min outage: {a.name}, time until all delivered",
                wait + took,
                "s",
                f"first write within {wait + 0.5:.1f} s; then {rate:,.0f} points/s",
            )
            record("telegraf", f"{minutes} min outage: {a.name}, peak RSS", peak, "MiB", "")
            figures[a.name] = (wait + took, rate, peak)
    wk, disk = figures[plain[0].name], figures[plain[2].name]
    mem = figures[plain[1].name]
    for what, i, goal in (
        ("time until all delivered", 0, ""),
        ("drain rate", 1, "goal >= 1"),
        ("peak RSS", 2, ""),
    ):
        for tg, label in ((disk, "disk"), (mem, "memory")):
            if tg[i] and not (i == 1 and label == "memory"):
                record(
                    "telegraf",
                    f"{minutes} min outage: {what} ratio wattkeeper/Telegraf {label} buffer",
                    wk[i] / tg[i],
                    "x",
                    goal if label == "disk" else "",
                )


def _drain(server: InfluxServer, agent: Agent, generated: int) -> tuple[int, int, float, float]:
    """Release one frozen agent until its bucket stops growing.

    Returns the points landed before and after, the wait until its first write and the
    time from its first write to its last."""
    before = landed(server, agent.bucket)
    agent.signal(signal.SIGCONT)
    start = time.monotonic()
    first = last = None
    quiet = start  # the last sample that found nothing new (the drain began after it)
    count = before
    while True:
        time.sleep(0.5)
        now = time.monotonic()
        n = landed(server, agent.bucket)
        if n > count:
            first = first or quiet
            last = now
            count = n
        elif first is None:
            quiet = now
        if count >= generated:
            break
        if now - (last or start) > (30 if last else 330):
            break
    agent.signal(signal.SIGSTOP)  # the next agent drains alone
    wait = (first or start) - start
    took = (last - first) if first and last else 0.0
    return before, count, wait, took
