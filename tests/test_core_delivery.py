"""The core against a real InfluxDB 2: exactly once, source timestamps, dead letters."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from conftest import Target, agent_config, run_wattkeeper
from plugins.tiny_source import BASE_NS
from support.agentproc import buffer_rows

TINY = "tiny_source:PLUGIN"


def tiny_rows(target: Target) -> list[tuple[str, float]]:
    rows = target.query(
        '|> range(start: 0) |> filter(fn: (r) => r._measurement == "tiny" and r._field == "seq")'
        ' |> keep(columns: ["_time", "_value"])'
    )
    return sorted((r["_time"], float(r["_value"])) for r in rows)


def test_points_land_exactly_once_with_source_timestamps(target: Target, tmp_path: Path) -> None:
    cfg = agent_config(tmp_path, target, "tiny", {"total": 25, "points_per_poll": 25})
    res = run_wattkeeper("run", TINY, "-c", cfg, "--once")
    assert res.returncode == 0, res.stderr
    rows = tiny_rows(target)
    assert len(rows) == 25
    for seq, (t, value) in enumerate(rows):
        assert value == float(seq)
        assert t == _rfc3339(BASE_NS + seq * 10**9)
    # A second run generates nothing new and a replay of the same readings overwrites.
    assert run_wattkeeper("run", TINY, "-c", cfg, "--once").returncode == 0
    assert len(tiny_rows(target)) == 25
    # The agent's own metrics point landed too.
    metrics = target.query(
        '|> range(start: -1h) |> filter(fn: (r) => r._measurement == "wattkeeper_agent")'
    )
    fields = {r["_field"] for r in metrics}
    assert {"buffer_rows", "points_written", "points_dropped", "poll_errors"} <= fields
    assert {r["source"] for r in metrics} == {"tiny"}


def _rfc3339(ns: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_rejected_line_is_dead_lettered_and_the_rest_lands(target: Target, tmp_path: Path) -> None:
    # Every 10th reading carries a string where the bucket holds floats: a type conflict.
    cfg = agent_config(
        tmp_path, target, "tiny", {"total": 100, "points_per_poll": 100, "bad_every": 10}
    )
    res = run_wattkeeper("run", TINY, "-c", cfg, "--once")
    assert res.returncode == 0, res.stderr
    rows = tiny_rows(target)
    assert [v for _, v in rows] == [float(i) for i in range(100) if i % 10 != 9]
    assert "dead-letter" in res.stderr
    stats = run_wattkeeper("buffer", "stats", "-c", cfg, "--source", TINY, "--dead", "20")
    assert stats.returncode == 0
    assert "dead-lettered   10 points" in stats.stdout
    assert "pending         0 points" in stats.stdout
    assert stats.stdout.count('seq="bad') == 10
    assert "field type conflict" in stats.stdout


def test_unreachable_influx_keeps_points_and_exits_75(tmp_path: Path) -> None:
    cfg = agent_config(tmp_path, None, "tiny", {"total": 30, "points_per_poll": 30})
    res = run_wattkeeper("run", TINY, "-c", cfg, "--once")
    assert res.returncode == 75
    assert "keeping" in res.stderr and "Connection refused" in res.stderr
    assert buffer_rows(tmp_path / "tiny-buffer.sqlite", "tiny,%") == 30


def test_bad_token_is_kept_and_explained(target: Target, tmp_path: Path) -> None:
    bad = tmp_path / "bad.token"
    bad.write_text("not-a-valid-token")
    bad.chmod(0o600)
    cfg = agent_config(
        tmp_path, target, "tiny", {"total": 5, "points_per_poll": 5}, influxdb={"token_file": bad}
    )
    res = run_wattkeeper("run", TINY, "-c", cfg, "--once")
    assert res.returncode == 75
    assert "HTTP 401" in res.stderr and "check the token file" in res.stderr
    assert "not-a-valid-token" not in res.stderr
    assert buffer_rows(tmp_path / "tiny-buffer.sqlite", "tiny,%") == 5


def test_full_buffer_drops_oldest_and_counts(tmp_path: Path) -> None:
    cfg = agent_config(
        tmp_path, None, "tiny", {"total": 300, "points_per_poll": 300}, buffer={"max_rows": 100}
    )
    res = run_wattkeeper("run", TINY, "-c", cfg, "--once")
    assert res.returncode == 75
    assert "dropped the 200 oldest points" in res.stderr
    stats = run_wattkeeper("buffer", "stats", "-c", cfg, "--source", TINY).stdout
    # 300 readings + 1 metrics point into 100 rows: 201 dropped, the newest kept.
    assert "points_dropped  201" in stats
    assert "pending         100 points" in stats


def test_check_reports_each_dependency(target: Target, tmp_path: Path) -> None:
    cfg = agent_config(tmp_path, target, "tiny", {})
    res = run_wattkeeper("check", "-c", cfg, "--source", TINY)
    assert res.returncode == 0, res.stdout
    lines = res.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["OK", "config"],
        ["OK", "influxdb"],
        ["OK", "buffer"],
        ["OK", "tiny"],
        ["OK", "webhook"],
    ]
    other = tmp_path / "ro.token"
    other.write_text(target.server.create_token(target.bucket_id, ("read",)))
    other.chmod(0o600)
    cfg2 = agent_config(tmp_path, target, "tiny", {}, influxdb={"token_file": other})
    res = run_wattkeeper("check", "-c", cfg2, "--source", TINY)
    assert res.returncode == 75
    assert "FAIL influxdb" in res.stdout and "may not write this bucket" in res.stdout


class _Webhook(BaseHTTPRequestHandler):
    posts: list[str] = []
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).posts.append(json.loads(body).get("text", ""))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_alerts_are_sent_once_per_kind_and_a_dead_webhook_changes_nothing(
    tmp_path: Path,
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook = tmp_path / "hook"
    hook.write_text(f"http://127.0.0.1:{server.server_port}/services/T/B/X")
    hook.chmod(0o600)
    try:
        cfg = agent_config(
            tmp_path,
            None,
            "tiny",
            {"points_per_poll": 5, "interval": "50ms", "total": 200},
            alerts={"slack_webhook_url_file": hook, "min_interval": "1h"},
            agent={"flush_timeout": "1s"},
        )
        from conftest import spawn_wattkeeper
        from support.agentproc import wait_for

        log = tmp_path / "agent.log"
        proc = spawn_wattkeeper("run", TINY, "-c", cfg, log=log)
        wait_for(lambda: any("InfluxDB lost" in p for p in _Webhook.posts), 30, "lost alert")
        time.sleep(3)  # several failed deliveries (retry_max is 2s)
        proc.terminate()
        assert proc.wait(20) == 0
        wait_for(lambda: any("stopped with points" in p for p in _Webhook.posts), 10, "stop alert")
        kinds = [p.splitlines()[0] for p in _Webhook.posts]
        assert sum("InfluxDB lost" in k for k in kinds) == 1  # once per outage
        assert sum("agent started" in k for k in kinds) == 1
        assert "/services/T/B/X" not in log.read_text()

        # A webhook that fails must not disturb collection.
        _Webhook.status = 500
        _Webhook.posts.clear()
        res = run_wattkeeper("run", TINY, "-c", cfg, "--once")
        assert res.returncode == 75
        assert buffer_rows(tmp_path / "tiny-buffer.sqlite", "tiny,%") == 200
    finally:
        server.shutdown()


def test_alerter_sends_at_most_one_alert_per_kind_per_period() -> None:
    from wattkeeper.alerts import Alerter, Event

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Webhook.status = 200
    _Webhook.posts.clear()
    try:
        alerter = Alerter(
            f"http://127.0.0.1:{server.server_port}/hook", agent="a", min_interval=0.5
        )
        assert alerter.alert(Event.SOURCE_FAILING, "first")
        assert not alerter.alert(Event.SOURCE_FAILING, "second, within the period")
        assert alerter.alert(Event.INFLUX_LOST, "another kind is not held back")
        time.sleep(0.6)
        assert alerter.alert(Event.SOURCE_FAILING, "third, after the period")
        alerter.close(5)
        assert [p.splitlines()[1] for p in _Webhook.posts] == [
            "first",
            "another kind is not held back",
            "third, after the period",
        ]
        assert alerter.suppressed == 1
    finally:
        server.shutdown()


def test_hanging_webhook_never_blocks_the_caller() -> None:
    import socket

    from wattkeeper.alerts import Alerter, Event

    # A webhook that accepts connections and never answers: each post hangs until timeout.
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(100)
    try:
        alerter = Alerter(
            f"http://127.0.0.1:{hang.getsockname()[1]}/hook", agent="a", min_interval=0, timeout=2
        )
        start = time.monotonic()
        for _ in range(20):
            alerter.alert(Event.SOURCE_FAILING, "x")
        # Had alert() waited for the webhook, 20 alerts would take 40 s.
        assert time.monotonic() - start < 5
        alerter.close(0)
        assert alerter.sent == 0
    finally:
        hang.close()
