"""Daily and weekly CSV roll-ups from the local history, and their retention.

`wattkeeper report luxtronik -c FILE [--at DATETIME]` writes ``YYYY-MM-DD_daily.csv``
(the 24 h before DATETIME) and ``YYYY-MM-DD_weekly.csv`` (the 7 days before), then deletes
roll-ups older than ``csv_retention_days``. The systemd timer runs exactly this command at
``report_time``. It reads only the agent's SQLite file, so it works while InfluxDB is away.
"""

from __future__ import annotations

import argparse
import csv
import logging
import re
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from wattkeeper.config import EX_CONFIG, EX_TEMPFAIL, ConfigError
from wattkeeper.point import to_ns
from wattkeeper.sources.luxtronik.config import LuxtronikSection
from wattkeeper.sources.luxtronik.history import Column, History, open_history
from wattkeeper.sources.luxtronik.reader import Value
from wattkeeper.verbs import source_verb

log = logging.getLogger("wattkeeper.luxtronik.report")

_CSV_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})_(daily|weekly)\.csv$")

# Readable labels for the values people actually look at; the rest keep their names.
HUMAN = {
    "ID_WEB_Temperatur_TVL": "Flow temperature",
    "ID_WEB_Temperatur_TRL": "Return temperature",
    "ID_WEB_Sollwert_TRL_HZ": "Return temperature target",
    "ID_WEB_Temperatur_TA": "Outside temperature",
    "ID_WEB_Mitteltemperatur": "Outside temperature (average)",
    "ID_WEB_Temperatur_TBW": "Hot water temperature",
    "ID_WEB_Einst_BWS_akt": "Hot water target",
    "ID_WEB_Temperatur_THG": "Hot gas temperature",
    "ID_WEB_Temperatur_TWE": "Heat source inlet temperature",
    "ID_WEB_Temperatur_TWA": "Heat source outlet temperature",
    "ID_WEB_Zaehler_BetrZeitVD1": "Compressor 1 operating time",
    "ID_WEB_Zaehler_BetrZeitImpVD1": "Compressor 1 starts",
    "ID_WEB_Zaehler_BetrZeitWP": "Heat pump operating time",
    "ID_WEB_Zaehler_BetrZeitHz": "Heating operating time",
    "ID_WEB_Zaehler_BetrZeitBW": "Hot water operating time",
    "ID_WEB_WP_BZ_akt": "Operating mode",
    "ID_WEB_SoftStand": "Firmware version",
    "ID_WEB_WMZ_Heizung": "Heat quantity heating",
    "ID_WEB_WMZ_Brauchwasser": "Heat quantity hot water",
    "ID_WEB_WMZ_Seit": "Heat quantity total",
    "ID_WEB_WMZ_Durchfluss": "Heat meter flow",
    "ID_WEB_LIN_HD": "High pressure",
    "ID_WEB_LIN_ND": "Low pressure",
    "ID_WEB_Freq_VD": "Compressor frequency",
    "ID_WEB_VD1out": "Compressor 1 on",
    "ID_WEB_HUPout": "Heating circulation pump on",
    "Heat_Output": "Heat output",
    "ID_Einst_BWS_akt": "Hot water setpoint",
    "ID_Einst_WK_akt": "Heating curve offset",
    "ID_Ba_Hz_akt": "Heating mode",
    "ID_Ba_Bw_akt": "Hot water mode",
}


@dataclass(frozen=True)
class Report:
    path: Path
    rows: int
    columns: int


def _layout(
    columns: dict[int, list[Column]], patterns: list[str]
) -> tuple[list[tuple[Column, str]], dict[int, list[int]]]:
    """Output columns (in first-seen order) with their display names, and for each stored
    column list the position of each stored value in the output (-1: not selected)."""
    order: list[Column] = []
    seen: set[Column] = set()
    for cols in columns.values():
        for col in cols:
            if col not in seen:
                seen.add(col)
                order.append(col)
    claimed: set[str] = set()
    shown: list[tuple[Column, str]] = []
    for group, name in order:
        display = name if name not in claimed else f"{group}.{name}"
        claimed.add(name)
        if patterns and not any(
            fnmatchcase(candidate, p)
            for p in patterns
            for candidate in (name, display, f"{group}.{name}")
        ):
            continue
        shown.append(((group, name), display))
    position = {col: i for i, (col, _) in enumerate(shown)}
    mapping = {cid: [position.get(col, -1) for col in cols] for cid, cols in columns.items()}
    return shown, mapping


def _header(col: Column, display: str, human: bool, units: dict[Column, str]) -> str:
    if not human:
        return display
    label = HUMAN.get(col[1])
    unit = units.get(col, "")
    text = f"{label} ({display})" if label else display
    return f"{text} [{unit}]" if unit else text


def _cell(v: Value | None) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    return v


def _iso(t_ns: int) -> str:
    return datetime.fromtimestamp(t_ns // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_csv(
    history: History,
    path: Path,
    start: datetime,
    end: datetime,
    patterns: list[str],
    human: bool,
) -> Report:
    """Write the history rows in (start, end] to ``path`` atomically (temp file + rename)."""
    start_ns, end_ns = to_ns(start), to_ns(end)
    columns = history.columns(start_ns, end_ns)
    shown, mapping = _layout(columns, patterns)
    units: dict[Column, str] = {}
    if human:
        from wattkeeper.sources.luxtronik.reader import unit_map

        units = unit_map()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    rows = 0
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["time", *(_header(c, d, human, units) for c, d in shown)])
        width = len(shown)
        # Most values repeat from poll to poll (zeros, settings): format each once.
        texts: dict[Value | None, str] = {}

        def cell(v: Value | None) -> str:
            text = texts.get(v)
            if text is None:
                text = texts[v] = _cell(v)
            return text

        identity = {cid: m == list(range(width)) for cid, m in mapping.items()}
        for row in history.rows(start_ns, end_ns):
            if identity[row.columns_id] and len(row.values) == width:
                cells = [cell(v) for v in row.values]
            else:
                cells = [""] * width
                for pos, value in zip(mapping[row.columns_id], row.values, strict=False):
                    if pos >= 0:
                        cells[pos] = cell(value)
            out.writerow([_iso(row.t_ns), *cells])
            rows += 1
    tmp.replace(path)
    return Report(path, rows, len(shown) + 1)


def cleanup(report_dir: Path, today: date, retention_days: int) -> list[Path]:
    """Delete our roll-up files dated more than ``retention_days`` before ``today``."""
    removed: list[Path] = []
    cutoff = today - timedelta(days=retention_days)
    if not report_dir.is_dir():
        return removed
    for p in sorted(report_dir.iterdir()):
        m = _CSV_NAME.match(p.name)
        if not m or not p.is_file():
            continue
        try:
            day = date.fromisoformat(m.group(1))
        except ValueError:
            continue
        if day < cutoff:
            p.unlink()
            removed.append(p)
    return removed


def generate(
    history: History, cfg: LuxtronikSection, report_dir: Path, at: datetime
) -> tuple[list[Report], list[Path]]:
    """Both roll-ups ending at ``at`` (aware), named by its local date, then retention."""
    day = at.astimezone().date()
    human = cfg.report_headers == "human"
    reports = [
        write_csv(
            history,
            report_dir / f"{day.isoformat()}_{kind}.csv",
            at - span,
            at,
            cfg.report_fields,
            human,
        )
        for kind, span in (("daily", timedelta(days=1)), ("weekly", timedelta(days=7)))
    ]
    return reports, cleanup(report_dir, day, cfg.csv_retention_days)


def parse_at(text: str | None) -> datetime:
    """--at: ISO 8601; without a zone it is local time (like the timer's report_time)."""
    if text is None:
        return datetime.now().astimezone()
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f'--at "{text}" is not a date/time like 2026-01-15T07:00') from None
    return at.astimezone() if at.tzinfo is None else at


def cmd_report(args: argparse.Namespace) -> int:
    from wattkeeper.cli import load_agent_config
    from wattkeeper.journal import setup_logging

    cfg, _plugin = load_agent_config(args.config, "luxtronik")
    setup_logging("luxtronik-report", cfg.agent.log_level, "stderr")
    src: LuxtronikSection = cfg.source
    try:
        at = parse_at(args.at)
    except ValueError as exc:
        sys.stderr.write(f"wattkeeper: {exc}\n")
        return EX_CONFIG
    buffer_path = cfg.buffer_path
    if not buffer_path.exists():
        sys.stderr.write(
            f"wattkeeper: no history yet: {buffer_path} (buffer.path in {cfg.file}) does not "
            "exist; the luxtronik agent has not run\n"
        )
        return EX_TEMPFAIL
    report_dir = src.reports_path(buffer_path)
    history = open_history(str(buffer_path))
    try:
        reports, removed = generate(history, src, report_dir, at)
    except OSError as exc:
        key = "luxtronik.report_dir" if src.report_dir else "buffer.path"
        raise ConfigError(key, cfg.file, f"cannot write the CSV files: {exc}") from None
    finally:
        history.db.close()
    for r in reports:
        print(f"wrote {r.path} ({r.rows} rows, {r.columns} columns)")
    for p in removed:
        print(f"deleted {p} (older than {src.csv_retention_days} days)")
    return 0


def add_commands(sub: Any) -> None:
    """Add `report luxtronik`, sharing a `report` verb another source may have added."""
    p = source_verb(
        sub,
        "report",
        "luxtronik",
        help="write the daily and weekly Luxtronik CSV files now",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("-c", "--config", type=Path, required=True, metavar="FILE")
    p.add_argument(
        "--at",
        metavar="DATETIME",
        help="end of the reported period (ISO 8601; default now; local time if no zone)",
    )
    p.set_defaults(func=cmd_report)
