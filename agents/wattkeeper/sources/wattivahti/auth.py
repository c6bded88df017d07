"""Azure AD B2C tokens: the rotating refresh token on disk, and access tokens from it.

B2C hands out a new refresh token with every refresh. It is written to disk (temp file,
fsync, rename, fsync of the directory, mode 0600) before the access token is used, so
a crash at any point leaves either the old or the new token on disk, never a torn file.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from wattkeeper.config import ConfigError, read_secret_file
from wattkeeper.journal import SECRETS
from wattkeeper.source import SourceError, SourceFatal

TOKEN_KEY = "wattivahti.refresh_token_file"  # noqa: S105 - a config key, not a secret


def login_hint(config_file: Path | str) -> str:
    return f"get a new one with: wattkeeper wattivahti login -c {config_file}"


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

    def invalidate(self) -> None:
        self._access = None

    def access_token(self) -> str:
        if self._access is not None and time.monotonic() < self._access.expires_at:
            return self._access.value
        refresh_token = read_refresh_token(self.token_file, self.config_file)
        form = {
            "client_id": self.client_id,
            "scope": self.scope,
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
        }
        try:
            doc = token_request(self.session, self.token_url, form, self.timeout)
        except TokenRefused as exc:
            if exc.code in ("invalid_grant", "invalid_request", "interaction_required"):
                raise SourceFatal(
                    f"the WattiVahti refresh token in {self.token_file} was refused "
                    f"({exc.code}: {exc.description}); it has expired or was already used; "
                    f"{login_hint(self.config_file)}",
                    key=TOKEN_KEY,
                ) from None
            raise SourceFatal(
                f"the token endpoint {self.token_url} refused client_id {self.client_id} "
                f"({exc.code}: {exc.description}); check wattivahti.client_id and "
                "wattivahti.scope",
                key="wattivahti.client_id",
            ) from None
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
                # The old token is spent: without the new one on disk the next run fails.
                raise SourceFatal(
                    f"cannot store the rotated refresh token in {self.token_file}: {exc}; "
                    f"fix the permissions, then {login_hint(self.config_file)}",
                    key=TOKEN_KEY,
                ) from None
        self.refreshes += 1
        lifetime = _number(doc.get("expires_in"), 300.0)
        # Renew a minute early (or halfway, for the short lifetimes of a test portal).
        margin = min(60.0, lifetime / 2)
        self._access = AccessToken(access, time.monotonic() + lifetime - margin)
        return access


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
