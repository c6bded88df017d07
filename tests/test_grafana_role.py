"""The grafana role as far as this machine can run it, and the dashboards it provisions.

Grafana itself cannot be installed here (Grafana Labs' apt repository is out of reach, and
Debian does not package Grafana), so the role runs against this machine with
``grafana_install_method: none`` and ``grafana_manage_service: false``: its lookups,
assertions, templates and the dashboard filter run for real and write the provisioning
files, a second run changes nothing, and the token never shows in its output. The
provisioned dashboards are held to the same checks as the committed ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "ansible" / "plugins" / "filter"))
sys.path.insert(0, str(ROOT / "dashboards"))

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard
from wattkeeper_grafana import grafana_dashboard
from wkdash.fluxquery import register

TOKEN = "dashboards-token-that-must-never-be-printed"
BIN = Path(sys.executable).parent
FILES_ONLY = json.dumps({"grafana_manage_service": False})


def _play(tmp_path: Path, *extra: str, token: bool = True) -> subprocess.CompletedProcess[str]:
    secrets = tmp_path / "secrets"
    (secrets / "influxdb").mkdir(parents=True, exist_ok=True)
    if token:
        (secrets / "influxdb" / "dashboards.token").write_text(TOKEN + "\n")
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        "[influxdb]\nlocalhost ansible_connection=local\n"
        "[grafana]\nlocalhost ansible_connection=local\n"
    )
    playbook = tmp_path / "play.yml"
    playbook.write_text("- hosts: grafana\n  gather_facts: false\n  roles:\n    - role: grafana\n")
    variables = {
        "ansible_python_interpreter": sys.executable,
        "wattkeeper_secrets_dir": str(secrets),
        "grafana_install_method": "none",
        "grafana_provisioning_dir": str(tmp_path / "provisioning"),
        "grafana_dashboards_dir": str(tmp_path / "dashboards"),
        "grafana_timezone": "Europe/Helsinki",
        "grafana_heatpump_meter": "heatpump",
    }
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), str(playbook),
         "-e", json.dumps(variables), *extra],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"},
        timeout=300,
    )  # fmt: skip


def test_role_writes_the_files_once_and_a_rerun_changes_nothing(tmp_path: Path) -> None:
    """A real run (files only, as for a Grafana that mounts them), then the same again in
    check mode with diffs: nothing would change, and the token shows in neither."""
    first = _play(tmp_path, "-e", FILES_ONLY)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "changed=4" in first.stdout  # directories, datasource, provider, dashboards
    again = _play(tmp_path, "-e", FILES_ONLY, "--check", "--diff")
    assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout
    assert TOKEN not in first.stdout + first.stderr + again.stdout + again.stderr
    datasource = tmp_path / "provisioning" / "datasources" / "wattkeeper.yaml"
    assert datasource.stat().st_mode & 0o777 == 0o640
    text = datasource.read_text()
    assert TOKEN in text and "version: Flux" in text and '"http://localhost:8086"' in text
    provider = (tmp_path / "provisioning" / "dashboards" / "wattkeeper.yaml").read_text()
    assert str(tmp_path / "dashboards") in provider
    written = sorted(p.name for p in (tmp_path / "dashboards").iterdir())
    assert written == sorted(p.name for p in (ROOT / "dashboards").glob("wattkeeper-*.json"))
    board = json.loads((tmp_path / "dashboards" / "wattkeeper-luxtronik.json").read_text())
    assert board == _provisioned("wattkeeper-luxtronik", raw_retention="30d",
                                 heatpump_meter="heatpump")  # fmt: skip


def test_role_without_a_dashboards_token_says_where_it_looked(tmp_path: Path) -> None:
    """A real run stops, naming the file; check mode on a fresh site (before the influxdb
    role's first real run made the token) goes through."""
    r = _play(tmp_path, "-e", FILES_ONLY, token=False)
    assert r.returncode != 0
    assert "influxdb/dashboards.token does not exist" in r.stdout
    r = _play(tmp_path, "-e", FILES_ONLY, "--check", token=False)
    assert r.returncode == 0, r.stdout
    assert "makes on its first real run" in " ".join(r.stdout.split())


def _provisioned(name: str, **kw: Any) -> dict[str, Any]:
    data = json.loads((ROOT / "dashboards" / f"{name}.json").read_text())
    return grafana_dashboard(data, **{"timezone": "Europe/Helsinki", "raw_retention": "0", **kw})


def test_provisioned_dashboards_carry_the_inventory_and_stay_valid() -> None:
    register_default_plugins()
    register()
    board = _provisioned("wattkeeper-luxtronik", heatpump_meter="heatpump")
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert board["timezone"] == "Europe/Helsinki"
    assert variables["timezone"]["query"] == "Europe/Helsinki"
    assert variables["timezone"]["current"]["value"] == "Europe/Helsinki"
    assert variables["raw_retention"]["query"] == "36500d"  # 0: raw kept forever
    assert variables["heatpump_meter"]["current"]["value"] == "heatpump"
    assert variables["datasource"]["current"]["value"] == "wattkeeper-influxdb"
    again = json.loads(json.dumps(Dashboard.from_json(board), cls=JSONEncoder))
    assert again == board


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"timezone": "Europe/Helsinki; drop"}, "grafana_timezone"),
        ({"raw_retention": "30 days"}, "grafana_raw_retention"),
        ({"heatpump_meter": 'x") |> drop'}, "grafana_heatpump_meter"),
    ],
)
def test_bad_inventory_values_are_named(kw: dict[str, str], message: str) -> None:
    from ansible.errors import AnsibleFilterError

    with pytest.raises(AnsibleFilterError, match=message):
        _provisioned("wattkeeper-overview", **kw)
