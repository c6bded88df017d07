"""Filters for the wattkeeper roles.

``wattkeeper_task_flux`` builds the downsampling Flux with the agent package's own
generator (agents/wattkeeper/downsample.py) and each source's declared roll-ups, so the
aggregate of every field is written down in exactly one place: next to the source.
``wattkeeper_toml`` renders an agent's config file from inventory dictionaries.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib
import importlib.util
import io
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


def verify_task(task: str, existing: list[dict[str, Any]], rerun: str) -> dict[str, Any]:
    """verify.yml: one planned downsampling task: present, active, last run not failed."""
    found = next((t for t in existing if t.get("name") == task), None)
    if found is None:
        return {"what": f"task {task}", "ok": False, "detail": "missing", "next": rerun}
    status = found.get("status", "?")
    last = found.get("lastRunStatus") or "none yet"
    ok = status == "active" and last != "failed"
    detail = f"{status}, every {found.get('every', '?')}, last run: {last}"
    if last == "failed" and found.get("lastRunError"):
        detail += f" ({str(found['lastRunError'])[:160]})"
    fix = (
        rerun
        if status != "active"
        else f"its runs and logs: GET /api/v2/tasks/{found.get('id')}/runs (operator token)"
    )
    return {"what": f"task {task}", "ok": ok, "detail": detail, "next": fix}


def verify_rows(hostvars: Any) -> list[dict[str, Any]]:
    """verify.yml summary lines of one host, from the checks its roles recorded."""
    host = str(hostvars.get("inventory_hostname", "?"))
    checks = list(hostvars.get("_influxdb_verify") or []) + list(
        hostvars.get("_wattkeeper_verify") or []
    )
    if not checks:
        checks = [
            {
                "what": "host",
                "ok": False,
                "detail": "no result (unreachable, or a task failed above)",
                "next": f"ansible -i INVENTORY {host} -m ansible.builtin.ping",
            }
        ]
    return [
        {
            "ok": bool(c["ok"]),
            "line": f"{'✓' if c['ok'] else '✗'} {host:<20} {c['what']:<34} {c['detail']}",
            "next_line": f"✗ {host} {c['what']}: {c['next']}",
        }
        for c in checks
    ]


def bucket_summary(result: dict[str, Any]) -> str:
    """delete-buckets.yml: one line per bucket from its content query's answer."""
    rows = {r["what"]: r["value"] for r in flux_rows(result.get("content", ""))}
    oldest, newest = rows.pop("oldest", None), rows.pop("newest", None)
    if not rows:
        return f"{result.get('item')}: empty"
    held = ", ".join(f"{n} {m} values" for m, n in sorted(rows.items()))
    return f"{result.get('item')}: {held}, from {oldest} to {newest}"


def systemd_show(text: str) -> dict[str, dict[str, str]]:
    """``systemctl show UNIT... -p Id -p ...`` output, by unit Id."""
    units: dict[str, dict[str, str]] = {}
    for block in str(text).split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if props.get("Id"):
            units[props["Id"]] = props
    return units


def flux_rows(text: str) -> list[dict[str, str]]:
    """The rows of an InfluxDB /api/v2/query CSV answer (annotations off), every table."""
    rows: list[dict[str, str]] = []
    for block in str(text).replace("\r\n", "\n").split("\n\n"):
        if block.strip():
            for row in csv.DictReader(io.StringIO(block)):
                rows.append({k: v for k, v in row.items() if k not in ("", "result", "table")})
    return rows


def buffer_stats(text: str) -> dict[str, Any]:
    """``wattkeeper buffer stats`` output as numbers: pending, dead_lettered, oldest_age (s
    or None) and the counters."""
    out: dict[str, Any] = {}
    for line in str(text).splitlines():
        key, _, rest = line.partition(" ")
        value = rest.strip().split(" ")[0] if rest.strip() else ""
        if key == "dead-lettered":
            key = "dead_lettered"
        elif key == "oldest" and rest.strip().startswith("age"):
            key, value = "oldest_age", rest.strip()[3:].strip()
            out[key] = None if value in ("", "-") else float(value.rstrip("s"))
            continue
        if value.lstrip("-").isdigit():
            out[key] = int(value)
    return out


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


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "wattkeeper_task_flux": task_flux,
            "wattkeeper_deployable_sources": deployable_sources,
            # The former name, kept for a release (roles/influxdb/defaults/main.yml).
            "wattkeeper_landed_sources": deployable_sources,
            "wattkeeper_toml": to_toml,
            "wattkeeper_bucket_plan": bucket_plan,
            "wattkeeper_agent_pairs": agent_pairs,
            "wattkeeper_permissions": permissions,
            "wattkeeper_flux_rows": flux_rows,
            "wattkeeper_buffer_stats": buffer_stats,
            "wattkeeper_systemd_show": systemd_show,
            "wattkeeper_verify_rows": verify_rows,
            "wattkeeper_bucket_summary": bucket_summary,
            "wattkeeper_verify_bucket": verify_bucket,
            "wattkeeper_verify_task": verify_task,
            "wattkeeper_managed": managed,
            "wattkeeper_mosquitto_passwd": mosquitto_passwd,
        }
