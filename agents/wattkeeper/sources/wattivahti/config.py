"""The [wattivahti] section of the agent file."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from wattkeeper.config import ConfigError, Duration

# The public (secret-less) OAuth client of the www.wattivahti.fi single-page app and its
# Azure AD B2C tenant; a user only ever needs to set metering_point.
B2C_BASE = "https://pesv.b2clogin.com/pesv.onmicrosoft.com/b2c_1_tunnistus_signinv2/oauth2/v2.0"
DEFAULT_TOKEN_URL = f"{B2C_BASE}/token"
DEFAULT_API_URL = "https://porienergia-prod-agent.frendsapp.com:9999/api/onlineapi/v1/meterdata2"
DEFAULT_CLIENT_ID = "84ebdb93-9ea6-42c7-bd7d-302abf7556fa"
DEFAULT_SCOPE = "https://pesv.onmicrosoft.com/salpa/customer.read openid profile offline_access"
DEFAULT_REDIRECT_URI = "https://www.wattivahti.fi/wattivahti/"


@dataclass
class WattiVahtiSection:
    """[wattivahti]: the portal, the metering point and how far back to sync."""

    # The metering point code (käyttöpaikka), on the bill and in the portal.
    metering_point: str
    # File holding the rotating refresh token (the agent renews it).
    refresh_token_file: Path = Path("/var/lib/wattkeeper/wattivahti/refresh_token")
    # The portal's Azure AD B2C token endpoint.
    token_url: str = DEFAULT_TOKEN_URL
    # The portal's meter data endpoint (meterdata2).
    api_url: str = DEFAULT_API_URL
    # Empty: token_url with its last segment replaced by "authorize".
    authorize_url: str = ""
    # The portal app's public OAuth client.
    client_id: str = DEFAULT_CLIENT_ID
    # OAuth scopes asked for.
    scope: str = DEFAULT_SCOPE
    # Where the login page sends the browser back to.
    redirect_uri: str = DEFAULT_REDIRECT_URI
    # First run (no cursor, nothing in the bucket): fetch this many days back.
    initial_days: int = 7
    # Each run starts this long before the newest reading already taken.
    overlap: Duration = 7200.0
    # Long ranges are fetched this many (whole, local) days per request.
    chunk: Duration = 7 * 86400.0
    # Also fetch production (measurementType=6) into production_wh.
    production: bool = False
    # Production often has a metering point of its own; empty = metering_point.
    production_metering_point: str = ""
    # Daemon mode only: time between syncs (the timer decides in oneshot mode).
    interval: Duration = 3600.0
    # Timeout of one API call.
    timeout: Duration = 30.0

    def validate(self, where: str, file: Path) -> None:
        if not re.fullmatch(r"[0-9A-Za-z_-]{1,64}", self.metering_point):
            raise ConfigError(
                f"{where}.metering_point", file, "must be the metering point code, e.g. 1234567"
            )
        for key in ("token_url", "api_url", "authorize_url", "redirect_uri"):
            value = getattr(self, key)
            if value and not re.match(r"^https?://[^/\s]+", value):
                raise ConfigError(f"{where}.{key}", file, f'"{value}" is not an http(s) URL')
        if self.initial_days < 1:
            raise ConfigError(f"{where}.initial_days", file, "must be at least 1")
        if self.chunk < 86400:
            raise ConfigError(f"{where}.chunk", file, 'must be at least one day ("1d")')
        if self.overlap < 0:
            raise ConfigError(f"{where}.overlap", file, "must not be negative")
        if self.interval < 60:
            raise ConfigError(f"{where}.interval", file, "must be at least 1m")
        if self.timeout <= 0:
            raise ConfigError(f"{where}.timeout", file, "must be positive")
        if not self.authorize_url:
            self.authorize_url = self.token_url.rsplit("/", 1)[0] + "/authorize"

    @property
    def chunk_days(self) -> int:
        return max(1, int(self.chunk // 86400))

    @property
    def production_point(self) -> str:
        return self.production_metering_point or self.metering_point
