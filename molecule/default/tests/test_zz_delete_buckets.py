"""Runs last (destructive): delete-buckets.yml with -e confirm=DELETE, limited to one source,
deletes exactly that source's buckets and tasks; verify.yml then reports them ✗ with the next
step. A later converge creates them again (the destroy step follows here)."""

from __future__ import annotations

import json

from conftest import SERVER, Influx
from sources import SOURCES
from test_playbooks import _bucket_names, playbook

VICTIM = "wattivahti" if "wattivahti" in SOURCES else SOURCES[0]


def test_delete_buckets_with_confirm_deletes_only_what_it_listed(influx: Influx) -> None:
    before = _bucket_names(influx)
    out = playbook(
        "delete-buckets.yml",
        "-e",
        "confirm=DELETE",
        "-e",
        json.dumps({"influxdb_sources": [VICTIM]}),
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    gone = {f"{VICTIM}_{t}" for t in ("raw", "1m", "5m", "1h")}
    assert gone <= before
    assert _bucket_names(influx) == before - gone
    tasks = {t["name"] for t in influx.api("GET", "/api/v2/tasks", params={"org": "home"})["tasks"]}
    assert not any(t.startswith(f"wattkeeper_{VICTIM}_") for t in tasks)
    assert any(t.startswith(f"wattkeeper_{SOURCES[-1]}_") for t in tasks) or SOURCES[-1] == VICTIM

    after = playbook("verify.yml")
    text = after.stdout + after.stderr
    assert after.returncode != 0
    assert f"✗ {SERVER}" in text and f"bucket {VICTIM}_raw" in text
    assert "run site.yml again" in text
