"""`make bench`: the figures users choose a collector by, measured in one run.

Sections (each can be run alone: ``python bench/run.py drain ingest footprint``):

* drain     - a backlog in the buffer delivered to a real InfluxDB 2 on loopback, against
              the limit measured in the same run: the same lines posted straight to
              /api/v2/write, same batch size, gzip, by a minimal client;
* ingest    - points committed durably per second, with the batch sizes the agents use;
* footprint - resident memory and CPU share of each agent at its default interval against
              its simulator, next to a bare Python interpreter.

Results are printed as a table and written to docs/benchmarks.md with the machine and date.
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from support.influxd import InfluxServer, find_influxd  # noqa: E402

from wattkeeper.buffer import Buffer  # noqa: E402
from wattkeeper.delivery import Deliverer, Flush  # noqa: E402
from wattkeeper.influx import InfluxClient  # noqa: E402


@dataclass
class Result:
    section: str
    name: str
    value: float
    unit: str
    note: str = ""


RESULTS: list[Result] = []


def record(section: str, name: str, value: float, unit: str, note: str = "") -> None:
    RESULTS.append(Result(section, name, value, unit, note))
    print(f"  {name:<52} {value:>14,.2f} {unit:<10} {note}", flush=True)


# -- workloads ------------------------------------------------------------------------------

BASE_NS = 1_760_000_000 * 10**9
BATCH_BYTES = 8_000_000  # the agent's default influxdb.batch_bytes


def narrow_lines(n: int) -> list[str]:
    """Pulse-like points: one tag, three fields."""
    return [
        f"pulse,channel=import energy_wh=1.0,power_w={200 + i % 3000}.5,pulses=1i "
        f"{BASE_NS + i * 1_000_000}"
        for i in range(n)
    ]


def wide_lines(n: int, fields: int = 1200) -> list[str]:
    """Luxtronik-like points: one tag, 1000+ float fields."""
    out = []
    for i in range(n):
        body = ",".join(f"ID_Value_{k}={(i * 7 + k) % 997 / 10}" for k in range(fields))
        out.append(f"luxtronik,group=calculations {body} {BASE_NS + i * 30 * 10**9}")
    return out


# -- drain ------------------------------------------------------------------------------------


def batches(lines: list[str], count: int, nbytes: int) -> list[list[str]]:
    """The batches the agent makes: at most ``count`` lines and ``nbytes`` bytes each."""
    out: list[list[str]] = [[]]
    size = 0
    for line in lines:
        if out[-1] and (len(out[-1]) == count or size + len(line) > nbytes):
            out.append([])
            size = 0
        out[-1].append(line)
        size += len(line)
    return out


def _raw_post(server: InfluxServer, bucket: str, lines: list[str], batch: int) -> float:
    """The limit: the same lines, straight to /api/v2/write, no buffer at all."""
    session = requests.Session()
    session.headers["Authorization"] = f"Token {server.token}"
    chunks = batches(lines, batch, BATCH_BYTES)
    start = time.perf_counter()
    for chunk in chunks:
        body = gzip.compress(("\n".join(chunk) + "\n").encode(), compresslevel=1)
        r = session.post(
            f"{server.url}/api/v2/write",
            params={"org": server.org, "bucket": bucket, "precision": "ns"},
            data=body,
            headers={"Content-Encoding": "gzip"},
            timeout=120,
        )
        r.raise_for_status()
    return time.perf_counter() - start


def _agent_drain(
    server: InfluxServer, bucket: str, lines: list[str], batch: int, tmp: Path
) -> float:
    buf = Buffer(tmp / f"{bucket}.sqlite", max_rows=10**8, max_bytes=10**12, synchronous="normal")
    for i in range(0, len(lines), 50_000):
        buf.append(lines[i : i + 50_000])
    buf.close()
    # Deliver with the production settings (synchronous=FULL), as an agent restarting would.
    buf = Buffer(tmp / f"{bucket}.sqlite", max_rows=10**8, max_bytes=10**12)
    client = InfluxClient(server.url, server.org, bucket, server.token, timeout=120)
    deliverer = Deliverer(buf, client, batch_size=batch, batch_bytes=BATCH_BYTES)
    start = time.perf_counter()
    outcome = deliverer.flush()
    took = time.perf_counter() - start
    assert outcome is Flush.EMPTY and buf.pending == 0, "drain did not finish"
    buf.close()
    return took


def bench_drain(server: InfluxServer, tmp: Path, narrow_n: int, wide_n: int) -> None:
    print("drain: backlog delivered to InfluxDB on loopback (batch 5000, gzip)")
    for label, lines, batch in (
        (f"narrow x{narrow_n:,}", narrow_lines(narrow_n), 5000),
        # Wide batches are cut by bytes (8 MB of line protocol), as the agent does.
        (f"wide (1200 fields) x{wide_n:,}", wide_lines(wide_n), 5000),
    ):
        tag = label.split()[0]
        server.create_bucket(f"limit_{tag}")
        server.create_bucket(f"agent_{tag}")
        limit = len(lines) / _raw_post(server, f"limit_{tag}", lines, batch)
        agent = len(lines) / _agent_drain(server, f"agent_{tag}", lines, batch, tmp)
        record("drain", f"{label}: raw client (the limit)", limit, "points/s")
        record("drain", f"{label}: wattkeeper buffer -> InfluxDB", agent, "points/s")
        record("drain", f"{label}: ratio to the limit", agent / limit, "x", "goal >= 0.8")


# -- ingest -----------------------------------------------------------------------------------


def bench_ingest(tmp: Path) -> None:
    print("ingest: points committed durably (synchronous=FULL, WAL)")
    cases = [
        ("octopus poll (10 points/commit)", narrow_lines(10), 300),
        ("pulse commit (600 points/commit, 3x200/s)", narrow_lines(600), 200),
        ("luxtronik poll (3 wide points/commit)", wide_lines(3), 100),
    ]
    for name, batch, commits in cases:
        buf = Buffer(tmp / f"ingest-{len(batch)}.sqlite", max_rows=10**8, max_bytes=10**12)
        start = time.perf_counter()
        for _ in range(commits):
            buf.append(batch)
        took = time.perf_counter() - start
        buf.close()
        record(
            "ingest",
            name,
            commits * len(batch) / took,
            "points/s",
            f"{commits / took:,.0f} commits/s",
        )


# -- footprint ------------------------------------------------------------------------------


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def measure_process(pid: int, seconds: float) -> tuple[float, float, float]:
    """Peak RSS (MiB), mean RSS (MiB), CPU share (% of one core) over ``seconds``."""
    hz = os.sysconf("SC_CLK_TCK")
    t0, c0 = time.monotonic(), _cpu_ticks(pid)
    samples = []
    while time.monotonic() - t0 < seconds:
        samples.append(_rss_kib(pid))
        time.sleep(1)
    cpu = (_cpu_ticks(pid) - c0) / hz / (time.monotonic() - t0) * 100
    return max(samples) / 1024, sum(samples) / len(samples) / 1024, cpu


def bench_footprint(server: InfluxServer, tmp: Path, seconds: float) -> None:
    print(f"footprint: each agent at its default interval against its simulator, {seconds:.0f}s")
    bare = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    time.sleep(1)
    record("footprint", "bare python3 interpreter", _rss_kib(bare.pid) / 1024, "MiB RSS")
    bare.kill()
    try:
        import footprint
    except ImportError:
        print("  (bench/footprint.py not present: skipped)")
        return
    footprint.run(server, tmp, seconds, measure_process, record)


# -- pulse ------------------------------------------------------------------------------------


def bench_pulse(server: InfluxServer, tmp: Path, period: float, step: float) -> None:
    """The pulse agent at 3 x 200 pulses/s, then stepped up to the first counted loss."""
    import pulse_bench

    print(f"pulse: agent CPU and memory at 3 x 200 pulses/s ({period:.0f}s), then rate steps")
    token_file = tmp / "pulse.token"
    token_file.write_text(server.token)
    token_file.chmod(0o600)
    r = pulse_bench.run_load(tmp, server, token_file, 200, period, "3 x 200/s")
    record("pulse", "3 x 200 pulses/s: agent CPU", r.cpu_pct, "% of a core")
    record(
        "pulse",
        "3 x 200 pulses/s: agent RSS (mean / peak)",
        r.rss_mib,
        "MiB",
        f"peak {r.hwm_mib:.1f}",
    )
    record("pulse", "3 x 200 pulses/s: pulses lost", r.lost, "pulses", f"of {r.pulses}")
    best = 0
    for rate in (1000, 2000, 4000, 8000, 16000):
        r = pulse_bench.run_load(tmp, server, token_file, rate, step, f"3 x {rate}/s")
        if r.lost:
            break
        best = rate
    record(
        "pulse", "highest sustained rate before the first loss", 3 * best, "pulses/s", f"3 x {best}"
    )


# -- report ---------------------------------------------------------------------------------


def write_report(path: Path, args: argparse.Namespace) -> None:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; machine: "
        f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, InfluxDB {args.influxd_version}.",
        "",
        "| section | measure | value | unit | note |",
        "|---|---|---:|---|---|",
    ]
    for r in RESULTS:
        lines.append(f"| {r.section} | {r.name} | {r.value:,.2f} | {r.unit} | {r.note} |")
    lines.append("")
    extra = ROOT / "docs" / "benchmarks-notes.md"
    if extra.exists():
        lines.append(extra.read_text())
    path.write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sections", nargs="*", default=["drain", "ingest", "pulse", "footprint"])
    parser.add_argument("--pulse-seconds", type=float, default=60)
    parser.add_argument("--pulse-step-seconds", type=float, default=10)
    parser.add_argument("--narrow", type=int, default=1_000_000)
    parser.add_argument("--wide", type=int, default=5_000)
    parser.add_argument("--footprint-seconds", type=float, default=300)
    parser.add_argument("--report", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    binary = find_influxd()
    args.influxd_version = subprocess.run(
        [binary, "version"], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    with tempfile.TemporaryDirectory(prefix="wattkeeper-bench-") as d:
        tmp = Path(d)
        server = InfluxServer(binary, tmp / "influxd")
        server.start()
        try:
            steps: dict[str, Callable[[], None]] = {
                "drain": lambda: bench_drain(server, tmp, args.narrow, args.wide),
                "ingest": lambda: bench_ingest(tmp),
                "pulse": lambda: bench_pulse(
                    server, tmp, args.pulse_seconds, args.pulse_step_seconds
                ),
                "footprint": lambda: bench_footprint(server, tmp, args.footprint_seconds),
            }
            for s in args.sections:
                steps[s]()
        finally:
            server.stop()
    write_report(args.report, args)
    print(f"written to {args.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
