"""A throwaway source, added as a contributor would: one package (config, a trivial poll)
and one simulator module in a copy of the tree, then `make generate`. The role's table
of sources and argument specs, its inventory validation (the agent's own, run on the
controller), the docs and the command line all pick it up; no other file is edited
(docs/adding-a-source.md counts the steps)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

PACKAGE = '''
"""Meterbox: a throwaway source that reads one number over HTTP."""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from wattkeeper.config import ConfigError, Duration
from wattkeeper.point import Point
from wattkeeper.source import Batch, Simulated, SourceContext, SourcePlugin


@dataclass
class MeterboxSection:
    """[meterbox]: where the box is."""

    # The box's address, http://HOST:PORT.
    url: str
    # Time between two polls.
    interval: Duration = 30.0

    def validate(self, where: str, file: Path) -> None:
        if not self.url.startswith("http://"):
            raise ConfigError(f"{where}.url", file, "must be an http:// URL")


class Meterbox:
    def __init__(self, ctx: SourceContext) -> None:
        self.section = ctx.config.source

    def next_delay(self) -> float:
        return self.section.interval

    def poll(self) -> Batch:
        with urllib.request.urlopen(self.section.url, timeout=5) as answer:
            watts = float(json.load(answer)["w"])
        return Batch([Point("meterbox", {"power_w": watts}, time.time_ns())])

    def check(self) -> str:
        return self.section.url

    def close(self) -> None:
        pass


PLUGIN = SourcePlugin(
    name="meterbox",
    config_class=MeterboxSection,
    factory=Meterbox,
    description="a throwaway meter box",
    example={"url": "http://192.0.2.7:8080"},
    simulated=Simulated(port=18099, config={"url": "http://127.0.0.1:18099"}),
)
'''

SIMULATOR = '''
"""Meterbox: answers every GET with {"w": 230.0}."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", default="127.0.0.1:18099", metavar="HOST:PORT")


def serve(args: argparse.Namespace) -> int:
    return 0
'''

PLAYBOOK = """
- name: The role's validation picks up the new source
  hosts: meterbox
  gather_facts: false
  tasks:
    - name: A bad inventory is refused, naming the variable and key
      block:
        - name: Validate a bad inventory
          ansible.builtin.include_role:
            name: wattkeeper
            tasks_from: validate
          vars:
            wattkeeper_meterbox: {url: "ftp://192.0.2.7"}
      rescue:
        - name: Say what was refused
          ansible.builtin.debug:
            msg: "REFUSED {{ ansible_failed_result.msg }}"
    - name: Validate a good inventory
      ansible.builtin.include_role:
        name: wattkeeper
        tasks_from: validate
        public: true
      vars:
        wattkeeper_meterbox: {url: "http://192.0.2.7:8080", interval: "1m"}
    - name: Say what was accepted
      ansible.builtin.debug:
        msg: "ACCEPTED {{ wattkeeper_sources }} {{ wattkeeper_source_defs.meterbox.simulate.port }}"
"""


def _copy_tree(dst: Path) -> None:
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for d in ("agents/wattkeeper", "roles", "ansible", "docs/config"):
        shutil.copytree(ROOT / d, dst / d, ignore=skip)
    for f in (
        "site.yml",
        "README.md",
        "ansible.cfg",
        "scripts/generate.py",
        "scripts/role_readme.py",
    ):
        (dst / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dst / f)


def test_a_new_source_is_one_package_and_one_simulator(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    _copy_tree(tree)
    package = tree / "agents/wattkeeper/sources/meterbox"
    package.mkdir()
    (package / "__init__.py").write_text(PACKAGE.lstrip())
    (tree / "agents/wattkeeper/simulate/meterbox.py").write_text(SIMULATOR.lstrip())
    env = {
        **os.environ,
        "PYTHONPATH": str(tree / "agents"),
        "ANSIBLE_CONFIG": str(tree / "ansible.cfg"),
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True, timeout=300)

    # The derived files are stale until they are generated: the staleness test would fail.
    stale = run(sys.executable, "scripts/generate.py", "--check")
    assert stale.returncode == 1 and "argument_specs.yml" in stale.stderr, stale.stderr
    assert run(sys.executable, "scripts/generate.py").returncode == 0

    specs = yaml.safe_load((tree / "roles/wattkeeper/meta/argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]["wattkeeper_meterbox"]["options"]
    assert set(options) == {"url", "interval"}
    assert "Agent default: 30s" in options["interval"]["description"]
    defs = yaml.safe_load((tree / "roles/wattkeeper_common/defaults/main.yml").read_text())
    assert defs["wattkeeper_source_defs"]["meterbox"]["kind"] == "daemon"
    assert "meterbox" in (tree / "site.yml").read_text().split("Collectors\n  hosts: ")[1]
    assert "| `url` | str | **required** |" in (tree / "docs/config/meterbox.md").read_text()
    assert "url = " in (tree / "docs/config/meterbox.toml").read_text()
    assert "wattkeeper_meterbox" in (tree / "roles/wattkeeper/README.md").read_text()

    # The role: its validation runs the new source's own validate() on the controller.
    (tree / "play.yml").write_text(textwrap.dedent(PLAYBOOK))
    (tree / "hosts.ini").write_text(
        "[meterbox]\nlocalhost ansible_connection=local"
        f" ansible_python_interpreter={sys.executable}"
        " wattkeeper_influxdb_url=http://192.0.2.1:8086\n"
    )
    played = run(str(BIN / "ansible-playbook"), "-i", "hosts.ini", "play.yml")
    assert played.returncode == 0, played.stdout + played.stderr
    assert "REFUSED localhost: wattkeeper_meterbox.url: must be an http:// URL" in played.stdout
    assert "ACCEPTED ['meterbox'] 18099" in played.stdout

    # The command line: the agent loads its config, the simulator is found.
    bad = tree / "meterbox.toml"
    bad.write_text(
        '[influxdb]\nurl = "http://127.0.0.1:9"\norg = "o"\nbucket = "b"\ntoken = "t"\n'
        '[meterbox]\nurl = "ftp://x"\n'
    )
    agent = run(sys.executable, "-m", "wattkeeper", "run", "meterbox", "-c", str(bad), "--once")
    assert agent.returncode == 78 and "meterbox.url: must be an http:// URL" in agent.stderr
    simulator = run(sys.executable, "-m", "wattkeeper", "simulate", "meterbox", "--help")
    assert simulator.returncode == 0 and "answers every GET" in simulator.stdout
