"""Inventory validation for the wattkeeper role: the agent's own config code, run on the
controller before anything is installed.

Each inventory dictionary (wattkeeper_agent, wattkeeper_SOURCE, ...) is loaded exactly as
the agent will load the file the role renders from it (the agent's load_section and each
section's validate()), so the role accepts what the agent accepts, no copy of a rule is
kept here, and a new source is checked with no change to this file. What only the role
knows stays here: which Vault variable a host still lacks.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

AGENTS_DIR = Path(__file__).resolve().parents[3] / "agents"
# Where the role writes secret files is the host's business; on the controller a secret is
# only known to be given (config.inventory_check: no file is read).
_PLACEHOLDER = "/inventory-check/secret"
# Keys the role fills in itself when it renders a shared section (tasks/files.yml).
_ROLE_FILLED: dict[str, dict[str, Any]] = {
    "influxdb": {
        "url": "http://influxdb.invalid:8086",
        "org": "home",
        "bucket": "raw",
        "token_file": _PLACEHOLDER,
    },
}

# Keys of the shared sections the role writes from variables of their own.
_ROLE_VARS = {
    "mqtt": {"password_file": "wattkeeper_mqtt_password", "ca_file": "wattkeeper_mqtt_ca_cert"}
}


def _agent() -> tuple[Any, Any]:
    """The agent's config and registry modules, from the tree being deployed."""
    if str(AGENTS_DIR) not in sys.path:
        sys.path.insert(0, str(AGENTS_DIR))
    try:
        return importlib.import_module("wattkeeper.config"), importlib.import_module(
            "wattkeeper.registry"
        )
    except ImportError as exc:
        raise AnsibleFilterError(
            f"the agent package in {AGENTS_DIR} does not import ({exc}): run Ansible from "
            "the project's virtualenv, which has its dependencies"
        ) from exc


def inventory_problems(
    sources: list[str],
    sections: dict[str, Any],
    secrets: dict[str, str],
    defs: dict[str, Any],
    simulate: bool = False,
) -> list[str]:
    """What a host's inventory lacks or gets wrong for its sources, one message a section,
    naming the variable and key: checked before anything is installed."""
    config, registry = _agent()
    problems: list[str] = []

    def load(name: str, table: dict[str, Any], cls: type, role_vars: dict[str, str]) -> None:
        try:
            config.load_section(table, cls, f"wattkeeper_{name}", Path("inventory"))
        except config.ConfigError as exc:
            # A key the role fills from a variable of its own is named by that variable.
            message = exc.message
            for key, var in role_vars.items():
                message = re.sub(rf"\b{key}\b", var, message)
            problems.append(f"{exc.key}: {message}")

    with config.inventory_check():
        for name, cls in config.SHARED_SECTIONS.items():
            body = sections.get(name) or {}
            if not isinstance(body, dict):
                problems.append(f"wattkeeper_{name} must be a dictionary of [{name}] keys")
                continue
            if name == "mqtt" and not body:
                continue  # no [mqtt] section is rendered
            table = {**_ROLE_FILLED.get(name, {}), **body}
            if name == "mqtt" and secrets.get("wattkeeper_mqtt_password"):
                table["password_file"] = _PLACEHOLDER
            load(name, table, cls, _ROLE_VARS.get(name, {}))
        for source in sources:
            deploy = defs.get(source, {})
            sim = simulate and "simulate" in deploy
            for secret in deploy.get("secrets", []):
                if not secret.get("rotates") and not sim and not secrets.get(secret["var"]):
                    what = f"the {source} agent needs it; keep it in Vault"
                    problems.append(f"{secret['var']} is not set ({what})")
            body = sections.get(source) or {}
            if not isinstance(body, dict):
                problems.append(f"wattkeeper_{source} must be a dictionary of [{source}] keys")
                continue
            try:
                plugin = registry.load_plugin(source)
            except registry.UnknownSource as exc:
                problems.append(str(exc))
                continue
            if plugin.config_class is None:
                continue
            timer = ("on_calendar", "randomized_delay") if plugin.unit.timer else ()
            table = {k: v for k, v in body.items() if k not in timer}
            table.update({s.key: _PLACEHOLDER for s in plugin.secrets})
            if sim:
                table.update(deploy["simulate"].get("config", {}))
            secret_vars = {s["key"]: s["var"] for s in deploy.get("secrets", [])}
            load(source, table, plugin.config_class, secret_vars)
    return problems


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"wattkeeper_inventory_problems": inventory_problems}
