"""A real InfluxDB 2 server for tests, the demo and the benchmarks.

``find_influxd`` looks in $WATTKEEPER_INFLUXD, then PATH, then the cache, and finally
builds it with scripts/build-influxd.sh. ``InfluxServer`` runs one on a free loopback port
in a temporary directory and onboards it through /api/v2/setup; given ``tls`` (see
support/tls.py) it serves https only, from that certificate and key, set the way the
role's unit sets them (INFLUXD_TLS_CERT, INFLUXD_TLS_KEY).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from support.tls import ServerTls

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "scripts" / "build-influxd.sh"


def _is_influxd2(path: str) -> bool:
    try:
        out = subprocess.run([path, "version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "InfluxDB 2." in out.stdout


def find_influxd() -> str:
    env = os.environ.get("WATTKEEPER_INFLUXD")
    if env:
        if not _is_influxd2(env):
            raise RuntimeError(f"WATTKEEPER_INFLUXD={env} is not an InfluxDB 2 influxd")
        return env
    on_path = shutil.which("influxd")
    if on_path and _is_influxd2(on_path):
        return on_path
    out = subprocess.run(["bash", str(BUILD_SCRIPT)], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def csv_rows(text: str) -> list[dict[str, str]]:
    """The rows of a Flux query's CSV answer (one block per result table), as dicts."""
    rows: list[dict[str, str]] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        if block.strip():
            rows.extend(
                {k: v for k, v in row.items() if k} for row in csv.DictReader(io.StringIO(block))
            )
    return rows


@dataclass
class InfluxServer:
    """One influxd process with its own data directory; stop/start keep the data."""

    binary: str
    data_dir: Path
    port: int = field(default_factory=free_port)
    org: str = "home"
    bucket: str = "test"
    token: str = "wattkeeper-test-operator-token"
    proc: subprocess.Popen[bytes] | None = None
    org_id: str = ""
    tls: ServerTls | None = None
    # The address influxd listens on, and the name clients use (the certificate's).
    bind: str = "127.0.0.1"
    host: str = ""
    # Outlive the test process (the Molecule byo scenario starts it from a script).
    detach: bool = False

    @property
    def url(self) -> str:
        if self.tls is None:
            return f"http://{self.host or self.bind}:{self.port}"
        return f"https://{self.host or 'localhost'}:{self.port}"

    @property
    def verify(self) -> str | bool:
        """What ``requests`` should trust to talk to this server."""
        return str(self.tls.ca) if self.tls is not None else True

    def start(self, timeout: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = (self.data_dir / "influxd.log").open("ab")
        env = {**os.environ, "INFLUXD_CONFIG_PATH": str(self.data_dir)}
        if self.tls is not None:
            env.update(INFLUXD_TLS_CERT=str(self.tls.cert), INFLUXD_TLS_KEY=str(self.tls.key))
        self.proc = subprocess.Popen(
            [
                self.binary,
                f"--bolt-path={self.data_dir / 'influxd.bolt'}",
                f"--engine-path={self.data_dir / 'engine'}",
                f"--sqlite-path={self.data_dir / 'influxd.sqlite'}",
                f"--http-bind-address={self.bind}:{self.port}",
                "--reporting-disabled",
                "--log-level=warn",
                "--storage-wal-fsync-delay=0s",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=self.detach,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"influxd exited with {self.proc.returncode}; see {log.name}")
            try:
                r = requests.get(f"{self.url}/health", timeout=1, verify=self.verify)
                if r.status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError("influxd did not become healthy")
        self._onboard()

    def _onboard(self) -> None:
        r = requests.get(f"{self.url}/api/v2/setup", timeout=10, verify=self.verify)
        if r.json().get("allowed"):
            r = requests.post(
                f"{self.url}/api/v2/setup",
                json={
                    "username": "operator",
                    "password": "operator-password",
                    "org": self.org,
                    "bucket": self.bucket,
                    "token": self.token,
                },
                timeout=30,
                verify=self.verify,
            )
            r.raise_for_status()
        orgs = self.api("GET", "/api/v2/orgs", params={"org": self.org}).json()["orgs"]
        self.org_id = orgs[0]["id"]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    # -- API helpers for tests -------------------------------------------------------------

    def api(self, method: str, path: str, **kwargs: object) -> requests.Response:
        headers = {"Authorization": f"Token {self.token}"}
        r = requests.request(
            method,
            self.url + path,
            headers=headers,
            timeout=30,
            verify=self.verify,
            **kwargs,  # type: ignore[arg-type]
        )
        if r.status_code >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {r.status_code} {r.text[:300]}")
        return r

    def create_bucket(self, name: str) -> str:
        r = self.api(
            "POST",
            "/api/v2/buckets",
            json={"orgID": self.org_id, "name": name, "retentionRules": []},
        )
        return str(r.json()["id"])

    def create_token(self, bucket_id: str, actions: tuple[str, ...] = ("write",)) -> str:
        perms = [
            {"action": a, "resource": {"type": "buckets", "id": bucket_id, "orgID": self.org_id}}
            for a in actions
        ]
        r = self.api(
            "POST",
            "/api/v2/authorizations",
            json={"orgID": self.org_id, "permissions": perms, "description": "test"},
        )
        return str(r.json()["token"])

    def query(self, flux: str) -> list[dict[str, str]]:
        """Flux query; rows as dicts (all tables concatenated)."""

        r = self.api(
            "POST",
            "/api/v2/query",
            params={"org": self.org},
            json={"query": flux, "dialect": {"annotations": [], "header": True}},
        )
        return csv_rows(r.text)

    def write(self, bucket: str, lines: list[str]) -> None:
        self.api(
            "POST",
            "/api/v2/write",
            params={"org": self.org, "bucket": bucket, "precision": "ns"},
            data="\n".join(lines).encode(),
        )
