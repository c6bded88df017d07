"""The agent and https: a server whose certificate does not check out (a CA the agent does
not trust, a name the certificate was not issued for) is refused with one line naming the
URL and the reason, never a traceback and never by falling back to no verification; the
readings stay in the buffer and go out once the agent is given the right CA.

Against a real influxd serving https (``influx_tls``: a certificate for "localhost" signed
by a test CA of its own)."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import Target, agent_config, make_target, run_wattkeeper
from support.influxd import InfluxServer
from support.tls import make_server_tls

TINY = "tiny_source:PLUGIN"


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "cannot deliver to InfluxDB" in line]


def _pending(cfg: Path) -> int:
    res = run_wattkeeper("buffer", "stats", "-c", cfg, "--source", TINY)
    assert res.returncode == 0, res.stderr
    m = re.search(r"^pending\s+(\d+) points", res.stdout, re.M)
    assert m, res.stdout
    return int(m.group(1))


def _count(target: Target) -> int:
    return target.count("tiny", "seq")


def test_refused_certificates_keep_readings_until_the_ca_is_right(
    influx_tls: InfluxServer, tmp_path: Path
) -> None:
    assert influx_tls.tls is not None
    target = make_target(influx_tls, tmp_path)
    other_ca = make_server_tls(tmp_path / "other-ca", ca_name="not the server's CA").ca
    url = f"https://localhost:{influx_tls.port}"

    def run(**influxdb: object) -> tuple[int, str]:
        cfg = agent_config(
            tmp_path, target, "tiny", {"total": 10, "points_per_poll": 10}, influxdb=influxdb
        )
        res = run_wattkeeper("run", TINY, "-c", cfg, "--once", timeout=60)
        assert "Traceback" not in res.stderr, res.stderr
        return res.returncode, res.stderr

    # 1. A CA that did not sign the server's certificate.
    code, err = run(url=url, ca_file=other_ca)
    assert code == 75, err
    (line,) = _warnings(err)
    assert f"cannot deliver to InfluxDB {url}: TLS: certificate verify failed: " in line
    assert "self-signed certificate in certificate chain" in line
    assert f"trusting only influxdb.ca_file {other_ca}" in line
    cfg = tmp_path / "tiny.toml"
    held = _pending(cfg)
    assert held >= 10  # the 10 readings (and the agent's metrics point) are kept

    # 2. No CA file: the system's CAs do not know the test CA either. No fallback.
    code, err = run(url=url)
    assert code == 75, err
    (line,) = _warnings(err)
    assert "self-signed certificate in certificate chain" in line
    assert "set influxdb.ca_file to the CA that signed it" in line

    # 3. The right CA, but a name the certificate was not issued for.
    wrong_name = f"https://127.0.0.1:{influx_tls.port}"
    code, err = run(url=wrong_name, ca_file=influx_tls.tls.ca)
    assert code == 75, err
    (line,) = _warnings(err)
    assert f"cannot deliver to InfluxDB {wrong_name}: TLS: certificate verify failed: " in line
    assert "mismatch, certificate is not valid for '127.0.0.1'" in line
    assert "influxdb.url must use a name the certificate was issued for" in line
    assert _pending(cfg) >= held
    assert _count(target) == 0

    # `wattkeeper check` says the same in its FAIL line.
    res = run_wattkeeper("check", "-c", cfg, "--source", TINY, timeout=60)
    influx_line = next(x for x in res.stdout.splitlines() if " influxdb " in x)
    assert influx_line.startswith("FAIL") and "certificate is not valid for" in influx_line

    # 4. Right CA, right name: everything buffered is delivered.
    code, err = run(url=url, ca_file=influx_tls.tls.ca)
    assert code == 0, err
    assert _pending(cfg) == 0
    assert _count(target) == 10


def test_ca_file_mistakes_are_config_errors(tmp_path: Path) -> None:
    token = tmp_path / "t.token"
    token.write_text("secret-token-value\n")
    token.chmod(0o600)
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("this is not a certificate\n")
    cases = [
        ("https://influx.example:8086", tmp_path / "missing.pem", "does not exist"),
        ("https://influx.example:8086", not_pem, "is not a PEM CA certificate"),
        ("http://influx.example:8086", not_pem, "is not https://"),
    ]
    for url, ca, expected in cases:
        cfg = tmp_path / "agent.toml"
        cfg.write_text(
            f'[influxdb]\nurl = "{url}"\norg = "home"\nbucket = "b"\n'
            f'token_file = "{token}"\nca_file = "{ca}"\n'
        )
        res = run_wattkeeper("run", TINY, "-c", cfg, "--once", timeout=30)
        assert res.returncode == 78, res.stderr
        (line,) = res.stderr.strip().splitlines()
        assert f"{cfg}: influxdb.ca_file: " in line and expected in line
