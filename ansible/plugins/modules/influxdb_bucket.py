#!/usr/bin/python
"""Create, update (retention, description) or delete an InfluxDB 2 bucket."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: influxdb_bucket
short_description: Manage InfluxDB 2 buckets and their retention
description:
  - Creates a bucket if missing, updates its retention and description in place when
    they differ, or deletes it with I(state=absent). Supports check mode and diff.
  - One bucket (I(name)), or a whole list (I(buckets)) in one call. A list is compared
    with one read of the organization's buckets and only what differs is written, so a
    run with nothing to change costs one request, not one round trip per bucket.
  - Only a bucket whose description starts with I(managed_prefix) is ever changed or
    deleted. A bucket of the same name that someone else made is left untouched, also in
    check mode; I(state=present) fails naming it, I(state=absent) skips it with a warning.
    In a list every other bucket is still brought to its state, and the call fails at the
    end with one line per bucket that could not be.
  - When InfluxDB refuses the bucket (a retention under 1 hour, or over the 30 days
    of InfluxDB Cloud's free plan), the error names I(retention_origin).
options:
  name:
    description: Bucket name (one bucket; or give I(buckets)).
    type: str
  retention:
    description:
      - Retention as seconds (int) or a duration such as C(30d), C(90d), C(1h);
        C(0), C(inf) or C(forever) keep data forever.
    type: str
    default: "0"
  description:
    description: Free text shown in the InfluxDB UI; must start with I(managed_prefix).
    type: str
    default: "wattkeeper"
  managed_prefix:
    description:
      - How the description of a bucket this module may change or delete starts. An empty
        string manages any bucket of the name.
    type: str
    default: wattkeeper
  retention_origin:
    description:
      - Where I(retention) comes from (e.g. the inventory variable), named in the error
        when InfluxDB refuses the bucket.
    type: str
    default: ""
  buckets:
    description:
      - Several buckets in one call, instead of I(name), I(retention), I(description) and
        I(retention_origin); I(state) applies to each.
    type: list
    elements: dict
    suboptions:
      name:
        description: Bucket name.
        type: str
        required: true
      retention:
        description: As I(retention).
        type: str
        default: "0"
      description:
        description: As I(description).
        type: str
        default: "wattkeeper"
      retention_origin:
        description: As I(retention_origin).
        type: str
        default: ""
  state:
    description: Whether the bucket(s) should exist.
    type: str
    choices: [present, absent]
    default: present
  token:
    description: Operator (all-access) token.
    type: str
    required: true
extends_documentation_fragment:
  - wattkeeper_influx
author: wattkeeper contributors
"""

EXAMPLES = r"""
- name: Raw bucket, 30 days
  influxdb_bucket:
    name: octopus_raw
    retention: 30d
    token: "{{ influxdb_operator_token }}"

- name: Every bucket of the plan in one call
  influxdb_bucket:
    buckets:
      - {name: octopus_raw, retention: 30d, description: wattkeeper octopus, tier raw}
      - {name: octopus_1h, retention: 0, description: wattkeeper octopus, tier 1h}
    token: "{{ influxdb_operator_token }}"
"""

RETURN = r"""
bucket:
  description: The bucket as the API returns it (one bucket; absent when deleted or in check mode).
  type: dict
  returned: when present and I(name) is given
buckets:
  description:
    - With I(buckets), one result per bucket in the same order, C(name), C(changed) and
      C(bucket) (as the API returns it, when present and not in check mode).
  type: list
  elements: dict
  returned: when I(buckets) is given
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
    retention_seconds,
)


def _refused(exc: InfluxError, name: str, text: str, seconds: int, origin: str) -> InfluxError:
    """InfluxDB would not take the bucket: say which setting to change, and why it may be."""
    if exc.status in (-1, 401) or not origin:
        return exc
    if 0 < seconds < 3600:
        why = " (InfluxDB keeps data at least 1h)"
    elif seconds == 0 or seconds > 30 * 86400:
        why = " (InfluxDB Cloud's free plan keeps data at most 30 days)"
    else:
        why = ""
    shown = text if seconds else "forever"
    return InfluxError(
        f"{origin}: InfluxDB refused bucket {name!r} with retention {shown}: {exc}. "
        f"Change {origin}{why}",
        exc.status,
    )


def _rules(seconds: int) -> list[dict[str, Any]]:
    return [{"type": "expire", "everySeconds": seconds}] if seconds else []


def _apply(
    module: Any, api: Influx, want: dict[str, Any], current: dict[str, Any] | None
) -> dict[str, Any]:
    """Bring one bucket to the wanted state; its result (raises InfluxError, safe to show)."""
    p = module.params
    name, prefix = want["name"], p["managed_prefix"]
    if current is not None and not is_managed(current, prefix):
        if p["state"] == "present":
            raise InfluxError(
                not_ours("bucket", current, prefix) + ": rename that bucket, or give "
                "wattkeeper's buckets other names (wattkeeper_bucket_pattern)"
            )
        module.warn(not_ours("bucket", current, prefix))
        return {"name": name, "changed": False, "skipped_foreign": True}
    if p["state"] == "absent":
        if current is None:
            return {"name": name, "changed": False}
        if not module.check_mode:
            api.call("DELETE", f"/api/v2/buckets/{current['id']}")
        return {"name": name, "changed": True, "diff": {"before": {"name": name}, "after": {}}}
    seconds = want["seconds"]
    after = {"name": name, "retention_seconds": seconds, "description": want["description"]}
    body = {"description": want["description"], "retentionRules": _rules(seconds)}
    if current is None:
        if module.check_mode:
            return {"name": name, "changed": True, "diff": {"before": {}, "after": after}}
        body.update(name=name, orgID=api.org_id())
        try:
            created = api.call("POST", "/api/v2/buckets", body)
        except InfluxError as exc:
            raise _refused(
                exc, name, want["retention"], seconds, want["retention_origin"]
            ) from None
        return {
            "name": name,
            "changed": True,
            "bucket": created,
            "diff": {"before": {}, "after": after},
        }
    rules = current.get("retentionRules") or []
    before = {
        "name": name,
        "retention_seconds": int(rules[0].get("everySeconds", 0)) if rules else 0,
        "description": current.get("description", "") or "",
    }
    if before == after:
        return {"name": name, "changed": False, "bucket": current}
    diff = {"before": before, "after": after}
    if module.check_mode:
        return {"name": name, "changed": True, "bucket": current, "diff": diff}
    try:
        updated = api.call("PATCH", f"/api/v2/buckets/{current['id']}", body)
    except InfluxError as exc:
        raise _refused(exc, name, want["retention"], seconds, want["retention_origin"]) from None
    return {"name": name, "changed": True, "bucket": updated, "diff": diff}


def _wanted(module: Any) -> list[dict[str, Any]]:
    """The buckets asked for, checked before any request (fails the module naming the bad one)."""
    p = module.params
    items = listed(
        module, "buckets", "name", ("name", "retention", "description", "retention_origin")
    )
    out = []
    for item in items:
        where = f"bucket {item['name']!r}: " if p["buckets"] is not None else ""
        if p["state"] == "present" and not item["description"].startswith(p["managed_prefix"]):
            module.fail_json(
                msg=f"{where}description must start with {p['managed_prefix']!r} (managed_prefix)"
            )
        try:
            out.append({**item, "seconds": retention_seconds(item["retention"])})
        except ValueError as exc:
            module.fail_json(msg=f"{where}{exc}")
    return out


def main() -> None:
    spec = dict(INFLUX_COMMON_ARGS)
    spec["token"] = {"type": "str", "required": True, "no_log": True}
    spec.update(
        name={"type": "str"},
        retention={"type": "str", "default": "0"},
        description={"type": "str", "default": MANAGED_PREFIX},
        managed_prefix={"type": "str", "default": MANAGED_PREFIX},
        retention_origin={"type": "str", "default": ""},
        buckets={
            "type": "list",
            "elements": "dict",
            "options": {
                "name": {"type": "str", "required": True},
                "retention": {"type": "str", "default": "0"},
                "description": {"type": "str", "default": MANAGED_PREFIX},
                "retention_origin": {"type": "str", "default": ""},
            },
        },
        state={"type": "str", "choices": ["present", "absent"], "default": "present"},
    )
    module = AnsibleModule(
        argument_spec=spec,
        supports_check_mode=True,
        mutually_exclusive=[("name", "buckets")],
        required_one_of=[("name", "buckets")],
    )
    wanted = _wanted(module)
    api = Influx(module)
    try:
        if module.params["buckets"] is None:
            result = _apply(module, api, wanted[0], api.find_bucket(wanted[0]["name"]))
            result.pop("name")
            module.exit_json(**result)
        current = by_name(api.all_buckets()) if wanted else {}
        apply_each(
            module,
            "buckets",
            "name",
            wanted,
            lambda want: _apply(module, api, want, current.get(want["name"])),
        )
    except InfluxError as exc:
        fail(module, exc)


if __name__ == "__main__":
    main()
