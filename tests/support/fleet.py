"""Every agent at once, each against its own simulator, all writing to one real InfluxDB.

The harness of the fault cases that break what the agents share (InfluxDB, the network)
or the agents themselves. Each leg knows its source's truth and turns it into figures:

* pulse      - the simulator's truth log: every edge it sent, with its exact timestamp;
* luxtronik  - the simulator's truth log: every complete answer it served, named by the
               simulated clock's timestamp word (unique per answer at --time-scale 60);
* wattivahti - the portal's deterministic meter: every quarter-hour of the synced span
               has one true value (a point at a wrong instant carries a wrong value).

The agents are the production ``wattkeeper run`` processes with test-sized intervals.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from conftest import PLUGINS, Target, agent_config, make_target, wattkeeper_cmd

from support.agentproc import buffer_rows, buffer_state, wait_for
from support.faultreport import Figures
from support.influxd import InfluxServer, free_port
from support.simproc import wait_listening
from support.tiers import TIERS, Tiers
from wattkeeper.downsample import Rollup
from wattkeeper.registry import load_plugin

Q = timedelta(minutes=15)
# Every point, also those an agent with its clock a day ahead stamped in the future.
RANGE = "range(start: 0, stop: 2100-01-01T00:00:00Z)"
_FLEETS = itertools.count()  # bucket names stay unique on a shared server
# The production tiers, with a chunk as long as the longest case's data (a 60-day
# WattiVahti sync): the figures are about every window being right, and a catch-up in
# one-day chunks would take 60 runs; tests/test_tiers.py covers chunked catch-ups.
FLEET_TIERS = [TIERS[0], *({**t, "chunk": "62d"} for t in TIERS[1:])]


def _pythonpath() -> str:
    """The test plugins (the tiny source) on top of whatever path the tests run with."""
    return os.pathsep.join(p for p in (str(PLUGINS), os.environ.get("PYTHONPATH", "")) if p)


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    wait_listening(port, proc, log, 30)


def _terminate(proc: subprocess.Popen[bytes] | None, timeout: float = 30) -> int | None:
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return None
    return proc.returncode


@dataclass
class Leg:
    """One source: its simulator, its agent, its bucket and how to count its readings."""

    source: str = ""
    measurement: str = ""
    # What `wattkeeper run` is given (a test plugin is named module:PLUGIN).
    run_name: str = ""
    dir: Path = Path()
    target: Target | None = None
    port: int = 0
    sim: subprocess.Popen[bytes] | None = None
    agent: subprocess.Popen[bytes] | None = None
    config: Path = Path()
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    exit_codes: list[int | None] = field(default_factory=list)
    kills: list[float] = field(default_factory=list)  # wall-clock instants of SIGKILLs
    buffer_dir: Path | None = None  # where the buffer lives, if not with the rest
    agent_env: dict[str, str] = field(default_factory=dict)  # e.g. libfaketime for the agent
    tiers: Tiers | None = None  # the 1m, 5m and 1h tiers of its raw bucket, tasks running

    def rollups(self) -> list[Rollup]:
        return list(load_plugin(self.source).rollups)

    @property
    def buffer(self) -> Path:
        return (self.buffer_dir or self.dir) / f"{self.source}-buffer.sqlite"

    @property
    def log(self) -> Path:
        return self.dir / "agent.log"

    def sim_args(self) -> list[str]:
        raise NotImplementedError

    def source_table(self) -> dict[str, Any]:
        raise NotImplementedError

    def start_sim(self) -> None:
        self.port = free_port()
        log = self.dir / "sim.log"
        self.sim = subprocess.Popen(
            [
                *wattkeeper_cmd(),
                "simulate",
                self.source,
                "--listen",
                f"127.0.0.1:{self.port}",
                *self.sim_args(),
            ],
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        _wait_port(self.port, self.sim, log)

    def write_config(self, influx_url: str | None, **extra: Any) -> None:
        assert self.target is not None
        influxdb = {**extra.pop("influxdb", {}), **({"url": influx_url} if influx_url else {})}
        buffer = {**extra.pop("buffer", {}), "path": self.buffer}
        self.config = agent_config(
            self.dir,
            self.target,
            self.source,
            self.source_table(),
            influxdb=influxdb,
            buffer=buffer,
            **extra,
        )

    def start_agent(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as fh:
            self.agent = subprocess.Popen(
                [*wattkeeper_cmd(), "run", self.run_name or self.source, "-c", str(self.config)],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": _pythonpath(), **self.agent_env},
            )
        return self.agent

    def kill_agent(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed, as with a power cut."""
        assert self.agent is not None
        self.agent.kill()
        self.kills.append(time.time())
        self.agent.wait()

    def pending(self) -> int:
        """Readings (not metrics) still in the buffer."""
        if not self.buffer.exists():
            return 0
        return buffer_rows(self.buffer, f"{self.measurement},%")

    def settled(self) -> bool:
        """The source has nothing more to give in this run (train over, sync done)."""
        return True

    def figures(self, case: str) -> Figures:
        raise NotImplementedError


class PulseLeg(Leg):
    """Three channels at ``rate`` pulses/s each, for ``seconds``; truth = every edge sent."""

    def __init__(self, rate: float, seconds: float) -> None:
        super().__init__(source="pulse", measurement="pulse")
        self.rate = rate
        self.seconds = seconds

    @property
    def truth(self) -> Path:
        return self.dir / "truth.csv"

    def sim_args(self) -> list[str]:
        return [
            "--channels",
            "import:20,export:26,generate:21",
            "--profile",
            f"constant:{self.rate * 3600:g}",
            "--pulses-per-kwh",
            "1000",
            "--duration",
            f"{self.seconds:g}s",
            "--truth",
            str(self.truth),
            "--log-level",
            "warning",
        ]

    def source_table(self) -> dict[str, Any]:
        return {
            "backend": "simulated",
            "simulator": f"127.0.0.1:{self.port}",
            "channels": [
                {"name": "import", "pin": 20, "pulses_per_kwh": 1000},
                {"name": "export", "pin": 26, "pulses_per_kwh": 1000},
                {"name": "generate", "pin": 21, "pulses_per_kwh": 1000},
            ],
        }

    def _truth(self) -> tuple[set[tuple[str, int]], int, int]:
        sent: set[tuple[str, int]] = set()
        dropped = ends = 0
        if self.truth.exists():
            for line in self.truth.read_text().splitlines():
                if line.startswith("# end"):
                    ends += 1
                elif line:
                    name, _pin, ns, _seq, ok = line.split(",")
                    if ok == "1":
                        sent.add((name, int(ns)))
                    else:
                        dropped += 1
        return sent, dropped, ends

    def settled(self) -> bool:
        return self._truth()[2] >= 1

    def figures(self, case: str) -> Figures:
        assert self.target is not None
        sent, dropped, _ = self._truth()
        rows = self.target.query(
            f'|> {RANGE} |> filter(fn: (r) => r._measurement == "pulse" and '
            'r._field == "pulses") |> map(fn: (r) => ({channel: r.channel, '
            "ns: uint(v: r._time)}))"
        )
        landed = {(r["channel"], int(r["ns"])) for r in rows}
        note = f"3 channels x {self.rate:g}/s"
        if dropped:
            note += f"; {dropped} edges dropped by the simulated kernel FIFO"
        return Figures(
            case,
            "pulse",
            generated=len(sent) + dropped,
            landed=len(landed & sent),
            duplicated=len(landed - sent),
            lost=len(sent - landed) + dropped,
            note=note,
        )


class LuxtronikLeg(Leg):
    """Polls every ``interval``; truth = every complete answer the simulator served."""

    def __init__(self, interval: str = "2s") -> None:
        super().__init__(source="luxtronik", measurement="luxtronik")
        self.interval = interval

    @property
    def truth(self) -> Path:
        return self.dir / "truth.csv"

    def sim_args(self) -> list[str]:
        return ["--time-scale", "60", "--truth", str(self.truth)]

    def source_table(self) -> dict[str, Any]:
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "interval": self.interval,
            "timeout": "10s",
            "min_spacing": "500ms",
            "report_dir": str(self.dir / "reports"),
        }

    def served(self) -> dict[int, float]:
        """Timestamp word of every complete answer -> when it was served (wall clock)."""
        if not self.truth.exists():
            return {}
        out = {}
        for line in self.truth.read_text().splitlines():
            if line:
                stamp, when = line.split(",")
                out[int(stamp)] = float(when)
        return out

    def killed_before_commit(self, served_at: float) -> bool:
        """An answer served just before a SIGKILL was never taken: the agent died between
        reading it and committing it (a commit follows the answer within a second)."""
        return any(served_at - 0.5 <= k <= served_at + 3.0 for k in self.kills)

    def figures(self, case: str) -> Figures:
        from luxtronik.parameters import Parameters
        from luxtronik.visibilities import Visibilities

        assert self.target is not None
        served = self.served()
        calc = self.target.query(
            f'|> {RANGE} |> filter(fn: (r) => r._measurement == "luxtronik" and '
            'r.group == "calculations" and r._field == "ID_WEB_AktuelleTimeStamp") '
            "|> map(fn: (r) => ({stamp: r._value, ns: uint(v: r._time)}))"
        )
        by_time = {int(r["ns"]): int(float(r["stamp"])) for r in calc}
        # A reading is a whole poll: the other two groups must be there at the same instant.
        complete = set(by_time)
        for group, name in (
            ("parameters", Parameters.parameters[1].name),
            ("visibilities", Visibilities.visibilities[0].name),
        ):
            rows = self.target.query(
                f'|> {RANGE} |> filter(fn: (r) => r._measurement == "luxtronik" and '
                f'r.group == "{group}" and r._field == "{name}") '
                "|> map(fn: (r) => ({ns: uint(v: r._time)}))"
            )
            complete &= {int(r["ns"]) for r in rows}
        stamps = [by_time[t] for t in complete]
        landed = set(stamps) & set(served)
        duplicated = (len(stamps) - len(set(stamps))) + len(set(stamps) - set(served))
        untaken = {
            s for s, when in served.items() if s not in landed and self.killed_before_commit(when)
        }
        truth = set(served) - untaken
        note = f"polls every {self.interval}, 1,814 values each"
        if untaken:
            note += f"; {len(untaken)} answers not taken: agent killed before the commit"
        return Figures(
            case,
            "luxtronik",
            generated=len(truth),
            landed=len(landed),
            duplicated=duplicated,
            lost=len(truth - landed),
            note=note,
        )


class WattiVahtiLeg(Leg):
    """A first sync of ``days`` days, one day per request (slowed by ``delay``), then
    hourly syncs; truth = every quarter-hour of the synced span, with its true value."""

    MP = "1234567"
    TOKEN_PATH = "/pesv.onmicrosoft.com/b2c_1_tunnistus_signinv2/oauth2/v2.0/token"
    API_PATH = "/api/onlineapi/v1/meterdata2"

    def __init__(self, days: int = 30, delay: str = "300ms") -> None:
        super().__init__(source="wattivahti", measurement="wattivahti")
        self.days = days
        self.delay = delay
        self.first_token = f"rt-{uuid.uuid4().hex}"

    @property
    def token_file(self) -> Path:
        return self.dir / "refresh_token"

    def sim_args(self) -> list[str]:
        return [
            "--initial-refresh-token",
            self.first_token,
            "--quarter-hour-since",
            "2020-01-01",
            "--delay",
            self.delay,
        ]

    def source_table(self) -> dict[str, Any]:
        if not self.token_file.exists():
            self.token_file.write_text(self.first_token + "\n")
            self.token_file.chmod(0o600)
        base = f"http://127.0.0.1:{self.port}"
        return {
            "metering_point": self.MP,
            "token_url": base + self.TOKEN_PATH,
            "api_url": base + self.API_PATH,
            "refresh_token_file": self.token_file,
            "initial_days": self.days,
            "chunk": "1d",
            "interval": "1m",
            "timeout": "10s",
        }

    def first_instant(self) -> datetime:
        from wattkeeper.simulate.wattivahti.data import HELSINKI, local_midnight

        day = (self.started - timedelta(days=self.days)).astimezone(HELSINKI).date()
        return local_midnight(day)

    def settled(self) -> bool:
        """The committed cursor (newest reading taken) is at most two quarters old."""
        if not self.buffer.exists():
            return False
        cursor = buffer_state(self.buffer, f"wattivahti.cursor.{self.MP}")
        if not isinstance(cursor, str):
            return False
        newest = datetime.fromisoformat(cursor.replace("Z", "+00:00"))
        return newest >= datetime.fromtimestamp(int(time.time()) // 900 * 900, UTC) - 2 * Q

    def figures(self, case: str) -> Figures:
        from wattkeeper.simulate.wattivahti.data import quarter_kwh

        assert self.target is not None
        rows = self.target.query(
            f'|> {RANGE} |> filter(fn: (r) => r._measurement == "wattivahti" and '
            'r._field == "consumption_wh") |> map(fn: (r) => ({wh: r._value, '
            "s: uint(v: r._time) / uint(v: 1000000000)}))"
        )
        landed = {datetime.fromtimestamp(int(r["s"]), UTC): float(r["wh"]) for r in rows}
        first = self.first_instant()
        # The portal has a value for every quarter-hour that has begun; the agent syncs at
        # least every minute, so the last one it must have is at most two quarters old.
        end = datetime.fromtimestamp(int(time.time()) // 900 * 900, UTC) - 2 * Q
        last = max([end, *landed])
        expected: set[datetime] = set()
        t = first
        while t <= last:
            expected.add(t)
            t += Q
        wrong = {t for t, wh in landed.items() if abs(wh - quarter_kwh(1, t) * 1000) > 1e-6}
        good = (set(landed) & expected) - wrong
        return Figures(
            case,
            "wattivahti",
            generated=len(expected),
            landed=len(good),
            duplicated=len(set(landed) - expected) + len(wrong),
            lost=len(expected - good),
            note=f"{self.days}-day first sync, a day per request",
        )


class OctopusLeg(Leg):
    """A Home Mini on the Kraken simulator, polled every ``every`` seconds (the budget);
    truth = every telemetry row the simulator served, each with its household's value."""

    ACCOUNT = "A-DEMO0001"
    API_KEY = "sk_live_simulated0000000000000000"

    def __init__(self, every: float = 5.0) -> None:
        super().__init__(source="octopus", measurement="octopus")
        self.every = every

    def sim_args(self) -> list[str]:
        return ["--rate-limit", "1000000"]

    def source_table(self) -> dict[str, Any]:
        key = self.dir / "octopus.apikey"
        if not key.exists():
            key.write_text(self.API_KEY + "\n")
            key.chmod(0o600)
        return {
            "account_number": self.ACCOUNT,
            "api_key_file": key,
            "api_url": f"http://127.0.0.1:{self.port}/v1/graphql/",
            # The budget is per budget_period: a test-sized period gives a call every `every`.
            "calls_per_hour": round(60 / self.every),
            "budget_period": "1m",
            "timeout": "10s",
        }

    def _served(self) -> tuple[set[int], str]:
        """Instants (UTC s) of every row served, and the device they were for."""
        import requests

        stats = requests.get(f"http://127.0.0.1:{self.port}/_stats", timeout=10).json()
        served: set[int] = set()
        device = ""
        for t in stats["telemetry"]:
            if not t["rows"] or t["fault"]:
                continue
            device = t["deviceId"]
            step = {"TEN_SECONDS": 10, "ONE_MINUTE": 60, "FIVE_MINUTES": 300}[t["grouping"]]
            first = int(datetime.fromisoformat(t["first"]).timestamp())
            last = int(datetime.fromisoformat(t["last"]).timestamp())
            served.update(range(first, last + 1, step))
        return served, device

    def settled(self) -> bool:
        try:
            served, _ = self._served()
        except Exception:  # not up yet
            return False
        return bool(served) and max(served) >= time.time() - 3 * self.every - 30

    def figures(self, case: str) -> Figures:
        from wattkeeper.simulate.octopus.household import reading
        from wattkeeper.simulate.octopus.kraken import DEVICES

        assert self.target is not None
        served, device = self._served()
        rows = self.target.query(
            f'|> {RANGE} |> filter(fn: (r) => r._measurement == "octopus" and '
            'r._field == "demand_w") |> map(fn: (r) => ({w: r._value, '
            "s: uint(v: r._time) / uint(v: 1000000000)}))"
        )
        landed = {int(r["s"]): float(r["w"]) for r in rows}
        household = DEVICES[device]
        wrong = {
            t
            for t, w in landed.items()
            if w != float(reading(household, t, "TEN_SECONDS")["demand"])
        }
        good = (set(landed) & served) - wrong
        return Figures(
            case,
            "octopus",
            generated=len(served),
            landed=len(good),
            duplicated=len(set(landed) - served) + len(wrong),
            lost=len(served - good),
            note=f"10 s readings, a poll every {self.every:g} s",
        )


class TinyLeg(Leg):
    """The tests' own source through the production runner: reading k has value k at
    BASE + k s and the cursor is the next k, so the figures are exact by construction."""

    def __init__(self, points_per_poll: int = 5, interval: str = "200ms") -> None:
        super().__init__(source="tiny", measurement="tiny", run_name="tiny_source:PLUGIN")
        self.table = {"points_per_poll": points_per_poll, "interval": interval}

    def start_sim(self) -> None:
        pass  # nothing to simulate: the source makes its readings itself

    def source_table(self) -> dict[str, Any]:
        return dict(self.table)

    def rollups(self) -> list[Rollup]:
        from plugins.tiny_source import PLUGIN

        return list(PLUGIN.rollups)

    def figures(self, case: str) -> Figures:
        assert self.target is not None
        note = f"{self.table['points_per_poll']} readings every {self.table['interval']}"
        return tiny_figures(self.target, self.buffer, case, note)


def tier_figures(fig: Figures, tiers: Tiers, measurement: str) -> Figures:
    """Run every tier task until it has caught up (the next run, and as many more as the
    catch-up takes), then compare every window of each tier with raw's aggregates, up to
    the windows its last run aggregated (InfluxDB holds a manual run scheduled in the
    future until then, so the hour under way is not compared)."""
    rows = tiers.server.query(
        f'from(bucket: "{tiers.raw}") |> {RANGE} '
        f'|> filter(fn: (r) => r._measurement == "{measurement}") '
        '|> first() |> keep(columns: ["_time"]) |> group() |> min(column: "_time")'
    )
    if not rows:
        return fig
    first = datetime.fromisoformat(rows[0]["_time"].replace("Z", "+00:00"))
    time.sleep(1.05 - time.time() % 1)  # after every marker (runs are whole seconds)
    now = datetime.now(UTC).replace(microsecond=0)
    runs = tiers.catch_up(now)
    found = tiers.compare_all(first, now)
    fig.tiers = " · ".join(f"{c.tier} {c.compared}/{c.differing}" for c in found)
    fig.tier_differing = sum(c.differing for c in found)
    fig.tier_runs = max(len(r) for r in runs.values())
    if fig.tier_runs > 1:
        fig.note += f"; the tiers caught up in {fig.tier_runs} runs"
    return fig


def tiered_target(server: InfluxServer, tmp: Path) -> tuple[Target, Tiers]:
    """A raw bucket for the tiny source and its tiers (tasks on their real schedule)."""
    from plugins.tiny_source import PLUGIN

    name = f"fleet{next(_FLEETS)}_{uuid.uuid4().hex[:6]}_tiny"
    target = make_target(server, tmp, f"{name}_raw")
    return target, Tiers.create(
        server, name, list(PLUGIN.rollups), tiers=FLEET_TIERS, scheduled=True
    )


def tiny_figures(target: Target, buffer: Path, case: str, note: str = "") -> Figures:
    """Reading k has value k at BASE + k s; the cursor in the buffer is the next k."""
    generated = int(buffer_state(buffer, "tiny.next", 0))  # type: ignore[arg-type]
    rows = target.query(
        f'|> {RANGE} |> filter(fn: (r) => r._measurement == "tiny" and '
        'r._field == "seq") |> map(fn: (r) => ({v: r._value, ns: uint(v: r._time)}))'
    )
    base = 1_700_000_000 * 10**9
    good = {
        int(float(r["v"]))
        for r in rows
        if 0 <= float(r["v"]) < generated and int(r["ns"]) == base + int(float(r["v"])) * 10**9
    }
    return Figures(
        case,
        "tiny (test source)",
        generated=generated,
        landed=len(good),
        duplicated=len(rows) - len(good),
        lost=generated - len(good),
        note=note,
    )


class Fleet:
    """Start every leg (simulators first), run, drain, stop, count."""

    def __init__(
        self, server: InfluxServer, tmp: Path, legs: list[Leg], buffer_dir: Path | None = None
    ) -> None:
        self.server = server
        self.legs = legs
        for leg in legs:
            leg.dir = tmp / leg.source
            leg.dir.mkdir(parents=True, exist_ok=True)
            leg.buffer_dir = buffer_dir
            name = f"fleet{next(_FLEETS)}_{leg.source}"
            leg.target = make_target(server, leg.dir, f"{name}_raw")
            # The tier tasks run on their real schedule through the whole case, as
            # installed by the role (and die with InfluxDB when a case kills it).
            leg.tiers = Tiers.create(server, name, leg.rollups(), tiers=FLEET_TIERS, scheduled=True)

    def start(
        self, influx_url: str | None = None, agent_env: dict[str, str] | None = None, **extra: Any
    ) -> None:
        for leg in self.legs:
            leg.agent_env = dict(agent_env or {})
            leg.start_sim()
            leg.write_config(influx_url, **extra)
        for leg in self.legs:
            leg.started = datetime.now(UTC)
            leg.start_agent()

    def agents_alive(self) -> list[str]:
        return [
            leg.source for leg in self.legs if leg.agent is not None and leg.agent.poll() is None
        ]

    def wait_drained(self, timeout: float) -> None:
        """Until every source has given all it will and every buffer holds no reading."""

        def done() -> bool:
            return all(leg.settled() and leg.pending() == 0 for leg in self.legs)

        try:
            wait_for(done, timeout, "every source to finish and every buffer to drain", 1.0)
            time.sleep(3)  # edges still in a socket, a poll under way: let them commit
            wait_for(done, 60, "the last readings to drain", 1.0)
        except AssertionError as exc:
            state = ", ".join(
                f"{leg.source}: settled={leg.settled()} pending={leg.pending()}"
                for leg in self.legs
            )
            raise AssertionError(f"{exc} ({state})") from None

    def stop_agents(self) -> dict[str, int | None]:
        codes = {}
        for leg in self.legs:
            codes[leg.source] = _terminate(leg.agent)
            leg.exit_codes.append(codes[leg.source])
        return codes

    def figures(self, case: str) -> list[Figures]:
        """Readings generated / landed, and each tier against raw after the next runs."""
        out = []
        for leg in self.legs:
            fig = leg.figures(case)
            if leg.tiers is not None:
                tier_figures(fig, leg.tiers, leg.measurement)
            out.append(fig)
        return out

    def logs(self) -> dict[str, str]:
        return {leg.source: leg.log.read_text() if leg.log.exists() else "" for leg in self.legs}

    def close(self) -> None:
        for leg in self.legs:
            with contextlib.suppress(Exception):
                _terminate(leg.agent, 10)
            with contextlib.suppress(Exception):
                _terminate(leg.sim, 10)
