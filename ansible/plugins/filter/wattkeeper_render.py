"""Filters that render files for the hosts: an agent's TOML config from inventory
dictionaries, the list of an agent's systemd units, and the broker's password file."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from typing import Any

from ansible.errors import AnsibleFilterError

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else json.dumps(k)


def _value(v: Any, where: str) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise AnsibleFilterError(f"{where}: {v} cannot be written to TOML")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x, f"{where}[{i}]") for i, x in enumerate(v)) + "]"
    if isinstance(v, dict):
        inner = ", ".join(f"{_key(str(k))} = {_value(x, f'{where}.{k}')}" for k, x in v.items())
        return "{ " + inner + " }" if inner else "{}"
    if v is None:
        raise AnsibleFilterError(f"{where}: null has no TOML form; leave the key out instead")
    return json.dumps(str(v))


def to_toml(sections: dict[str, Any]) -> str:
    """``{section: {key: value}}`` as TOML; nested dicts become [section.sub] tables.

    Keys whose value is None are left out, so optional inventory keys can default to none.
    """
    out: list[str] = []

    def table(name: str, body: dict[str, Any]) -> None:
        plain = {k: v for k, v in body.items() if v is not None and not isinstance(v, dict)}
        nested = {k: v for k, v in body.items() if isinstance(v, dict)}
        out.append(f"[{name}]")
        out.extend(f"{_key(str(k))} = {_value(v, f'{name}.{k}')}" for k, v in plain.items())
        out.append("")
        for k, v in nested.items():
            table(f"{name}.{_key(str(k))}", v)

    for section, body in sections.items():
        if not isinstance(body, dict):
            raise AnsibleFilterError(f"{section}: a config section must be a dictionary")
        table(_key(str(section)), body)
    return "\n".join(out)


def mosquitto_passwd(users: list[dict[str, Any]]) -> str:
    """A mosquitto password file for ``[{name, password}]``.

    Each line is ``NAME:$7$101$SALT$HASH``: PBKDF2-HMAC-SHA512, 101 iterations, a 12-byte
    salt, base64, exactly as Debian's mosquitto_passwd 2.0 writes it. The salt is derived
    from the name and the password, so an unchanged inventory renders an unchanged file: the
    role stays idempotent without keeping plain passwords on the host.
    """
    lines = []
    for i, user in enumerate(users):
        name, password = str(user.get("name", "")), str(user.get("password", ""))
        if not name or ":" in name or not password:
            raise AnsibleFilterError(
                f"mosquitto_users[{i}]: needs a name (without ':') and a password"
            )
        salt = hashlib.sha256(f"wattkeeper-mosquitto:{name}:{password}".encode()).digest()[:12]
        digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101, 64)
        b64 = base64.b64encode
        lines.append(f"{name}:$7$101${b64(salt).decode()}${b64(digest).decode()}")
    return "\n".join(lines) + "\n"


def unit_files(
    sources: list[str], defs: dict[str, Any], simulate: bool = False
) -> list[dict[str, Any]]:
    """The systemd units of these sources: ``{source, src, path, tag, start}`` each.

    Every agent has a service; a oneshot agent (``kind: oneshot``) also its timer; one that
    declares ``report`` a report service and timer; with ``simulate``, a source that declares
    how it is simulated also the simulator's service. The tag says what restarts when the
    file changes (``agent:SOURCE`` or ``simulator:SOURCE``); ``start`` whether the unit is
    enabled and started itself (every timer, and a service no timer of its own starts).
    """
    units: list[dict[str, Any]] = []
    for source in sources:
        d = defs[source]
        timed = d.get("kind") == "oneshot"
        names = [("agent.service", "", not timed)]
        if timed:
            names.append(("agent.timer", "", True))
        if "report" in d:
            names += [("report.service", "-report", False), ("report.timer", "-report", True)]
        for src, suffix, start in names:
            units.append(
                {
                    "source": source,
                    "src": f"{src}.j2",
                    "path": f"/etc/systemd/system/wattkeeper-{source}{suffix}.{src.split('.')[1]}",
                    "tag": f"agent:{source}",
                    "start": start,
                }
            )
        if simulate and "simulate" in d:
            units.append(
                {
                    "source": source,
                    "src": "simulate.service.j2",
                    "path": f"/etc/systemd/system/wattkeeper-simulate-{source}.service",
                    "tag": f"simulator:{source}",
                    "start": True,
                }
            )
    return units


def secret_files(sources: list[str], defs: dict[str, Any]) -> list[dict[str, Any]]:
    """The secret files these sources declare: ``{source, var, path, rotates, tag}`` each."""
    return [
        {
            "source": source,
            "var": secret["var"],
            "path": secret["path"],
            "rotates": bool(secret.get("rotates", False)),
            "tag": f"agent:{source}",
        }
        for source in sources
        for secret in defs[source].get("secrets") or []
    ]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "wattkeeper_toml": to_toml,
            "wattkeeper_unit_files": unit_files,
            "wattkeeper_secret_files": secret_files,
            "wattkeeper_mosquitto_passwd": mosquitto_passwd,
        }
