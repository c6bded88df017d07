"""Filters for the wattkeeper roles.

``wattkeeper_task_flux`` builds the downsampling Flux with the agent package's own
generator (agents/wattkeeper/downsample.py) and each source's declared roll-ups, so the
aggregate of every field is written down in exactly one place: next to the source.
``wattkeeper_toml`` renders an agent's config file from inventory dictionaries.
"""

from __future__ import annotations

import importlib
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

AGENTS_DIR = Path(__file__).resolve().parents[3] / "agents"
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _import(module: str) -> Any:
    if str(AGENTS_DIR) not in sys.path:
        sys.path.insert(0, str(AGENTS_DIR))
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise AnsibleFilterError(
            f"cannot import {module} from {AGENTS_DIR}: {exc}. Run Ansible from the project's "
            "virtualenv (.venv/bin/ansible-playbook), which has the agent's dependencies."
        ) from exc


def rollups(source: str) -> list[Any]:
    """The source's declared roll-ups (PLUGIN.rollups)."""
    plugin = getattr(_import(f"wattkeeper.sources.{source}"), "PLUGIN", None)
    found = list(getattr(plugin, "rollups", None) or [])
    if not found:
        raise AnsibleFilterError(f"source {source!r} declares no roll-ups (PLUGIN.rollups)")
    return found


def task_flux(
    source: str, every: str, src_bucket: str, dst_bucket: str, org: str, name: str | None = None,
    offset: str = "30s",
) -> str:
    """Flux of the task that aggregates ``source`` from src_bucket into dst_bucket."""
    downsample = _import("wattkeeper.downsample")
    task_name = name or f"wattkeeper_{source}_{every}"
    try:
        return str(
            downsample.task_flux(
                task_name, rollups(source), src_bucket=src_bucket, dst_bucket=dst_bucket,
                org=org, every=every, offset=offset,
            )
        )
    except ValueError as exc:
        raise AnsibleFilterError(f"{source} {every}: {exc}") from exc


def landed_sources(candidates: list[str]) -> list[str]:
    """Those of ``candidates`` whose module exists in the agent package being deployed."""
    base = AGENTS_DIR / "wattkeeper" / "sources"
    return [c for c in candidates if (base / f"{c}.py").exists() or (base / c / "__init__.py").exists()]


def bucket_plan(
    sources: list[str], tiers: list[dict[str, Any]], pattern: str = "{source}_{tier}", cascade: bool = False
) -> list[dict[str, Any]]:
    """One entry per source and tier: bucket name, retention, and for rolled-up tiers the
    task's window and the bucket it reads (raw, or the previous tier when cascading)."""
    if not tiers or tiers[0].get("every"):
        raise AnsibleFilterError("influxdb_tiers: the first tier must be the raw one (no every)")
    plan = []
    for source in sources:
        # A source without declared roll-ups gets its buckets but no tasks (yet).
        rolled = bool(getattr(getattr(_import(f"wattkeeper.sources.{source}"), "PLUGIN", None), "rollups", None))
        previous = None
        raw = pattern.format(source=source, tier=tiers[0]["name"])
        for tier in tiers:
            bucket = pattern.format(source=source, tier=tier["name"])
            entry = {
                "source": source,
                "tier": tier["name"],
                "bucket": bucket,
                "retention": str(tier.get("retention", 0)),
                "every": tier.get("every") if rolled else None,
                "src": (previous if cascade else raw) if tier.get("every") and rolled else None,
                "task": f"wattkeeper_{source}_{tier['name']}" if tier.get("every") and rolled else None,
            }
            plan.append(entry)
            previous = bucket
    return plan


def agent_pairs(
    sources: list[str], groups: dict[str, list[str]], pattern: str = "{source}_{tier}", raw: str = "raw"
) -> list[dict[str, str]]:
    """Every (collector host, source) pair: one agent, one token, and its raw bucket."""
    return [
        {"host": h, "source": s, "bucket": pattern.format(source=s, tier=raw)}
        for s in sources
        for h in groups.get(s, [])
    ]


def permissions(buckets: list[str], *actions: str) -> list[dict[str, str]]:
    """influxdb_token permissions: each action on each bucket."""
    return [{"action": a, "bucket": b} for b in buckets for a in actions]


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


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "wattkeeper_task_flux": task_flux,
            "wattkeeper_landed_sources": landed_sources,
            "wattkeeper_toml": to_toml,
            "wattkeeper_bucket_plan": bucket_plan,
            "wattkeeper_agent_pairs": agent_pairs,
            "wattkeeper_permissions": permissions,
        }
