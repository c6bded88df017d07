"""A small InfluxDB 2 HTTP client: write line protocol, check health, run a Flux query.

Plain ``requests`` rather than influxdb-client: the agent needs the raw status code,
InfluxDB's error ``code``, and the Retry-After header of every write to decide between
retry, bisect and dead-letter, and a Pi Zero should not import a reactive framework to
send gzip'd text.
"""

from __future__ import annotations

import csv
import email.utils
import gzip
import io
import re
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from wattkeeper.config import InfluxSection

# HTTP statuses after which the same lines will never be accepted: bisect, then dead-letter.
PERMANENT_STATUSES = frozenset({400, 413, 422})
# WriteResult.code of a certificate the client does not accept (transient: the readings
# stay buffered until the CA file or the URL is fixed).
TLS = "TLS"


@dataclass(frozen=True)
class WriteResult:
    """The outcome of one write request."""

    status: int  # 0 when no HTTP answer came (connection refused, timeout)
    code: str = ""  # InfluxDB's error code ("invalid", "unauthorized"...) or the exception name
    message: str = ""
    retry_after: float | None = None
    # The server's clock at the answer (its Date header, whole seconds), if it sent one.
    server_time: float | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def permanent(self) -> bool:
        """InfluxDB refused the content itself; sending it again cannot help."""
        return self.status in PERMANENT_STATUSES

    def describe(self) -> str:
        if self.status == 0 and self.code == TLS:
            return f"TLS: {self.message}"
        if self.status == 0:
            return f"no answer ({self.code}: {self.message})"
        text = f"HTTP {self.status}"
        if self.code:
            text += f" {self.code}"
        if self.message:
            text += f": {self.message}"
        return text


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds (it may be a number or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


class InfluxClient:
    """Writes to one bucket of one org with one token."""

    def __init__(
        self,
        url: str,
        org: str,
        bucket: str,
        token: str,
        *,
        timeout: float = 10.0,
        use_gzip: bool = True,
        ca_file: Path | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.org = org
        self.bucket = bucket
        self.timeout = timeout
        self.use_gzip = use_gzip
        self.ca_file = ca_file
        # Passed with every request: a path given to requests this way is not overridden
        # by REQUESTS_CA_BUNDLE, and verification is never off.
        self._verify = str(ca_file) if ca_file is not None else system_trust()
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Token {token}"
        self._session.headers["User-Agent"] = "wattkeeper"

    @classmethod
    def from_section(cls, section: InfluxSection, *, timeout: float | None = None) -> InfluxClient:
        """The client an agent's ``[influxdb]`` section describes."""
        return cls(
            section.url,
            section.org,
            section.bucket,
            section.token or "",
            timeout=section.timeout if timeout is None else timeout,
            use_gzip=section.gzip,
            ca_file=section.ca_file,
        )

    def close(self) -> None:
        self._session.close()

    def encode(self, lines: list[str]) -> bytes:
        """The request body for ``lines``."""
        return self.compress(("\n".join(lines) + "\n").encode())

    def compress(self, raw: bytes) -> bytes:
        """Line protocol as sent (gzip level 1: most of the gain, little CPU)."""
        return gzip.compress(raw, compresslevel=1) if self.use_gzip else raw

    def write(self, lines: list[str], timeout: float | None = None) -> WriteResult:
        """POST lines to /api/v2/write (ns precision); never raises for network trouble."""
        return self.post(self.encode(lines), timeout)

    def post(self, body: bytes, timeout: float | None = None) -> WriteResult:
        """POST an encoded body (see ``encode``) to /api/v2/write."""
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.use_gzip:
            headers["Content-Encoding"] = "gzip"
        try:
            resp = self._session.post(
                f"{self.url}/api/v2/write",
                params={"org": self.org, "bucket": self.bucket, "precision": "ns"},
                data=body,
                headers=headers,
                timeout=timeout or self.timeout,
                verify=self._verify,
            )
        except requests.RequestException as exc:
            return self._failure(exc)
        return _result(resp)

    def health(self, timeout: float | None = None) -> WriteResult:
        """GET /health: is the server up (no token needed)."""
        try:
            resp = self._session.get(
                f"{self.url}/health", timeout=timeout or self.timeout, verify=self._verify
            )
        except requests.RequestException as exc:
            return self._failure(exc)
        return _result(resp)

    def query(self, flux: str, timeout: float | None = None) -> list[dict[str, str]]:
        """Run a Flux query and return its rows as dicts (annotated CSV, first table shape)."""
        try:
            resp = self._session.post(
                f"{self.url}/api/v2/query",
                params={"org": self.org},
                json={"query": flux, "dialect": {"annotations": [], "header": True}},
                timeout=timeout or self.timeout,
                verify=self._verify,
            )
        except requests.RequestException as exc:
            raise InfluxError(self._failure(exc)) from None
        if resp.status_code != 200:
            raise InfluxError(_result(resp))
        rows: list[dict[str, str]] = []
        for block in resp.text.replace("\r\n", "\n").split("\n\n"):
            if not block.strip():
                continue
            reader = csv.DictReader(io.StringIO(block))
            rows.extend({k: v for k, v in row.items() if k} for row in reader)
        return rows

    def _failure(self, exc: requests.RequestException) -> WriteResult:
        """No HTTP answer: a certificate refused (one line, with what to fix) or else."""
        reason = tls_reason(exc)
        if reason is None:
            return WriteResult(0, type(exc).__name__, _short(exc))
        trusted = (
            f"trusting only influxdb.ca_file {self.ca_file}"
            if self.ca_file is not None
            else "trusting the system's CAs; set influxdb.ca_file to the CA that signed it"
        )
        if "mismatch" in reason:
            trusted = "influxdb.url must use a name the certificate was issued for"
        return WriteResult(0, TLS, f"{reason} ({trusted})")


def system_trust() -> str | bool:
    """The operating system's CA store (what ``ca_file`` unset means), else requests'
    own bundle: requests alone would use certifi's copy, not a CA the admin installed."""
    paths = ssl.get_default_verify_paths()
    if paths.cafile and Path(paths.cafile).is_file():
        return paths.cafile
    if paths.capath and Path(paths.capath).is_dir() and any(Path(paths.capath).iterdir()):
        return paths.capath
    return True


def tls_reason(exc: BaseException) -> str | None:
    """The readable reason of a TLS failure buried in requests' exception chain, e.g.
    "certificate verify failed: self-signed certificate in certificate chain"."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        cur = todo.pop()
        if not isinstance(cur, BaseException) or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLCertVerificationError):
            detail = str(cur.verify_message or cur.reason or "").strip().rstrip(".")
            return f"certificate verify failed: {detail}"
        if isinstance(cur, ssl.SSLError) and not isinstance(cur, requests.RequestException):
            return f"TLS handshake failed: {cur.reason or cur}"
        todo += [*cur.args, getattr(cur, "reason", None), cur.__cause__, cur.__context__]
    if isinstance(exc, requests.exceptions.SSLError):
        m = re.search(r"certificate verify failed: ([^(']+)", str(exc))
        return f"certificate verify failed: {m.group(1).strip()}" if m else _short(exc)
    return None


class InfluxError(Exception):
    """A query or API call that InfluxDB refused or did not answer."""

    def __init__(self, result: WriteResult) -> None:
        super().__init__(result.describe())
        self.result = result


def _short(exc: Exception) -> str:
    text = str(exc)
    # requests nests the whole urllib3 chain; keep the readable end of it.
    if "Caused by" in text:
        text = text.split("Caused by", 1)[1].strip(" ()'\"")
    return text[:300]


def parse_http_date(value: str | None) -> float | None:
    """An HTTP Date header as a Unix time, or None."""
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


def _result(resp: requests.Response) -> WriteResult:
    code = ""
    message = ""
    if not 200 <= resp.status_code < 300:
        try:
            doc: Any = resp.json()
            code = str(doc.get("code", ""))
            message = str(doc.get("message", ""))
        except ValueError:
            message = resp.text[:300]
    return WriteResult(
        resp.status_code,
        code,
        message[:1000],
        parse_retry_after(resp.headers.get("Retry-After")),
        parse_http_date(resp.headers.get("Date")),
    )
