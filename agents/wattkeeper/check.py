"""``wattkeeper check``: one OK/FAIL line per thing the agent depends on."""

from __future__ import annotations

import logging
import time

from wattkeeper.alerts import Alerter
from wattkeeper.buffer import Buffer
from wattkeeper.config import EX_CONFIG, EX_TEMPFAIL, AgentConfig
from wattkeeper.influx import TLS, InfluxClient
from wattkeeper.journal import SECRETS
from wattkeeper.point import Point
from wattkeeper.source import SourceContext, SourceError, SourceFatal, SourcePlugin


def _line(ok: bool, what: str, detail: str) -> None:
    print(f"{'OK  ' if ok else 'FAIL'} {what:<10} {detail}")


def check_influx(client: InfluxClient, agent: str) -> tuple[bool, str]:
    """Reachable, token valid, bucket writable: write a probe point and see it accepted."""
    health = client.health()
    if health.status == 0 and health.code == TLS:
        return False, f"{client.url}: {health.describe()}"
    if health.status == 0:
        return False, f"{client.url} unreachable: {health.describe()}"
    if not health.ok:
        return False, f"{client.url}/health: {health.describe()}"
    probe = Point("wattkeeper_check", {"ok": 1.0}, time.time_ns(), {"source": agent})
    res = client.write([probe.to_line()])
    if res.ok:
        return True, f"{client.url} org {client.org} bucket {client.bucket} writable"
    hint = {
        401: "the token is not valid",
        403: "the token may not write this bucket",
        404: "org or bucket does not exist",
    }.get(res.status, "")
    return False, f"write to bucket {client.bucket}: {res.describe()}" + (
        f" ({hint})" if hint else ""
    )


def run_checks(cfg: AgentConfig, plugin: SourcePlugin) -> int:
    SECRETS.add(cfg.influxdb.token)
    SECRETS.add(cfg.alerts.slack_webhook_url)
    SECRETS.add(cfg.mqtt.password)
    logging.getLogger("wattkeeper").setLevel(logging.CRITICAL)
    failures = 0
    client = InfluxClient.from_section(cfg.influxdb)
    ok, detail = check_influx(client, plugin.name)
    _line(ok, "influxdb", detail)
    failures += not ok

    try:
        buf = Buffer(cfg.buffer_path, max_rows=cfg.buffer.max_rows, max_bytes=cfg.buffer.max_bytes)
        st = buf.stats()
        _line(True, "buffer", f"{cfg.buffer_path}: {st.pending} pending, {st.dead_lettered} dead")
    except Exception as exc:
        _line(False, "buffer", f"{cfg.buffer_path}: {exc}")
        return EX_CONFIG

    fatal = False
    try:
        ctx = SourceContext(
            config=cfg,
            state=buf,
            log=logging.getLogger(f"wattkeeper.{plugin.name}"),
            influx=client,
            once=True,
        )
        source = plugin.factory(ctx)
        try:
            _line(True, plugin.name, source.check())
        finally:
            source.close()
    except SourceFatal as exc:
        fatal = True
        _line(False, plugin.name, f"{exc.key + ': ' if exc.key else ''}{exc}")
    except (SourceError, OSError) as exc:
        failures += 1
        _line(False, plugin.name, str(exc))
    finally:
        buf.close()

    alerter = Alerter(cfg.alerts.slack_webhook_url, agent=plugin.name, timeout=cfg.alerts.timeout)
    if cfg.alerts.slack_webhook_url:
        try:
            _line(True, "webhook", alerter.check())
        except Exception as exc:
            failures += 1
            _line(False, "webhook", f"Slack webhook: {type(exc).__name__}: {exc}")
    else:
        _line(True, "webhook", "not configured (alerts.slack_webhook_url_file)")
    alerter.close(0)
    client.close()
    if cfg.mqtt.url:
        try:
            from wattkeeper.mqtt.publisher import check_broker

            _line(True, "mqtt", check_broker(cfg.mqtt))
        except (ImportError, ConnectionError) as exc:
            failures += 1
            _line(False, "mqtt", str(exc))
    if fatal:
        return EX_CONFIG
    return EX_TEMPFAIL if failures else 0
