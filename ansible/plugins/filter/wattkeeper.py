"""Filters for the wattkeeper roles: the plan (what should exist on InfluxDB and which
sources a host deploys) and the check of the server's buckets against it.

``wattkeeper_task_flux`` builds the downsampling Flux with the agent package's own
generator (agents/wattkeeper/downsample.py) and each source's declared roll-ups, so the
aggregate of every field is written down in exactly one place: next to the source.
The other jobs have files of their own: wattkeeper_validate.py (the inventory, by the
agent's own code), wattkeeper_verify.py (parsing what verify.yml reads), wattkeeper_render.py
(agent config files, the broker's password file) and wattkeeper_tiers.py.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

AGENTS_DIR = Path(__file__).resolve().parents[3] / "agents"


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
    source: str,
    every: str,
    src_bucket: str,
    dst_bucket: str,
    org: str,
    name: str | None = None,
    offset: str = "30s",
) -> str:
    """Flux of the task that aggregates ``source`` from src_bucket (raw) into dst_bucket."""
    downsample = _import("wattkeeper.downsample")
    task_name = name or f"wattkeeper_{source}_{every}"
    try:
        return str(
            downsample.task_flux(
                task_name,
                rollups(source),
                src_bucket=src_bucket,
                dst_bucket=dst_bucket,
                org=org,
                every=every,
                offset=offset,
            )
        )
    except ValueError as exc:
        raise AnsibleFilterError(f"{source} {every}: {exc}") from exc


def _in_package(kind: str, name: str) -> bool:
    base = AGENTS_DIR / "wattkeeper" / kind
    return (base / f"{name}.py").exists() or (base / name / "__init__.py").exists()


def deployable_sources(candidates: list[str], simulate: bool = False) -> list[str]:
    """Those of ``candidates`` whose module exists in the agent package being deployed
    (and, when simulating, whose simulator exists too)."""
    return [
        c
        for c in candidates
        if _in_package("sources", c) and (not simulate or _in_package("simulate", c))
    ]


def bucket_plan(
    sources: list[str],
    tiers: list[dict[str, Any]],
    pattern: str = "{source}_{tier}",
    cascade: bool = False,
) -> list[dict[str, Any]]:
    """One entry per source and tier: bucket name, retention, and for rolled-up tiers the
    task's window, the bucket it reads (raw, or the previous tier when cascading) and the
    rest of what its Flux needs (wattkeeper.downsample.tier_tasks decides it all)."""
    if not tiers or tiers[0].get("every"):
        raise AnsibleFilterError("influxdb_tiers: the first tier must be the raw one (no every)")
    downsample = _import("wattkeeper.downsample")
    plan = []
    for source in sources:
        # A source without declared roll-ups gets its buckets but no tasks (yet).
        declared = list(
            getattr(
                getattr(_import(f"wattkeeper.sources.{source}"), "PLUGIN", None), "rollups", None
            )
            or []
        )
        try:
            tasks = (
                {
                    t.dst_bucket: t
                    for t in downsample.tier_tasks(
                        source, declared, tiers, org="", cascade=cascade, pattern=pattern
                    )
                }
                if declared
                else {}
            )
        except ValueError as exc:
            raise AnsibleFilterError(f"influxdb_tiers: {exc}") from exc
        for tier in tiers:
            bucket = pattern.format(source=source, tier=tier["name"])
            task = tasks.get(bucket)
            plan.append(
                {
                    "source": source,
                    "tier": tier["name"],
                    "bucket": bucket,
                    "retention": str(tier.get("retention", 0)),
                    "every": task.every if task else None,
                    "src": task.src_bucket if task else None,
                    "task": f"wattkeeper_{source}_{tier['name']}" if task else None,
                    "raw": task.raw_bucket if task else None,
                    "chunk": task.chunk if task else None,
                    "first": task.first if task else None,
                    "announce": task.announce if task else False,
                    "lag": task.lag if task else None,
                    "budget": task.budget if task else None,
                }
            )
    return plan


def agent_pairs(
    sources: list[str],
    groups: dict[str, list[str]],
    pattern: str = "{source}_{tier}",
    raw: str = "raw",
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


def _module_utils() -> Any:
    """The modules' shared helpers (retention parsing), loaded from their file."""
    name = "wattkeeper_influx_for_filters"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "module_utils" / "wattkeeper_influx.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


def managed(objects: list[dict[str, Any]], ours: bool = True) -> list[dict[str, Any]]:
    """The buckets or tasks wattkeeper made (their description says so), or with
    ``ours=False`` the others: those are never changed or deleted."""
    is_managed = _module_utils().is_managed
    return [o for o in objects if bool(is_managed(o)) == ours]


def _human_seconds(seconds: int) -> str:
    if not seconds:
        return "forever"
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def verify_bucket(
    bucket: str, existing: list[dict[str, Any]], plan: list[dict[str, Any]], rerun: str
) -> dict[str, Any]:
    """verify.yml: one planned bucket against the server's bucket list."""
    want = _module_utils().retention_seconds(
        next(p["retention"] for p in plan if p["bucket"] == bucket)
    )
    found = next((b for b in existing if b.get("name") == bucket), None)
    if found is None:
        return {"what": f"bucket {bucket}", "ok": False, "detail": "missing", "next": rerun}
    rules = found.get("retentionRules") or []
    have = int(rules[0].get("everySeconds", 0)) if rules else 0
    ok = have == want
    detail = f"retention {_human_seconds(have)}" + (
        "" if ok else f", inventory says {_human_seconds(want)}"
    )
    return {"what": f"bucket {bucket}", "ok": ok, "detail": detail, "next": rerun}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "wattkeeper_task_flux": task_flux,
            "wattkeeper_deployable_sources": deployable_sources,
            # The former name, kept for a release (roles/influxdb/defaults/main.yml).
            "wattkeeper_landed_sources": deployable_sources,
            "wattkeeper_bucket_plan": bucket_plan,
            "wattkeeper_agent_pairs": agent_pairs,
            "wattkeeper_permissions": permissions,
            "wattkeeper_verify_bucket": verify_bucket,
            "wattkeeper_managed": managed,
        }
