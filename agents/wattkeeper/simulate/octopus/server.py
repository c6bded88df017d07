"""HTTP side of the Kraken simulator: POST /v1/graphql/, the Date header, test controls."""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from .kraken import Answer, Kraken, parse_when

log = logging.getLogger("wattkeeper.simulate.octopus")

GRAPHQL_PATH = "/v1/graphql/"


class Handler(BaseHTTPRequestHandler):
    server: KrakenServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), fmt % args)

    def date_time_string(self, timestamp: float | None = None) -> str:
        # The Date header tells the server's time, which tests may have moved.
        return email.utils.formatdate(self.server.kraken.clock.now(), usegmt=True)

    def _send(self, a: Answer) -> None:
        if a.delay:
            time.sleep(a.delay)
        self.send_response(a.status)
        self.send_header("Content-Type", a.ctype)
        self.send_header("Content-Length", str(len(a.body)))
        for k, v in a.headers.items():
            self.send_header(k, v)
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # client gave up
            self.wfile.write(a.body)

    def _json(self, status: int, doc: Any) -> None:
        self._send(Answer(status, json.dumps(doc).encode()))

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/_stats":
            self._json(200, self.server.kraken.stats())
        elif path == "/_served":
            self._json(200, self.server.kraken.served_rows())
        elif path == GRAPHQL_PATH:
            self._json(405, {"errors": [{"message": "GraphQL only supports POST here."}]})
        else:
            self._json(404, {"detail": "Not found."})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        body = self._body()
        kraken = self.server.kraken
        if path == GRAPHQL_PATH:
            self._send(kraken.execute(body, self.headers.get("Authorization")))
            return
        try:
            doc = json.loads(body or b"{}")
            if path == "/_fault":
                kraken.add_fault(
                    str(doc["kind"]), str(doc.get("op", "telemetry")), int(doc.get("count", 1))
                )
                self._json(200, {"pending": kraken.stats()["faults_pending"]})
            elif path == "/_clock":
                with kraken.lock:
                    if "offset" in doc:
                        kraken.clock.offset = float(doc["offset"])
                    kraken.clock.offset += float(doc.get("advance", 0.0))
                self._json(200, {"now": kraken.clock.now(), "offset": kraken.clock.offset})
            elif path == "/_calls":
                kraken.use_calls(str(doc["api_key"]), int(doc["count"]))
                self._json(200, {"ok": True})
            elif path == "/_mini":
                kraken.set_mini(str(doc.get("device", "")), str(doc["state"]))
                self._json(200, {"minis": kraken.stats()["minis"]})
            elif path == "/_swap":
                self._json(200, {"new_device": kraken.swap_meter(str(doc["device"]))})
            elif path == "/_offline":
                now = kraken.clock.now()
                span = (parse_when(str(doc["start"]), now), parse_when(str(doc["end"]), now))
                with kraken.lock:
                    kraken.opt.offline.append(span)
                self._json(200, {"offline": kraken.opt.offline})
            else:
                self._json(404, {"detail": "Not found."})
        except (KeyError, ValueError, TypeError) as exc:
            self._json(400, {"error": f"{type(exc).__name__}: {exc}"})


class KrakenServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], kraken: Kraken) -> None:
        super().__init__(address, Handler)
        self.kraken = kraken
