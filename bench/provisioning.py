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

Every stage runs with the profile_tasks callback: each stage's whole output, with the
seconds of every task at its end, is kept in ``~/.cache/wattkeeper/bench-provisioning/``
and the slowest tasks of each converge are printed.
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
LOGS = Path.home() / ".cache" / "wattkeeper" / "bench-provisioning"
Record = Callable[[str, str, float, str, str], None]


def _stage(stage: str, env: dict[str, str], log: str = "") -> tuple[float, str]:
    """Run one Molecule stage; its wall time and its output (raises with the tail on failure).
    With ``log``, the output is kept under that name in LOGS."""
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
    if log:
        LOGS.mkdir(parents=True, exist_ok=True)
        (LOGS / f"{log}.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        raise RuntimeError(f"molecule {stage} failed (exit {done.returncode}):\n{tail}")
    return elapsed, done.stdout + done.stderr


def slowest(output: str, count: int = 10) -> list[str]:
    """The first ``count`` lines of the profile_tasks summary at the end of ``output``."""
    summary = output.rsplit("TASKS RECAP", 1)[-1].splitlines() if "TASKS RECAP" in output else []
    return [line for line in summary if re.search(r" -+ \d+\.\d+s$", line)][:count]


def _recap(output: str) -> tuple[int, int]:
    """Tasks ok and changed summed over the hosts of the last PLAY RECAP in ``output``."""
    recap = output.rsplit("PLAY RECAP", 1)[-1]
    ok = sum(int(n) for n in re.findall(r"\bok=(\d+)", recap))
    changed = sum(int(n) for n in re.findall(r"\bchanged=(\d+)", recap))
    return ok, changed


CONNECTIONS = {"podman": ("containers.podman.podman", "podman exec"), "ssh": ("ssh", "SSH")}


def run(record: Record, connections: tuple[str, ...] = ("podman", "ssh")) -> None:
    """Both ways by default; ``connections`` picks (``--provisioning-connections ssh``)."""
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
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
        "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "all",
    }
    # The scenario's containers have fixed names: hold the team's podman lock meanwhile.
    with open(LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for connection, label in (CONNECTIONS[c] for c in connections):
            _run(record, {**env, "WATTKEEPER_MOLECULE_CONNECTION": connection}, label)


def _run(record: Record, env: dict[str, str], label: str) -> None:
    _stage("destroy", env)
    name = label.replace(" ", "-").lower()
    try:
        # Molecule's create runs prepare.yml too (sshd from Debian's mirror).
        seconds, _ = _stage("create", env)
        record("provisioning", f"{label}: create two podman systemd hosts, sshd", seconds, "s", "")
        seconds, output = _stage("converge", env, f"{name}-converge")
        print(f"  {label}: first converge {seconds:.0f} s; slowest tasks:")
        print("\n".join("    " + line for line in slowest(output)))
        ok, changed = _recap(output)
        record(
            "provisioning",
            f"{label}: first converge (site.yml, InfluxDB + 4 sources)",
            seconds,
            "s",
            f"{ok} tasks ok, {changed} changed",
        )
        seconds, output = _stage("idempotence", env, f"{name}-idempotence")
        print(f"  {label}: idempotent re-run {seconds:.0f} s; slowest tasks:")
        print("\n".join("    " + line for line in slowest(output)))
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
