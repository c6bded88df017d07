"""The connection options every wattkeeper InfluxDB module takes, documented once."""

from __future__ import annotations


class ModuleDocFragment:
    """Options that match ``INFLUX_COMMON_ARGS`` in module_utils/wattkeeper_influx.py."""

    DOCUMENTATION = r"""
options:
  url:
    description: Base URL of the InfluxDB HTTP API.
    type: str
    default: http://127.0.0.1:8086
  org:
    description: Organization name.
    type: str
    default: home
  validate_certs:
    description: Verify TLS certificates.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file of the CA certificate(s) to trust for https, instead of the system's CAs.
        A refused certificate fails with one line naming the URL and the reason.
    type: path
  timeout:
    description: HTTP timeout in seconds.
    type: int
    default: 30
"""
