"""systemd integration: the notify protocol and journald's native protocol, on real sockets."""

from __future__ import annotations

import logging
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PLUGINS, Target, agent_config

from wattkeeper import journal

TINY = "tiny_source:PLUGIN"


def _parse_journal_datagram(data: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    while data:
        line, _, rest = data.partition(b"\n")
        if b"=" in line:
            k, _, v = line.partition(b"=")
            fields[k.decode()] = v.decode()
            data = rest
        else:  # binary-safe form: KEY\n<le64 length><value>\n
            (n,) = struct.unpack("<Q", rest[:8])
            fields[line.decode()] = rest[8 : 8 + n].decode()
            data = rest[8 + n + 1 :]
    return fields


def test_journal_records_carry_structured_fields_and_no_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sock_path = tmp_path / "journal.socket"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(sock_path))
    server.settimeout(5)
    monkeypatch.setattr(journal, "JOURNAL_SOCKET", sock_path)
    try:
        assert journal.setup_logging("octopus", "info", "auto") == "journal"
        journal.SECRETS.add("sk_live_supersecret")
        log = logging.getLogger("wattkeeper.octopus")
        log.warning("token sk_live_supersecret refused\nsecond line")
        fields = _parse_journal_datagram(server.recv(65536))
        log.debug("not at info level")
    finally:
        server.close()
        journal.setup_logging("test", "info", "stderr")
    assert fields["SYSLOG_IDENTIFIER"] == "wattkeeper-octopus"
    assert fields["WATTKEEPER_SOURCE"] == "octopus"
    assert fields["PRIORITY"] == "4"
    assert fields["MESSAGE"] == "token *** refused\nsecond line"


def test_no_journal_socket_means_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal, "JOURNAL_SOCKET", tmp_path / "absent")
    try:
        assert journal.setup_logging("pulse", "info", "auto") == "stderr"
    finally:
        journal.setup_logging("test", "info", "stderr")


def test_notify_protocol_ready_watchdog_status_stopping(target: Target, tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.socket"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(sock_path))
    server.settimeout(10)
    cfg = agent_config(tmp_path, target, "tiny", {"points_per_poll": 3, "interval": "100ms"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "wattkeeper", "run", TINY, "-c", str(cfg)],
        env={
            **os.environ,
            "PYTHONPATH": str(PLUGINS),
            "NOTIFY_SOCKET": str(sock_path),
            "WATCHDOG_USEC": "2000000",
        },
        stderr=subprocess.DEVNULL,
    )
    messages: list[str] = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            messages.append(server.recv(4096).decode())
            if sum("WATCHDOG=1" in m for m in messages) >= 3 and any(
                "last delivery" in m and "never" not in m.split("last delivery")[1][:8]
                for m in messages
            ):
                break
        proc.terminate()
        assert proc.wait(20) == 0
        server.settimeout(2)
        try:
            while True:
                messages.append(server.recv(4096).decode())
        except TimeoutError:
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
        server.close()
    ready = [m for m in messages if "READY=1" in m]
    assert ready and "STATUS=buffer" in ready[0]
    assert messages.index(ready[0]) < next(i for i, m in enumerate(messages) if m == "WATCHDOG=1")
    assert sum(m == "WATCHDOG=1" for m in messages) >= 3
    statuses = [m for m in messages if m.startswith("STATUS=")]
    assert any("last delivery" in s and "last poll" in s for s in statuses)
    assert "STOPPING=1" in messages


def test_fatal_source_error_tells_systemd_errno_78(tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.socket"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(sock_path))
    server.settimeout(10)
    cfg = agent_config(tmp_path, None, "tiny", {})
    proc = subprocess.run(
        [sys.executable, "-m", "wattkeeper", "run", "fatal_source:PLUGIN", "-c", str(cfg)],
        env={**os.environ, "PYTHONPATH": str(PLUGINS), "NOTIFY_SOCKET": str(sock_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    server.close()
    assert proc.returncode == 78
    assert "cannot run the tiny source: tiny.api_key_file in" in proc.stderr
    assert "the key was refused" in proc.stderr
    assert "Traceback" not in proc.stderr
