"""``wattkeeper ha-statistics``: a field's hourly sums from InfluxDB, for Home Assistant.

Home Assistant's Energy dashboard reads its long-term statistics (one row per hour). Data
that arrives hours late (WattiVahti) cannot feed them live at the right hours, so its
history goes in as an import instead: this command writes the tab-separated file that the
community "Import Statistics" integration (action ``import_statistics.import_from_file``)
takes, with its documented columns ``statistic_id``, ``unit``, ``start`` (full hours, here
in UTC) and ``delta``. The agent's own config file gives the InfluxDB URL, bucket and token.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from wattkeeper.config import EX_CONFIG, EX_TEMPFAIL, ConfigError

START_FORMAT = "%d.%m.%Y %H:%M"  # the integration's default datetime_format


def add_command(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "ha-statistics",
        help="hourly sums of a field from InfluxDB as a Home Assistant statistics import file",
    )
    p.add_argument("-c", "--config", type=Path, required=True, metavar="FILE")
    p.add_argument("--source", help="the source (default: the one section in FILE)")
    p.add_argument("--field", required=True, help="e.g. consumption_wh")
    p.add_argument("--measurement", help="default: the source's name")
    p.add_argument("--statistic-id", required=True, help="e.g. sensor:wattivahti_consumption")
    p.add_argument("--start", required=True, help="first day, YYYY-MM-DD (UTC)")
    p.add_argument("--end", help="day after the last, YYYY-MM-DD (default: now)")
    p.add_argument("--unit", default="kWh", help="unit of the statistic (default kWh)")
    p.add_argument("--scale", type=float, default=0.001, help="field x scale (default Wh->kWh)")
    p.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    p.set_defaults(func=cmd_ha_statistics)


def _day(text: str, what: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ConfigError(what, "(command line)", f"{text!r} is not a date YYYY-MM-DD") from None


def cmd_ha_statistics(args: argparse.Namespace) -> int:
    from wattkeeper.cli import load_agent_config
    from wattkeeper.influx import InfluxClient, InfluxError

    cfg, plugin = load_agent_config(args.config, args.source)
    start = _day(args.start, "--start")
    end = _day(args.end, "--end") if args.end else datetime.now(UTC)
    if end <= start:
        raise ConfigError("--end", "(command line)", "must be after --start")
    if ":" not in args.statistic_id and "." not in args.statistic_id:
        raise ConfigError("--statistic-id", "(command line)", "like sensor:NAME or sensor.NAME")
    measurement = args.measurement or plugin.name
    flux = (
        f'from(bucket: "{cfg.influxdb.bucket}") '
        f"|> range(start: {start.isoformat()}, stop: {end.isoformat()}) "
        f'|> filter(fn: (r) => r._measurement == "{measurement}" and r._field == "{args.field}") '
        "|> group() "
        '|> aggregateWindow(every: 1h, fn: sum, createEmpty: false, timeSrc: "_start") '
        '|> keep(columns: ["_time", "_value"])'
    )
    client = InfluxClient.from_section(cfg.influxdb)
    try:
        rows = client.query(flux, timeout=120)
    except InfluxError as exc:
        print(f"wattkeeper: cannot read {cfg.influxdb.bucket}: {exc}", file=sys.stderr)
        return EX_CONFIG if exc.result.status in (401, 403, 404) else EX_TEMPFAIL
    finally:
        client.close()
    lines = ["statistic_id\tunit\tstart\tdelta"]
    for row in rows:
        t = datetime.fromisoformat(row["_time"].replace("Z", "+00:00"))
        if t.minute or t.second:
            continue  # the integration takes full hours only
        delta = float(row["_value"]) * args.scale
        lines.append(f"{args.statistic_id}\t{args.unit}\t{t.strftime(START_FORMAT)}\t{delta:.6g}")
    text = "\n".join(lines) + "\n"
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    print(f"{len(lines) - 1} hours of {measurement}.{args.field}", file=sys.stderr)
    return 0
