"""Logging to journald with structured fields, or to stderr where there is no journal.

journald's native protocol is a datagram of KEY=value lines on a Unix socket, simple
enough that an agent needs no compiled dependency for it (systemd-python would need a
C toolchain and libsystemd-dev on every Pi). ``journal.send`` failing silently outside a
journald host is why the socket's presence is checked, not assumed.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys
import traceback
from pathlib import Path

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")

_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class SecretFilter(logging.Filter):
    """Replaces every registered secret by ``***`` in any record, wherever it came from."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 4:
            self.secrets.add(secret)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        msg = record.getMessage()
        changed = msg
        for s in self.secrets:
            changed = changed.replace(s, "***")
        if changed != msg:
            record.msg = changed
            record.args = None
        return True


SECRETS = SecretFilter()


def _encode_field(key: str, value: str) -> bytes:
    data = value.encode("utf-8", "replace")
    if b"\n" in data:
        return key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return key.encode() + b"=" + data + b"\n"


class JournalHandler(logging.Handler):
    """Sends each record to journald with PRIORITY, SYSLOG_IDENTIFIER and our own fields."""

    def __init__(self, identifier: str, fields: dict[str, str]) -> None:
        super().__init__()
        self.identifier = identifier
        self.fields = fields
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
            parts = [
                _encode_field("MESSAGE", msg),
                _encode_field("PRIORITY", str(_PRIORITY.get(record.levelno, 6))),
                _encode_field("SYSLOG_IDENTIFIER", self.identifier),
                _encode_field("LOGGER", record.name),
                _encode_field("CODE_FILE", record.pathname),
                _encode_field("CODE_LINE", str(record.lineno)),
                _encode_field("CODE_FUNC", record.funcName),
            ]
            parts += [_encode_field(k, v) for k, v in self.fields.items()]
            self._sock.sendto(b"".join(parts), str(JOURNAL_SOCKET))
        except OSError:
            # A journal that went away must not take the agent with it.
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)

    def close(self) -> None:
        self._sock.close()
        super().close()


class OneLineFormatter(logging.Formatter):
    """Tracebacks only at debug level: users see one clear line per problem."""

    def __init__(self, fmt: str, debug: bool) -> None:
        super().__init__(fmt, "%Y-%m-%dT%H:%M:%S")
        self.debug = debug

    def formatException(self, ei):  # type: ignore[no-untyped-def]
        if self.debug:
            return "".join(traceback.format_exception(*ei)).rstrip()
        return f"({ei[0].__name__}: {ei[1]})" if ei[0] else ""


def setup_logging(source: str, level: str = "info", target: str = "auto") -> str:
    """Configure the ``wattkeeper`` logger; return where logs go ("journal" or "stderr")."""
    root = logging.getLogger("wattkeeper")
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    root.setLevel(level.upper())
    root.propagate = False
    debug = level == "debug"
    use_journal = target == "journal" or (target == "auto" and JOURNAL_SOCKET.exists())
    handlers: list[logging.Handler] = []
    if use_journal:
        jh = JournalHandler(
            f"wattkeeper-{source}",
            {"WATTKEEPER_SOURCE": source, "WATTKEEPER_PID": str(os.getpid())},
        )
        jh.setFormatter(OneLineFormatter("%(message)s", debug))
        handlers.append(jh)
    if not use_journal or sys.stderr.isatty():
        sh = logging.StreamHandler(sys.stderr)
        sh.setFormatter(
            OneLineFormatter(f"%(asctime)s %(levelname)s wattkeeper-{source}: %(message)s", debug)
        )
        handlers.append(sh)
    for h in handlers:
        h.addFilter(SECRETS)
        root.addHandler(h)
    # Library chatter (urllib3 retries) stays out unless debugging.
    logging.getLogger("urllib3").setLevel(logging.DEBUG if debug else logging.WARNING)
    return "journal" if use_journal else "stderr"
