"""The influxdb role with influxdb_install_method none, run by the real site.yml on the
controller (the [influxdb] group is empty) against a real influxd serving https: what the
server refuses comes back as one line saying what to change, and an object of one of
wattkeeper's names that the user made is left untouched, also in check mode.

Each test works in an organization of its own on the session's https server. (Converge,
idempotence and delete-buckets.yml next to the user's own objects: molecule/byo.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml
from support.influxd import InfluxServer
from support.tls import make_server_tls

ROOT = Path(__file__).resolve().parents[1]
PLAYBOOK_BIN = Path(sys.executable).parent / "ansible-playbook"


def _org(server: InfluxServer) -> tuple[str, str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    org_id = server.api("POST", "/api/v2/orgs", json={"name": name}).json()["id"]
    return name, str(org_id)


def _inventory(tmp_path: Path, server: InfluxServer, org: str, **settings: Any) -> Path:
    """An inventory as a user of their own InfluxDB writes it: [influxdb] empty."""
    assert server.tls is not None
    (tmp_path / "group_vars").mkdir()
    all_vars = {
        "influxdb_install_method": "none",
        "wattkeeper_influxdb_url": f"https://localhost:{server.port}",
        "wattkeeper_influxdb_org": org,
        "influxdb_operator_token": server.token,
        "wattkeeper_influxdb_ca_file": str(server.tls.ca),
        # No collector in this inventory (the play on them is molecule/byo's): the buckets
        # and tasks of the pulse source only.
        "influxdb_sources": ["pulse"],
        **settings,
    }
    (tmp_path / "group_vars" / "all.yml").write_text(yaml.safe_dump(all_vars))
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("[influxdb]\n")
    return inventory


def _site(inventory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PLAYBOOK_BIN), "-i", str(inventory), "site.yml", *extra],
        cwd=ROOT,
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _errors(stdout: str) -> list[str]:
    """The one-line messages of the failed tasks (Ansible's "[ERROR]: Task failed" lines)."""
    return re.findall(r"^\[ERROR\]: Task failed: Module failed: (.*)$", stdout, re.M)


def _bucket(server: InfluxServer, org_id: str, name: str) -> dict[str, Any] | None:
    found = server.api("GET", "/api/v2/buckets", params={"orgID": org_id, "limit": 100}).json()
    return next((b for b in found.get("buckets", []) if b["name"] == name), None)


def test_a_refused_certificate_is_one_line_naming_the_url(
    influx_tls: InfluxServer, tmp_path: Path
) -> None:
    org, _ = _org(influx_tls)
    other_ca = make_server_tls(tmp_path / "other", ca_name="not the server's CA").ca
    res = _site(_inventory(tmp_path, influx_tls, org, wattkeeper_influxdb_ca_file=str(other_ca)))
    assert res.returncode != 0
    assert "Traceback" not in res.stdout + res.stderr
    url = f"https://localhost:{influx_tls.port}"
    assert _errors(res.stdout) == [
        f"GET {url}/api/v2/setup: TLS: certificate verify failed: self-signed certificate "
        f"in certificate chain (trusting only the CA file {other_ca})"
    ]


def test_refusals_name_the_tier_and_foreign_objects_stay_untouched(
    influx_tls: InfluxServer, tmp_path: Path
) -> None:
    org, org_id = _org(influx_tls)
    # The user's own bucket, named like wattkeeper's raw bucket of the pulse source.
    theirs = influx_tls.api(
        "POST",
        "/api/v2/buckets",
        json={
            "orgID": org_id,
            "name": "pulse_raw",
            "description": "my meter",
            "retentionRules": [],
        },
    ).json()
    # A tier InfluxDB 2 refuses (under 1 hour), as InfluxDB Cloud's free plan refuses 90d.
    tiers = [{"name": "raw", "retention": "30d"}, {"name": "1h", "every": "1h", "retention": "30m"}]
    # As with InfluxDB Cloud: onboarding is not even asked about; the org is found by name.
    inventory = _inventory(tmp_path, influx_tls, org, influxdb_tiers=tiers, influxdb_cloud=True)

    checked = _site(inventory, "--check")
    assert checked.returncode != 0
    probe = checked.stdout.split("TASK [influxdb : Whether InfluxDB is new")[1]
    assert probe.split("\n", 2)[1] == "skipping: [localhost]"
    assert _errors(checked.stdout) == [
        "bucket 'pulse_raw' exists but was not created by wattkeeper (its description "
        "'my meter' does not start with 'wattkeeper'); it is left untouched: rename that "
        "bucket, or give wattkeeper's buckets other names (wattkeeper_bucket_pattern)"
    ]

    res = _site(inventory)
    assert res.returncode != 0
    assert "Traceback" not in res.stdout + res.stderr
    assert _errors(res.stdout) == [
        *_errors(checked.stdout),
        "influxdb_tiers[1].retention (tier 1h): InfluxDB refused bucket 'pulse_1h' with "
        "retention 30m: POST /api/v2/buckets: HTTP 500 internal error: retention policy "
        "duration must be at least 1h0m0s. Change influxdb_tiers[1].retention (tier 1h) "
        "(InfluxDB keeps data at least 1h)",
    ]
    after = _bucket(influx_tls, org_id, "pulse_raw")
    assert after is not None
    assert (after["id"], after["description"], after["retentionRules"]) == (
        theirs["id"],
        "my meter",
        theirs["retentionRules"],
    )
    assert _bucket(influx_tls, org_id, "pulse_1h") is None
    # The play on the controller has no inventory_dir: the secrets directory defaults to
    # the inventory file's directory all the same (where the collectors' plays look).
    assert (tmp_path / ".wattkeeper-secrets" / "influxdb").is_dir()


def test_an_unknown_organization_is_named_with_the_ones_there_are(
    influx_tls: InfluxServer,
) -> None:
    assert influx_tls.tls is not None
    args = (
        f"url=https://localhost:{influx_tls.port} ca_path={influx_tls.tls.ca} "
        f"token={influx_tls.token} org=no-such-org name=pulse_raw retention=30d"
    )
    res = subprocess.run(
        [str(PLAYBOOK_BIN.parent / "ansible"), "localhost", "-m", "influxdb_bucket", "-a", args],
        cwd=ROOT,
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode != 0
    assert (
        f"organization 'no-such-org' does not exist at https://localhost:{influx_tls.port} or "
        "the token cannot see it; the token sees: "
    ) in res.stdout
    assert "'home'" in res.stdout and "(set wattkeeper_influxdb_org;" in res.stdout
