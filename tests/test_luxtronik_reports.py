"""Luxtronik CSV roll-ups: daily and weekly files from the local history, and retention.

History rows are inserted with controlled timestamps through the same History class the
agent uses; the files come from the real `wattkeeper report luxtronik` command.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

from conftest import run_wattkeeper
from test_luxtronik import lux_config

from wattkeeper.sources.luxtronik.history import open_history
from wattkeeper.sources.luxtronik.reader import Values

AT = datetime(2026, 1, 15, 7, 0, tzinfo=UTC)
STEP = timedelta(minutes=15)
UTC_ENV = {"TZ": "UTC"}


def sample(t: datetime) -> Values:
    hour = t.hour + t.minute / 60
    return {
        "parameters": {"ID_Einst_BWS_akt": 50.0, "Unknown_Parameter_1130": 7.0},
        "calculations": {
            "ID_WEB_Temperatur_TVL": round(35 + hour / 10, 1),
            "ID_WEB_Temperatur_TA": round(-2 + hour / 4, 2),
            "ID_WEB_LIN_HD": 22.5,
            "ID_WEB_WMZ_Heizung": 25000.0 + (t - AT).total_seconds() / 3600,
            "ID_WEB_VD1out": 1.0,
            "ID_WEB_SoftStand": "V3.88.1",
        },
        # python-luxtronik names extra visibilities Unknown_Parameter_N: a name clash.
        "visibilities": {"ID_Visi_Heizung": 1.0, "Unknown_Parameter_1130": 0.0},
    }


def fill_history(buffer: Path, days: int, keep_days: int = 8) -> int:
    """A poll every 15 min for ``days`` days up to AT (inclusive); returns rows kept."""
    history = open_history(str(buffer))
    t = AT - timedelta(days=days)
    while t <= AT:
        history.record(int(t.timestamp()) * 10**9, sample(t), keep_days)
        t += STEP
    n = history.count()
    history.db.close()
    return n


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def report(cfg: Path, at: str = AT.isoformat()) -> str:
    res = run_wattkeeper("report", "luxtronik", "-c", cfg, "--at", at, env=UTC_ENV)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_daily_and_weekly_files_have_expected_rows_and_columns(tmp_path: Path) -> None:
    cfg = lux_config(tmp_path, None, 8889)
    buffer = tmp_path / "luxtronik-buffer.sqlite"
    kept = fill_history(buffer, days=10)
    assert kept == 8 * 96 + 1  # pruned to history_days (8) before the newest row
    out = report(cfg)
    reports = tmp_path / "reports"
    daily = read_csv(reports / "2026-01-15_daily.csv")
    weekly = read_csv(reports / "2026-01-15_weekly.csv")
    assert "(96 rows, 11 columns)" in out and "(672 rows, 11 columns)" in out
    header = [
        "time",
        "ID_Einst_BWS_akt",
        "Unknown_Parameter_1130",
        "ID_WEB_Temperatur_TVL",
        "ID_WEB_Temperatur_TA",
        "ID_WEB_LIN_HD",
        "ID_WEB_WMZ_Heizung",
        "ID_WEB_VD1out",
        "ID_WEB_SoftStand",
        "ID_Visi_Heizung",
        "visibilities.Unknown_Parameter_1130",
    ]
    assert daily[0] == header and weekly[0] == header
    assert len(daily) == 1 + 96  # (AT - 24 h, AT], one row per 15 min
    assert len(weekly) == 1 + 7 * 96
    assert daily[1][0] == "2026-01-14T07:15:00Z" and daily[-1][0] == "2026-01-15T07:00:00Z"
    assert weekly[1][0] == "2026-01-08T07:15:00Z"
    last = dict(zip(header, daily[-1], strict=True))
    want = sample(AT)
    assert last["ID_WEB_Temperatur_TVL"] == str(want["calculations"]["ID_WEB_Temperatur_TVL"])
    assert last["ID_WEB_LIN_HD"] == "22.5"
    assert last["ID_WEB_WMZ_Heizung"] == "25000"
    assert last["ID_WEB_VD1out"] == "1"
    assert last["ID_WEB_SoftStand"] == "V3.88.1"
    assert last["Unknown_Parameter_1130"] == "7"
    assert last["visibilities.Unknown_Parameter_1130"] == "0"


def test_selected_fields_and_human_headers(tmp_path: Path) -> None:
    cfg = lux_config(
        tmp_path,
        None,
        8889,
        report_fields=["ID_WEB_Temperatur_*", "ID_WEB_LIN_HD", "visibilities.*"],
        report_headers="human",
    )
    fill_history(tmp_path / "luxtronik-buffer.sqlite", days=2)
    report(cfg, "2026-01-15T07:00:00")  # no zone: local time (TZ=UTC here)
    daily = read_csv(tmp_path / "reports" / "2026-01-15_daily.csv")
    assert daily[0] == [
        "time",
        "Flow temperature (ID_WEB_Temperatur_TVL) [°C]",
        "Outside temperature (ID_WEB_Temperatur_TA) [°C]",
        "High pressure (ID_WEB_LIN_HD) [bar]",
        "ID_Visi_Heizung",
        "visibilities.Unknown_Parameter_1130",
    ]
    assert len(daily) == 97
    assert all(len(row) == 6 for row in daily)


def test_old_csv_files_are_deleted(tmp_path: Path) -> None:
    cfg = lux_config(tmp_path, None, 8889, csv_retention_days=30)
    fill_history(tmp_path / "luxtronik-buffer.sqlite", days=1)
    reports = tmp_path / "reports"
    reports.mkdir()
    old = [reports / "2025-12-15_daily.csv", reports / "2025-12-01_weekly.csv"]
    kept = [
        reports / "2025-12-16_daily.csv",  # exactly 30 days before 2026-01-15: kept
        reports / "2026-01-14_weekly.csv",
        reports / "notes.csv",  # not ours
        reports / "2020-01-01_daily.csv.bak",
    ]
    for p in old + kept:
        p.write_text("time\n")
    out = report(cfg)
    for p in old:
        assert not p.exists()
        assert f"deleted {p}" in out
    for p in kept:
        assert p.exists()
    assert (reports / "2026-01-15_daily.csv").exists()


def test_report_without_history_says_so(tmp_path: Path) -> None:
    cfg = lux_config(tmp_path, None, 8889)
    res = run_wattkeeper("report", "luxtronik", "-c", cfg)
    assert res.returncode == 75
    assert "no history yet" in res.stderr and "buffer.path" in res.stderr
    res = run_wattkeeper("report", "luxtronik", "-c", cfg, "--at", "yesterday")
    assert res.returncode == 78
    assert "--at" in res.stderr and "Traceback" not in res.stderr
