"""Bring your own InfluxDB, verified: the collector delivers to the user's server over
https (trusting only the test CA), the role made its buckets, tasks and tokens there from
the controller, and the owner's own bucket, task and token are untouched, also by
delete-buckets.yml (last: it deletes wattkeeper's buckets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import Influx, playbook, wait_for

SOURCES = ("octopus", "pulse")


def test_agents_trust_only_the_ca_and_deliver_over_https(collector: Any, influx: Influx) -> None:
    ca = collector.file("/etc/wattkeeper/influxdb-ca.pem")
    assert ca.exists and ca.mode == 0o644
    assert ca.content_string == Path(influx.ca).read_text()
    for source in SOURCES:
        config = collector.file(f"/etc/wattkeeper/{source}.toml").content_string
        assert f'url = "{influx.url}"' in config and influx.url.startswith("https://")
        assert 'ca_file = "/etc/wattkeeper/influxdb-ca.pem"' in config
        assert collector.service(f"wattkeeper-{source}").is_running

    def landed() -> bool:
        for source in SOURCES:
            rows = influx.call(
                "POST",
                "/api/v2/query",
                params={"org": "home"},
                json={
                    "query": f'from(bucket: "{source}_raw") |> range(start: -1h) '
                    f'|> filter(fn: (r) => r._measurement == "{source}") |> count() |> limit(n: 1)',
                    "dialect": {"annotations": [], "header": True},
                },
            )
            if rows.status_code != 200 or "_value" not in rows.text:
                return False
        return True

    wait_for("octopus and pulse readings in their raw buckets", landed)
    stats = collector.run(
        "runuser -u wattkeeper -- /opt/wattkeeper/bin/wattkeeper check"
        " -c /etc/wattkeeper/pulse.toml"
    )
    assert f"OK   influxdb   {influx.url} org home bucket pulse_raw writable" in stats.stdout


def test_the_role_made_its_own_objects_on_the_users_server(influx: Influx) -> None:
    buckets = influx.buckets()
    for source in SOURCES:
        for tier in ("raw", "1h"):
            assert buckets[f"{source}_{tier}"]["description"].startswith("wattkeeper")
    tasks = influx.tasks()
    assert {f"wattkeeper_{s}_1h" for s in SOURCES} <= set(tasks)
    auths = influx.api("GET", "/api/v2/authorizations")["authorizations"]
    descriptions = {a["description"] for a in auths}
    assert {f"wattkeeper agent {s} on wk-byo-collector" for s in SOURCES} <= descriptions


def _assert_untouched(influx: Influx, objects: dict[str, str]) -> None:
    bucket = influx.api("GET", f"/api/v2/buckets/{objects['bucket_id']}")
    assert (bucket["name"], bucket["description"]) == ("homeassistant", "Home Assistant's history")
    assert bucket["retentionRules"][0]["everySeconds"] == 7 * 86400
    task = influx.api("GET", f"/api/v2/tasks/{objects['task_id']}")
    assert (task["name"], task["status"], task["description"]) == (
        "my_daily_mean",
        "inactive",
        "my own hourly means",
    )
    auth = influx.api("GET", f"/api/v2/authorizations/{objects['token_id']}")
    assert (auth["description"], auth["status"]) == ("grafana at home (mine)", "active")
    # The owner's token still reads the owner's bucket.
    r = influx.call(
        "POST",
        "/api/v2/query",
        token=objects["token"],
        params={"org": "home"},
        json={"query": 'from(bucket: "homeassistant") |> range(start: 0) |> count()'},
    )
    assert r.status_code == 200 and "temperature" in r.text


def test_the_owners_objects_survived_converge_and_idempotence(
    influx: Influx, user_objects: dict[str, str]
) -> None:
    _assert_untouched(influx, user_objects)


def test_verify_playbook_checks_the_server_from_the_controller() -> None:
    out = playbook("ansible/playbooks/verify.yml")
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-4000:]
    assert "✓ localhost" in text and "InfluxDB health" in text
    assert "✓ wk-byo-collector" in text and "pulse token" in text


def test_zz_delete_buckets_deletes_only_wattkeepers(
    influx: Influx, user_objects: dict[str, str]
) -> None:
    out = playbook("ansible/playbooks/delete-buckets.yml", "-e", "confirm=DELETE")
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    assert set(influx.buckets()) & {f"{s}_{t}" for s in SOURCES for t in ("raw", "1h")} == set()
    assert not [t for t in influx.tasks() if t.startswith("wattkeeper_")]
    assert "homeassistant" in influx.buckets() and "my_daily_mean" in influx.tasks()
    _assert_untouched(influx, user_objects)
