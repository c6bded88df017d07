"""The operator's playbooks against the converged hosts: verify.yml reports every check ✓;
delete-buckets.yml lists what it would delete and refuses without -e confirm=DELETE."""

from __future__ import annotations

import os
import re
import subprocess

from conftest import COLLECTOR, EPHEMERAL, ROOT, SERVER, Influx
from sources import ROLLED, SOURCES


def playbook(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
    return subprocess.run(  # noqa: PLW1510 - the caller looks at the exit code
        [
            "ansible-playbook",
            "-i",
            str(EPHEMERAL / "inventory"),
            str(ROOT / "ansible" / "playbooks" / name),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )


def _bucket_names(influx: Influx) -> set[str]:
    return {
        b["name"]
        for b in influx.api("GET", "/api/v2/buckets", params={"org": "home", "limit": 100})[
            "buckets"
        ]
    }


def test_site_in_check_mode_on_the_converged_hosts_changes_nothing() -> None:
    """`--check --diff` on converged hosts: no change, no failure (and no secret in the diff:
    the output goes to the log that test_secrets.py searches)."""
    env_site = ROOT / "site.yml"
    out = subprocess.run(  # noqa: PLW1510 - the exit code is asserted
        ["ansible-playbook", "-i", str(EPHEMERAL / "inventory"), str(env_site), "--check", "-D"],
        capture_output=True,
        text=True,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1"},
        cwd=ROOT,
        timeout=900,
    )
    recap = out.stdout[out.stdout.rfind("PLAY RECAP") :]
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    assert SERVER in recap and COLLECTOR in recap, recap
    assert not re.search(r"changed=[1-9]", recap), recap
    assert not re.search(r"failed=[1-9]", recap), recap


def _site(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: PLW1510 - the exit code is asserted
        ["ansible-playbook", "-i", str(EPHEMERAL / "inventory"), str(ROOT / "site.yml"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1"},
        cwd=ROOT,
        timeout=900,
    )


def test_changed_task_definition_updates_the_task_in_place(influx: Influx) -> None:
    """A new offset (any change of the generated Flux) PATCHes each task: same ID, new Flux;
    putting the default back restores it, again in place."""

    def tasks() -> dict[str, tuple[str, str]]:
        found = influx.api("GET", "/api/v2/tasks", params={"org": "home", "limit": 100})["tasks"]
        return {
            t["name"]: (t["id"], t.get("offset", ""))
            for t in found
            if t["name"].startswith("wattkeeper_")
        }

    before = tasks()
    assert before
    changed = _site("--limit", SERVER, "-e", "influxdb_task_offset=45s")
    assert changed.returncode == 0, changed.stdout[-3000:]
    after = tasks()
    assert {n: i for n, (i, _) in after.items()} == {n: i for n, (i, _) in before.items()}
    assert all(offset == "45s" for _, offset in after.values()), after
    restored = _site("--limit", SERVER)
    assert restored.returncode == 0, restored.stdout[-3000:]
    assert tasks() == before


def test_verify_playbook_all_checks_pass() -> None:
    out = playbook("verify.yml")
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-4000:]
    ticks = re.findall(r"^\s*✓ (\S+)\s+(.+?)\s{2,}", text, re.M)
    assert not re.search(r"^\s*✗ ", text, re.M), text[-4000:]
    checked = {(host, what.strip()) for host, what in ticks}
    assert (SERVER, "InfluxDB health") in checked
    assert (SERVER, "operator token") in checked
    assert (SERVER, "dashboards token") in checked
    for source in SOURCES:
        for tier in ("raw", "1m", "5m", "1h"):
            assert (SERVER, f"bucket {source}_{tier}") in checked
        for tier in ("1m", "5m", "1h") if source in ROLLED else ():
            assert (SERVER, f"task wattkeeper_{source}_{tier}") in checked
            # Complete: its checkpoint recent, no window of the last day unlike raw.
            assert (SERVER, f"tier {source}_{tier}") in checked
        for what in ("token", "delivery", "dead letters"):
            assert (COLLECTOR, f"{source} {what}") in checked, sorted(checked)
    assert re.search(r"✓ all \d+ checks passed", text)


def test_verify_playbook_changes_nothing() -> None:
    out = playbook("verify.yml", "--check")
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert re.search(r"changed=0 ", out.stdout) and not re.search(r"changed=[1-9]", out.stdout)


def test_delete_buckets_refuses_without_confirm(influx: Influx) -> None:
    before = _bucket_names(influx)
    out = playbook("delete-buckets.yml")
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "Nothing deleted" in text and "-e confirm=DELETE" in text
    # It said what it would delete, and what each bucket holds.
    for source in SOURCES:
        assert re.search(rf"{source}_raw: \d+ {source} values, .*from 20\d\d-", text), text[-3000:]
    assert _bucket_names(influx) == before
    wrong = playbook("delete-buckets.yml", "-e", "confirm=yes")
    assert wrong.returncode != 0 and "Nothing deleted" in wrong.stdout + wrong.stderr
    assert _bucket_names(influx) == before


def test_redo_tiers_marks_every_raw_bucket(influx: Influx) -> None:
    """redo-tiers.yml writes a late marker over the span into each source's raw bucket (the
    tier tasks re-aggregate it at their next runs; tests/test_tiers.py shows they do)."""
    out = playbook("redo-tiers.yml", "-e", "span=2h")
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    for source in SOURCES:
        rows = influx.query(
            f'from(bucket: "{source}_raw") |> range(start: -10m) '
            '|> filter(fn: (r) => r._measurement == "wattkeeper_late" and r.host == "redo-tiers") '
            '|> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")',
            token=influx.operator,
        )
        assert rows, f"no redo marker in {source}_raw"
        span = (int(rows[-1]["stop"]) - int(rows[-1]["start"])) / 1e9
        assert 7200 <= span <= 7202, span
