"""The grafana role on the server (provisioning files only: Grafana itself cannot be
installed here), and the provisioned dashboards' queries against this deployment's
InfluxDB with its own read-only dashboards token, substituted as Grafana would."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from conftest import ROOT, Influx, secret
from report import report

sys.path.insert(0, str(ROOT / "tests"))

from support.grafana import interpolate, panel_range

PROVISIONING = "/etc/grafana/provisioning"
DASHBOARDS = "/var/lib/grafana/dashboards/wattkeeper"
# Panels that must show data after a few minutes of the simulated sources (test_data.py
# has stopped the agents by now: nothing that needs the last minutes).
LIVE = {
    ("wattkeeper-pulse", "Power"),
    ("wattkeeper-luxtronik", "Temperatures"),
    ("wattkeeper-agents", "Agents"),
    ("wattkeeper-agents", "Buffer depth (points waiting)"),
}


def test_datasource_holds_the_dashboards_token_for_grafana_only(server: Any) -> None:
    f = server.file(f"{PROVISIONING}/datasources/wattkeeper.yaml")
    assert f.exists and f.mode == 0o640 and f.user == "root"
    text = f.content_string
    assert secret("influxdb/dashboards.token") in text
    assert "version: Flux" in text and '"http://127.0.0.1:8086"' in text
    provider = server.file(f"{PROVISIONING}/dashboards/wattkeeper.yaml").content_string
    assert DASHBOARDS in provider


def _provisioned(server: Any) -> dict[str, dict[str, Any]]:
    names = server.check_output(f"ls {DASHBOARDS}").split()
    assert len(names) == 6, names
    return {n[: -len(".json")]: json.loads(server.file(f"{DASHBOARDS}/{n}").content_string)
            for n in names}  # fmt: skip


def test_every_provisioned_query_runs_with_the_dashboards_token(
    server: Any, influx: Influx
) -> None:
    boards = _provisioned(server)
    for board in boards.values():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["timezone"]["query"] == "Europe/Helsinki"
        assert board["timezone"] == "Europe/Helsinki"

    def run_all() -> list[str]:
        now = datetime.now(UTC)
        empty_live = []
        for uid, board in boards.items():
            values = {v["name"]: str(v.get("query", "")) for v in board["templating"]["list"]}
            for panel in board["panels"]:
                for target in panel.get("targets", []):
                    start, stop = panel_range(panel, now - timedelta(hours=1), now, now)
                    rows = influx.query(interpolate(target["query"], values, start, stop))
                    if (uid, panel["title"]) in LIVE and not rows:
                        empty_live.append(f"{uid} / {panel['title']} / {target['refId']}")
        return empty_live

    deadline = time.monotonic() + 180
    while (missing := run_all()) and time.monotonic() < deadline:
        time.sleep(10)
    assert not missing, f"no data in {missing}"
    report("grafana", "provisioned dashboards' queries", "all run; live panels show data")
