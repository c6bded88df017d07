"""The collector role writes every agent's files in two module calls (roles/wattkeeper/
tasks/files.yml): which units each source gets, which secrets, and the wattkeeper_files
module that writes them (only what differs, secrets that rotate only seeded, a tag per
changed file that says what restarts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from test_ansible_plugins import DEFS, FR, ROOT


def test_each_source_gets_its_units_and_the_simulator_only_when_simulated() -> None:
    units = FR.unit_files(["wattivahti", "pulse"], DEFS, False)
    paths = [u["path"].rsplit("/", 1)[1] for u in units]
    assert "wattkeeper-wattivahti.service" in paths and "wattkeeper-wattivahti.timer" in paths
    assert "wattkeeper-pulse.service" in paths and "wattkeeper-pulse.timer" not in paths
    assert not any("simulate" in p for p in paths)
    # What is enabled and started itself: timers, and services no timer of their own starts.
    started = [u["path"].rsplit("/", 1)[1] for u in units if u["start"]]
    assert started == ["wattkeeper-wattivahti.timer", "wattkeeper-pulse.service"]
    for source, d in DEFS.items():
        mine = [u for u in FR.unit_files([source], DEFS, True) if u["tag"] == f"agent:{source}"]
        assert len(mine) == 1 + (d["kind"] == "oneshot") + 2 * ("report" in d), source
        sims = [u for u in FR.unit_files([source], DEFS, True) if u["tag"].startswith("simulator:")]
        assert len(sims) == ("simulate" in d), source
        for u in mine + sims:
            assert (ROOT / "roles/wattkeeper/templates" / u["src"]).is_file(), u


def test_secret_files_are_the_declared_ones() -> None:
    secrets = FR.secret_files(list(DEFS), DEFS)
    declared = [s for d in DEFS.values() for s in d.get("secrets") or []]
    assert [s["path"] for s in secrets] == [s["path"] for s in declared]
    assert {s["var"] for s in secrets if s["rotates"]} == {"wattkeeper_wattivahti_refresh_token"}


def _run(args: dict[str, Any], check: bool = False) -> dict[str, Any]:
    """wattkeeper_files on localhost, as the role calls it; its JSON result."""
    cmd = [
        str(Path(sys.executable).parent / "ansible"),
        "localhost",
        "-m",
        "wattkeeper_files",
        "-a",
        json.dumps(args),
        *(["--check"] if check else []),
    ]
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_STDOUT_CALLBACK": "json",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
    }
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    result: dict[str, Any] = json.loads(out.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return result


def test_module_writes_only_what_differs_and_tags_it(tmp_path: Path) -> None:
    conf = tmp_path / "etc"
    secret = conf / "token"
    args: dict[str, Any] = {
        "directories": [{"path": str(conf), "mode": "0750", "tag": "dir"}],
        "files": [
            {"path": str(conf / "a.toml"), "content": "a = 1\n", "mode": "0640", "tag": "agent:a"},
            {"path": str(secret), "content": "first\n", "mode": "0600", "force": False},
            {"path": str(conf / "b.toml"), "content": "b = 1\n", "mode": "0644", "tag": "agent:b"},
        ],
    }
    dry = _run(args, check=True)
    assert dry["changed"] and not conf.exists()

    first = _run(args)
    assert first["changed"] and first["changed_tags"] == ["dir", "agent:a", "agent:b"]
    assert oct(conf.stat().st_mode & 0o777) == "0o750"
    assert oct(secret.stat().st_mode & 0o777) == "0o600"

    again = _run(args)
    assert not again["changed"] and again["changed_tags"] == []

    secret.write_text("renewed by the agent\n")  # a rotating secret: only seeded
    (conf / "b.toml").chmod(0o600)
    args["files"][0]["content"] = "a = 2\n"
    third = _run(args)
    assert third["changed_tags"] == ["agent:a", "agent:b"]
    assert secret.read_text() == "renewed by the agent\n"
    assert (conf / "a.toml").read_text() == "a = 2\n"
    assert oct((conf / "b.toml").stat().st_mode & 0o777) == "0o644"


def test_role_writes_no_file_outside_the_two_calls() -> None:
    """The per-file loops are gone: copy/template/file tasks are the package's only."""
    tasks_dir = ROOT / "roles/wattkeeper/tasks"
    writers = []
    for path in sorted(tasks_dir.glob("*.yml")):
        for task in yaml.safe_load(path.read_text()) or []:
            writes = ("ansible.builtin.copy", "ansible.builtin.template", "ansible.builtin.file")
            for module in writes:
                if module in task:
                    writers.append(f"{path.name}: {task['name']}")
    assert writers == [
        "install.yml: Copy the wheelhouse (offline sites)",
        "install.yml: Copy the agent wheel",
    ]
