"""The Kraken side of the simulator: tokens, accounts, telemetry, rate limit and faults.

``Kraken.execute`` takes one POST body and returns the HTTP answer as Kraken gives it:
a syntax or validation problem is HTTP 400 with ``errors`` only (graphene's way); a
problem met while resolving a field is HTTP 200 with that field ``null`` in ``data`` and
``errors: [{message, locations, path, extensions: {errorType, errorCode,
errorDescription, errorClass}}]``. Error codes follow the issue's list of Kraken's
documented codes; the messages are ours.

Time is the server's own (``Clock``: the wall clock plus an offset tests may move), and
it is what the ``Date`` header, token expiry, the rate-limit window and "now" for
telemetry all use, so moving it forward two hours is, for the API, two hours passing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import graphql as gql
from . import household
from .household import GROUPING_SECONDS, LONDON

DEFAULT_API_KEY = "sk_live_simulated0000000000000000"

HTTP_FAULTS = ("500", "502", "503", "504", "429", "hang", "nonjson", "truncated", "nodata")
# What a device's Home Mini does (``--mini``, POST /_mini), besides working ("ok"):
# - "no-ten-seconds": TEN_SECONDS comes back empty, coarser groupings as usual. Since late
#   2024 some Minis no longer serve TEN_SECONDS (ryanw-mobile/OctoMeter#379, as the issue
#   reports it; BottlecapDave's docs give about one reading a minute for the Mini). That
#   the answer is an empty list rather than an error is the reading: thin evidence.
# - "frozen": the API answers every call, but no reading after the freeze arrives
#   (BottlecapDave/HomeAssistant-OctopusEnergy#1733, "the home mini is known to freeze";
#   PR #1849 handles "empty ... or stale telemetry"). Whether Kraken then sends no rows or
#   rows of zeros its maintainer did not know; we send none. "ok" again ends the freeze:
#   what fell in it stays missing, as for an offline Mini.
# - "unpaired": the meter has no Home Mini: telemetry answers KT-GB-4056.
MINI_STATES = ("ok", "no-ten-seconds", "frozen", "unpaired")
DATA_FAULTS = ("missing", "badvalue", "nullvalue", "nulllist")
# A fault may also be any Kraken error code (KT-CT-1124, KT-GB-4042, ...): the next
# matching call answers that error.
FAULT_OPS = ("telemetry", "account", "token", "login", "refresh", "any")

MESSAGES = {
    "KT-CT-1111": ("Unauthorized.", "AUTHORIZATION"),
    "KT-CT-1112": ("'Authorization' header not provided.", "AUTHORIZATION"),
    "KT-CT-1120": ("Invalid token.", "AUTHORIZATION"),
    "KT-CT-1124": ("Signature of the JWT has expired.", "AUTHORIZATION"),
    "KT-CT-1134": ("The refresh token has expired.", "AUTHORIZATION"),
    "KT-CT-1135": ("Invalid refresh token.", "AUTHORIZATION"),
    "KT-CT-1139": ("Authentication failed.", "AUTHORIZATION"),
    "KT-GB-4040": (
        "The start, end and grouping arguments must be given together.",
        "VALIDATION",
    ),
    "KT-GB-4042": ("Too many requests.", "RATE_LIMIT"),
    "KT-GB-4051": ("The start date is too far in the past.", "VALIDATION"),
    # Kraken's general limit on requests and query points; "Too many requests." is the
    # message other Kraken clients match on (thecem/octopus_germany#38 and its tests).
    "KT-CT-1199": ("Too many requests.", "RATE_LIMIT"),
    # A device Kraken does not know: its meter was replaced (the list of codes;
    # the wording is ours).
    "KT-GB-4050": ("Smart meter device not found.", "NOT_FOUND"),
    # The meter has no Home Mini (the list of codes; the wording is ours).
    "KT-GB-4056": ("No Home Mini found for this device.", "NOT_FOUND"),
}

SCHEMA: gql.Schema = {
    "Query": {
        "account": ("AccountType", False),
        "smartMeterTelemetry": ("SmartMeterTelemetryType", True),
    },
    "Mutation": {"obtainKrakenToken": ("ObtainKrakenJSONWebToken", False)},
    "ObtainKrakenJSONWebToken": {
        "token": ("String", False),
        "refreshToken": ("String", False),
        "refreshExpiresIn": ("Int", False),
        "payload": ("GenericScalar", False),
    },
    "AccountType": {
        "number": ("String", False),
        "status": ("String", False),
        "electricityAgreements": ("ElectricityAgreementType", True),
    },
    "ElectricityAgreementType": {
        "id": ("Int", False),
        "validFrom": ("DateTime", False),
        "validTo": ("DateTime", False),
        "meterPoint": ("ElectricityMeterPointType", False),
    },
    "ElectricityMeterPointType": {
        "mpan": ("String", False),
        "meters": ("ElectricityMeterType", True),
    },
    "ElectricityMeterType": {
        "id": ("ID", False),
        "serialNumber": ("String", False),
        "smartImportElectricityMeter": ("SmartMeterDeviceType", False),
        "smartExportElectricityMeter": ("SmartMeterDeviceType", False),
    },
    "SmartMeterDeviceType": {"deviceId": ("String", False)},
    "SmartMeterTelemetryType": {
        name: ("Decimal" if name != "readAt" else "DateTime", False)
        for name in (
            "readAt",
            "consumption",
            "demand",
            "export",
            "consumptionDelta",
            "costDelta",
            "costDeltaWithTax",
        )
    },
}
# Arguments each field accepts (name -> required).
ARGUMENTS: dict[tuple[str, str], dict[str, bool]] = {
    ("Query", "account"): {"accountNumber": True},
    ("Query", "smartMeterTelemetry"): {
        "deviceId": True,
        "start": False,
        "end": False,
        "grouping": False,
    },
    ("Mutation", "obtainKrakenToken"): {"input": True},
    ("AccountType", "electricityAgreements"): {"active": False},
    ("ElectricityMeterPointType", "meters"): {"includeInactive": False},
}


# -- the accounts the simulator knows ---------------------------------------------------


@dataclass(frozen=True)
class Meter:
    serial: str
    import_device: str | None
    export_device: str | None = None
    active: bool = True


@dataclass(frozen=True)
class Agreement:
    id: int
    mpan: str
    meters: tuple[Meter, ...]
    valid_from: str
    valid_to: str | None = None  # None: active


@dataclass(frozen=True)
class Account:
    number: str
    household: str
    agreements: tuple[Agreement, ...]


def _dev(n: int) -> str:
    return f"00-0D-6F-00-0A-DE-{n // 256:02X}-{n % 256:02X}"


ACCOUNTS = {
    a.number: a
    for a in (
        # The demo home: one Home Mini on an import meter. An ended agreement and a
        # replaced meter carry older devices, so a client that forgets active: true or
        # includeInactive: false finds three devices instead of one.
        Account(
            "A-DEMO0001",
            "plain",
            (
                Agreement(
                    101,
                    "1900012345671",
                    (
                        Meter("21L1234567", _dev(1)),
                        Meter("18L0000001", _dev(0x98), active=False),
                    ),
                    "2023-04-01T00:00:00+01:00",
                ),
                Agreement(
                    100,
                    "1900012345671",
                    (Meter("18L0000001", _dev(0x99)),),
                    "2021-04-01T00:00:00+01:00",
                    "2023-04-01T00:00:00+01:00",
                ),
            ),
        ),
        # Solar: an import and an export meter point, each with its device.
        Account(
            "A-SOLAR002",
            "solar",
            (
                Agreement(
                    201,
                    "1900098765432",
                    (Meter("22L7654321", _dev(2)),),
                    "2024-01-01T00:00:00+00:00",
                ),
                Agreement(
                    202,
                    "1170000123456",
                    (Meter("22L7654321", None, _dev(3)),),
                    "2024-01-01T00:00:00+00:00",
                ),
            ),
        ),
        # A traditional meter: no Home Mini to read.
        Account(
            "A-NOMINI03",
            "plain",
            (
                Agreement(
                    301, "1900055555555", (Meter("K01A123456", None),), "2020-01-01T00:00:00+00:00"
                ),
            ),
        ),
        # Two homes' meters on one account: the client must be told which.
        Account(
            "A-TWOMTR04",
            "plain",
            (
                Agreement(
                    401,
                    "1900011111111",
                    (Meter("21L1111111", _dev(4)),),
                    "2023-01-01T00:00:00+00:00",
                ),
                Agreement(
                    402,
                    "1900022222222",
                    (Meter("21L2222222", _dev(5)),),
                    "2023-01-01T00:00:00+00:00",
                ),
            ),
        ),
    )
}
DEVICES: dict[str, str] = {}  # device id -> household
for _acc in ACCOUNTS.values():
    for _ag in _acc.agreements:
        for _m in _ag.meters:
            for _d in (_m.import_device, _m.export_device):
                if _d:
                    DEVICES[_d] = _acc.household


# -- time, errors, options ---------------------------------------------------------------


class Clock:
    """The server's time: the wall clock plus an offset that tests may move."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def now(self) -> float:
        return time.time() + self.offset


class KrakenFieldError(Exception):
    """An error while resolving a field: answered in ``errors`` with HTTP 200."""

    def __init__(self, code: str, description: str | None = None) -> None:
        message, self.error_type = MESSAGES.get(code, ("Error.", "APPLICATION"))
        super().__init__(description or message)
        self.code = code
        self.description = description or message


@dataclass
class Options:
    api_keys: tuple[str, ...] = (DEFAULT_API_KEY,)
    token_lifetime: float = 3600.0
    refresh_lifetime: float = 7 * 86400.0
    rate_limit: int = 100
    rate_period: float = 3600.0
    history: float = 7 * 86400.0
    lag: float = 0.0
    hang: float = 30.0
    retry_after: int = 30
    offline: list[tuple[float, float]] = field(default_factory=list)
    decimals: str = "real"  # or "exponent" (household.decimal_text)
    # The answer includes the current, still-filling group (the issue; PR #1849 of
    # BottlecapDave/HomeAssistant-OctopusEnergy handles such "partial" telemetry).
    partial_groups: bool = False
    # The code the rolling rate limit answers with: KT-GB-4042 (the per-account
    # allowance) or KT-CT-1199 (Kraken's general "Too many requests.").
    rate_limit_code: str = "KT-GB-4042"
    mini: str = "ok"  # every device's Home Mini at the start (MINI_STATES)


@dataclass
class Fault:
    kind: str
    op: str = "telemetry"


@dataclass
class RefreshGrant:
    api_key: str
    expires: float
    used: bool = False


@dataclass
class Answer:
    """What the HTTP layer sends: status, body, content type, extra headers, delay."""

    status: int
    body: bytes
    ctype: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def _json(status: int, doc: Any, **kw: Any) -> Answer:
    return Answer(status, json.dumps(doc).encode(), **kw)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- the API -----------------------------------------------------------------------------


class Kraken:
    def __init__(self, options: Options, clock: Clock, faults: list[Fault] | None = None) -> None:
        self.opt = options
        self.clock = clock
        self.lock = threading.Lock()
        self.secret = secrets.token_bytes(32)
        self.refresh: dict[str, RefreshGrant] = {}
        self.faults: deque[Fault] = deque(faults or [])
        self.window: dict[str, deque[float]] = {}
        self.calls: deque[dict[str, Any]] = deque(maxlen=20000)
        self.telemetry: deque[dict[str, Any]] = deque(maxlen=20000)
        # Every row served, as sent (the truth tests compare InfluxDB with it).
        self.served: deque[dict[str, Any]] = deque(maxlen=200_000)
        self.minis: dict[str, str] = dict.fromkeys(DEVICES, options.mini)
        self.frozen_since: dict[str, float] = {}
        if options.mini == "frozen":
            self.frozen_since = dict.fromkeys(DEVICES, clock.now())
        self.replaced: dict[str, str] = {}  # old device -> the new meter's device
        self.counts: Counter[str] = Counter()
        self.faults_served: Counter[str] = Counter()

    # -- test controls -------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "now": self.clock.now(),
                "clock_offset": self.clock.offset,
                "counts": dict(self.counts),
                "calls": list(self.calls),
                "telemetry": list(self.telemetry),
                "faults_served": dict(self.faults_served),
                "faults_pending": [f"{f.op}:{f.kind}" for f in self.faults],
                "minis": dict(self.minis),
                "replaced": dict(self.replaced),
                "valid_refresh_tokens": sum(
                    1 for g in self.refresh.values() if not g.used and g.expires > self.clock.now()
                ),
                "options": {
                    "token_lifetime": self.opt.token_lifetime,
                    "refresh_lifetime": self.opt.refresh_lifetime,
                    "rate_limit": self.opt.rate_limit,
                    "rate_period": self.opt.rate_period,
                    "history": self.opt.history,
                    "lag": self.opt.lag,
                    "offline": self.opt.offline,
                    "decimals": self.opt.decimals,
                    "partial_groups": self.opt.partial_groups,
                },
            }

    def add_fault(self, kind: str, op: str, count: int) -> None:
        if not (kind in HTTP_FAULTS or kind in DATA_FAULTS or kind.startswith("KT-")):
            raise ValueError(f"unknown fault {kind!r}")
        if op not in FAULT_OPS:
            raise ValueError(f"op must be one of {', '.join(FAULT_OPS)}")
        with self.lock:
            self.faults.extend(Fault(kind, op) for _ in range(count))

    def set_mini(self, device: str, state: str) -> None:
        """A Home Mini's behaviour from now on (MINI_STATES); device "" for all."""
        if state not in MINI_STATES:
            raise ValueError(f"state must be one of {', '.join(MINI_STATES)}")
        now = self.clock.now()
        with self.lock:
            for dev in [device] if device else list(self.minis):
                if dev not in self.minis:
                    raise ValueError(f"unknown device {dev!r}")
                since = self.frozen_since.pop(dev, None)
                if since is not None:  # a freeze ends: its readings stay missing
                    self.opt.offline.append((since, now))
                if state == "frozen":
                    self.frozen_since[dev] = now
                self.minis[dev] = state

    def swap_meter(self, device: str) -> str:
        """The meter of ``device`` is replaced: the account lists a new meter and device;
        the old device id is unknown from now on (KT-GB-4050)."""
        with self.lock:
            if device not in DEVICES or device in self.replaced:
                raise ValueError(f"unknown device {device!r}")
            new = _dev(0x100 + len(self.replaced) + int(device[-2:], 16))
            self.replaced[device] = new
            self.minis[new] = self.minis[device]
            return new

    def _household(self, device: str) -> str | None:
        for old, new in self.replaced.items():
            if new == device:
                return DEVICES[old]
        return DEVICES.get(device)

    def use_calls(self, api_key: str, count: int) -> None:
        """Calls made elsewhere with this key (the Octopus app), for the shared rate limit."""
        now = self.clock.now()
        with self.lock:
            self.window.setdefault(api_key, deque()).extend([now] * count)

    def _take_fault(self, ops: set[str], wanted: Callable[[str], bool]) -> str | None:
        """The first queued fault for one of these operations that ``wanted`` accepts."""
        with self.lock:
            for f in self.faults:
                if (f.op == "any" or f.op in ops) and wanted(f.kind):
                    self.faults.remove(f)
                    self.faults_served[f.kind] += 1
                    return f.kind
        return None

    # -- tokens ---------------------------------------------------------------------------

    def _jwt(self, api_key: str, now: float, orig_iat: float) -> tuple[str, dict[str, Any]]:
        payload = {
            "sub": "kraken|account-user:3235447",
            "gty": "API-KEY",
            "email": "demo@example.com",
            "tokenUse": "access",
            "iss": "https://api.octopus.energy/v1/graphql/",
            "iat": int(now),
            "exp": int(now + self.opt.token_lifetime),
            "origIat": int(orig_iat),
            # Ours: which key the token speaks for (the rate limit is per key).
            "wk": hashlib.sha256(api_key.encode()).hexdigest()[:16],
        }
        head = _b64(json.dumps({"typ": "JWT", "alg": "HS256"}).encode())
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        sig = _b64(hmac.new(self.secret, f"{head}.{body}".encode(), hashlib.sha256).digest())
        return f"{head}.{body}.{sig}", payload

    def _key_of(self, key_hash: str) -> str | None:
        for k in self.opt.api_keys:
            if hashlib.sha256(k.encode()).hexdigest()[:16] == key_hash:
                return k
        return None

    def token_key(self, authorization: str | None) -> str:
        """The API key a request's token speaks for, or the auth error to answer."""
        if not authorization:
            raise KrakenFieldError("KT-CT-1112")
        token = authorization.strip()
        for prefix in ("JWT ", "Bearer "):
            if token.startswith(prefix):
                token = token[len(prefix) :].strip()
        try:
            head, body, sig = token.split(".")
            good = _b64(hmac.new(self.secret, f"{head}.{body}".encode(), hashlib.sha256).digest())
            if not hmac.compare_digest(good, sig):
                raise ValueError("signature")
            payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (ValueError, TypeError):
            raise KrakenFieldError("KT-CT-1120") from None
        if self.clock.now() >= payload["exp"]:
            raise KrakenFieldError("KT-CT-1124")
        key = self._key_of(payload.get("wk", ""))
        if key is None:
            raise KrakenFieldError("KT-CT-1120")
        return key

    def obtain_token(self, inp: Any) -> dict[str, Any]:
        if not isinstance(inp, dict):
            raise KrakenFieldError("KT-CT-1139")
        now = self.clock.now()
        if "APIKey" in inp:
            key = inp["APIKey"]
            if key not in self.opt.api_keys:
                raise KrakenFieldError("KT-CT-1139")
            orig = now
            refresh_expires = now + self.opt.refresh_lifetime
        elif "refreshToken" in inp:
            with self.lock:
                grant = self.refresh.get(str(inp["refreshToken"]))
                if grant is None or grant.used:
                    raise KrakenFieldError("KT-CT-1135")
                if now >= grant.expires:
                    raise KrakenFieldError("KT-CT-1134")
                grant.used = True  # rotated: the old refresh token is spent
            key = grant.api_key
            orig = grant.expires - self.opt.refresh_lifetime
            refresh_expires = grant.expires  # a refresh chain ends where it began + lifetime
        else:
            raise KrakenFieldError("KT-CT-1139")
        token, payload = self._jwt(key, now, orig)
        refresh = secrets.token_hex(32)
        with self.lock:
            self.refresh[refresh] = RefreshGrant(key, refresh_expires)
            self.counts["tokens_from_api_key" if "APIKey" in inp else "tokens_from_refresh"] += 1
        return {
            "token": token,
            "refreshToken": refresh,
            "refreshExpiresIn": int(refresh_expires),
            "payload": payload,
        }

    # -- data --------------------------------------------------------------------------------

    def account(self, key: str, number: Any) -> dict[str, Any]:
        acc = ACCOUNTS.get(str(number))
        if acc is None:
            raise KrakenFieldError("KT-CT-1111")
        now = self.clock.now()

        def agreements(active: bool | None = None) -> list[dict[str, Any]]:
            out = []
            for ag in acc.agreements:
                is_active = (
                    ag.valid_to is None or datetime.fromisoformat(ag.valid_to).timestamp() > now
                )
                if active is True and not is_active:
                    continue
                out.append(
                    {
                        "id": ag.id,
                        "validFrom": ag.valid_from,
                        "validTo": ag.valid_to,
                        "meterPoint": {"mpan": ag.mpan, "meters": _meters(ag, self.replaced)},
                    }
                )
            return out

        return {"number": acc.number, "status": "LIVE", "electricityAgreements": agreements}

    def served_rows(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.served)

    def smart_meter_telemetry(
        self,
        key: str,
        deviceId: Any = None,
        start: Any = None,
        end: Any = None,
        grouping: Any = None,
        data_fault: str | None = None,
    ) -> list[dict[str, Any]]:
        device = str(deviceId)
        if device in self.replaced:
            raise KrakenFieldError("KT-GB-4050")
        hh = self._household(device)
        if hh is None:
            raise KrakenFieldError("KT-CT-1111")
        mini = self.minis.get(device, "ok")
        if mini == "unpaired":
            raise KrakenFieldError("KT-GB-4056")
        now = self.clock.now()
        given = [a is not None for a in (start, end, grouping)]
        if any(given) and not all(given):
            raise KrakenFieldError("KT-GB-4040")
        until = now - self.opt.lag
        if not any(given):
            g = "TEN_SECONDS"
            t = int(until // 10 * 10) - 10
            instants = [t]
            s = e = float(t)
        else:
            g = _grouping(grouping)
            s, e = _datetime(start, "start"), _datetime(end, "end")
            if s < now - self.opt.history:
                raise KrakenFieldError("KT-GB-4051")
            step = GROUPING_SECONDS[g]
            instants = [t for t in household.slots(s, min(e, until), g) if t + step <= until]
        # The group still filling: its values so far (up to the last 10-second reading).
        filling = int(until // 10 * 10)
        partial = None
        if given and self.opt.partial_groups and g != "TEN_SECONDS":
            t = filling // GROUPING_SECONDS[g] * GROUPING_SECONDS[g]
            if s <= t < min(e, until) and t < filling:
                partial = t
                instants.append(t)
        frozen = self.frozen_since.get(device)
        if mini == "no-ten-seconds" and g == "TEN_SECONDS":
            instants = []
        sent = [
            (t, household.reading(hh, t, g, self.opt.decimals, filling if t == partial else None))
            for t in instants
            if not any(a <= t < b for a, b in self.opt.offline) and (frozen is None or t < frozen)
        ]
        rows = [r for _, r in sent]
        with self.lock:
            self.telemetry.append(
                {
                    "deviceId": device,
                    "start": s,
                    "end": e,
                    "grouping": g,
                    "rows": len(rows),
                    "partial": sum(1 for t, _ in sent if t == partial),
                    "first": rows[0]["readAt"] if rows else None,
                    "last": rows[-1]["readAt"] if rows else None,
                    "fault": data_fault,
                }
            )
            self.served.extend(
                {"deviceId": device, "grouping": g, "partial": t == partial, "fault": data_fault}
                | r
                for t, r in sent
            )
        return rows

    # -- one request ---------------------------------------------------------------------------

    def execute(self, body: bytes, authorization: str | None) -> Answer:
        now = self.clock.now()
        try:
            doc = json.loads(body or b"null")
        except ValueError:
            return _json(400, {"errors": [{"message": "Must provide query string."}]})
        if not isinstance(doc, dict) or not isinstance(doc.get("query"), str):
            return _json(400, {"errors": [{"message": "Must provide query string."}]})
        variables = doc.get("variables") or {}
        try:
            op = gql.select_operation(gql.parse(doc["query"]), doc.get("operationName"))
            root = "Mutation" if op.kind == "mutation" else "Query"
            _validate(op, root)
            bound = gql.bind_variables(
                op, variables if isinstance(variables, dict) else {}, SCALARS
            )
        except (gql.GraphQLSyntaxError, gql.ValidationError) as exc:
            return _json(
                400,
                {
                    "errors": [
                        {
                            "message": str(exc),
                            "locations": [{"line": exc.line, "column": exc.column}],
                        }
                    ]
                },
            )
        names = {f.name for f in op.selections}
        ops = {
            "obtainKrakenToken": "token",
            "account": "account",
            "smartMeterTelemetry": "telemetry",
        }
        kinds = {ops[n] for n in names if n in ops}
        key, how = self._attribute(op, bound, authorization)
        if how:
            kinds.add(how)
        record: dict[str, Any] = {
            "wall": time.time(),
            "server": now,
            "op": ",".join(sorted(kinds - {"login", "refresh"})),
            "auth": how,
            "operationName": doc.get("operationName"),
            "key": key,
        }
        fault = self._take_fault(kinds, HTTP_FAULTS.__contains__)
        limited = self._count(key, now)
        answer = self._http_fault(fault) if fault else None
        if answer is None:
            answer = self._resolve(op, root, bound, authorization, limited, kinds)
        outcome = (fault and f"fault:{fault}") or _outcome(answer)
        record["outcome"] = outcome
        with self.lock:
            self.calls.append(record)
            self.counts[record["op"] or "other"] += 1
        return answer

    def _attribute(
        self, op: gql.Operation, bound: dict[str, Any], authorization: str | None
    ) -> tuple[str, str]:
        """The API key a request counts against (the rate limit is per key), and for a
        token request whether it is a "login" (API key) or a "refresh"."""
        for f in op.selections:
            if f.name == "obtainKrakenToken":
                inp = gql.resolve_value(f.arguments.get("input"), bound)
                if not isinstance(inp, dict):
                    return "anonymous", ""
                how = "refresh" if "refreshToken" in inp else "login"
                if inp.get("APIKey") in self.opt.api_keys:
                    return str(inp["APIKey"]), how
                grant = self.refresh.get(str(inp.get("refreshToken")))
                return (grant.api_key if grant is not None else "anonymous"), how
        try:
            return self.token_key(authorization), ""
        except KrakenFieldError:
            return "anonymous", ""

    def _count(self, key: str, now: float) -> bool:
        """Count this call in the key's rolling window; True if it is over the limit."""
        with self.lock:
            win = self.window.setdefault(key, deque())
            while win and win[0] <= now - self.opt.rate_period:
                win.popleft()
            win.append(now)
            return len(win) > self.opt.rate_limit

    def _http_fault(self, kind: str) -> Answer | None:
        html = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
        if kind in ("500", "502", "503", "504"):
            headers = {"Retry-After": str(self.opt.retry_after)} if kind == "503" else {}
            return Answer(
                int(kind), html.replace(b"502 Bad Gateway", kind.encode()), "text/html", headers
            )
        if kind == "429":
            return _json(
                429,
                {"detail": "Request was throttled."},
                headers={"Retry-After": str(self.opt.retry_after)},
            )
        if kind == "hang":
            return Answer(504, html, "text/html", delay=self.opt.hang)
        if kind == "nonjson":
            return Answer(
                200, b"<html><body>Service temporarily unavailable</body></html>", "text/html"
            )
        if kind == "truncated":
            return Answer(200, b'{"data": {"smartMeterTelemetry": [{"readAt": "20')
        if kind == "nodata":
            return _json(200, {"data": None})
        return None

    def _resolve(
        self,
        op: gql.Operation,
        root: str,
        bound: dict[str, Any],
        authorization: str | None,
        limited: bool,
        kinds: set[str],
    ) -> Answer:
        data: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        data_fault = self._take_fault(kinds, DATA_FAULTS.__contains__)
        code_fault = self._take_fault(kinds, lambda k: k.startswith("KT-"))
        for f in op.selections:
            if f.name == "__typename":
                data[f.key] = root
                continue
            try:
                if code_fault:
                    raise KrakenFieldError(code_fault)
                if limited:
                    raise KrakenFieldError(self.opt.rate_limit_code)
                args = {k: gql.resolve_value(v, bound) for k, v in f.arguments.items()}
                value = self._field(f.name, args, authorization, data_fault)
                type_name = SCHEMA[root][f.name][0]
                data[f.key] = gql.shape(SCHEMA, value, f.selections, type_name, bound)
                if data_fault == "nulllist":
                    data[f.key] = None  # null without an error: not what Kraken documents
                elif data_fault and isinstance(data[f.key], list):
                    _spoil(data[f.key], data_fault)
            except gql.ValidationError as exc:
                return _json(
                    400,
                    {
                        "errors": [
                            {
                                "message": str(exc),
                                "locations": [{"line": f.line, "column": f.column}],
                            }
                        ]
                    },
                )
            except KrakenFieldError as exc:
                data[f.key] = None
                ext = {
                    "errorType": exc.error_type,
                    "errorCode": exc.code,
                    "errorDescription": exc.description,
                }
                if exc.error_type == "VALIDATION":
                    ext["errorClass"] = "VALIDATION"
                errors.append(
                    {
                        "message": exc.description,
                        "locations": [{"line": f.line, "column": f.column}],
                        "path": [f.key],
                        "extensions": ext,
                    }
                )
        doc: dict[str, Any] = {"data": data}
        if errors:
            doc = {"errors": errors, "data": data}
        return _json(200, doc)

    def _field(
        self, name: str, args: dict[str, Any], authorization: str | None, data_fault: str | None
    ) -> Any:
        if name == "obtainKrakenToken":
            return self.obtain_token(args.get("input"))
        key = self.token_key(authorization)
        if name == "account":
            return self.account(key, args.get("accountNumber"))
        return self.smart_meter_telemetry(key, data_fault=data_fault, **args)


def _spoil(rows: list[dict[str, Any]], kind: str) -> None:
    """A data fault, applied to the answer as sent (after GraphQL shaped it)."""
    if not rows:
        return
    if kind == "missing":  # a key absent (a truncated or changed answer), not null
        for r in rows:
            r.pop("consumptionDelta", None)
    elif kind == "badvalue":
        rows[0]["demand"] = "n/a"
    elif kind == "nullvalue":
        rows[0]["costDelta"] = None


def _meters(ag: Agreement, replaced: dict[str, str]) -> Callable[..., list[dict[str, Any]]]:
    def meters(includeInactive: bool | None = None) -> list[dict[str, Any]]:
        out = []
        for i, m in enumerate(ag.meters):
            new = replaced.get(m.import_device or "")
            if new:  # the replaced meter is inactive now; the new one takes its place
                if includeInactive:
                    out.append(_meter(ag.id * 10 + i, m.serial, m.import_device, None))
                out.append(_meter(ag.id * 100 + i, "23L" + new[-5:].replace("-", ""), new, None))
                continue
            if not m.active and not includeInactive:
                continue
            out.append(
                {
                    "id": str(ag.id * 10 + i),
                    "serialNumber": m.serial,
                    "smartImportElectricityMeter": {"deviceId": m.import_device}
                    if m.import_device
                    else None,
                    "smartExportElectricityMeter": {"deviceId": m.export_device}
                    if m.export_device
                    else None,
                }
            )
        return out

    return meters


def _meter(id_: int, serial: str, imp: str | None, exp: str | None) -> dict[str, Any]:
    return {
        "id": str(id_),
        "serialNumber": serial,
        "smartImportElectricityMeter": {"deviceId": imp} if imp else None,
        "smartExportElectricityMeter": {"deviceId": exp} if exp else None,
    }


def _datetime(value: Any, name: str) -> float:
    """Kraken's DateTime: ISO 8601; a time without offset is UK local time."""
    if not isinstance(value, str):
        raise gql.ValidationError(f"Argument '{name}' has invalid value {value!r}.")
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise gql.ValidationError(
            f"Argument '{name}' has invalid value \"{value}\": not an ISO 8601 date-time."
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=LONDON)
    return t.timestamp()


def _grouping(value: Any) -> str:
    if value not in GROUPING_SECONDS:
        raise gql.ValidationError(f"Value '{value}' does not exist in 'TelemetryGrouping' enum.")
    return str(value)


def _check_datetime(value: Any) -> Any:
    _datetime(value, "DateTime")
    return value


def _check_grouping(value: Any) -> Any:
    if value not in GROUPING_SECONDS:
        raise ValueError(f"Value '{value}' does not exist in 'TelemetryGrouping' enum.")
    return value


def _check_input(value: Any) -> Any:
    allowed = {
        "APIKey",
        "refreshToken",
        "email",
        "password",
        "organizationSecretKey",
        "preSignedKey",
    }
    if not isinstance(value, dict):
        raise ValueError("Expected type 'ObtainJSONWebTokenInput' to be a mapping.")
    unknown = set(value) - allowed
    if unknown:
        name = sorted(unknown)[0]
        raise ValueError(f"Field '{name}' is not defined by type 'ObtainJSONWebTokenInput'.")
    return value


SCALARS: dict[str, gql.Coercer] = {
    "DateTime": _check_datetime,
    "TelemetryGrouping": _check_grouping,
    "ObtainJSONWebTokenInput": _check_input,
}


def _validate(op: gql.Operation, root: str) -> None:
    """Fields, arguments and variables of the operation against the schema."""
    gql.validate_selections(SCHEMA, root, op.selections)
    gql.check_variable_use(op)

    def walk(type_name: str, fields: list[gql.Field]) -> None:
        for f in fields:
            if f.name == "__typename":
                continue
            allowed = ARGUMENTS.get((type_name, f.name), {})
            for arg in f.arguments:
                if arg not in allowed:
                    raise gql.ValidationError(
                        f"Unknown argument '{arg}' on field '{type_name}.{f.name}'.",
                        f.line,
                        f.column,
                    )
            for arg, required in allowed.items():
                if required and arg not in f.arguments:
                    raise gql.ValidationError(
                        f"Field '{f.name}' argument '{arg}' of type 'String!' is required,"
                        " but it was not provided.",
                        f.line,
                        f.column,
                    )
            child = SCHEMA[type_name][f.name][0]
            if child in SCHEMA:
                walk(child, f.selections)

    walk(root, op.selections)


def _outcome(answer: Answer) -> str:
    if answer.status != 200:
        return f"http:{answer.status}"
    try:
        doc = json.loads(answer.body)
    except ValueError:
        return "nonjson"
    errs = doc.get("errors") if isinstance(doc, dict) else None
    if errs:
        return str(errs[0].get("extensions", {}).get("errorCode") or "error")
    return "ok"


def parse_when(text: str, now: float) -> float:
    """An ISO time, or a duration relative to now ("-2h", "+30m")."""
    from wattkeeper.config import parse_duration

    if text[:1] in "+-":
        sign = -1 if text[0] == "-" else 1
        return now + sign * parse_duration(text[1:])
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
