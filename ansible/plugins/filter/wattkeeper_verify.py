"""Filters that parse what verify.yml and delete-buckets.yml read: ``systemctl show``,
``wattkeeper buffer stats``, InfluxDB's CSV answers, and the summary lines of a host."""

from __future__ import annotations

import csv
import io
from typing import Any


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


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "wattkeeper_flux_rows": flux_rows,
            "wattkeeper_buffer_stats": buffer_stats,
            "wattkeeper_systemd_show": systemd_show,
            "wattkeeper_verify_rows": verify_rows,
            "wattkeeper_verify_task": verify_task,
            "wattkeeper_bucket_summary": bucket_summary,
        }
