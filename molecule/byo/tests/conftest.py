"""Fixtures for the byo scenario's verify step: the collector (Testinfra's podman backend)
and the user's own InfluxDB on the controller, reached over https with the test CA."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import testinfra

COLLECTOR = "wk-byo-collector"
ROOT = Path(__file__).resolve().parents[3]
EPHEMERAL = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent"))
INFLUXD = EPHEMERAL / "influxd"


@pytest.fixture(scope="session")
def collector() -> Any:
    return testinfra.get_host(f"podman://{COLLECTOR}")


class Influx:
    """The user's server, as the controller sees it (https, trusting the test CA only)."""

    def __init__(self) -> None:
        self.url = (INFLUXD / "url").read_text().strip()
        self.operator = (INFLUXD / "operator.token").read_text().strip()
        self.ca = str(INFLUXD / "tls" / "ca.pem")
        self.session = requests.Session()

    def call(self, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
        return self.session.request(
            method,
            self.url + path,
            headers={"Authorization": f"Token {token or self.operator}"},
            timeout=60,
            verify=self.ca,
            **kw,
        )

    def api(self, method: str, path: str, **kw: Any) -> Any:
        r = self.call(method, path, **kw)
        assert r.status_code < 300, f"{method} {path}: HTTP {r.status_code} {r.text[:300]}"
        return r.json() if r.content else None

    def buckets(self) -> dict[str, dict[str, Any]]:
        found = self.api("GET", "/api/v2/buckets", params={"org": "home", "limit": 100})
        return {b["name"]: b for b in found["buckets"]}

    def tasks(self) -> dict[str, dict[str, Any]]:
        found = self.api("GET", "/api/v2/tasks", params={"org": "home", "limit": 500})
        return {t["name"]: t for t in found["tasks"]}


@pytest.fixture(scope="session")
def influx() -> Iterator[Influx]:
    api = Influx()
    yield api
    api.session.close()


@pytest.fixture(scope="session")
def user_objects() -> dict[str, str]:
    """IDs of the bucket, task and token the server's owner made before wattkeeper came."""
    return dict(json.loads((INFLUXD / "user-objects.json").read_text()))


def playbook(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: PLW1510 - the caller looks at the exit code
        ["ansible-playbook", "-i", str(EPHEMERAL / "inventory"), name, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"},
        cwd=ROOT,
        timeout=600,
    )


def wait_for(what: str, check: Any, timeout: float = 180.0, every: float = 3.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
