"""The influxdb role with influxdb_install_method none, run by the real site.yml on the
controller (the [influxdb] group is empty) against a real influxd serving https: what the
server refuses comes back as one line saying what to change, and an object of one of
wattkeeper's names that the user made is left untouched, also in check mode.

Each test works in an organization of its own on the session's https server. (Converge,
idempotence and delete-buckets.yml next to the user's own objects: molecule/byo.)"""

from __future__ import annotations

import json
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
    """The messages of the failed tasks (Ansible's "[ERROR]: Task failed" blocks), one per
    line: a call that takes a list (the buckets) names each one it could not make on a line
    of its own."""
    found = re.findall(
        r"^\[ERROR\]: Task failed: Module failed: (.*?)\nOrigin:", stdout, re.M | re.S
    )
    return [line for message in found for line in message.splitlines()]


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


def test_list_calls_write_only_what_differs_and_leave_foreign_objects(
    influx_tls: InfluxServer, tmp_path: Path
) -> None:
    """The role's one call per kind (buckets, tasks, tokens): a second call with nothing to
    change changes nothing and shows no token; check mode writes nothing; a bucket of one
    of the names that the user made is left alone, also by state=absent."""
    assert influx_tls.tls is not None
    org, org_id = _org(influx_tls)
    influx_tls.api(
        "POST",
        "/api/v2/buckets",
        json={"orgID": org_id, "name": "x_1h", "description": "mine", "retentionRules": []},
    )
    conn = {
        "url": f"https://localhost:{influx_tls.port}",
        "ca_path": str(influx_tls.tls.ca),
        "token": influx_tls.token,
        "org": org,
    }
    buckets = [
        {"name": "a_raw", "retention": "30d", "description": "wattkeeper a, tier raw"},
        {"name": "a_1h", "description": "wattkeeper a, tier 1h"},
    ]
    flux = (
        'option task = {name: "wattkeeper_a_1h", every: 1h}\n'
        'from(bucket: "a_raw") |> range(start: -task.every) |> to(bucket: "a_1h")'
    )
    tasks = [{"name": "wattkeeper_a_1h", "flux": flux, "description": "wattkeeper a"}]
    tokens = [
        {
            "description": "wattkeeper agent a",
            "permissions": [{"action": "write", "bucket": "a_raw"}],
        },
        {
            "description": "wattkeeper dashboards",
            "permissions": [{"action": "read", "bucket": "a_1h"}],
        },
    ]
    steps: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("b1", {"influxdb_bucket": {**conn, "buckets": buckets}}, {}),
        ("b2", {"influxdb_bucket": {**conn, "buckets": buckets}}, {}),
        ("b3", {"influxdb_bucket": {**conn, "buckets": [{**buckets[0], "retention": "7d"}]}},
         {"check_mode": True, "diff": True}),
        ("b4", {"influxdb_bucket": {**conn, "buckets": [{"name": "a_1h"}, {"name": "x_1h"}],
                                    "state": "absent"}}, {"check_mode": True}),
        ("t1", {"influxdb_task": {**conn, "tasks": tasks}}, {}),
        ("t2", {"influxdb_task": {**conn, "tasks": tasks}}, {}),
        ("k1", {"influxdb_token": {**conn, "tokens": tokens}}, {}),
        ("k2", {"influxdb_token": {**conn, "tokens": tokens}}, {}),
    ]  # fmt: skip
    out = tmp_path / "results.json"
    dump = "{{ {" + ", ".join(f"'{n}': {n}" for n, *_ in steps) + "} | to_json }}"
    play = [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [
                *({"name": n, **call, **opts, "register": n} for n, call, opts in steps),
                {
                    "name": "results",
                    "ansible.builtin.copy": {
                        "dest": str(out),
                        "content": dump,
                    },
                },
            ],
        }
    ]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    (tmp_path / "inventory.ini").write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
    )
    res = subprocess.run(
        [str(PLAYBOOK_BIN), "-i", str(tmp_path / "inventory.ini"), str(tmp_path / "play.yml")],
        cwd=ROOT,
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    r = json.loads(out.read_text())
    assert [x["changed"] for x in r["b1"]["buckets"]] == [True, True]
    assert not r["b2"]["changed"]
    assert [x["bucket"]["id"] for x in r["b2"]["buckets"]] == [
        x["bucket"]["id"] for x in r["b1"]["buckets"]
    ]
    assert r["b3"]["changed"] and r["b3"]["diff"][0]["after"]["retention_seconds"] == 7 * 86400
    a_raw = _bucket(influx_tls, org_id, "a_raw")
    assert a_raw is not None and a_raw["retentionRules"][0]["everySeconds"] == 30 * 86400
    assert [x.get("skipped_foreign", False) for x in r["b4"]["buckets"]] == [False, True]
    assert r["b4"]["buckets"][0]["changed"] and _bucket(influx_tls, org_id, "a_1h") is not None
    assert "x_1h" in " ".join(r["b4"]["warnings"])
    assert [x["changed"] for x in r["t1"]["tasks"]] == [True] and not r["t2"]["changed"]
    assert [x["description"] for x in r["k1"]["tokens"]] == [t["description"] for t in tokens]
    assert all(x["created"] and len(x["token"]) >= 20 for x in r["k1"]["tokens"])
    assert not r["k2"]["changed"] and not any("token" in x for x in r["k2"]["tokens"])
    assert [x["id"] for x in r["k2"]["tokens"]] == [x["id"] for x in r["k1"]["tokens"]]
