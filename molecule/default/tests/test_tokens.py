"""Least privilege: an agent's token writes (and, where its sync needs it, reads) its own raw
bucket and nothing else; the dashboards token only reads."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import COLLECTOR, ORG, Influx, secret
from sources import ONESHOT, SOURCES

PROBE = "wattkeeper_token_probe ok=1"


def _write(influx: Influx, token: str, bucket: str) -> int:
    r = influx.call(
        "POST", "/api/v2/write", token=token, params={"org": ORG, "bucket": bucket}, data=PROBE
    )
    return r.status_code


def _read(influx: Influx, token: str, bucket: str) -> int:
    r = influx.call(
        "POST",
        f"/api/v2/query?org={ORG}",
        token=token,
        json={"query": f'from(bucket: "{bucket}") |> range(start: -1m) |> limit(n: 1)'},
    )
    return r.status_code


def _agent_token(source: str) -> str:
    return secret(f"tokens/{COLLECTOR}/{source}.token")


def _other(source: str) -> str:
    return next(s for s in SOURCES if s != source)


@pytest.mark.parametrize("source", SOURCES)
def test_agent_token_on_the_host_is_the_one_issued(collector: Any, source: str) -> None:
    on_host = collector.file(f"/etc/wattkeeper/{source}.token").content_string.strip()
    assert on_host == _agent_token(source)


@pytest.mark.parametrize("source", SOURCES)
def test_agent_token_writes_its_own_raw_bucket(influx: Influx, source: str) -> None:
    assert _write(influx, _agent_token(source), f"{source}_raw") == 204


@pytest.mark.parametrize("source", SOURCES)
def test_agent_token_refused_on_other_buckets(influx: Influx, source: str) -> None:
    token = _agent_token(source)
    other = _other(source)
    for bucket in (f"{other}_raw", f"{source}_1m", f"{source}_1h"):
        assert _write(influx, token, bucket) in (401, 403, 404), f"{source} token wrote {bucket}"
        assert _read(influx, token, bucket) in (401, 403, 404), f"{source} token read {bucket}"
    # Nor may it manage the server.
    created = influx.call(
        "POST", "/api/v2/buckets", token=token, json={"orgID": influx.org_id(), "name": "intruder"}
    )
    assert created.status_code in (401, 403, 404), created.text
    assert influx.call("GET", "/api/v2/authorizations", token=token).json().get(
        "authorizations"
    ) in (None, [])


@pytest.mark.parametrize("source", SOURCES)
def test_agent_token_reads_own_bucket_only_where_sync_needs_it(influx: Influx, source: str) -> None:
    status = _read(influx, _agent_token(source), f"{source}_raw")
    if source in ONESHOT:
        assert status == 200
    else:
        assert status in (401, 403, 404)


def test_dashboards_token_reads_everything_writes_nothing(influx: Influx) -> None:
    for source in SOURCES:
        for tier in ("raw", "1m", "5m", "1h"):
            assert _read(influx, influx.dashboards, f"{source}_{tier}") == 200
        assert _write(influx, influx.dashboards, f"{source}_raw") in (401, 403, 404)
