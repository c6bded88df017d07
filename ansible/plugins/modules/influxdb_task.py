#!/usr/bin/python
"""Create an InfluxDB 2 task, or update its Flux in place when the definition changed."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: influxdb_task
short_description: Manage an InfluxDB 2 Flux task (created once, updated in place)
description:
  - Finds the task by name in the organization. A missing task is created; a task whose
    Flux, status or description differs is updated in place (C(PATCH), same task ID, run
    history kept); I(state=absent) deletes it. Supports check mode and diff (the Flux).
  - "The task name must match C(option task = {name: ...}) in the Flux."
  - Only a task whose description starts with I(managed_prefix) is ever changed or
    deleted. A task of the same name that someone else made is left untouched, also in
    check mode; I(state=present) fails naming it, I(state=absent) skips it with a warning.
options:
  name:
    description: Task name.
    type: str
    required: true
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
  state:
    description: Whether the task should exist.
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
"""

RETURN = r"""
task:
  description: ID, name, status and Flux of the task.
  type: dict
  returned: when present and not in check mode
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.wattkeeper_influx import (  # noqa: E402
    INFLUX_COMMON_ARGS,
    MANAGED_PREFIX,
    Influx,
    InfluxError,
    fail,
    is_managed,
    not_ours,
)


def _summary(t: dict) -> dict:
    return {k: t.get(k) for k in ("id", "name", "status", "every", "offset")}


def main() -> None:
    spec = dict(INFLUX_COMMON_ARGS)
    spec["token"] = {"type": "str", "required": True, "no_log": True}
    spec.update(
        name={"type": "str", "required": True},
        flux={"type": "str"},
        status={"type": "str", "choices": ["active", "inactive"], "default": "active"},
        description={"type": "str", "default": MANAGED_PREFIX},
        managed_prefix={"type": "str", "default": MANAGED_PREFIX},
        state={"type": "str", "choices": ["present", "absent"], "default": "present"},
    )
    module = AnsibleModule(
        argument_spec=spec,
        supports_check_mode=True,
        required_if=[("state", "present", ("flux",))],
    )
    p = module.params
    prefix = p["managed_prefix"]
    if p["state"] == "present" and not p["description"].startswith(prefix):
        module.fail_json(msg=f"description must start with {prefix!r} (managed_prefix)")
    api = Influx(module)
    try:
        current = api.find_task(p["name"])
        if current is not None and not is_managed(current, prefix):
            if p["state"] == "present":
                module.fail_json(msg=not_ours("task", current, prefix) + ": rename that task")
            module.warn(not_ours("task", current, prefix))
            module.exit_json(changed=False, skipped_foreign=True)
        if p["state"] == "absent":
            if current is None:
                module.exit_json(changed=False)
            if not module.check_mode:
                api.call("DELETE", f"/api/v2/tasks/{current['id']}")
            module.exit_json(changed=True, diff={"before": current.get("flux", ""), "after": ""})
        flux = p["flux"].strip() + "\n"
        if current is None:
            if module.check_mode:
                module.exit_json(changed=True, diff={"before": "", "after": flux})
            body = {
                "orgID": api.org_id(),
                "flux": flux,
                "status": p["status"],
                "description": p["description"],
            }
            created = api.call("POST", "/api/v2/tasks", body)
            module.exit_json(
                changed=True, task=_summary(created), diff={"before": "", "after": flux}
            )
        have_flux = (current.get("flux") or "").strip() + "\n"
        same = (
            have_flux == flux
            and current.get("status") == p["status"]
            and (current.get("description") or "") == p["description"]
        )
        if same:
            module.exit_json(changed=False, task=_summary(current))
        before = f"# status: {current.get('status')}\n{have_flux}"
        after = f"# status: {p['status']}\n{flux}"
        if module.check_mode:
            module.exit_json(
                changed=True, task=_summary(current), diff={"before": before, "after": after}
            )
        body = {"flux": flux, "status": p["status"], "description": p["description"]}
        updated = api.call("PATCH", f"/api/v2/tasks/{current['id']}", body)
        module.exit_json(
            changed=True, task=_summary(updated), diff={"before": before, "after": after}
        )
    except InfluxError as exc:
        fail(module, exc)


if __name__ == "__main__":
    main()
