"""Shared fixtures: a real InfluxDB 2 server, a bucket per test, agent config files."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support.influxd import InfluxServer, find_influxd
from support.tls import make_server_tls

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = Path(__file__).parent / "plugins"
_bucket_seq = itertools.count()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` (minutes of outage, bursts, chaos) first: with parallel
    workers (``make test-unit`` runs ``-n 4 --dist load``) they then start at once on
    different workers, instead of one worker running them in a row at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def influxd_binary() -> str:
    return find_influxd()


@pytest.fixture(scope="session")
def influx(influxd_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    """One server for the whole session (per pytest-xdist worker: each worker is a session
    of its own); tests isolate themselves by bucket."""
    server = InfluxServer(influxd_binary, tmp_path_factory.mktemp("influxd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def influx_tls(
    influxd_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InfluxServer]:
    """A server of its own that speaks https only, with a certificate for "localhost" (not
    127.0.0.1) signed by a test CA (``influx_tls.tls.ca``); one per session (xdist worker)."""
    base = tmp_path_factory.mktemp("influxd-tls")
    server = InfluxServer(influxd_binary, base / "data", tls=make_server_tls(base / "tls"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def influx_factory(
    influxd_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[], InfluxServer]]:
    """Servers of a test's own, for tests that kill and restart InfluxDB."""
    started: list[InfluxServer] = []

    def make() -> InfluxServer:
        server = InfluxServer(influxd_binary, tmp_path_factory.mktemp("influxd-own"))
        server.start()
        started.append(server)
        return server

    yield make
    for s in started:
        s.stop()


@dataclass
class Target:
    """A bucket and a token that may write it, plus the server it lives on."""

    server: InfluxServer
    bucket: str
    bucket_id: str
    token_file: Path

    def query(self, flux_body: str) -> list[dict[str, str]]:
        return self.server.query(f'from(bucket: "{self.bucket}") {flux_body}')

    def count(self, measurement: str, field: str, start: str = "0") -> int:
        rows = self.query(
            f'|> range(start: {start}) |> filter(fn: (r) => r._measurement == "{measurement}" '
            f'and r._field == "{field}") |> group() |> count()'
        )
        return int(rows[0]["_value"]) if rows else 0


def make_target(server: InfluxServer, tmp_path: Path, name: str | None = None) -> Target:
    bucket = name or f"b{next(_bucket_seq)}_{os.getpid()}"
    bucket_id = server.create_bucket(bucket)
    token = server.create_token(bucket_id, ("write", "read"))
    token_file = tmp_path / f"{bucket}.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    return Target(server, bucket, bucket_id, token_file)


@pytest.fixture
def target(influx: InfluxServer, tmp_path: Path) -> Target:
    return make_target(influx, tmp_path)


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str | Path):
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    return str(v)


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    """Write an agent TOML file from nested dicts."""
    out = []
    for name, table in sections.items():
        out.append(f"[{name}]")
        out += [f"{k} = {toml_value(v)}" for k, v in table.items()]
        out.append("")
    path.write_text("\n".join(out))
    return path


def agent_config(
    tmp_path: Path, target: Target | None, source: str, source_table: dict[str, Any], **extra: Any
) -> Path:
    """A complete agent config for ``source`` writing to ``target``."""
    influx: dict[str, Any] = (
        {
            "url": target.server.url,
            "org": target.server.org,
            "bucket": target.bucket,
            "token_file": target.token_file,
        }
        if target is not None
        else {"url": "http://127.0.0.1:9", "org": "home", "bucket": "none", "token": "x" * 8}
    )
    influx.update({"timeout": "5s", "retry_initial": "200ms", "retry_max": "2s"})
    influx.update(extra.pop("influxdb", {}))
    sections: dict[str, dict[str, Any]] = {
        "agent": {"log_level": "info", "log_target": "stderr", "flush_timeout": "5s"},
        "influxdb": influx,
        "buffer": {"path": tmp_path / f"{source}-buffer.sqlite"},
    }
    for k, v in extra.items():
        sections.setdefault(k, {}).update(v)
    sections[source] = source_table
    return write_config(tmp_path / f"{source}.toml", sections)


def wattkeeper_cmd() -> list[str]:
    return [sys.executable, "-m", "wattkeeper"]


def run_wattkeeper(
    *args: str | Path, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess (the production entry point)."""
    return subprocess.run(
        [*wattkeeper_cmd(), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(PLUGINS), **(env or {})},
    )


def spawn_wattkeeper(*args: str | Path, log: Path) -> subprocess.Popen[bytes]:
    fh = log.open("ab")
    return subprocess.Popen(
        [*wattkeeper_cmd(), *map(str, args)],
        stdout=fh,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(PLUGINS)},
    )
