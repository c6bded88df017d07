"""`wattkeeper simulate SOURCE` as a real process on a free port, for the tests."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from support.agentproc import wait_for
from support.influxd import free_port


@dataclass
class SimProcess:
    """A running simulator: its port, process and log (tests add their control calls)."""

    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def simulator_processes(
    source: str, tmp_path: Path
) -> Iterator[list[tuple[int, subprocess.Popen[bytes], Path]]]:
    """Yields a list; ``start_simulator`` appends to it; all are stopped at the end."""
    started: list[tuple[int, subprocess.Popen[bytes], Path]] = []
    try:
        yield started
    finally:
        for _, proc, _ in started:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def start_simulator(
    started: list[tuple[int, subprocess.Popen[bytes], Path]],
    source: str,
    tmp_path: Path,
    *args: str,
) -> tuple[int, subprocess.Popen[bytes], Path]:
    """Start one simulator and wait until it listens (its log says why if it never does)."""
    port = free_port()
    log = tmp_path / f"sim-{source}-{port}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "wattkeeper", "simulate", source, "--listen", f"127.0.0.1:{port}",
         *args],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    started.append((port, proc, log))
    wait_listening(port, proc, log, 20)
    return port, proc, log


def wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Wait until a server process accepts connections; if it dies first, show its log."""

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            assert proc.poll() is None, log.read_text()
            return False

    wait_for(listening, timeout, f"a server on port {port}")
