"""Filter for the grafana role: a committed dashboard with this inventory's defaults.

The dashboards in dashboards/*.json carry defaults for anyone importing them by hand; a
provisioned copy gets the inventory's time zone (days start at its midnight, and the
dashboard displays it), heat pump meter, raw retention and the provisioned datasource.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from ansible.errors import AnsibleFilterError

_DURATION = re.compile(r"^(\d+(ns|us|ms|s|m|h|d|w|mo|y))+$")
_ZONE = re.compile(r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$")
FOREVER = "36500d"


def _set(variable: dict[str, Any], value: str) -> None:
    variable["query"] = value
    if "current" in variable:
        variable["current"] = {"text": value, "value": value}


def grafana_dashboard(
    dashboard: dict[str, Any],
    *,
    timezone: str,
    raw_retention: str,
    heatpump_meter: str = "",
    datasource_uid: str = "wattkeeper-influxdb",
    datasource_name: str = "wattkeeper InfluxDB",
) -> dict[str, Any]:
    """``dashboard`` with its variables' defaults (and display zone) set."""
    if not _ZONE.match(timezone):
        raise AnsibleFilterError(f"grafana_timezone: {timezone!r} is not an IANA zone name")
    retention = FOREVER if str(raw_retention).strip() in ("0", "") else str(raw_retention)
    if not _DURATION.match(retention):
        raise AnsibleFilterError(
            f"grafana_raw_retention: {raw_retention!r} is not a duration like 30d (or 0)"
        )
    if not re.match(r"^[A-Za-z0-9_.\-]*$", heatpump_meter):
        raise AnsibleFilterError(
            f"grafana_heatpump_meter: {heatpump_meter!r} is not a pulse channel name"
        )
    out = copy.deepcopy(dashboard)
    out["timezone"] = timezone
    values = {"timezone": timezone, "raw_retention": retention, "heatpump_meter": heatpump_meter}
    for variable in out.get("templating", {}).get("list", []):
        name = variable.get("name")
        if name in values:
            _set(variable, values[name])
        elif name == "datasource":
            variable["current"] = {"text": datasource_name, "value": datasource_uid}
    return out


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"wattkeeper_grafana_dashboard": grafana_dashboard}
