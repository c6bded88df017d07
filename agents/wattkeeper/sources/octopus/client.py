"""Kraken GraphQL over HTTP: one request, its errors, the server clock, and the token.

Kraken answers HTTP 200 with ``errors: [{message, extensions: {errorCode, ...}}]`` for
most failures; real 429/5xx, timeouts and non-JSON bodies happen too. Everything
transient becomes :class:`KrakenError` (the runner retries), a rejected API key becomes
``SourceFatal`` (exit 78, no crash loop). Every request first takes a budget slot.
"""

from __future__ import annotations

import email.utils
import logging
import time
from dataclasses import dataclass
from typing import Any

import requests

from wattkeeper.journal import SECRETS
from wattkeeper.source import SourceError, SourceFatal

from .budget import BudgetExhausted, CallBudget

# Auth problems after which a fresh token (refresh, else API key) is worth one retry.
REAUTH_CODES = frozenset(
    {
        "KT-CT-1111",  # unauthorized
        "KT-CT-1112",  # Authorization header not provided
        "KT-CT-1120",  # invalid token
        "KT-CT-1124",  # JWT expired
        "KT-CT-1134",  # refresh token expired
        "KT-CT-1135",  # refresh token invalid
        "KT-CT-1139",  # authentication failed
    }
)
# Where a user makes (or re-makes) an API key.
API_KEY_PAGE = "https://octopus.energy/dashboard/new/accounts/personal-details/api-access"
REFRESH_EXPIRED = frozenset({"KT-CT-1134", "KT-CT-1135"})
RATE_LIMITED = "KT-GB-4042"
# Too many requests: the per-account allowance (KT-GB-4042) and Kraken's general limit
# on requests and query points (KT-CT-1199, "Too many requests."; thecem/octopus_germany#38
# and other Kraken clients back off on it).
RATE_LIMIT_CODES = frozenset({RATE_LIMITED, "KT-CT-1199"})

OBTAIN_TOKEN = """mutation ObtainKrakenToken($input: ObtainJSONWebTokenInput!) {
  obtainKrakenToken(input: $input) { token refreshToken refreshExpiresIn payload }
}"""  # noqa: S105 (a GraphQL mutation, not a password)


class KrakenError(SourceError):
    """A failed call: HTTP trouble or a GraphQL error with its Kraken code."""

    def __init__(
        self, message: str, code: str = "", retry_after: float | None = None, status: int = 0
    ) -> None:
        super().__init__(message, retry_after)
        self.code = code
        self.status = status


@dataclass
class Token:
    token: str
    expires: float  # unix time (server clock)
    lifetime: float
    refresh_token: str | None
    refresh_expires: float

    def fresh(self, now: float) -> bool:
        # Renew a quarter of the lifetime (at most 5 minutes) early: no call meets expiry.
        return now < self.expires - min(300.0, self.lifetime / 4)


class ServerClock:
    """Time as the API sees it: a Pi without RTC may boot hours off before NTP syncs.

    The server's Date is kept with the monotonic clock's reading at that moment, so the
    local wall clock jumping later (NTP stepping it, an operator) changes nothing: the
    agent would otherwise ask for windows an hour or a day off and, asking nothing,
    never hear the server's time again to correct itself.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._server: float | None = None  # the server's time at monotonic ``_at``
        self._at = 0.0

    @property
    def offset(self) -> float:
        """The server's clock minus the local wall clock, now."""
        return self.now() - time.time()

    def update(self, date_header: str | None) -> None:
        if not self.enabled or not date_header:
            return
        try:
            server = email.utils.parsedate_to_datetime(date_header).timestamp()
        except (TypeError, ValueError):
            return
        # Date has whole seconds: it lags by up to 1 s; never ask past the server's now.
        self._server, self._at = server, time.monotonic()

    def now(self) -> float:
        if self._server is None:
            return time.time()
        return self._server + (time.monotonic() - self._at)


def _error_text(err: dict[str, Any]) -> tuple[str, str]:
    ext = err.get("extensions") or {}
    code = str(ext.get("errorCode") or "")
    desc = str(ext.get("errorDescription") or err.get("message") or "unknown error")
    return code, desc


class KrakenClient:
    """Posts GraphQL documents within the call budget; keeps the token fresh."""

    def __init__(
        self,
        url: str,
        api_key: str,
        budget: CallBudget,
        *,
        timeout: float,
        clock: ServerClock,
        log: logging.Logger,
    ) -> None:
        self.url = url
        self.api_key = api_key
        self.budget = budget
        self.timeout = timeout
        self.clock = clock
        self.log = log
        self.token: Token | None = None
        self._session = requests.Session()
        self._session.headers["User-Agent"] = "wattkeeper"

    def close(self) -> None:
        self._session.close()

    # -- one request ---------------------------------------------------------------

    def post(self, op: str, query: str, variables: dict[str, Any], auth: bool) -> Any:
        """One GraphQL call; returns ``data``; raises KrakenError for any failure."""
        try:
            self.budget.take()
        except BudgetExhausted as exc:
            raise KrakenError(str(exc), "budget", retry_after=exc.wait) from None
        headers = {"Content-Type": "application/json"}
        if auth and self.token is not None:
            headers["Authorization"] = self.token.token
        try:
            resp = self._session.post(
                self.url,
                json={"operationName": op, "query": query, "variables": variables},
                headers=headers,
                timeout=self.timeout,
            )
        except requests.Timeout:
            raise KrakenError(f"{op}: no answer from {self.url} within {self.timeout:g}s") from None
        except requests.RequestException as exc:
            raise KrakenError(f"{op}: cannot reach {self.url}: {type(exc).__name__}") from None
        self.clock.update(resp.headers.get("Date"))
        if resp.status_code == 429:
            retry = _retry_after(resp.headers.get("Retry-After"))
            raise KrakenError(f"{op}: HTTP 429 too many requests", RATE_LIMITED, retry, 429)
        if resp.status_code != 200:
            raise KrakenError(
                f"{op}: HTTP {resp.status_code} from {self.url}{_body_hint(resp)}",
                status=resp.status_code,
                retry_after=_retry_after(resp.headers.get("Retry-After")),
            )
        try:
            doc = resp.json()
        except ValueError:
            ctype = resp.headers.get("Content-Type", "?")
            snippet = resp.text[:60].replace("\n", " ")
            raise KrakenError(
                f"{op}: answer is not JSON (HTTP 200, {ctype}): {snippet!r}"
            ) from None
        if not isinstance(doc, dict):
            raise KrakenError(f"{op}: answer is not a JSON object")
        errors = doc.get("errors")
        if errors:
            if not isinstance(errors, list) or not isinstance(errors[0], dict):
                raise KrakenError(f"{op}: malformed errors in the answer")
            code, desc = _error_text(errors[0])
            raise KrakenError(f"{op}: {code or 'error'} {desc}", code)
        data = doc.get("data")
        if not isinstance(data, dict):
            raise KrakenError(f"{op}: answer has no data")
        return data

    # -- authentication ------------------------------------------------------------

    def _obtain(self, inp: dict[str, str]) -> None:
        data = self.post("ObtainKrakenToken", OBTAIN_TOKEN, {"input": inp}, auth=False)
        got = data.get("obtainKrakenToken")
        if not isinstance(got, dict) or not isinstance(got.get("token"), str):
            raise KrakenError("ObtainKrakenToken: answer has no token")
        now = self.clock.now()
        payload = got.get("payload") if isinstance(got.get("payload"), dict) else {}
        exp = payload.get("exp") if isinstance(payload, dict) else None
        iat = payload.get("iat") if isinstance(payload, dict) else None
        expires = float(exp) if isinstance(exp, int | float) else now + 3600.0
        lifetime = expires - float(iat) if isinstance(iat, int | float) else expires - now
        refresh = got.get("refreshToken")
        refresh_exp = got.get("refreshExpiresIn")
        self.token = Token(
            token=got["token"],
            expires=expires,
            lifetime=max(1.0, lifetime),
            refresh_token=refresh if isinstance(refresh, str) else None,
            refresh_expires=float(refresh_exp) if isinstance(refresh_exp, int | float) else 0.0,
        )
        SECRETS.add(self.token.token)
        if self.token.refresh_token:
            SECRETS.add(self.token.refresh_token)

    def login(self) -> None:
        """A new token from the API key; a rejected key is fatal (exit 78)."""
        try:
            self._obtain({"APIKey": self.api_key})
        except KrakenError as exc:
            if exc.code in {"KT-CT-1139", "KT-CT-1138", "KT-CT-1111"}:
                raise SourceFatal(
                    f"Octopus rejected the API key ({exc.code}: {str(exc).split(' ', 2)[-1]}); "
                    f"copy it again from {API_KEY_PAGE} into the file",
                    key="octopus.api_key_file",
                ) from None
            raise
        self.log.info("obtained a Kraken token (valid until %s)", _hhmmss(self.token))

    def ensure_token(self) -> None:
        """Renew before expiry: the refresh token while it lives, else the API key."""
        now = self.clock.now()
        if self.token is not None and self.token.fresh(now):
            return
        if (
            self.token is not None
            and self.token.refresh_token
            and now < self.token.refresh_expires - 5
        ):
            try:
                self._obtain({"refreshToken": self.token.refresh_token})
            except KrakenError as exc:
                if exc.code not in REAUTH_CODES:
                    raise
                self.log.info("refresh token refused (%s); using the API key", exc.code)
            else:
                self.log.debug("refreshed the Kraken token")
                return
        self.login()

    def query(self, op: str, query: str, variables: dict[str, Any]) -> Any:
        """An authenticated call; on an auth error, authenticate once more and retry once."""
        self.ensure_token()
        try:
            return self.post(op, query, variables, auth=True)
        except KrakenError as exc:
            if exc.code not in REAUTH_CODES:
                raise
            self.log.info("%s: %s; authenticating again", op, exc.code)
        if self.token is not None:
            # Force renewal: the server says this token is no good whatever its exp says.
            self.token.expires = 0.0
        self.ensure_token()
        return self.post(op, query, variables, auth=True)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _body_hint(resp: requests.Response) -> str:
    """The first GraphQL error of a non-200 answer (a 400 names the bad field), if any."""
    try:
        doc = resp.json()
    except ValueError:
        return ""
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        code, desc = _error_text(errors[0])
        return f": {code + ' ' if code else ''}{desc[:200]}"
    return ""


def _hhmmss(token: Token | None) -> str:
    if token is None:
        return "?"
    return time.strftime("%H:%M:%SZ", time.gmtime(token.expires))
