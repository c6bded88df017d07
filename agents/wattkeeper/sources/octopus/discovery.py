"""Find the Home Mini's device id from the account number.

account -> electricityAgreements(active: true) -> meterPoint -> meters ->
smartImportElectricityMeter { deviceId } (and smartExportElectricityMeter where present).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wattkeeper.source import SourceFatal

ACCOUNT_QUERY = """query Account($accountNumber: String!) {
  account(accountNumber: $accountNumber) {
    electricityAgreements(active: true) {
      meterPoint {
        mpan
        meters(includeInactive: false) {
          serialNumber
          smartImportElectricityMeter { deviceId }
          smartExportElectricityMeter { deviceId }
        }
      }
    }
  }
}"""


@dataclass
class Devices:
    imports: list[str] = field(default_factory=list)
    exports: list[str] = field(default_factory=list)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def parse_account(data: Any) -> Devices:
    """Collect device ids from an ``account`` answer, tolerating nulls along the tree."""
    found = Devices()
    account = data.get("account") if isinstance(data, dict) else None
    if not isinstance(account, dict):
        return found
    for agreement in _list(account.get("electricityAgreements")):
        mp = agreement.get("meterPoint") if isinstance(agreement, dict) else None
        if not isinstance(mp, dict):
            continue
        for meter in _list(mp.get("meters")):
            if not isinstance(meter, dict):
                continue
            for key, bucket in (
                ("smartImportElectricityMeter", found.imports),
                ("smartExportElectricityMeter", found.exports),
            ):
                dev = meter.get(key)
                device_id = dev.get("deviceId") if isinstance(dev, dict) else None
                if isinstance(device_id, str) and device_id and device_id not in bucket:
                    bucket.append(device_id)
    return found


def choose_device(devices: Devices, account: str) -> str:
    """The one import device, or a message saying what to check."""
    if not devices.imports:
        raise SourceFatal(
            f"account {account} has no smart import electricity meter with a device id: "
            "check the account number, that the Home Mini is paired in the Octopus app, "
            "and that the account has an active electricity agreement",
            key="octopus.account_number",
        )
    if len(devices.imports) > 1:
        raise SourceFatal(
            f"account {account} has several smart meters ({', '.join(devices.imports)}); "
            "choose one with octopus.device_id",
            key="octopus.device_id",
        )
    return devices.imports[0]
