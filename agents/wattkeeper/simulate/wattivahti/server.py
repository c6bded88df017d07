"""HTTP side of the WattiVahti simulator: B2C endpoints, meterdata2, faults, stats."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter, deque
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from wattkeeper.simulate.wattivahti.data import STEPS, answer, entries, parse_bound
from wattkeeper.simulate.wattivahti.tokens import TRANSIENT_GRANT_ERROR, OAuthError, TokenIssuer

log = logging.getLogger("wattkeeper.simulate.wattivahti")

METER_FAULTS = ("500", "503", "hang", "nonjson", "empty", "badvalue")
# What a "badvalue" answer carries instead of its first measured quantities.
BAD_QUANTITIES = ("12,5", True, "NaN", {"kWh": 1.0})
# token500: HTTP 500 from the token endpoint; b2c_transient: HTTP 400 invalid_grant
# AADB2C90085 (see tokens.TRANSIENT_GRANT_ERROR), the token stays valid.
TOKEN_FAULTS = ("token500", "b2c_transient")
FAULTS = METER_FAULTS + TOKEN_FAULTS


class Portal:
    """Everything the handlers share; one lock for the counters and the fault queue."""

    def __init__(
        self,
        issuer: TokenIssuer,
        *,
        quarter_since: datetime,
        lag: float,
        delay: float,
        hang: float,
        faults: list[str],
        pt15min_old_error: bool = False,
        spring_labels: bool = False,
        truth: Path | None = None,
    ) -> None:
        self.issuer = issuer
        self.pt15min_old_error = pt15min_old_error
        self.spring_labels = spring_labels
        self.truth = truth
        self.quarter_since = quarter_since
        self.lag = lag
        self.delay = delay
        self.hang = hang
        self.faults: deque[str] = deque(faults)
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.served: Counter[str] = Counter()
        self.recent: deque[dict[str, str]] = deque(maxlen=500)

    def take_fault(self, kinds: tuple[str, ...]) -> str | None:
        with self.lock:
            if self.faults and self.faults[0] in kinds:
                kind = self.faults.popleft()
                self.served[kind] += 1
                return kind
        return None

    def record_truth(self, mp: str, mtype: int, resolution: str, tsv: list[Any]) -> None:
        """Append every measured entry served (one JSON line each) to the truth file."""
        if self.truth is None:
            return
        lines = [
            json.dumps(
                {
                    "metering_point": mp,
                    "measurement_type": mtype,
                    "resolution": resolution,
                    "utc": e.utc,
                    "label": e.label,
                    "quantity": e.quantity,
                }
            )
            for e in tsv
            if e.quantity is not None
        ]
        with self.lock, self.truth.open("a", encoding="utf-8") as fh:
            fh.writelines(line + "\n" for line in lines)

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "counts": dict(self.counts),
                "faults_served": dict(self.served),
                "faults_pending": list(self.faults),
                "refresh_tokens_issued": self.issuer.issued,
                "token_refused": self.issuer.refused,
                "refresh_tokens_reused": self.issuer.reused,
                "valid_refresh_tokens": self.issuer.valid_refresh_count(),
                "meterdata_requests": list(self.recent),
            }


class Handler(BaseHTTPRequestHandler):
    server: PortalServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), fmt % args)

    # -- helpers --------------------------------------------------------------------------

    def _send(
        self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, doc: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(doc).encode(), "application/json; charset=utf-8", headers)

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    # -- routes ---------------------------------------------------------------------------

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        portal = self.server.portal
        if parts.path == "/_stats":
            self._json(200, portal.stats())
        elif parts.path.endswith("/oauth2/v2.0/authorize"):
            self._authorize(q)
        elif parts.path.endswith("/meterdata2"):
            with portal.lock:
                portal.counts["meterdata2"] += 1
            self._meterdata(q)
        else:
            self._json(404, {"Message": f"no route {parts.path}"})

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        body = self._body()
        portal = self.server.portal
        if parts.path.endswith("/oauth2/v2.0/token"):
            with portal.lock:
                portal.counts["token"] += 1
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            self._token(form)
        elif parts.path == "/_fault":
            doc = json.loads(body or b"{}")
            kind, count = str(doc.get("kind", "")), int(doc.get("count", 1))
            if kind not in FAULTS:
                self._json(400, {"error": f"kind must be one of {', '.join(FAULTS)}"})
                return
            with portal.lock:
                portal.faults.extend([kind] * count)
            self._json(200, {"queued": list(portal.faults)})
        elif parts.path == "/_tokens":
            doc = json.loads(body or b"{}")
            portal.issuer.add_refresh(str(doc["refresh_token"]))
            self._json(200, {"ok": True})
        else:
            self._json(404, {"Message": f"no route {parts.path}"})

    def _authorize(self, q: dict[str, str]) -> None:
        try:
            code = self.server.portal.issuer.authorize(q)
        except OAuthError as exc:
            self._json(400, exc.body())
            return
        params = urlencode({"state": q.get("state", ""), "code": code})
        sep = "#" if q.get("response_mode", "fragment") == "fragment" else "?"
        location = f"{q.get('redirect_uri', '')}{sep}{params}"
        self._send(302, b"", "text/plain", {"Location": location})

    def _token(self, form: dict[str, str]) -> None:
        portal = self.server.portal
        fault = portal.take_fault(TOKEN_FAULTS)
        if fault == "token500":
            self._send(500, b"<html>Internal Server Error</html>", "text/html")
            return
        try:
            if fault == "b2c_transient":
                raise TRANSIENT_GRANT_ERROR
            doc = portal.issuer.token(form)
        except OAuthError as exc:
            log.info("token endpoint refused: %s %s", exc.error, exc.description[:60])
            self._json(400, exc.body())
            return
        self._json(200, doc)

    def _meterdata(self, q: dict[str, str]) -> None:
        portal = self.server.portal
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not portal.issuer.access_valid(auth[7:]):
            self._json(401, {"Message": "Authorization has been denied for this request."})
            return
        try:
            mp = q["meteringPointCode"]
            mtype = int(q["measurementType"])
            start, stop = parse_bound(q["start"]), parse_bound(q["stop"])
            resolution = q.get("resultStep", "PT1H")
            if resolution not in STEPS or mtype not in (1, 6):
                raise ValueError(f"bad resultStep {resolution} or measurementType {mtype}")
        except (KeyError, ValueError) as exc:
            self._json(400, {"Message": f"The request is invalid: {exc}"})
            return
        with portal.lock:
            portal.recent.append(
                {
                    "start": q["start"],
                    "stop": q["stop"],
                    "resultStep": resolution,
                    "measurementType": str(mtype),
                    "received": datetime.now(UTC).isoformat(),
                }
            )
        if portal.delay:
            time.sleep(portal.delay)
        fault = portal.take_fault(METER_FAULTS)
        if fault in ("500", "503"):
            headers = {"Retry-After": "1"} if fault == "503" else {}
            self._json(int(fault), {"Message": "An error has occurred."}, headers)
            return
        if fault == "hang":
            time.sleep(portal.hang)
            self._json(504, {"Message": "timeout"})
            return
        if fault == "nonjson":
            self._send(200, b"<html><body>Service Unavailable</body></html>", "text/html")
            return
        if portal.pt15min_old_error and resolution == "PT15MIN" and stop <= portal.quarter_since:
            # Evidence is thin: issue 13 reports that the portal can answer a PT15MIN
            # request for a period before 15-minute metering with an error instead of an
            # empty series; no public client logs that answer, so status and body (the
            # ASP.NET Web API default) are our guess.
            self._json(500, {"Message": "An error has occurred."})
            return
        now = datetime.now(UTC)
        tsv = entries(
            measurement_type=mtype,
            start=start,
            stop=stop,
            resolution=resolution,
            quarter_since=portal.quarter_since,
            data_until=now - timedelta(seconds=portal.lag),
            spring_labels=portal.spring_labels,
        )
        if fault == "empty":
            tsv = []
        doc = answer(mp, start, stop, resolution, tsv)
        if fault != "badvalue":
            portal.record_truth(mp, mtype, resolution, tsv)
        if fault == "badvalue":
            tsv = doc["getconsumptionsresult"]["consumptiondata"]["timeseries"]["values"]["tsv"]
            measured = [e for e in tsv if e["quantity"] is not None]
            for entry, bad in zip(measured, BAD_QUANTITIES, strict=False):
                entry["quantity"] = bad
        self._json(200, doc)


class PortalServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], portal: Portal) -> None:
        super().__init__(address, Handler)
        self.portal = portal
