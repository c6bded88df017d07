"""Provisioning: the Molecule scenario's first converge and its idempotent re-run, timed.

Runs the stages of ``molecule/default`` one by one (destroy, create, converge, idempotence,
destroy), so each stage's wall time is its own; the same two podman systemd hosts and the
same four simulated sources as ``make test-molecule``. The idempotence stage fails on any
``changed``, so its success is the changed=0 figure; the recap's counts are read back from
the captured output all the same.

Twice: through ``podman exec`` (Ansible's podman connection, which cannot pipeline: every
task copies its module into the container and starts a Python there), and over SSH with
pipelining and ControlPersist, as users reach their hosts (``prepare.yml`` installs sshd in
the containers; ``WATTKEEPER_MOLECULE_CONNECTION=ssh``, see molecule.yml).
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MOLECULE = Path(sys.executable).parent / "molecule"
LOCK = "/tmp/wattkeeper-podman.lock"
Record = Callable[[str, str, float, str, str], None]


def _stage(stage: str, env: dict[str, str]) -> tuple[float, str]:
    """Run one Molecule stage; its wall time and its output (raises with the tail on failure)."""
    started = time.monotonic()
    done = subprocess.run(
        [str(MOLECULE), stage],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        raise RuntimeError(f"molecule {stage} failed (exit {done.returncode}):\n{tail}")
    return elapsed, done.stdout + done.stderr


def _recap(output: str) -> tuple[int, int]:
    """Tasks ok and changed summed over the hosts of the last PLAY RECAP in ``output``."""
    recap = output.rsplit("PLAY RECAP", 1)[-1]
    ok = sum(int(n) for n in re.findall(r"\bok=(\d+)", recap))
    changed = sum(int(n) for n in re.findall(r"\bchanged=(\d+)", recap))
    return ok, changed


def run(record: Record) -> None:
    influxd = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-influxd.sh")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()[-1]
    env = {
        **os.environ,
        # molecule runs ansible-playbook and ansible-config: the virtualenv's, as make does
        "PATH": os.pathsep.join((str(MOLECULE.parent), os.environ.get("PATH", ""))),
        "WATTKEEPER_INFLUXD": influxd,
        "PY_COLORS": "0",
        "ANSIBLE_NOCOLOR": "1",
    }
    # The scenario's containers have fixed names: hold the team's podman lock meanwhile.
    with open(LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for connection, label in (("containers.podman.podman", "podman exec"), ("ssh", "SSH")):
            _run(record, {**env, "WATTKEEPER_MOLECULE_CONNECTION": connection}, label)


def _run(record: Record, env: dict[str, str], label: str) -> None:
    _stage("destroy", env)
    try:
        # Molecule's create runs prepare.yml too (sshd from Debian's mirror).
        seconds, _ = _stage("create", env)
        record("provisioning", f"{label}: create two podman systemd hosts, sshd", seconds, "s", "")
        seconds, output = _stage("converge", env)
        ok, changed = _recap(output)
        record(
            "provisioning",
            f"{label}: first converge (site.yml, InfluxDB + 4 sources)",
            seconds,
            "s",
            f"{ok} tasks ok, {changed} changed",
        )
        seconds, output = _stage("idempotence", env)
        ok, changed = _recap(output)
        record(
            "provisioning",
            f"{label}: idempotent re-run",
            seconds,
            "s",
            f"{ok} tasks ok, changed={changed}",
        )
    finally:
        _stage("destroy", env)
