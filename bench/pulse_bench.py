"""Benchmark of the pulse agent (not a test): CPU and memory at 3 x 200 pulses/s, and the
highest sustained rate before the first counted loss.

Everything is real except the GPIO lines: a real InfluxDB 2 (built or found like the tests
do), `wattkeeper simulate pulse` as the kernel (it timestamps edges and drops them when
its bounded FIFO is full, like the kernel's event FIFO) and `wattkeeper run pulse`.
The simulator runs on the same host and takes CPU too; numbers are for the agent's
process only (utime + stime from /proc, VmRSS / VmHWM).

    .venv/bin/python bench/pulse_bench.py [--period 60] [--step-seconds 10]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.influxd import InfluxServer, find_influxd, free_port  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
CHANNELS = "import:20,export:26,generate:21"
PPK = 1000.0


@dataclass
class Sample:
    cpu_s: float
    rss_kib: int
    hwm_kib: int


def sample(pid: int) -> Sample:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / TICK
    rss = hwm = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
    return Sample(cpu, rss, hwm)


def wait_port(port: int) -> None:
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("simulator did not start")


@dataclass
class Result:
    label: str
    cpu_pct: float
    rss_mib: float
    hwm_mib: float
    pulses: int
    lost: int
    # The whole train came out within 10 % of its nominal duration: the rate was really
    # offered (a simulator that cannot keep up sends late, not faster).
    paced: bool = True


def run_load(
    work: Path, server: InfluxServer, token_file: Path, rate: int, seconds: float, label: str
) -> Result:
    """Run simulator + agent for ``seconds`` at ``rate`` pulses/s per channel."""
    run = work / f"r{rate}-{int(time.time() * 1000)}"
    run.mkdir()
    port = free_port()
    truth = run / "truth.csv"
    watts = rate * 3.6e6 / PPK
    count = int(rate * seconds)
    wk = [sys.executable, "-m", "wattkeeper"]
    sim = subprocess.Popen(
        [
            *wk,
            "simulate",
            "pulse",
            "--listen",
            f"127.0.0.1:{port}",
            "--channels",
            CHANNELS,
            "--profile",
            f"constant:{watts}",
            "--pulses-per-kwh",
            str(PPK),
            "--count",
            str(count),
            "--truth",
            str(truth),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    bucket = run.name.replace("-", "_")
    server.create_bucket(bucket)
    cfg = run / "pulse.toml"
    cfg.write_text(
        f"""[agent]
log_target = "stderr"
metrics_interval = "5s"
[influxdb]
url = "{server.url}"
org = "{server.org}"
bucket = "{bucket}"
token_file = "{token_file}"
[buffer]
path = "{run / "buffer.sqlite"}"
[pulse]
backend = "simulated"
simulator = "127.0.0.1:{port}"
channels = [
  {{ name = "import", pin = 20, pulses_per_kwh = {PPK} }},
  {{ name = "export", pin = 26, pulses_per_kwh = {PPK} }},
  {{ name = "generate", pin = 21, pulses_per_kwh = {PPK} }},
]
"""
    )
    log = run / "agent.log"
    spawned = time.monotonic()
    agent = subprocess.Popen(
        [*wk, "run", "pulse", "-c", str(cfg)], stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    time.sleep(1.0)  # imports and start-up are not the steady state
    first = sample(agent.pid)
    t0 = time.monotonic()
    rss: list[int] = []
    last = first
    while time.monotonic() - t0 < seconds - 1.0 and agent.poll() is None:
        time.sleep(1.0)
        last = sample(agent.pid)
        rss.append(last.rss_kib)
    wall = time.monotonic() - t0
    # Let the train finish, then stop the agent (it commits what it holds).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "# end" not in (
        truth.read_text() if truth.exists() else ""
    ):
        time.sleep(0.2)
    # The train starts once the agent has connected (imports take about a second).
    took = time.monotonic() - spawned - 1.0
    time.sleep(1.5)
    agent.send_signal(signal.SIGTERM)
    agent.wait(60)
    sim.send_signal(signal.SIGTERM)
    sim.wait(10)
    lines = [x for x in truth.read_text().splitlines() if x and not x.startswith("#")]
    dropped = sum(1 for x in lines if x.endswith(",0"))
    text = log.read_text()
    overflow = "overflowed" in text
    # End to end: every pulse the simulator sent must be a point in InfluxDB.
    rows = server.query(
        f'from(bucket: "{bucket}") |> range(start: 0) |> filter(fn: (r) => '
        'r._measurement == "pulse" and r._field == "pulses") |> group() |> count()'
    )
    landed = int(rows[0]["_value"]) if rows else 0
    missing = max(0, len(lines) - dropped - landed)
    return Result(
        label,
        100.0 * (last.cpu_s - first.cpu_s) / wall,
        sum(rss) / max(1, len(rss)) / 1024,
        last.hwm_kib / 1024,
        len(lines),
        dropped + missing + (1 if overflow else 0),
        paced=took <= seconds * 1.1 + 1.0,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--period", type=float, default=60.0, help="seconds at 3 x 200/s")
    ap.add_argument("--step-seconds", type=float, default=10.0, help="seconds per rate step")
    ap.add_argument(
        "--rates",
        default="500,1000,2000,4000,8000,16000",
        help="pulses/s per channel to step through",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pulse-bench-") as tmp:
        work = Path(tmp)
        server = InfluxServer(find_influxd(), work / "influxd")
        server.start()
        try:
            bucket_id = server.create_bucket("bench_probe")
            token = server.token  # operator token: buckets are created per run
            del bucket_id
            token_file = work / "token"
            token_file.write_text(token)
            token_file.chmod(0o600)
            results = [run_load(work, server, token_file, 200, args.period, "3 x 200/s")]
            best = 0
            for rate in (int(r) for r in args.rates.split(",")):
                r = run_load(work, server, token_file, rate, args.step_seconds, f"3 x {rate}/s")
                results.append(r)
                if r.lost:
                    break
                best = rate
        finally:
            server.stop()
    print(f"{'load':<14} {'agent cpu':>9} {'rss MiB':>8} {'peak MiB':>8} {'pulses':>8} {'lost':>6}")
    for r in results:
        print(
            f"{r.label:<14} {r.cpu_pct:>8.1f}% {r.rss_mib:>8.1f} {r.hwm_mib:>8.1f} "
            f"{r.pulses:>8} {r.lost:>6}"
        )
    print(f"highest sustained rate before the first counted loss: 3 x {best} pulses/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
