"""`wattkeeper simulate SOURCE` as a real process on a free port, for the tests."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from support.agentproc import wait_for
from support.influxd import free_port


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

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            assert proc.poll() is None, log.read_text()
            return False

    wait_for(listening, 20, f"the {source} simulator to listen")
    return port, proc, log
