"""A bench-only streaming source: readings arrive as line protocol on a TCP socket.

It lets the Telegraf comparison (bench/telegraf.py) feed wattkeeper exactly the bytes it
feeds Telegraf's ``socket_listener``: one generator, the same lines, the same rate. Each
line becomes a Point with the line's own timestamp and is put into the core's sink, which
commits the queue to the SQLite buffer every ``buffer.commit_interval`` (1 s), as the pulse
source does. Only the simple lines the bench writes are understood (no escapes, no
strings): this is a load generator's inlet, not a line-protocol parser for users.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from dataclasses import dataclass

from wattkeeper.point import FieldValue, Integer, Point
from wattkeeper.source import Batch, PointSink, SourceContext, SourcePlugin

log = logging.getLogger("wattkeeper.linefeed")


@dataclass
class LinefeedSection:
    listen: str = "127.0.0.1:0"


def parse(line: str) -> Point:
    """``measurement,tag=v field=1i,other=2.5 TIME_NS`` -> Point."""
    head, body, ts = line.split(" ")
    measurement, *tag_parts = head.split(",")
    tags = dict(part.split("=", 1) for part in tag_parts)
    fields: dict[str, FieldValue] = {}
    for part in body.split(","):
        key, value = part.split("=", 1)
        fields[key] = Integer(int(value[:-1])) if value.endswith("i") else float(value)
    return Point(measurement, fields, int(ts), tags)


class LinefeedSource:
    def __init__(self, ctx: SourceContext) -> None:
        cfg: LinefeedSection = ctx.config.source
        host, _, port = cfg.listen.rpartition(":")
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind((host, int(port)))
        self.server.listen(4)
        self.sink: PointSink | None = None
        self.stopping = threading.Event()
        self.bad = 0

    def start(self, sink: PointSink) -> None:
        self.sink = sink
        threading.Thread(target=self._accept, name="linefeed", daemon=True).start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        assert self.sink is not None
        with conn, conn.makefile("r", encoding="utf-8") as stream:
            for line in stream:
                try:
                    self.sink.put(parse(line.rstrip("\n")))
                except ValueError:
                    self.bad += 1

    def stop(self) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            self.server.close()

    def lost(self) -> int:
        return self.bad

    def next_delay(self) -> float:
        return 1.0

    def poll(self) -> Batch:
        return Batch()

    def check(self) -> str:
        return f"listening on {self.server.getsockname()}"

    def close(self) -> None:
        self.stop()


PLUGIN = SourcePlugin(
    name="linefeed", config_class=LinefeedSection, factory=LinefeedSource, streaming=True
)
