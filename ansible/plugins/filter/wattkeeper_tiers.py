"""Filters for the downsampling tiers (wattkeeper.downsample): each tier task's Flux,
and verify.yml's check of whether a tier is complete.

Kept apart from wattkeeper.py (the plan) and wattkeeper_verify.py, whose helpers it loads.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError


def _sibling(file: str) -> Any:
    """A filter file next to this one, loaded by path (wattkeeper.py's name is the agent
    package's)."""
    name = f"wattkeeper_filters_{file.removesuffix('.py')}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(file))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


base = _sibling("wattkeeper.py")
verify = _sibling("wattkeeper_verify.py")


def _about(seconds: int) -> str:
    """A duration as a person says it: 21m, 3h, 2d (rounded)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{round(seconds / size)}{unit}"
    return f"{seconds}s"


def tier_flux(entry: dict[str, Any], org: str, offset: str = "30s") -> str:
    """Flux of the tier task of a ``wattkeeper_bucket_plan`` entry (its source, buckets,
    chunk, where a new tier starts, whether a coarser tier reads it)."""
    try:
        return str(_tier_task(entry, org, offset).flux())
    except (KeyError, ValueError) as exc:
        raise AnsibleFilterError(f"{entry.get('task')}: {exc}") from exc


def _tier_task(entry: dict[str, Any], org: str = "", offset: str = "30s") -> Any:
    return base._import("wattkeeper.downsample").TierTask(
        name=entry["task"],
        rollups=tuple(base.rollups(entry["source"])),
        src_bucket=entry["src"],
        dst_bucket=entry["bucket"],
        org=org,
        every=entry["every"],
        offset=offset,
        raw_bucket=entry["raw"],
        chunk=entry["chunk"],
        first=entry["first"],
        announce=bool(entry["announce"]),
        lag=entry.get("lag") or "0s",
        **({"budget": int(entry["budget"])} if entry.get("budget") else {}),
    )


def tier_check_flux(entry: dict[str, Any], span: str = "1d") -> str:
    """verify.yml: the query telling whether a plan entry's tier is complete."""
    try:
        return str(base._import("wattkeeper.downsample").check_query(_tier_task(entry), span))
    except (KeyError, ValueError) as exc:
        raise AnsibleFilterError(f"{entry.get('task')}: {exc}") from exc


def _when(text: str) -> datetime | None:
    if not text:
        return None
    text = re.sub(r"\.(\d{6})\d*Z$", r".\1Z", text)
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def verify_tier(
    result: dict[str, Any],
    offset: str,
    tasks: list[dict[str, Any]] | None = None,
    rerun: str = "run site.yml again",
) -> dict[str, Any]:
    """verify.yml: is a tier complete? Its newest checkpoint is recent, it has caught up
    with its windows (no late windows pending) and no window of the last day differs
    from raw's aggregates. With the next step if not. ``result`` is the check query's
    answer, its ``item`` the plan entry; ``tasks`` the server's task list (for the ID)."""
    downsample = base._import("wattkeeper.downsample")
    entry = result["item"]
    task = next((t for t in tasks or [] if t.get("name") == entry["task"]), {})
    task_id = task.get("id", "")
    what = f"tier {entry['bucket']}"
    runs = f"the task's runs and logs: GET /api/v2/tasks/{task_id or 'ID'}/runs (operator token)"
    if tasks is not None and not task:
        return {"what": what, "ok": False, "detail": f"no task {entry['task']}", "next": rerun}
    rows = verify.flux_rows(result.get("content", "")) if result.get("status") == 200 else []
    if not rows:
        content = str(result.get("content", ""))[:160]
        detail = f"check query failed: HTTP {result.get('status')} {content}"
        return {"what": what, "ok": False, "detail": detail, "next": runs}
    row = rows[0]
    every = downsample.duration_seconds(entry["every"])
    now = _when(row["now"])
    checkpoint, stop = _when(row["checkpoint"]), _when(row["stop"])
    assert now is not None
    slack = downsample.duration_seconds(offset) + 120  # a run starts late, takes a while
    if checkpoint is None or stop is None:
        created = _when(str(task.get("createdAt", "")))
        if created is not None and (now - created).total_seconds() < every + slack:
            return {
                "what": what,
                "ok": True,
                "detail": f"new: its first run is due within {entry['every']}",
                "next": "",
            }
        return {
            "what": what,
            "ok": False,
            "detail": "no checkpoint: the task has not completed a run yet",
            "next": f"wait for its first run (every {entry['every']}); if it stays so, {runs}",
        }
    age = (now - checkpoint).total_seconds()
    due = datetime.fromtimestamp(now.timestamp() // every * every, UTC)
    # Between two runs the newest window of the tier is one window behind.
    behind = max(0.0, (due - stop).total_seconds() - every)
    late = bool(row["late_from"])
    windows, differing = int(row["windows"]), int(row["differing"])
    span = f"{windows} windows since {row['from'][:16]}Z"
    if age > every + slack:
        detail = f"newest checkpoint {_about(int(age))} old (every {entry['every']})"
        return {
            "what": what,
            "ok": False,
            "detail": detail,
            "next": f"the task is not running: {runs}",
        }
    if behind or late:
        chunk = downsample.duration_seconds(entry["chunk"])
        left = behind + (
            ((_when(row["late_to"]) or now) - (_when(row["late_from"]) or now)).total_seconds()
            if late
            else 0
        )
        runs_left = int(-(-left // chunk))
        detail = f"catching up: {_about(int(left))} of windows left"
        detail += f" ({runs_left} run{'s' if runs_left != 1 else ''} at {entry['chunk']} each)"
        return {
            "what": what,
            "ok": False,
            "detail": detail,
            "next": f"wait about {_about(int(runs_left * every))} (one run every "
            f"{entry['every']}); if it does not move, {runs}",
        }
    if differing:
        return {
            "what": what,
            "ok": False,
            "detail": f"{differing} of {span} differ from raw",
            "next": "points reached raw without a late marker (an older agent, or written by "
            "hand): re-aggregate them with ansible-playbook -i INVENTORY "
            "ansible/playbooks/redo-tiers.yml -e span=1d",
        }
    detail = f"complete: {span} equal raw"
    if row.get("waiting_from"):
        detail += f" (late points since {row['waiting_from'][:16]}Z wait for its next run)"
    return {"what": what, "ok": True, "detail": detail, "next": ""}


def redo_marker(span: str, now: float | None = None) -> str:
    """A late marker covering the last ``span`` (redo-tiers.yml): line protocol without a
    timestamp, as the agents write it (the server stamps it on arrival)."""
    import time

    seconds = base._module_utils().retention_seconds(span)
    if not seconds:
        raise AnsibleFilterError(f"span: {span!r} is not a duration such as 1d or 6h")
    stop = int(now if now is not None else time.time()) + 1
    return (
        f"wattkeeper_late,host=redo-tiers start={(stop - seconds) * 10**9}i,"
        f"stop={stop * 10**9}i,points=0i\n"
    )


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "wattkeeper_tier_flux": tier_flux,
            "wattkeeper_tier_check_flux": tier_check_flux,
            "wattkeeper_verify_tier": verify_tier,
            "wattkeeper_redo_marker": redo_marker,
        }
