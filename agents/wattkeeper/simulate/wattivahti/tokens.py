"""The Azure AD B2C stand-in: authorization codes (PKCE), rotating refresh tokens.

Like B2C it answers 400 with an OAuth error body whose description starts with the
AADB2C code and ends with a correlation id and a timestamp (the shape quoted in
Azure-Samples/active-directory-b2c-custom-policy-starterpack#138). Every refresh returns a
new refresh token. By default the old one is then spent (AADB2C90129): stricter than
documented, since Microsoft says its identity platform does not revoke an old refresh
token when it is used (learn.microsoft.com/entra/identity-platform/refresh-tokens) and
says nothing either way for B2C; an agent that only ever uses the newest token works
with both. ``old_stay_valid`` models the documented behaviour. Tokens expire after their
lifetime (AADB2C90080). With a state file the grants outlive a restart, as the real
portal's do: the demo's simulator restarts with its container while the agent keeps its
rotated token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass
class Grant:
    expires: float
    used: bool = False
    issued: float = 0.0


@dataclass
class Code:
    challenge: str
    redirect_uri: str
    client_id: str
    used: bool = False


class OAuthError(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description

    def body(self) -> dict[str, str]:
        """The JSON error body, with B2C's trailer lines."""
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        trailer = f"\r\nCorrelation ID: {uuid.uuid4()}\r\nTimestamp: {now}\r\n"
        return {"error": self.error, "error_description": self.description + trailer}


# A fault B2C reports as invalid_grant although the grant is fine (the issue above quotes
# it for grant_type=refresh_token): the token is not spent, a retry may succeed.
TRANSIENT_GRANT_ERROR = OAuthError(
    "invalid_grant",
    "AADB2C90085: The service has encountered an internal error. Please reauthenticate "
    "and try again.",
)


class TokenIssuer:
    def __init__(
        self,
        client_id: str,
        refresh_lifetime: float,
        access_lifetime: float,
        initial: list[str],
        state: Path | None = None,
        old_stay_valid: bool = False,
    ) -> None:
        self.client_id = client_id
        self.old_stay_valid = old_stay_valid
        self.refresh_lifetime = refresh_lifetime
        self.access_lifetime = access_lifetime
        self.lock = threading.Lock()
        self.state = state
        now = time.time()
        self.refresh: dict[str, Grant] = self._load()
        for t in initial:  # a spent initial token stays spent across restarts
            self.refresh.setdefault(t, Grant(now + refresh_lifetime, issued=now))
        self.access: dict[str, float] = {}
        self.codes: dict[str, Code] = {}
        self.issued = 0
        self.refused = 0
        # Refreshes with a token that had already been used (accepted or not).
        self.reused = 0

    def _load(self) -> dict[str, Grant]:
        if self.state is None or not self.state.exists():
            return {}
        doc = json.loads(self.state.read_text(encoding="utf-8"))
        return {t: Grant(**g) for t, g in doc.get("refresh", {}).items()}

    def _save(self) -> None:
        """Write the unexpired grants (spent ones too, so they stay refused); atomically."""
        if self.state is None:
            return
        now = time.time()
        keep = {t: asdict(g) for t, g in self.refresh.items() if g.expires > now}
        tmp = self.state.with_name(self.state.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"refresh": keep}, fh)
        tmp.replace(self.state)

    def authorize(self, q: dict[str, str]) -> str:
        if q.get("client_id") != self.client_id:
            raise OAuthError("unauthorized_client", "AADB2C90057: unknown client_id")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            raise OAuthError("invalid_request", "AADB2C90183: PKCE S256 challenge required")
        code = secrets.token_urlsafe(24)
        with self.lock:
            self.codes[code] = Code(q["code_challenge"], q.get("redirect_uri", ""), self.client_id)
        return code

    def token(self, form: dict[str, str]) -> dict[str, Any]:
        with self.lock:
            try:
                answer = self._token(form)
            except OAuthError:
                self.refused += 1
                raise
            self._save()
            return answer

    def _token(self, form: dict[str, str]) -> dict[str, Any]:
        if form.get("client_id") != self.client_id:
            raise OAuthError(
                "unauthorized_client",
                f"AADB2C90057: The provided application '{form.get('client_id')}' is not "
                "configured to allow the OAuth 2.0 flow.",
            )
        now = time.time()
        grant = form.get("grant_type")
        if grant == "refresh_token":
            token = form.get("refresh_token", "")
            g = self.refresh.get(token)
            if g is None:
                # Never issued here: real refresh tokens are JWEs, a foreign string is not.
                raise OAuthError(
                    "invalid_grant", "AADB2C90090: The provided JWE is not a valid 5 segment token."
                )
            if g.used:
                self.reused += 1
            if g.used and not self.old_stay_valid:
                raise OAuthError(
                    "invalid_grant",
                    "AADB2C90129: The provided grant has been revoked. Please reauthenticate "
                    "and try again.",
                )
            if now >= g.expires:
                raise OAuthError(
                    "invalid_grant",
                    "AADB2C90080: The provided grant has expired. Please re-authenticate "
                    f"and try again. Current time: {int(now)}, Grant issued time: "
                    f"{int(g.issued)}, Grant expiration time: {int(g.expires)}",
                )
            g.used = True
        elif grant == "authorization_code":
            c = self.codes.get(form.get("code", ""))
            if c is None or c.used:
                raise OAuthError("invalid_grant", "AADB2C90090: The provided code is invalid.")
            c.used = True
            verifier = form.get("code_verifier", "")
            digest = hashlib.sha256(verifier.encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != c.challenge:
                raise OAuthError("invalid_grant", "AADB2C90183: The code_verifier is invalid.")
            if form.get("redirect_uri") != c.redirect_uri:
                raise OAuthError("invalid_grant", "AADB2C90006: redirect_uri mismatch.")
        else:
            raise OAuthError("unsupported_grant_type", f"grant_type {grant!r} not supported")
        refresh = secrets.token_urlsafe(48)
        access = secrets.token_urlsafe(48)
        self.refresh[refresh] = Grant(now + self.refresh_lifetime, issued=now)
        self.access[access] = now + self.access_lifetime
        self.issued += 1
        return {
            "access_token": access,
            "id_token": secrets.token_urlsafe(16),
            "token_type": "Bearer",
            "not_before": int(now),
            "expires_in": int(self.access_lifetime),
            "expires_on": int(now + self.access_lifetime),
            "resource": "salpa",
            "scope": form.get("scope", ""),
            "refresh_token": refresh,
            "refresh_token_expires_in": int(self.refresh_lifetime),
        }

    def access_valid(self, token: str) -> bool:
        with self.lock:
            exp = self.access.get(token)
        return exp is not None and time.time() < exp

    def add_refresh(self, token: str) -> None:
        now = time.time()
        with self.lock:
            self.refresh[token] = Grant(now + self.refresh_lifetime, issued=now)
            self._save()

    def valid_refresh_count(self) -> int:
        now = time.time()
        with self.lock:
            return sum(1 for g in self.refresh.values() if not g.used and now < g.expires)
