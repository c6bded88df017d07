"""The user's own InfluxDB for the Molecule byo scenario: a real influxd on the controller,
outside the managed hosts, serving https only from a certificate of a test CA.

``start DIR --bind IP`` makes the CA (DIR/tls/ca.pem) and a certificate for IP, starts
influxd on a free port of IP (the podman bridge's address, which the collector container
reaches), onboards it as its owner would (org "home", an operator token), and adds the
owner's own bucket, task and token, which wattkeeper must never touch. It leaves DIR/url,
DIR/operator.token, DIR/pid and DIR/user-objects.json. ``stop DIR`` stops it.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from support.influxd import InfluxServer, find_influxd, free_port
from support.tls import make_server_tls

# The owner's own objects. The task's Flux is the owner's business; only its name and
# description matter here.
USER_BUCKET = "homeassistant"
USER_TASK_FLUX = """option task = {name: "my_daily_mean", every: 1d}

from(bucket: "homeassistant")
    |> range(start: -task.every)
    |> aggregateWindow(every: 1h, fn: mean)
    |> to(bucket: "homeassistant")
"""


def _alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text()), 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return False
    return True


def _user_objects(server: InfluxServer) -> dict[str, str]:
    bucket = server.api(
        "POST",
        "/api/v2/buckets",
        json={
            "orgID": server.org_id,
            "name": USER_BUCKET,
            "description": "Home Assistant's history",
            "retentionRules": [{"type": "expire", "everySeconds": 7 * 86400}],
        },
    ).json()
    server.write(USER_BUCKET, ["sensor,entity=kitchen temperature=21.5"])
    task = server.api(
        "POST",
        "/api/v2/tasks",
        json={
            "orgID": server.org_id,
            "flux": USER_TASK_FLUX,
            "status": "inactive",
            "description": "my own hourly means",
        },
    ).json()
    token = server.api(
        "POST",
        "/api/v2/authorizations",
        json={
            "orgID": server.org_id,
            "description": "grafana at home (mine)",
            "permissions": [
                {
                    "action": "read",
                    "resource": {"type": "buckets", "id": bucket["id"], "orgID": server.org_id},
                }
            ],
        },
    ).json()
    return {
        "bucket_id": bucket["id"],
        "task_id": task["id"],
        "token_id": token["id"],
        "token": token["token"],
    }


def start(directory: Path, bind: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    pid_file = directory / "pid"
    if _alive(pid_file):
        return
    tls = make_server_tls(directory / "tls", names=("influxdb.byo.test",), ips=(bind,))
    server = InfluxServer(
        find_influxd(),
        directory / "data",
        port=free_port(bind),
        token=secrets.token_urlsafe(32),
        tls=tls,
        bind=bind,
        host=bind,
        detach=True,
    )
    server.start()
    assert server.proc is not None
    pid_file.write_text(f"{server.proc.pid}\n")
    (directory / "url").write_text(server.url + "\n")
    token_file = directory / "operator.token"
    token_file.write_text(server.token + "\n")
    token_file.chmod(0o600)
    objects = directory / "user-objects.json"
    objects.write_text(json.dumps(_user_objects(server), indent=2))
    objects.chmod(0o600)


def stop(directory: Path) -> None:
    pid_file = directory / "pid"
    if not _alive(pid_file):
        return
    pid = int(pid_file.read_text())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(pid_file):
        time.sleep(0.2)
    if _alive(pid_file):
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--bind", default="127.0.0.1")
    args = parser.parse_args()
    start(args.directory, args.bind) if args.action == "start" else stop(args.directory)


if __name__ == "__main__":
    main()
