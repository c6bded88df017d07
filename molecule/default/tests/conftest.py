"""Fixtures for the Molecule verify step: the two hosts, the InfluxDB API, the tokens.

Hosts are reached with Testinfra's podman backend (much faster than through Ansible); the
InfluxDB API is reached from the controller at the server container's address, with the
tokens the influxdb role stored in the controller-side secrets directory.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import report as report_module
import requests
import testinfra
from report import REPORT

# Other scenarios (molecule/arm64, armhf) run these tests against their own hosts.
SERVER = os.environ.get("WK_SERVER", "wk-server")
COLLECTOR = os.environ.get("WK_COLLECTOR", "wk-collector")
ORG = "home"
ROOT = Path(__file__).resolve().parents[3]
EPHEMERAL = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent"))
SECRETS = EPHEMERAL / "secrets"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if report_module.PRINTED:
        return  # this conftest may be imported twice (by pytest and by the test modules)
    report_module.PRINTED = True
    for section, rows in REPORT.items():
        terminalreporter.write_sep("-", section)
        for key, value in rows.items():
            terminalreporter.write_line(f"  {key:<44} {value}")
    if REPORT and EPHEMERAL.is_dir():
        (EPHEMERAL / "verify-report.json").write_text(json.dumps(REPORT, indent=2))


@pytest.fixture(scope="session")
def server() -> Any:
    return testinfra.get_host(f"podman://{SERVER}")


@pytest.fixture(scope="session")
def collector() -> Any:
    return testinfra.get_host(f"podman://{COLLECTOR}")


def secret(rel: str) -> str:
    return (SECRETS / rel).read_text().strip()


def container_ip(name: str) -> str:
    out = subprocess.run(
        ["podman", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", name],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


@dataclass
class Influx:
    """The server's HTTP API, as the controller sees it."""

    url: str
    operator: str
    dashboards: str
    session: requests.Session = field(default_factory=requests.Session)

    def call(
        self, method: str, path: str, token: str | None = None, **kw: Any
    ) -> requests.Response:
        headers = {"Authorization": f"Token {token or self.operator}", **kw.pop("headers", {})}
        return self.session.request(method, self.url + path, headers=headers, timeout=60, **kw)

    def api(self, method: str, path: str, **kw: Any) -> Any:
        r = self.call(method, path, **kw)
        assert r.status_code < 300, f"{method} {path}: HTTP {r.status_code} {r.text[:300]}"
        return r.json() if r.content else None

    def query(self, flux: str, token: str | None = None) -> list[dict[str, str]]:
        """Rows of a Flux query (every table), as dictionaries of strings."""
        r = self.call(
            "POST",
            f"/api/v2/query?org={ORG}",
            token=token or self.dashboards,
            json={"query": flux, "dialect": {"annotations": [], "header": True}},
            headers={"Accept": "application/csv"},
        )
        assert r.status_code == 200, f"query failed: HTTP {r.status_code} {r.text[:300]}\n{flux}"
        rows: list[dict[str, str]] = []
        for block in r.text.replace("\r\n", "\n").split("\n\n"):
            if block.strip():
                rows.extend(csv.DictReader(io.StringIO(block)))
        return rows

    def org_id(self) -> str:
        return str(self.api("GET", "/api/v2/orgs", params={"org": ORG})["orgs"][0]["id"])


@pytest.fixture(scope="session")
def influx() -> Iterator[Influx]:
    api = Influx(
        f"http://{container_ip(SERVER)}:8086",
        secret("influxdb/operator.token"),
        secret("influxdb/dashboards.token"),
    )
    yield api
    api.session.close()


def wait_for(what: str, check: Any, timeout: float = 120.0, every: float = 3.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
