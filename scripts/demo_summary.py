"""What landed in the demo: points per source, the latest values, the downsampling tasks and
their last runs, and how to look further. Reads with the read-only dashboards token; the task
list needs the operator token. Both come from the demo's controller-side secrets directory."""

from __future__ import annotations

import argparse
import csv
import io
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

ORG = "home"


def container_ip(name: str) -> str:
    out = subprocess.run(
        ["podman", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", name],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


class Api:
    def __init__(self, url: str, secrets: Path) -> None:
        self.url = url
        self.dashboards = (secrets / "influxdb" / "dashboards.token").read_text().strip()
        self.operator = (secrets / "influxdb" / "operator.token").read_text().strip()

    def query(self, flux: str) -> list[dict[str, str]]:
        r = requests.post(
            f"{self.url}/api/v2/query",
            params={"org": ORG},
            timeout=30,
            headers={"Authorization": f"Token {self.dashboards}", "Accept": "application/csv"},
            json={"query": flux, "dialect": {"annotations": []}},
        )
        r.raise_for_status()
        rows: list[dict[str, str]] = []
        for block in r.text.replace("\r\n", "\n").split("\n\n"):
            if block.strip():
                rows.extend(csv.DictReader(io.StringIO(block)))
        return rows

    def tasks(self) -> list[dict[str, Any]]:
        r = requests.get(
            f"{self.url}/api/v2/tasks",
            params={"org": ORG, "limit": 100},
            timeout=30,
            headers={"Authorization": f"Token {self.operator}"},
        )
        r.raise_for_status()
        return [t for t in r.json()["tasks"] if t["name"].startswith("wattkeeper_")]


def sources_of(inventory: Path) -> list[str]:
    found, group = [], None
    for line in inventory.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            group = line.strip("[]")
        elif (
            line
            and not line.startswith("#")
            and group in ("octopus", "wattivahti", "pulse", "luxtronik")
        ):
            found.append(group)
    return found


# The few values worth showing per source (Luxtronik has about 1800).
SHOWN = {
    "octopus": ["demand_w", "consumption_wh", "consumption_delta_wh", "export_wh"],
    "wattivahti": ["consumption_wh"],
    "pulse": ["power_w", "energy_wh"],
    "luxtronik": [
        "ID_WEB_Temperatur_TVL",
        "ID_WEB_Temperatur_TRL",
        "ID_WEB_Temperatur_TA",
        "ID_WEB_Temperatur_TBW",
    ],
}


def show(api: Api, sources: list[str], collector: str) -> int:
    print("\n== What landed in InfluxDB (read with the read-only dashboards token) ==")
    empty = 0
    for source in sources:
        counts = api.query(
            f'from(bucket: "{source}_raw") |> range(start: -30d) '
            f'|> filter(fn: (r) => r._measurement == "{source}") |> count() '
            '|> group(columns: ["_field"]) |> sum() |> group() |> max()'
        )
        points = int(counts[0]["_value"]) if counts else 0
        empty += points == 0
        print(f"\n{source}_raw: {points} points")
        fields = " or ".join(f'r._field == "{f}"' for f in SHOWN.get(source, []))
        latest = (
            api.query(
                f'from(bucket: "{source}_raw") |> range(start: -30d) '
                f'|> filter(fn: (r) => r._measurement == "{source}" and ({fields})) |> last()'
            )
            if fields
            else []
        )
        for row in sorted(latest, key=lambda r: (r["_field"], r.get("channel", ""))):
            tag = next(
                (
                    f"{k}={v}"
                    for k, v in row.items()
                    if k in ("channel", "metering_point", "device_id", "group")
                ),
                "",
            )
            value = float(row["_value"])
            print(f"  {row['_field']:<28} {value:>12.2f}  {tag:<20} at {row['_time'][:19]}Z")
    print("\n== Downsampling tasks (Flux, generated from the inventory) ==")
    for t in sorted(api.tasks(), key=lambda t: t["name"]):
        run = t.get("lastRunStatus") or "none yet"
        last = t.get("latestCompleted", "")[:19] if t.get("lastRunStatus") else ""
        every = t.get("every", "?")
        print(f"  {t['name']:<28} every {every:<4} {t['status']:<8} last run {run:<8} {last}")
    stats = "/opt/wattkeeper/bin/wattkeeper buffer stats -c /etc/wattkeeper/pulse.toml"
    flux = (
        'from(bucket: "pulse_1m") |> range(start: -15m) '
        '|> filter(fn: (r) => r._field == "energy_wh")'
    )
    print(
        "\n== Look further ==\n"
        f"  podman exec {collector} journalctl -u 'wattkeeper-*' -f        # the agents' logs\n"
        f"  podman exec {collector} systemctl list-units 'wattkeeper*'     # units and timers\n"
        f"  podman exec {collector} runuser -u wattkeeper -- {stats}\n"
        f"  curl -s '{api.url}/api/v2/query?org={ORG}' \\\n"
        '       -H "Authorization: Token $(cat SECRETS/influxdb/dashboards.token)" \\\n'
        "       -H 'Content-Type: application/vnd.flux' -H 'Accept: application/csv' \\\n"
        f"       --data '{flux}'\n"
        "  ansible-playbook -i ~/.cache/wattkeeper/demo/inventory.ini ansible/playbooks/verify.yml"
    )
    return 1 if empty else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--server", required=True)
    p.add_argument("--collector", required=True)
    p.add_argument("--secrets", type=Path, required=True)
    p.add_argument("--inventory", type=Path, required=True)
    p.add_argument(
        "--wait", action="store_true", help="wait (up to 3 min) for data and a first task run"
    )
    args = p.parse_args()
    api = Api(f"http://{container_ip(args.server)}:8086", args.secrets)
    sources = sources_of(args.inventory)
    if args.wait:
        deadline = time.monotonic() + 180
        print("demo: waiting for the first points and the first 1m task runs ...", file=sys.stderr)
        while time.monotonic() < deadline:
            ran = [t for t in api.tasks() if t["name"].endswith("_1m") and t.get("lastRunStatus")]
            have = [
                s
                for s in sources
                if api.query(f'from(bucket: "{s}_raw") |> range(start: -30d) |> limit(n: 1)')
            ]
            if len(have) == len(sources) and ran:
                break
            time.sleep(5)
    code = show(api, sources, args.collector)
    print(f"\n  (SECRETS = {args.secrets})")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
