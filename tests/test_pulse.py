"""Pulse agent: the real CLI, the simulated GPIO backend over TCP, a real InfluxDB.

The simulator decides every edge's timestamp and writes the exact truth, so counts,
energy, timestamps and power are compared with what really "happened" on the lines.
Helpers here are shared by the other test_pulse_*.py files.
"""

from __future__ import annotations

import itertools
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import Target, agent_config, run_wattkeeper, spawn_wattkeeper, wattkeeper_cmd
from support.influxd import free_port

from wattkeeper.point import Point
from wattkeeper.source import SourceFatal
from wattkeeper.sources.pulse.backend import SeqGaps
from wattkeeper.sources.pulse.choose import choose_backend
from wattkeeper.sources.pulse.config import ChannelSection, PulseSection
from wattkeeper.sources.pulse.counter import PulseCounter
from wattkeeper.sources.pulse.errors import open_failure

# ---------------------------------------------------------------------------
# helpers (shared with the other pulse test files)
# ---------------------------------------------------------------------------


@dataclass
class Truth:
    """Every edge the simulator generated: (utc_ns, sent?) per channel, in order."""

    edges: dict[str, list[tuple[int, bool]]] = field(default_factory=lambda: defaultdict(list))
    ended: int = 0

    @classmethod
    def read(cls, path: Path) -> Truth:
        t = cls()
        if not path.exists():
            return t
        for line in path.read_text().splitlines():
            if line.startswith("# end"):
                t.ended += 1
            elif line:
                name, _pin, ns, _seq, sent = line.split(",")
                t.edges[name].append((int(ns), sent == "1"))
        return t

    def sent(self, channel: str) -> list[int]:
        return [ns for ns, ok in self.edges[channel] if ok]

    def dropped(self) -> int:
        return sum(1 for e in self.edges.values() for _, ok in e if not ok)


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"simulator exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("simulator did not listen")


@dataclass
class Sim:
    port: int
    truth_file: Path
    proc: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def truth(self) -> Truth:
        return Truth.read(self.truth_file)

    def wait_end(self, timeout: float) -> Truth:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            t = self.truth()
            if t.ended:
                return t
            time.sleep(0.3)
        raise AssertionError("the simulator's pulse train did not end in time")


@pytest.fixture
def pulse_sim(tmp_path: Path) -> Iterator[Callable[..., Sim]]:
    """Start `wattkeeper simulate pulse` (the real CLI) with the given options."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> Sim:
        port = free_port()
        truth = tmp_path / f"truth-{port}.csv"
        log = (tmp_path / f"sim-{port}.log").open("ab")
        proc = subprocess.Popen(
            [
                *wattkeeper_cmd(),
                "simulate",
                "pulse",
                "--listen",
                f"127.0.0.1:{port}",
                "--truth",
                str(truth),
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        wait_port(port, proc)
        return Sim(port, truth, proc)

    yield start
    for p in procs:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def channel(name: str, pin: int, ppk: float = 1000, **kw: Any) -> dict[str, Any]:
    return {"name": name, "pin": pin, "pulses_per_kwh": ppk, **kw}


THREE = [channel("import", 20), channel("export", 26), channel("generate", 21)]


def pulse_config(
    tmp_path: Path, target: Target, sim: Sim, channels: list[dict[str, Any]], **extra: Any
) -> Path:
    agent = {"metrics_interval": "1s", **extra.pop("agent", {})}
    return agent_config(
        tmp_path,
        target,
        "pulse",
        {"backend": "simulated", "simulator": sim.address, "channels": channels},
        agent=agent,
        **extra,
    )


def stop_agent(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout)


def per_channel(target: Target, field_name: str, fn: str, start: str = "0") -> dict[str, float]:
    rows = target.query(
        f'|> range(start: {start}) |> filter(fn: (r) => r._measurement == "pulse" '
        f'and r._field == "{field_name}") |> group(columns: ["channel"]) |> {fn}()'
    )
    return {r["channel"]: float(r["_value"]) for r in rows}


def wait_counts(
    target: Target, expected: dict[str, int], timeout: float, start: str = "0"
) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    got: dict[str, float] = {}
    while time.monotonic() < deadline:
        got = per_channel(target, "pulses", "count", start)
        if all(got.get(k, 0) >= v for k, v in expected.items()):
            return got
        time.sleep(0.5)
    return got


def raw_series(target: Target, channel_name: str, field_name: str) -> list[tuple[int, float]]:
    """(ns, value) of one channel's field, exact: times as integer ns via uint()."""
    rows = target.query(
        f'|> range(start: 0) |> filter(fn: (r) => r._measurement == "pulse" and '
        f'r.channel == "{channel_name}" and r._field == "{field_name}") '
        '|> map(fn: (r) => ({_value: r._value, ns: uint(v: r._time)})) |> sort(columns: ["ns"])'
    )
    return [(int(r["ns"]), float(r["_value"])) for r in rows]


def truth_power(times: list[int], ppk: float) -> dict[int, float]:
    """ns -> W for every pulse but the first: 3.6e6 / (ppk * seconds since the previous)."""
    return {b: 3.6e6 / (ppk * (b - a) / 1e9) for a, b in itertools.pairwise(times)}


# ---------------------------------------------------------------------------
# end to end
# ---------------------------------------------------------------------------


def test_known_train_lands_exactly_on_three_channels(
    tmp_path: Path, target: Target, pulse_sim: Callable[..., Sim]
) -> None:
    """Exact count, energy and timestamps per channel; power within 1 % of the profile."""
    n = 40
    sim = pulse_sim(
        "--channels",
        "import:20,export:26:500,generate:21:2000",
        "--profile",
        "import=constant:36000",
        "--profile",
        "export=constant:45000",
        "--profile",
        "generate=steps:36000,12000@1s",
        "--count",
        str(n),
    )
    cfg = pulse_config(
        tmp_path,
        target,
        sim,
        [channel("import", 20), channel("export", 26, 500), channel("generate", 21, 2000)],
    )
    agent = spawn_wattkeeper("run", "pulse", "-c", cfg, log=tmp_path / "agent.log")
    try:
        truth = sim.wait_end(60)
        counts = wait_counts(target, {"import": n, "export": n, "generate": n}, 30)
    finally:
        rc = stop_agent(agent)
    log = (tmp_path / "agent.log").read_text()
    assert rc == 0, log
    assert "pulse backend: simulated" in log
    assert counts == {"import": n, "export": n, "generate": n}
    assert truth.dropped() == 0
    energy = per_channel(target, "energy_wh", "sum")
    assert energy["import"] == pytest.approx(n * 1.0, rel=1e-12)
    assert energy["export"] == pytest.approx(n * 2.0, rel=1e-12)
    assert energy["generate"] == pytest.approx(n * 0.5, rel=1e-12)
    pulses = per_channel(target, "pulses", "sum")
    assert pulses == {"import": n, "export": n, "generate": n}

    profile = {"import": (1000, 36000.0), "export": (500, 45000.0)}
    for name, (_ppk, watts) in profile.items():
        times = truth.sent(name)
        assert [t for t, _ in raw_series(target, name, "pulses")] == times
        power = raw_series(target, name, "power_w")
        # The first pulse after start has no interval, so no power.
        assert [t for t, _ in power] == times[1:]
        for _t, w in power:
            assert w == pytest.approx(watts, rel=0.01)
    # Steps: the power of an interval inside one step is that step's power (within 1 %);
    # every interval's power is exactly 3.6e6 / (ppk * seconds) of the true timestamps.
    times = truth.sent("generate")
    expected = truth_power(times, 2000)
    power = dict(raw_series(target, "generate", "power_w"))
    assert power.keys() == expected.keys()
    # The train starts 1800 J / 36000 W = 50 ms before its first pulse.
    t0 = times[0] - 50_000_000
    inside = 0
    for (a, b), w in zip(itertools.pairwise(times), power.values(), strict=True):
        assert w == pytest.approx(expected[b], rel=1e-9)
        step_a, step_b = (a - t0) // 10**9, (b - t0) // 10**9
        if step_a == step_b:
            inside += 1
            assert w == pytest.approx(36000.0 if step_a % 2 == 0 else 12000.0, rel=0.01)
    assert inside > n // 2


def test_missed_edges_are_counted_exactly(
    tmp_path: Path, target: Target, pulse_sim: Callable[..., Sim]
) -> None:
    """A stalled agent loses edges in the (simulated kernel) FIFO; the loss is counted."""
    sim = pulse_sim(
        "--channels",
        "import:20",
        "--profile",
        "constant:36000000",  # 10 000 pulses/s
        "--count",
        "60000",
        "--fifo",
        "256",
    )
    cfg = pulse_config(tmp_path, target, sim, [channel("import", 20)])
    agent = spawn_wattkeeper("run", "pulse", "-c", cfg, log=tmp_path / "agent.log")
    try:
        time.sleep(2.5)
        agent.send_signal(signal.SIGSTOP)  # the agent stalls, the meter does not
        time.sleep(2.0)
        agent.send_signal(signal.SIGCONT)
        truth = sim.wait_end(60)
        sent = len(truth.sent("import"))
        counts = wait_counts(target, {"import": sent}, 60)
        time.sleep(2.5)  # one more metrics point after the last commit
    finally:
        rc = stop_agent(agent)
    log = (tmp_path / "agent.log").read_text()
    assert rc == 0, log
    assert truth.dropped() > 0
    assert counts["import"] == sent
    assert "readings missed so far" in log
    rows = target.query(
        '|> range(start: 0) |> filter(fn: (r) => r._measurement == "wattkeeper_agent" '
        'and r._field == "points_dropped") |> last()'
    )
    assert float(rows[0]["_value"]) == truth.dropped()


def test_queue_overflow_is_counted_and_logged(
    tmp_path: Path, target: Target, pulse_sim: Callable[..., Sim]
) -> None:
    """[pulse] queue_size bounds the memory between commits; what does not fit is counted."""
    sim = pulse_sim("--profile", "constant:720000", "--count", "1000")  # 3 x 200/s for 5 s
    cfg = pulse_config(
        tmp_path,
        target,
        sim,
        THREE,
        buffer={"commit_interval": "3s"},
    )
    text = cfg.read_text().replace("[pulse]\n", "[pulse]\nqueue_size = 100\n")
    cfg.write_text(text)
    agent = spawn_wattkeeper("run", "pulse", "-c", cfg, log=tmp_path / "agent.log")
    try:
        truth = sim.wait_end(60)
        sent = sum(len(truth.sent(k)) for k in truth.edges)
        # Wait for the last commit's delivery and a metrics point with the final count.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            counted = int(sum(per_channel(target, "pulses", "count").values()))
            rows = target.query(
                '|> range(start: 0) |> filter(fn: (r) => r._measurement == "wattkeeper_agent" '
                'and r._field == "points_dropped") |> last()'
            )
            dropped = int(float(rows[0]["_value"])) if rows else -1
            if counted + dropped == sent:
                break
            time.sleep(0.5)
    finally:
        rc = stop_agent(agent)
    log = (tmp_path / "agent.log").read_text()
    assert rc == 0, log
    assert truth.dropped() == 0
    assert 0 < counted < sent
    assert "in-memory queue overflowed" in log
    assert counted + dropped == sent


@pytest.mark.parametrize(
    ("why", "words"),
    [
        ("denied", ["pin 20", "permission denied", "'gpio' group", "usermod"]),
        ("busy", ["pin 20", "busy", "gpioinfo"]),
        ("missing", ["pin 20", "does not exist", "gpiodetect", "gpiochip4"]),
    ],
)
def test_pin_that_cannot_be_opened_exits_78_with_the_fix(
    tmp_path: Path, target: Target, pulse_sim: Callable[..., Sim], why: str, words: list[str]
) -> None:
    sim = pulse_sim("--unavailable", f"20:{why}")
    cfg = pulse_config(tmp_path, target, sim, THREE)
    proc = run_wattkeeper("run", "pulse", "-c", cfg, timeout=60)
    assert proc.returncode == 78, proc.stderr
    line = next(x for x in proc.stderr.splitlines() if "cannot open GPIO pin" in x)
    for w in words:
        assert w.lower() in line.lower(), line
    assert "Traceback" not in proc.stderr
    check = run_wattkeeper("check", "-c", cfg, timeout=60)
    assert check.returncode != 0
    assert "pin 20" in check.stdout


def test_check_reports_the_backend_and_pins(
    tmp_path: Path, target: Target, pulse_sim: Callable[..., Sim]
) -> None:
    sim = pulse_sim()
    cfg = pulse_config(tmp_path, target, sim, THREE)
    proc = run_wattkeeper("check", "-c", cfg, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "simulated on" in proc.stdout
    assert "pins 20, 26, 21" in proc.stdout


@pytest.mark.parametrize(
    ("channels", "extra", "message"),
    [
        (None, {}, "pulse.channels: missing required key"),
        ([channel("a", 20), channel("b", 20)], {}, "pin 20 is used by two channels"),
        ([channel("a", 20, 0)], {}, "pulses_per_kwh: must be positive"),
        ([channel("a", 20, edge="both")], {}, "must be one of 'rising', 'falling'"),
        ([channel("a", 20)], {"simulator": ""}, 'backend "simulated" needs simulator'),
    ],
)
def test_config_errors_name_the_key(
    tmp_path: Path,
    target: Target,
    channels: list[dict[str, Any]] | None,
    extra: dict[str, Any],
    message: str,
) -> None:
    table: dict[str, Any] = {"backend": "simulated", "simulator": "127.0.0.1:9", **extra}
    if channels is not None:
        table["channels"] = channels
    cfg = agent_config(tmp_path, target, "pulse", table)
    proc = run_wattkeeper("run", "pulse", "-c", cfg, timeout=60)
    assert proc.returncode == 78
    assert message in proc.stderr
    assert str(cfg) in proc.stderr


# ---------------------------------------------------------------------------
# units: edge -> point, sequence gaps, backend choice, error messages
# ---------------------------------------------------------------------------


class ListSink:
    def __init__(self) -> None:
        self.points: list[Point] = []

    def put(self, point: Point) -> bool:
        self.points.append(point)
        return True


def test_same_nanosecond_pulses_are_moved_apart() -> None:
    sink = ListSink()
    counter = PulseCounter([ChannelSection("import", 20, 1000)], sink)
    t = 1_700_000_000 * 10**9
    for ts in (t, t, t, t + 1, t + 10**9):
        counter.on_edge(0, ts)
    times = [p.time_ns for p in sink.points]
    assert times == [t, t + 1, t + 2, t + 3, t + 10**9]
    assert counter.bumped == 3
    assert "power_w" not in sink.points[0].fields
    assert "power_w" not in sink.points[1].fields  # zero interval: no honest power
    assert sink.points[3].fields["power_w"] == pytest.approx(3.6e6 / (1000 * 1e-9))
    assert sink.points[4].fields["power_w"] == pytest.approx(3.6e6 / (1000 * (1 - 1e-9)))
    assert sink.points[0].to_line() == f"pulse,channel=import energy_wh=1.0,pulses=1i {t}"


def test_sequence_gaps_count_missed_edges_per_line() -> None:
    gaps = SeqGaps()
    for line, seq in [(20, 1), (26, 1), (20, 2), (20, 5), (26, 2), (26, 10), (20, 6)]:
        gaps.observe(line, seq)
    assert gaps.missed == 2 + 7
    gaps.reset()
    gaps.observe(20, 1)  # numbers restart after the lines are requested again
    assert gaps.missed == 9


def _section(**kw: Any) -> PulseSection:
    return PulseSection(channels=[ChannelSection("import", 20, 1000)], **kw)


def _no_module() -> Any:
    raise ImportError("No module named 'x'")


def _rpi_refuses() -> Any:
    raise ImportError("This module can only be run on a Raspberry Pi!")


def test_auto_without_any_backend_says_what_to_install() -> None:
    with pytest.raises(SourceFatal) as exc:
        choose_backend(
            _section(), chips=lambda: [], import_gpiod=_no_module, import_rpigpio=_rpi_refuses
        )
    msg = str(exc.value)
    assert "no /dev/gpiochip*" in msg
    assert "only be run on a Raspberry Pi" in msg
    assert "wattkeeper[gpiod]" in msg
    assert exc.value.key == "pulse.backend"


def test_auto_prefers_gpiod_then_rpigpio(caplog: pytest.LogCaptureFixture) -> None:
    class FakeGPIO:
        pass

    caplog.set_level("INFO")
    backend = choose_backend(
        _section(), chips=lambda: [], import_gpiod=_no_module, import_rpigpio=lambda: FakeGPIO
    )
    assert backend.name == "rpigpio"
    assert "pulse backend: RPi.GPIO (auto" in caplog.text
    pytest.importorskip("gpiod")
    backend = choose_backend(
        _section(),
        chips=lambda: ["/dev/gpiochip0"],
        import_gpiod=lambda: None,
        import_rpigpio=lambda: FakeGPIO,
    )
    assert backend.name == "gpiod"
    assert "pulse backend: gpiod (auto; chips: /dev/gpiochip0)" in caplog.text


def test_auto_never_picks_the_simulator() -> None:
    with pytest.raises(SourceFatal):
        choose_backend(
            _section(simulator="127.0.0.1:1"),
            chips=lambda: [],
            import_gpiod=_no_module,
            import_rpigpio=_no_module,
        )


def test_gpiod_missing_chip_names_pin_chip_and_pi5_hint(tmp_path: Path) -> None:
    pytest.importorskip("gpiod")
    from wattkeeper.sources.pulse.backend import PinSpec
    from wattkeeper.sources.pulse.gpiod_backend import GpiodBackend

    spec = [PinSpec(0, "import", 20, "rising", "pull-down", 0.005)]
    missing = str(tmp_path / "gpiochip9")
    with pytest.raises(SourceFatal) as exc:
        GpiodBackend(missing).open(spec)
    assert f"cannot open GPIO pin 20 on {missing}: {missing} does not exist" in str(exc.value)
    not_chip = tmp_path / "file"
    not_chip.write_text("")
    with pytest.raises(SourceFatal) as exc:
        GpiodBackend(str(not_chip)).open(spec)
    assert "is not a GPIO chip" in str(exc.value)


def test_permission_denied_names_the_owning_group(tmp_path: Path) -> None:
    import grp
    import os

    chip = tmp_path / "gpiochip0"
    chip.write_text("")
    group = grp.getgrgid(os.stat(chip).st_gid).gr_name
    err = open_failure(21, str(chip), PermissionError(13, "Permission denied"))
    assert f"cannot open GPIO pin 21 on {chip}: permission denied" in str(err)
    assert f"'{group}' group" in str(err)
    assert f"usermod -aG {group}" in str(err)


def test_simulator_is_a_registered_cli_simulator() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "wattkeeper", "simulate", "pulse", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0
    assert "--listen" in out.stdout
    assert "household-day" in out.stdout


def test_gpiod_loop_uses_kernel_timestamps_and_counts_sequence_gaps() -> None:
    """The edge loop of the gpiod backend on real gpiod EdgeEvent objects."""
    import os

    gpiod = pytest.importorskip("gpiod")
    from wattkeeper.sources.pulse.gpiod_backend import GpiodBackend

    r, w = os.pipe()
    t = 1_790_000_000 * 10**9
    rising = gpiod.EdgeEvent.Type.RISING_EDGE.value
    batches = [
        # line 20: seq 1, 2, then 5 (two dropped); line 26: 1, 2
        [gpiod.EdgeEvent(rising, t, 20, 1, 1), gpiod.EdgeEvent(rising, t + 5, 26, 2, 1)],
        [gpiod.EdgeEvent(rising, t + 10, 20, 3, 2), gpiod.EdgeEvent(rising, t + 20, 20, 6, 5)],
        [gpiod.EdgeEvent(rising, t + 30, 26, 7, 2)],
    ]

    class Request:
        fd = r

        def read_edge_events(self, max_events: int) -> list[Any]:
            os.read(r, 1)
            return batches.pop(0)

        def release(self) -> None:
            pass

    seen: list[tuple[int, int]] = []
    backend = GpiodBackend("/dev/gpiochip0")
    backend._request = Request()
    backend._by_offset = {20: 0, 26: 1}
    backend.start(lambda i, ns: seen.append((i, ns)))
    os.write(w, b"xxx")
    deadline = time.monotonic() + 5
    while len(seen) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    backend.close()
    os.close(r)
    os.close(w)
    assert seen == [(0, t), (1, t + 5), (0, t + 10), (0, t + 20), (1, t + 30)]
    assert backend.missed() == 2


def test_rpigpio_backend_drives_the_rpi_gpio_api() -> None:
    """Setup with pulls, edge detection with bouncetime, callback timestamps in UTC."""
    from wattkeeper.sources.pulse.backend import PinSpec
    from wattkeeper.sources.pulse.rpigpio_backend import RpiGpioBackend

    class GPIO:  # the RPi.GPIO API surface the backend uses, recording calls
        BCM, IN, RISING, FALLING, PUD_UP, PUD_DOWN, PUD_OFF = 11, 1, 31, 32, 22, 21, 20
        calls: list[tuple[Any, ...]] = []
        callbacks: dict[int, Callable[[int], None]] = {}

        @classmethod
        def setwarnings(cls, flag: bool) -> None:
            pass

        @classmethod
        def setmode(cls, mode: int) -> None:
            cls.calls.append(("setmode", mode))

        @classmethod
        def setup(cls, pin: int, direction: int, pull_up_down: int) -> None:
            if pin == 99:
                raise RuntimeError("No access to /dev/mem.  Try running as root!")
            cls.calls.append(("setup", pin, direction, pull_up_down))

        @classmethod
        def add_event_detect(cls, pin: int, edge: int, callback: Any, **kw: Any) -> None:
            cls.calls.append(("detect", pin, edge, kw))
            cls.callbacks[pin] = callback

        @classmethod
        def remove_event_detect(cls, pin: int) -> None:
            cls.calls.append(("remove", pin))

        @classmethod
        def cleanup(cls, pins: list[int]) -> None:
            cls.calls.append(("cleanup", pins))

    pins = [
        PinSpec(0, "import", 20, "rising", "pull-down", 0.005),
        PinSpec(1, "export", 26, "falling", "pull-up", 0.0),
    ]
    backend = RpiGpioBackend(GPIO)
    assert "RPi.GPIO, pins 20, 26" in backend.open(pins)
    seen: list[tuple[int, int]] = []
    backend.start(lambda i, ns: seen.append((i, ns)))
    before = time.time_ns()
    GPIO.callbacks[26](26)
    GPIO.callbacks[20](20)
    after = time.time_ns()
    backend.close()
    assert ("setup", 20, GPIO.IN, GPIO.PUD_DOWN) in GPIO.calls
    assert ("setup", 26, GPIO.IN, GPIO.PUD_UP) in GPIO.calls
    assert ("detect", 20, GPIO.RISING, {"bouncetime": 5}) in GPIO.calls
    assert ("detect", 26, GPIO.FALLING, {}) in GPIO.calls
    assert ("cleanup", [20, 26]) in GPIO.calls
    assert [i for i, _ in seen] == [1, 0]
    assert all(before - 5_000_000 <= ns <= after + 5_000_000 for _, ns in seen)
    assert backend.missed() == 0
    with pytest.raises(SourceFatal) as exc:
        RpiGpioBackend(GPIO).open([PinSpec(0, "x", 99, "rising", "pull-down", 0.0)])
    assert "pin 99" in str(exc.value)
    assert "'gpio' group" in str(exc.value)


def test_run_once_only_flushes(
    tmp_path: Path, target: Target, pulse_sim: Callable[..., Sim]
) -> None:
    """`run pulse --once` opens the pins, has no pulse train to poll, flushes, exits 0."""
    sim = pulse_sim()
    cfg = pulse_config(tmp_path, target, sim, THREE)
    proc = run_wattkeeper("run", "pulse", "-c", cfg, "--once", timeout=60)
    assert proc.returncode == 0, proc.stderr
