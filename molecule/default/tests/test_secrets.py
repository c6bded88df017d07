"""Secrets never show: not in either host's journal (any field, not only the message), not in
the collector's process list, not in the Ansible output of converge and idempotence."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from conftest import COLLECTOR, EPHEMERAL, SECRETS
from sources import SOURCES

ADMIN_PASSWORD = "molecule-admin-password"  # noqa: S105 - molecule.yml's, to look for
OCTOPUS_API_KEY = "sk_live_simulated0000000000000000"  # wattkeeper_source_defs.octopus.simulate


def _secrets(collector: Any) -> dict[str, str]:
    """Every secret value of the scenario, by where it comes from."""
    found = {str(p.relative_to(SECRETS)): p.read_text().strip() for p in SECRETS.rglob("*.token")}
    found["influxdb_admin_password"] = ADMIN_PASSWORD
    found["mqtt password"] = "molecule-mqtt-password-0123"  # molecule.yml's
    if "octopus" in SOURCES:
        found["octopus api key"] = OCTOPUS_API_KEY
    if "wattivahti" in SOURCES:
        # The refresh token the agent holds now (it rotates on every sync). The simulator's
        # initial token is left out: it is the stand-in portal's own argument, spent on the
        # first sync, and so is visible in the simulator's command line by design.
        found["wattivahti refresh token"] = collector.run(
            "cat /var/lib/wattkeeper/wattivahti/refresh_token"
        ).stdout.strip()
    assert len(found) >= 4 + len(SOURCES)
    for name, value in found.items():
        assert len(value) >= 16, f"{name}: suspiciously short secret {value!r}"
    return found


def _leaks(text: str, secrets: dict[str, str]) -> list[str]:
    return [name for name, value in secrets.items() if value in text]


@pytest.mark.parametrize("host_name", ["server", "collector"])
def test_no_secret_in_the_journal(request: Any, collector: Any, host_name: str) -> None:
    host = request.getfixturevalue(host_name)
    secrets = _secrets(collector)
    # JSON export: every field (_CMDLINE, CODE_*, the agent's own fields), not just MESSAGE.
    journal = host.run("journalctl --no-pager -o json").stdout
    assert len(journal) > 10_000, "the journal is nearly empty; is journald running?"
    assert _leaks(journal, secrets) == []


def test_no_secret_in_the_process_list(collector: Any) -> None:
    secrets = _secrets(collector)
    ps = collector.run("ps -eo args").stdout
    assert "wattkeeper run" in ps
    assert _leaks(ps, secrets) == []


def test_no_secret_in_the_ansible_output(collector: Any) -> None:
    log = Path(os.environ.get("ANSIBLE_LOG_PATH", EPHEMERAL / "ansible.log"))
    assert log.is_file(), f"{log}: the converge output was not captured (ANSIBLE_LOG_PATH)"
    text = log.read_text(errors="replace")
    # It must really be the converge output: the influxdb play and the collector's agents.
    assert "TASK [influxdb : One token per agent" in text
    assert "PLAY RECAP" in text and COLLECTOR in text
    assert _leaks(text, _secrets(collector)) == []
