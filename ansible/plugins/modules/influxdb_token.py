#!/usr/bin/python
"""Create a scoped InfluxDB 2 token once, identified by its description."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: influxdb_token
short_description: Manage a scoped InfluxDB 2 token (authorization), created once
description:
  - A token is identified by its I(description). If none exists, it is created with the
    given permissions and its value is returned in C(token) (the only moment InfluxDB 2.9
    and later, which store tokens hashed, ever show it). The caller must store it.
  - If one exists with the same permissions, nothing changes (changed=false) and no token is
    returned unless I(have_token=false) and the server still shows it (InfluxDB 2.7).
  - If the permissions differ, or the caller lost the value (I(have_token=false)) on a server
    that hashes tokens, the token is deleted and created again (changed=true, new C(token));
    the new value must then be delivered to the agent.
  - Supports check mode and diff (the permissions).
  - The description must start with C(wattkeeper), so a token someone else made (any
    other description) is never matched, changed or deleted.
options:
  description:
    description: Unique description, e.g. C(wattkeeper collector1 octopus).
    type: str
    required: true
  permissions:
    description:
      - "List of C({action: read|write, bucket: NAME}) for one bucket, or
        C({action: read|write, type: buckets|tasks|orgs|...}) for a whole resource type."
    type: list
    elements: dict
    default: []
  have_token:
    description: Whether the caller already holds the token value (e.g. in its secrets dir).
    type: bool
    default: true
  state:
    description: Whether the token should exist.
    type: str
    choices: [present, absent]
    default: present
  token:
    description: Operator token used to manage authorizations.
    type: str
    required: true
extends_documentation_fragment:
  - wattkeeper_influx
author: wattkeeper contributors
"""

EXAMPLES = r"""
- name: Token for the octopus agent on collector1
  influxdb_token:
    description: wattkeeper collector1 octopus
    permissions:
      - {action: write, bucket: octopus_raw}
    have_token: "{{ stored.stat.exists }}"
    token: "{{ influxdb_operator_token }}"
  register: tok
  no_log: true
"""

RETURN = r"""
token:
  description: The token value, only when created (or still readable and not held).
  type: str
  returned: sometimes
id:
  description: Authorization ID.
  type: str
  returned: when present and not in check mode
created:
  description: True if a new token value was created by this call.
  type: bool
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.wattkeeper_influx import (  # noqa: E402
    INFLUX_COMMON_ARGS,
    MANAGED_PREFIX,
    Influx,
    InfluxError,
    fail,
)


def _readable(value: object) -> bool:
    """2.7 returns the token; 2.9 with hashing returns an empty or redacted string."""
    return isinstance(value, str) and len(value) >= 20 and "*" not in value


def _wanted(api: Influx, perms: list[dict]) -> list[dict]:
    """API permission objects for the requested permissions, resolving bucket IDs."""
    out = []
    for i, perm in enumerate(perms):
        action = perm.get("action")
        if action not in ("read", "write"):
            raise InfluxError(f"permissions[{i}].action must be read or write, not {action!r}")
        resource = {"orgID": api.org_id()}
        if perm.get("bucket"):
            bucket = api.find_bucket(perm["bucket"])
            if bucket is None:
                raise InfluxError(f"permissions[{i}]: bucket {perm['bucket']!r} does not exist")
            resource.update(type="buckets", id=bucket["id"], name=bucket["name"])
        elif perm.get("type"):
            resource["type"] = perm["type"]
        else:
            raise InfluxError(f"permissions[{i}] needs bucket or type")
        out.append({"action": action, "resource": resource})
    return out


def _key(perms: list[dict]) -> list[tuple]:
    return sorted(
        (p["action"], p["resource"].get("type"), p["resource"].get("id") or "") for p in perms
    )


def _show(perms: list[dict]) -> list[str]:
    return sorted(
        f"{p['action']} {p['resource'].get('type')}"
        + (
            f"/{p['resource'].get('name') or p['resource'].get('id')}"
            if p["resource"].get("id")
            else ""
        )
        for p in perms
    )


def main() -> None:
    spec = dict(INFLUX_COMMON_ARGS)
    spec["token"] = {"type": "str", "required": True, "no_log": True}
    spec.update(
        description={"type": "str", "required": True},
        permissions={"type": "list", "elements": "dict", "default": []},
        have_token={"type": "bool", "default": True},
        state={"type": "str", "choices": ["present", "absent"], "default": "present"},
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    if not p["description"].startswith(MANAGED_PREFIX):
        module.fail_json(msg=f"description must start with {MANAGED_PREFIX!r}")
    api = Influx(module)
    try:
        existing = [a for a in api.authorizations() if a.get("description") == p["description"]]
        if p["state"] == "absent":
            if not existing:
                module.exit_json(changed=False, created=False)
            if not module.check_mode:
                for auth in existing:
                    api.call("DELETE", f"/api/v2/authorizations/{auth['id']}")
            module.exit_json(changed=True, created=False)
        if not p["permissions"]:
            module.fail_json(msg="permissions: at least one is required")
        want = _wanted(api, p["permissions"])
        current = existing[0] if existing else None
        reason = None
        if current is None:
            reason = "missing"
        elif _key(current.get("permissions", [])) != _key(want):
            reason = "permissions changed"
        elif len(existing) > 1:
            reason = "duplicate tokens with this description"
        elif not p["have_token"] and not _readable(current.get("token")):
            reason = "token value lost on the controller and not readable from InfluxDB"
        before = _show(current.get("permissions", [])) if current else []
        diff = {"before": "\n".join(before) + "\n", "after": "\n".join(_show(want)) + "\n"}
        if reason is None:
            result = {"changed": False, "created": False, "id": current["id"]}
            if not p["have_token"]:
                result["token"] = current["token"]
            module.exit_json(**result)
        if module.check_mode:
            module.exit_json(changed=True, created=True, reason=reason, diff=diff)
        for auth in existing:
            api.call("DELETE", f"/api/v2/authorizations/{auth['id']}")
        body = {"orgID": api.org_id(), "description": p["description"], "permissions": want}
        created = api.call("POST", "/api/v2/authorizations", body)
        module.exit_json(
            changed=True,
            created=True,
            reason=reason,
            id=created["id"],
            token=created["token"],
            diff=diff,
        )
    except InfluxError as exc:
        fail(module, exc)


if __name__ == "__main__":
    main()
