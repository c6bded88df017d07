#!/usr/bin/python
"""Create a scoped InfluxDB 2 token once, identified by its description."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: influxdb_token
short_description: Manage scoped InfluxDB 2 tokens (authorizations), created once
description:
  - A token is identified by its I(description). If none exists, it is created with the
    given permissions and its value is returned in C(token) (the only moment InfluxDB 2.9
    and later, which store tokens hashed, ever show it). The caller must store it.
  - If one exists with the same permissions, nothing changes (changed=false) and no token is
    returned unless I(have_token=false) and the server still shows it (InfluxDB 2.7).
  - If the permissions differ, or the caller lost the value (I(have_token=false)) on a server
    that hashes tokens, the token is deleted and created again (changed=true, new C(token));
    the new value must then be delivered to the agent.
  - One token (I(description)), or a whole list (I(tokens)) in one call, compared with one
    read of the authorizations (and one of the buckets, for bucket permissions).
  - Supports check mode and diff (the permissions).
  - The description must start with C(wattkeeper), so a token someone else made (any
    other description) is never matched, changed or deleted.
options:
  description:
    description:
      - Unique description, e.g. C(wattkeeper collector1 octopus) (one token; or give
        I(tokens)).
    type: str
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
  tokens:
    description:
      - Several tokens in one call, instead of I(description), I(permissions) and
        I(have_token); I(state) applies to each.
    type: list
    elements: dict
    suboptions:
      description:
        description: As I(description).
        type: str
        required: true
      permissions:
        description: As I(permissions).
        type: list
        elements: dict
        default: []
      have_token:
        description: As I(have_token).
        type: bool
        default: true
  state:
    description: Whether the token(s) should exist.
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

- name: Tokens of two agents in one call (results in C(tokens), in the same order)
  influxdb_token:
    tokens:
      - {description: wattkeeper agent octopus, permissions: [{action: write, bucket: octopus_raw}]}
      - {description: wattkeeper agent pulse, permissions: [{action: write, bucket: pulse_raw}]}
    token: "{{ influxdb_operator_token }}"
  register: toks
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
tokens:
  description:
    - With I(tokens), one result per token in the same order, each with C(description),
      C(changed), C(created), and C(id), C(token) and C(reason) as above.
  type: list
  elements: dict
  returned: when I(tokens) is given
"""

from collections.abc import Callable  # noqa: E402
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
    listed,
)

Bucket = Callable[[str], "dict[str, Any] | None"]


def _readable(value: object) -> bool:
    """2.7 returns the token; 2.9 with hashing returns an empty or redacted string."""
    return isinstance(value, str) and len(value) >= 20 and "*" not in value


def _wanted(api: Influx, perms: list[dict[str, Any]], bucket: Bucket) -> list[dict[str, Any]]:
    """API permission objects for the requested permissions, resolving bucket IDs."""
    out = []
    for i, perm in enumerate(perms):
        action = perm.get("action")
        if action not in ("read", "write"):
            raise InfluxError(f"permissions[{i}].action must be read or write, not {action!r}")
        resource = {"orgID": api.org_id()}
        if perm.get("bucket"):
            found = bucket(perm["bucket"])
            if found is None:
                raise InfluxError(f"permissions[{i}]: bucket {perm['bucket']!r} does not exist")
            resource.update(type="buckets", id=found["id"], name=found["name"])
        elif perm.get("type"):
            resource["type"] = perm["type"]
        else:
            raise InfluxError(f"permissions[{i}] needs bucket or type")
        out.append({"action": action, "resource": resource})
    return out


def _key(perms: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted(
        (p["action"], p["resource"].get("type"), p["resource"].get("id") or "") for p in perms
    )


def _show(perms: list[dict[str, Any]]) -> list[str]:
    return sorted(
        f"{p['action']} {p['resource'].get('type')}"
        + (
            f"/{p['resource'].get('name') or p['resource'].get('id')}"
            if p["resource"].get("id")
            else ""
        )
        for p in perms
    )


def _apply(
    module: Any,
    api: Influx,
    item: dict[str, Any],
    existing: list[dict[str, Any]],
    bucket: Bucket,
) -> dict[str, Any]:
    """Bring one token to the wanted state; its result (raises InfluxError, safe to show)."""
    if module.params["state"] == "absent":
        if not existing:
            return {"changed": False, "created": False}
        if not module.check_mode:
            for auth in existing:
                api.call("DELETE", f"/api/v2/authorizations/{auth['id']}")
        return {"changed": True, "created": False}
    want = _wanted(api, item["permissions"], bucket)
    current = existing[0] if existing else None
    reason = None
    if current is None:
        reason = "missing"
    elif _key(current.get("permissions", [])) != _key(want):
        reason = "permissions changed"
    elif len(existing) > 1:
        reason = "duplicate tokens with this description"
    elif not item["have_token"] and not _readable(current.get("token")):
        reason = "token value lost on the controller and not readable from InfluxDB"
    before = _show(current.get("permissions", [])) if current else []
    diff = {"before": "\n".join(before) + "\n", "after": "\n".join(_show(want)) + "\n"}
    if reason is None:
        assert current is not None
        result = {"changed": False, "created": False, "id": current["id"]}
        if not item["have_token"]:
            result["token"] = current["token"]
        return result
    if module.check_mode:
        return {"changed": True, "created": True, "reason": reason, "diff": diff}
    for auth in existing:
        api.call("DELETE", f"/api/v2/authorizations/{auth['id']}")
    body = {"orgID": api.org_id(), "description": item["description"], "permissions": want}
    created = api.call("POST", "/api/v2/authorizations", body)
    return {
        "changed": True,
        "created": True,
        "reason": reason,
        "id": created["id"],
        "token": created["token"],
        "diff": diff,
    }


def _items(module: Any) -> list[dict[str, Any]]:
    """The tokens asked for, checked before any request (fails the module naming the bad one)."""
    p = module.params
    items = listed(module, "tokens", "description", ("description", "permissions", "have_token"))
    for item in items:
        where = f"token {item['description']!r}: " if p["tokens"] is not None else ""
        if not item["description"].startswith(MANAGED_PREFIX):
            module.fail_json(msg=f"{where}description must start with {MANAGED_PREFIX!r}")
        if p["state"] == "present" and not item["permissions"]:
            module.fail_json(msg=f"{where}permissions: at least one is required")
    return list(items)


def main() -> None:
    spec = dict(INFLUX_COMMON_ARGS)
    spec["token"] = {"type": "str", "required": True, "no_log": True}
    spec.update(
        description={"type": "str"},
        permissions={"type": "list", "elements": "dict", "default": []},
        have_token={"type": "bool", "default": True},
        tokens={
            "type": "list",
            "elements": "dict",
            "options": {
                "description": {"type": "str", "required": True},
                "permissions": {"type": "list", "elements": "dict", "default": []},
                "have_token": {"type": "bool", "default": True},
            },
        },
        state={"type": "str", "choices": ["present", "absent"], "default": "present"},
    )
    module = AnsibleModule(
        argument_spec=spec,
        supports_check_mode=True,
        mutually_exclusive=[("description", "tokens")],
        required_one_of=[("description", "tokens")],
    )
    items = _items(module)
    api = Influx(module)
    try:
        auths = api.authorizations()
        if module.params["tokens"] is None:
            item = items[0]
            existing = [a for a in auths if a.get("description") == item["description"]]
            module.exit_json(**_apply(module, api, item, existing, api.find_bucket))
        buckets: dict[str, dict[str, Any]] | None = None

        def bucket(name: str) -> dict[str, Any] | None:
            nonlocal buckets
            if buckets is None:
                buckets = by_name(api.all_buckets())
            return buckets.get(name)

        def matching(item: dict[str, Any]) -> list[dict[str, Any]]:
            return [a for a in auths if a.get("description") == item["description"]]

        apply_each(
            module,
            "tokens",
            "description",
            items,
            lambda item: _apply(module, api, item, matching(item), bucket),
            lambda item, exc: InfluxError(f"token {item['description']!r}: {exc}", exc.status),
        )
    except InfluxError as exc:
        fail(module, exc)


if __name__ == "__main__":
    main()
