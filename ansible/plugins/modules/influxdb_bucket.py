#!/usr/bin/python
"""Create, update (retention, description) or delete an InfluxDB 2 bucket."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: influxdb_bucket
short_description: Manage an InfluxDB 2 bucket and its retention
description:
  - Creates the bucket if missing, updates its retention and description in place when
    they differ, or deletes it with I(state=absent). Supports check mode and diff.
  - Only a bucket whose description starts with I(managed_prefix) is ever changed or
    deleted. A bucket of the same name that someone else made is left untouched, also in
    check mode; I(state=present) fails naming it, I(state=absent) skips it with a warning.
  - When InfluxDB refuses the bucket (a retention under 1 hour, or over the 30 days
    of InfluxDB Cloud's free plan), the error names I(retention_origin).
options:
  name:
    description: Bucket name.
    type: str
    required: true
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
  state:
    description: Whether the bucket should exist.
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
"""

RETURN = r"""
bucket:
  description: The bucket as the API returns it (absent when deleted or in check mode).
  type: dict
  returned: when present
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


def main() -> None:
    spec = dict(INFLUX_COMMON_ARGS)
    spec["token"] = {"type": "str", "required": True, "no_log": True}
    spec.update(
        name={"type": "str", "required": True},
        retention={"type": "str", "default": "0"},
        description={"type": "str", "default": MANAGED_PREFIX},
        managed_prefix={"type": "str", "default": MANAGED_PREFIX},
        retention_origin={"type": "str", "default": ""},
        state={"type": "str", "choices": ["present", "absent"], "default": "present"},
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    prefix = p["managed_prefix"]
    if p["state"] == "present" and not p["description"].startswith(prefix):
        module.fail_json(msg=f"description must start with {prefix!r} (managed_prefix)")
    try:
        seconds = retention_seconds(p["retention"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
        return
    api = Influx(module)
    try:
        current = api.find_bucket(p["name"])
        if current is not None and not is_managed(current, prefix):
            if p["state"] == "present":
                module.fail_json(
                    msg=not_ours("bucket", current, prefix) + ": rename that bucket, or give "
                    "wattkeeper's buckets other names (wattkeeper_bucket_pattern)"
                )
            module.warn(not_ours("bucket", current, prefix))
            module.exit_json(changed=False, skipped_foreign=True)
        if p["state"] == "absent":
            if current is None:
                module.exit_json(changed=False)
            if not module.check_mode:
                api.call("DELETE", f"/api/v2/buckets/{current['id']}")
            module.exit_json(changed=True, diff={"before": {"name": p["name"]}, "after": {}})
        want = {"name": p["name"], "retention_seconds": seconds, "description": p["description"]}
        if current is None:
            if module.check_mode:
                module.exit_json(changed=True, diff={"before": {}, "after": want})
            body = {
                "name": p["name"],
                "orgID": api.org_id(),
                "description": p["description"],
                "retentionRules": [{"type": "expire", "everySeconds": seconds}] if seconds else [],
            }
            try:
                created = api.call("POST", "/api/v2/buckets", body)
            except InfluxError as exc:
                raise _refused(
                    exc, p["name"], p["retention"], seconds, p["retention_origin"]
                ) from None
            module.exit_json(changed=True, bucket=created, diff={"before": {}, "after": want})
        rules = current.get("retentionRules") or []
        have_seconds = int(rules[0].get("everySeconds", 0)) if rules else 0
        have = {
            "name": p["name"],
            "retention_seconds": have_seconds,
            "description": current.get("description", "") or "",
        }
        if have == want:
            module.exit_json(changed=False, bucket=current)
        if module.check_mode:
            module.exit_json(changed=True, bucket=current, diff={"before": have, "after": want})
        body = {
            "description": p["description"],
            "retentionRules": [{"type": "expire", "everySeconds": seconds}] if seconds else [],
        }
        try:
            updated = api.call("PATCH", f"/api/v2/buckets/{current['id']}", body)
        except InfluxError as exc:
            raise _refused(exc, p["name"], p["retention"], seconds, p["retention_origin"]) from None
        module.exit_json(changed=True, bucket=updated, diff={"before": have, "after": want})
    except InfluxError as exc:
        fail(module, exc)


if __name__ == "__main__":
    main()
