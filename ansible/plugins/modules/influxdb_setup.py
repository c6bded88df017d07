#!/usr/bin/python
"""Onboard a fresh InfluxDB 2 server (POST /api/v2/setup), exactly once."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: influxdb_setup
short_description: Onboard an InfluxDB 2 server once (initial user, org, bucket, operator token)
description:
  - Calls C(GET /api/v2/setup); if the server is not yet onboarded, calls C(POST /api/v2/setup).
    A server that answers anything but C(allowed=true) (onboarded before, or InfluxDB
    Cloud, where the organization exists already) is left alone.
  - The operator token is returned only when the server was onboarded by this call, so the
    caller must store it (the wattkeeper C(influxdb) role writes it to a controller-side
    file with mode 0600). An already onboarded server is left alone (changed=false).
  - Check mode reports whether onboarding would happen.
options:
  org:
    description: Initial organization name.
    type: str
    default: home
  username:
    description: Initial administrator user.
    type: str
    default: admin
  password:
    description: Its password (at least 8 characters); needed only if the server offers onboarding.
    type: str
    default: ""
  bucket:
    description: Initial bucket InfluxDB insists on creating.
    type: str
    default: wattkeeper_setup
  retention_seconds:
    description: Retention of that initial bucket, 0 = forever.
    type: int
    default: 0
  token:
    description: Operator token to set instead of a generated one (optional).
    type: str
  onboard:
    description:
      - false only reports in C(allowed) whether the server offers onboarding (failing if
        it does and I(password) is missing), and returns no secret, so the task needs no
        C(no_log) and its errors are shown.
    type: bool
    default: true
extends_documentation_fragment:
  - wattkeeper_influx
author: wattkeeper contributors
"""

EXAMPLES = r"""
- name: Onboard InfluxDB
  influxdb_setup:
    username: admin
    password: "{{ vault_influxdb_admin_password }}"
    org: home
  register: setup
  no_log: true
"""

RETURN = r"""
allowed:
  description: Whether the server offered onboarding (it was never set up).
  type: bool
  returned: always
onboarded:
  description: True if this call onboarded the server.
  type: bool
  returned: always
token:
  description: The operator token (only when onboarded by this call).
  type: str
  returned: when onboarded
org_id:
  description: ID of the created organization.
  type: str
  returned: when onboarded
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.wattkeeper_influx import Influx, InfluxError, fail  # noqa: E402


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "default": "http://127.0.0.1:8086"},
            "org": {"type": "str", "default": "home"},
            "username": {"type": "str", "default": "admin"},
            "password": {"type": "str", "default": "", "no_log": True},
            "bucket": {"type": "str", "default": "wattkeeper_setup"},
            "retention_seconds": {"type": "int", "default": 0},
            "token": {"type": "str", "no_log": True},
            "validate_certs": {"type": "bool", "default": True},
            "ca_path": {"type": "path"},
            "timeout": {"type": "int", "default": 30},
            "onboard": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    p = module.params
    api = Influx(module, token="")
    try:
        # InfluxDB Cloud and servers onboarded elsewhere do not offer onboarding: any
        # answer but {"allowed": true} means there is nothing to do here.
        allowed = api.call("GET", "/api/v2/setup", expect=(200, 401, 403, 404, 405))
        if not (isinstance(allowed, dict) and allowed.get("allowed") is True):
            module.exit_json(changed=False, allowed=False, onboarded=False)
        if 0 < len(p["password"]) < 8:
            module.fail_json(msg="password: InfluxDB requires at least 8 characters")
        if not p["password"]:
            module.fail_json(
                msg=f"{api.base} is a new InfluxDB that was never set up: set "
                "influxdb_admin_password (at least 8 characters, Vault) to onboard it, or "
                "onboard it yourself and set influxdb_operator_token"
            )
        if not p["onboard"]:
            module.exit_json(changed=False, allowed=True, onboarded=False)
        if module.check_mode:
            module.exit_json(changed=True, allowed=True, onboarded=True)
        body = {
            "username": p["username"],
            "password": p["password"],
            "org": p["org"],
            "bucket": p["bucket"],
            "retentionPeriodSeconds": p["retention_seconds"],
        }
        if p["token"]:
            body["token"] = p["token"]
        res = api.call("POST", "/api/v2/setup", body)
    except InfluxError as exc:
        fail(module, exc)
        return
    module.exit_json(
        changed=True,
        allowed=True,
        onboarded=True,
        token=res["auth"]["token"],
        org_id=res["org"]["id"],
    )


if __name__ == "__main__":
    main()
