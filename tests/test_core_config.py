"""Bad configuration: exit 78 and one line naming the key and the file, for each case."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_wattkeeper

from wattkeeper.config import parse_duration, parse_size

GOOD_INFLUX = """
[influxdb]
url = "http://127.0.0.1:9"
org = "home"
bucket = "b"
token_file = "{token}"
"""


def _write(tmp_path: Path, body: str, token_mode: int = 0o600) -> Path:
    token = tmp_path / "influx.token"
    token.write_text("secret-token-value\n")
    token.chmod(token_mode)
    cfg = tmp_path / "agent.toml"
    cfg.write_text(body.replace("{token}", str(token)).replace("{tmp}", str(tmp_path)))
    return cfg


CASES = [
    ("missing section", "[tiny]\n", "[influxdb]: missing required section"),
    (
        "missing key",
        '[influxdb]\nurl = "http://x:1"\norg = "o"\n',
        "influxdb.bucket: missing required key",
    ),
    (
        "wrong type",
        GOOD_INFLUX + 'batch_size = "many"\n',
        "influxdb.batch_size: expected an integer",
    ),
    (
        "bad duration",
        GOOD_INFLUX + 'timeout = "10 parsecs"\n',
        'influxdb.timeout: "10 parsecs" is not a duration',
    ),
    (
        "bad duration in source",
        GOOD_INFLUX + '[tiny]\ninterval = "soon"\n',
        'tiny.interval: "soon" is not a duration',
    ),
    ("unknown key", GOOD_INFLUX + "tokne = 1\n", "influxdb.tokne: unknown key"),
    ("unknown section", GOOD_INFLUX + "[octopuss]\n", "[octopuss]: unknown section"),
    (
        "bad literal",
        GOOD_INFLUX + '[agent]\nlog_level = "loud"\n',
        "agent.log_level: must be one of",
    ),
    (
        "token file missing",
        GOOD_INFLUX.replace("{token}", "{tmp}/nope.token"),
        "influxdb.token_file: secret file",
    ),
    ("not toml", "[influxdb\nurl=", "not valid TOML"),
    ("bad url", GOOD_INFLUX.replace("http://127.0.0.1:9", "localhost:8086"), "influxdb.url"),
    (
        "bad size",
        GOOD_INFLUX + '[buffer]\nmax_bytes = "lots"\n',
        'buffer.max_bytes: "lots" is not a size',
    ),
]


@pytest.mark.parametrize(("name", "body", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_config_exits_78_naming_key_and_file(
    tmp_path: Path, name: str, body: str, expected: str
) -> None:
    cfg = _write(tmp_path, body)
    res = run_wattkeeper("run", "tiny_source:PLUGIN", "-c", cfg, "--once", timeout=30)
    assert res.returncode == 78, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr  # one line, no traceback
    assert expected in lines[0]
    assert str(cfg) in lines[0]
    assert "secret-token-value" not in res.stderr


def test_world_readable_token_file_is_refused(tmp_path: Path) -> None:
    cfg = _write(tmp_path, GOOD_INFLUX, token_mode=0o644)
    res = run_wattkeeper("run", "tiny_source:PLUGIN", "-c", cfg, "--once", timeout=30)
    assert res.returncode == 78
    assert "has mode 0644" in res.stderr and "chmod 600" in res.stderr
    assert "influxdb.token_file" in res.stderr


def test_unreadable_token_file_is_reported(tmp_path: Path) -> None:
    cfg = _write(tmp_path, GOOD_INFLUX)
    (tmp_path / "influx.token").unlink()
    (tmp_path / "influx.token").mkdir()  # exists but cannot be read as a file
    res = run_wattkeeper("run", "tiny_source:PLUGIN", "-c", cfg, "--once", timeout=30)
    assert res.returncode == 78
    assert "influxdb.token_file" in res.stderr


def test_missing_config_file_and_unknown_source(tmp_path: Path) -> None:
    res = run_wattkeeper("run", "tiny_source:PLUGIN", "-c", tmp_path / "none.toml", timeout=30)
    assert res.returncode == 78 and "config file does not exist" in res.stderr
    res = run_wattkeeper("run", "nosuchsource", "-c", tmp_path / "none.toml", timeout=30)
    assert res.returncode == 78 and "unknown source 'nosuchsource'" in res.stderr


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), ("2d", 172800), ("1.5h", 5400)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "m", "5 m", "-1s", "1x", "1h 30m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_sizes() -> None:
    assert parse_size("64MB") == 64_000_000
    assert parse_size("1GiB") == 1024**3
    assert parse_size(4096) == 4096
