"""Azure AD B2C tokens: the rotating refresh token on disk, and access tokens from it.

B2C hands out a new refresh token with every refresh. It is written to disk (temp file,
fsync, rename, fsync of the directory, mode 0600) before the access token is used, so
a crash at any point leaves either the old or the new token on disk, never a torn file.
Only the newest token is ever used: Microsoft documents that its identity platform does
not revoke an old refresh token when it is used, but says nothing either way for B2C.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from wattkeeper.backoff import Backoff
from wattkeeper.config import ConfigError, read_secret_file
from wattkeeper.journal import SECRETS
from wattkeeper.source import SourceError, SourceFatal

TOKEN_KEY = "wattivahti.refresh_token_file"  # noqa: S105 - a config key, not a secret

# B2C answers a refused refresh with OAuth error "invalid_grant" whatever the reason; the
# AADB2C code in error_description says which (Microsoft's B2C error-code reference,
# learn.microsoft.com/azure/active-directory-b2c/error-codes). Only these mean that the
# stored token can never work again: a new login is the only fix (exit 78).
DEAD_TOKEN_CODES = {
    "AADB2C90080": "has expired",  # "The provided grant has expired"
    "AADB2C90129": "was revoked",  # "The provided grant has been revoked"
    "AADB2C90128": "belongs to an account that no longer exists",
    # "The provided JWE is not a valid 5 segment token" / "The specified kid ... is not
    # found for JWE" (with invalid_grant: Earlybyte/aad_oauth#133): malformed or foreign.
    "AADB2C90090": "is malformed or was not issued by this tenant",
    "AADB2C90087": "was not issued for this version of the token endpoint",
    "AADB2C90088": "was not issued for this endpoint (token_url)",
}
# Other invalid_grant answers are retried: B2C reports its own faults that way too, e.g.
# AADB2C90085 "The service has encountered an internal error" with invalid_grant on a
# refresh (Azure-Samples/active-directory-b2c-custom-policy-starterpack#138).
_B2C_CODE = re.compile(r"AADB2C\d{5}")


def login_hint(config_file: Path | str) -> str:
    return f"get a new one with: wattkeeper login wattivahti -c {config_file}"


def read_refresh_token(path: Path, config_file: Path | str) -> str:
    """The stored refresh token, or SourceFatal saying which file and how to fix it."""
    try:
        token = read_secret_file(path, TOKEN_KEY, config_file)
    except ConfigError as exc:
        raise SourceFatal(
            f"no usable WattiVahti refresh token: {exc.message}; {login_hint(config_file)}",
            key=TOKEN_KEY,
        ) from None
    SECRETS.add(token)
    return token


def write_refresh_token(path: Path, token: str) -> None:
    """Replace the token file atomically and durably, readable by its owner only."""
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (token + "\n").encode())
        os.fsync(fd)
        os.close(fd)
        fd = -1
        Path(tmp).replace(path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class TokenRefused(Exception):
    """The token endpoint refused the grant (HTTP 400/401 with an OAuth error code)."""

    def __init__(self, code: str, description: str, status: int) -> None:
        super().__init__(f"HTTP {status} {code}: {description}")
        self.code = code
        self.description = description

    @property
    def b2c_code(self) -> str:
        """The AADB2C9xxxx code of the description, or ""."""
        m = _B2C_CODE.search(self.description)
        return m.group(0) if m else ""


def token_request(
    session: requests.Session, url: str, form: dict[str, str], timeout: float
) -> dict[str, Any]:
    """POST a form to the B2C token endpoint; TokenRefused or SourceError on failure."""
    try:
        resp = session.post(url, data=form, timeout=timeout, headers={"Accept": "application/json"})
    except requests.RequestException as exc:
        raise SourceError(f"token endpoint {url} unreachable: {type(exc).__name__}") from None
    try:
        doc = resp.json()
    except ValueError:
        doc = None
    if resp.status_code in (400, 401) and isinstance(doc, dict) and "error" in doc:
        desc = str(doc.get("error_description", "")).splitlines()[0][:200]
        raise TokenRefused(str(doc["error"]), desc, resp.status_code)
    if resp.status_code != 200 or not isinstance(doc, dict):
        retry = resp.headers.get("Retry-After")
        raise SourceError(
            f"token endpoint answered HTTP {resp.status_code}"
            + ("" if isinstance(doc, dict) else " (not JSON)"),
            retry_after=float(retry) if retry and retry.isdigit() else None,
        )
    return doc


@dataclass
class AccessToken:
    value: str
    expires_at: float  # monotonic


class Authenticator:
    """Gives a valid access token, refreshing (and persisting the rotation) as needed."""

    # A refresh refused with a transient invalid_grant is tried this often in one run,
    # with backoff (0.5-1 s, then 1-2 s), before the run fails and the core takes over.
    refresh_attempts = 3
    retry_initial = 1.0

    def __init__(
        self,
        session: requests.Session,
        *,
        token_url: str,
        client_id: str,
        scope: str,
        token_file: Path,
        config_file: Path | str,
        timeout: float,
        log: logging.Logger | None = None,
    ) -> None:
        self.session = session
        self.token_url = token_url
        self.client_id = client_id
        self.scope = scope
        self.token_file = token_file
        self.config_file = config_file
        self.timeout = timeout
        self._access: AccessToken | None = None
        self.refreshes = 0
        self.log = log or logging.getLogger("wattkeeper.wattivahti")

    def invalidate(self) -> None:
        self._access = None

    def access_token(self) -> str:
        if self._access is not None and time.monotonic() < self._access.expires_at:
            return self._access.value
        refresh_token = read_refresh_token(self.token_file, self.config_file)
        doc = self._refresh(refresh_token)
        access = doc.get("access_token")
        if not isinstance(access, str) or not access:
            raise SourceError("token endpoint answered without an access_token")
        SECRETS.add(access)
        rotated = doc.get("refresh_token")
        if isinstance(rotated, str) and rotated and rotated != refresh_token:
            SECRETS.add(rotated)
            try:
                write_refresh_token(self.token_file, rotated)
            except OSError as exc:
                # Whether B2C still takes the old token is not documented: keep no hope.
                raise SourceFatal(
                    f"cannot store the rotated refresh token in {self.token_file}: {exc}; "
                    f"fix the permissions, then {login_hint(self.config_file)}",
                    key=TOKEN_KEY,
                ) from None
        self.refreshes += 1
        rt_life = doc.get("refresh_token_expires_in")
        if isinstance(rt_life, int | float) and not isinstance(rt_life, bool):
            # B2C says how long the new token lives; a token unused for longer is dead.
            self.log.info("refresh token rotated; the new one expires in %s", _span(rt_life))
        lifetime = _number(doc.get("expires_in"), 300.0)
        # Renew a minute early (or halfway, for the short lifetimes of a test portal).
        margin = min(60.0, lifetime / 2)
        self._access = AccessToken(access, time.monotonic() + lifetime - margin)
        return access

    def _refresh(self, refresh_token: str) -> dict[str, Any]:
        """One refresh grant; transient refusals retried, dead tokens SourceFatal."""
        form = {
            "client_id": self.client_id,
            "scope": self.scope,
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
        }
        backoff = Backoff(self.retry_initial, 8 * self.retry_initial)
        for attempt in range(1, self.refresh_attempts + 1):
            try:
                return token_request(self.session, self.token_url, form, self.timeout)
            except TokenRefused as exc:
                if not self._transient(exc):
                    raise self._fatal(exc) from None
                what = f"{exc.code}: {exc.description}"
                if attempt == self.refresh_attempts:
                    raise SourceError(
                        f"the token endpoint refused the refresh {attempt} times with a "
                        f"fault that is not about the token ({what}); the token in "
                        f"{self.token_file} is kept and tried again by the next run; if "
                        f"this goes on for days, {login_hint(self.config_file)}"
                    ) from None
                delay = backoff.next_delay()
                self.log.warning(
                    "token endpoint: %s (transient, attempt %d of %d); retrying in %.1f s",
                    what,
                    attempt,
                    self.refresh_attempts,
                    delay,
                )
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _transient(exc: TokenRefused) -> bool:
        if exc.b2c_code in DEAD_TOKEN_CODES:
            return False
        # server_error and temporarily_unavailable are OAuth's own transient codes (RFC 6749).
        return exc.code in ("invalid_grant", "server_error", "temporarily_unavailable")

    def _fatal(self, exc: TokenRefused) -> SourceFatal:
        code = exc.b2c_code
        if code in DEAD_TOKEN_CODES or exc.code in ("invalid_request", "interaction_required"):
            why = DEAD_TOKEN_CODES.get(code, "cannot be used")
            return SourceFatal(
                f"the WattiVahti refresh token in {self.token_file} {why} "
                f"({exc.code}: {exc.description}); {login_hint(self.config_file)}",
                key=TOKEN_KEY,
            )
        return SourceFatal(
            f"the token endpoint {self.token_url} refused client_id {self.client_id} "
            f"({exc.code}: {exc.description}); check wattivahti.client_id and "
            "wattivahti.scope",
            key="wattivahti.client_id",
        )


def _span(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} hours"
    return f"{seconds:.0f} s"


def _number(value: object, default: float) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, code_challenge) for PKCE with S256 (RFC 7636)."""
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
