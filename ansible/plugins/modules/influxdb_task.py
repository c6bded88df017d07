#!/usr/bin/python
"""Create an InfluxDB 2 task, or update its Flux in place when the definition changed."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: influxdb_task
short_description: Manage InfluxDB 2 Flux tasks (created once, updated in place)
description:
  - Finds the task by name in the organization. A missing task is created; a task whose
    Flux, status or description differs is updated in place (C(PATCH), same task ID, run
    history kept); I(state=absent) deletes it. Supports check mode and diff (the Flux).
  - One task (I(name)), or a whole list (I(tasks)) in one call, compared with one read of
    the organization's tasks; only what differs is written.
  - "The task name must match C(option task = {name: ...}) in the Flux."
  - Only a task whose description starts with I(managed_prefix) is ever changed or
    deleted. A task of the same name that someone else made is left untouched, also in
    check mode; I(state=present) fails naming it, I(state=absent) skips it with a warning.
    In a list every other task is still brought to its state, and the call fails at the
    end with one line per task that could not be.
options:
  name:
    description: Task name (one task; or give I(tasks)).
    type: str
  flux:
    description: The complete Flux script including C(option task).
    type: str
  status:
    description: Whether the task is scheduled.
    type: str
    choices: [active, inactive]
    default: active
  description:
    description: Free text; must start with I(managed_prefix).
    type: str
    default: "wattkeeper"
  managed_prefix:
    description:
      - How the description of a task this module may change or delete starts. An empty
        string manages any task of the name.
    type: str
    default: wattkeeper
  tasks:
    description:
      - Several tasks in one call, instead of I(name), I(flux), I(status) and
        I(description); I(state) applies to each (I(flux) is needed for C(present)).
    type: list
    elements: dict
    suboptions:
      name:
        description: Task name.
        type: str
        required: true
      flux:
        description: As I(flux).
        type: str
      status:
        description: As I(status).
        type: str
        choices: [active, inactive]
        default: active
      description:
        description: As I(description).
        type: str
        default: "wattkeeper"
  state:
    description: Whether the task(s) should exist.
    type: str
    choices: [present, absent]
    default: present
  token:
    description: Operator token.
    type: str
    required: true
extends_documentation_fragment:
  - wattkeeper_influx
author: wattkeeper contributors
"""

EXAMPLES = r"""
- name: Downsample octopus to 1m
  influxdb_task:
    name: wattkeeper_octopus_1m
    flux: "{{ 'octopus' | wattkeeper_task_flux('1m', 'octopus_raw', 'octopus_1m', 'home') }}"
    token: "{{ influxdb_operator_token }}"

- name: Delete two tasks in one call
  influxdb_task:
    tasks: [{name: wattkeeper_octopus_1m}, {name: wattkeeper_octopus_1h}]
    state: absent
    token: "{{ influxdb_operator_token }}"
"""

RETURN = r"""
task:
  description: ID, name, status and Flux of the task.
  type: dict
  returned: when present, not in check mode, and I(name) is given
tasks:
  description:
    - With I(tasks), one result per task in the same order, C(name), C(changed) and
      C(task) (ID, name, status, when present and not in check mode).
  type: list
  elements: dict
  returned: when I(tasks) is given
"""

from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.wattkeeper_influx import (  # noqa: E402
    INFLUX_COMMON_ARGS,
    MANAGED_PREFIX,
    Influx,
    InfluxError,
    apply_each,
    by_name,
    fail,
    is_managed,
    listed,
    not_ours,
)


def _summary(t: dict[str, Any]) -> dict[str, Any]:
    return {k: t.get(k) for k in ("id", "name", "status", "every", "offset")}


def _apply(
    module: Any, api: Influx, want: dict[str, Any], current: dict[str, Any] | None
) -> dict[str, Any]:
    """Bring one task to the wanted state; its result (raises InfluxError, safe to show)."""
    p = module.params
    name, prefix = want["name"], p["managed_prefix"]
    if current is not None and not is_managed(current, prefix):
        if p["state"] == "present":
            raise InfluxError(not_ours("task", current, prefix) + ": rename that task")
        module.warn(not_ours("task", current, prefix))
        return {"name": name, "changed": False, "skipped_foreign": True}
    if p["state"] == "absent":
        if current is None:
            return {"name": name, "changed": False}
        if not module.check_mode:
            api.call("DELETE", f"/api/v2/tasks/{current['id']}")
        diff = {"before": current.get("flux", ""), "after": ""}
        return {"name": name, "changed": True, "diff": diff}
    flux = want["flux"].strip() + "\n"
    if current is None:
        diff = {"before": "", "after": flux}
        if module.check_mode:
            return {"name": name, "changed": True, "diff": diff}
        body = {
            "orgID": api.org_id(),
            "flux": flux,
            "status": want["status"],
            "description": want["description"],
        }
        created = api.call("POST", "/api/v2/tasks", body)
        return {"name": name, "changed": True, "task": _summary(created), "diff": diff}
    have_flux = (current.get("flux") or "").strip() + "\n"
    same = (
        have_flux == flux
        and current.get("status") == want["status"]
        and (current.get("description") or "") == want["description"]
    )
    if same:
        return {"name": name, "changed": False, "task": _summary(current)}
    diff = {
        "before": f"# status: {current.get('status')}\n{have_flux}",
        "after": f"# status: {want['status']}\n{flux}",
    }
    if module.check_mode:
        return {"name": name, "changed": True, "task": _summary(current), "diff": diff}
    body = {"flux": flux, "status": want["status"], "description": want["description"]}
    updated = api.call("PATCH", f"/api/v2/tasks/{current['id']}", body)
    return {"name": name, "changed": True, "task": _summary(updated), "diff": diff}


def _wanted(module: Any) -> list[dict[str, Any]]:
    """The tasks asked for, checked before any request (fails the module naming the bad one)."""
    p = module.params
    items = listed(module, "tasks", "name", ("name", "flux", "status", "description"))
    for item in items:
        where = f"task {item['name']!r}: " if p["tasks"] is not None else ""
        if p["state"] == "absent":
            continue
        if not item["description"].startswith(p["managed_prefix"]):
            module.fail_json(
                msg=f"{where}description must start with {p['managed_prefix']!r} (managed_prefix)"
            )
        if not item["flux"]:
            module.fail_json(msg=f"{where}state is present but flux is missing")
    return list(items)


def main() -> None:
    spec = dict(INFLUX_COMMON_ARGS)
    spec["token"] = {"type": "str", "required": True, "no_log": True}
    statuses = ["active", "inactive"]
    spec.update(
        name={"type": "str"},
        flux={"type": "str"},
        status={"type": "str", "choices": statuses, "default": "active"},
        description={"type": "str", "default": MANAGED_PREFIX},
        managed_prefix={"type": "str", "default": MANAGED_PREFIX},
        tasks={
            "type": "list",
            "elements": "dict",
            "options": {
                "name": {"type": "str", "required": True},
                "flux": {"type": "str"},
                "status": {"type": "str", "choices": statuses, "default": "active"},
                "description": {"type": "str", "default": MANAGED_PREFIX},
            },
        },
        state={"type": "str", "choices": ["present", "absent"], "default": "present"},
    )
    module = AnsibleModule(
        argument_spec=spec,
        supports_check_mode=True,
        mutually_exclusive=[("name", "tasks")],
        required_one_of=[("name", "tasks")],
    )
    wanted = _wanted(module)
    api = Influx(module)
    try:
        if module.params["tasks"] is None:
            result = _apply(module, api, wanted[0], api.find_task(wanted[0]["name"]))
            result.pop("name")
            module.exit_json(**result)
        current = by_name(api.all_tasks()) if wanted else {}
        apply_each(
            module,
            "tasks",
            "name",
            wanted,
            lambda want: _apply(module, api, want, current.get(want["name"])),
        )
    except InfluxError as exc:
        fail(module, exc)


if __name__ == "__main__":
    main()
