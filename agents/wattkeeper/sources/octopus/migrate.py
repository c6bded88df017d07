"""``wattkeeper migrate octopus``: the string-fields schema's ``value`` to ``power_numeric``.

Earlier releases spelled it ``wattkeeper migrate octopus-string-fields`` (still accepted).

Seed 000 first wrote the demand as a string field ``value`` of measurement ``power``;
strings cannot be averaged. This reads every such record, day by day so memory stays
flat (jumping over days without records), and writes ``power_numeric`` (float) at the
same timestamp with the same tags. Records that are not numbers are skipped and counted.
Running it twice is harmless.
"""

from __future__ import annotations

import argparse
import math
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from wattkeeper.config import EX_CONFIG, EX_TEMPFAIL, ConfigError
from wattkeeper.influx import InfluxClient, InfluxError
from wattkeeper.journal import SECRETS
from wattkeeper.point import Point
from wattkeeper.verbs import source_verb

_META = {"result", "table", "_start", "_stop", "_time", "_value", "_field", "_measurement", ""}


def add_commands(sub: argparse._SubParsersAction[Any]) -> None:
    # `migrate octopus`; "octopus-string-fields" is its name of earlier releases.
    m = source_verb(
        sub,
        "migrate",
        "octopus",
        help="string-fields schema: copy string field `value` of `power` into float "
        "`power_numeric`",
        aliases=["octopus-string-fields"],
    )
    m.add_argument("-c", "--config", type=Path, required=True, metavar="FILE")
    m.add_argument("--bucket", help="bucket to migrate (default: influxdb.bucket of FILE)")
    m.add_argument("--start", default="1970-01-01T00:00:00Z", help="RFC 3339 time (default: all)")
    m.add_argument("--stop", default=None, help="RFC 3339 time (default: now)")
    m.add_argument("--measurement", default="power")
    m.add_argument("--from-field", default="value")
    m.add_argument("--to-field", default="power_numeric")
    m.add_argument("--dry-run", action="store_true", help="count only; write nothing")
    m.set_defaults(func=cmd_migrate)


def parse_rfc3339_ns(text: str) -> int:
    """Nanoseconds since the epoch from Flux's ``_time`` (nanosecond digits kept exactly)."""
    main, _, frac = text.rstrip("Z").partition(".")
    base = datetime.fromisoformat(main).replace(tzinfo=UTC)
    digits = (frac + "000000000")[:9]
    return int(base.timestamp()) * 1_000_000_000 + int(digits)


def convert(value: str) -> float | None:
    """The seed tool's rule (``float(value)``), but finite values only."""
    try:
        f = float(value.strip())
    except ValueError:
        return None
    return f if math.isfinite(f) else None


def _time_arg(text: str, name: str) -> datetime:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(name, "(command line)", f"{text!r} is not an RFC 3339 time") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def cmd_migrate(args: argparse.Namespace) -> int:
    from wattkeeper.cli import load_agent_config

    cfg, _ = load_agent_config(args.config, "octopus")
    SECRETS.add(cfg.influxdb.token)
    bucket = args.bucket or cfg.influxdb.bucket
    start = _time_arg(args.start, "--start")
    stop = _time_arg(args.stop, "--stop") if args.stop else datetime.now(UTC) + timedelta(1)
    client = InfluxClient(
        cfg.influxdb.url, cfg.influxdb.org, bucket, cfg.influxdb.token or "", timeout=60.0
    )
    read = converted = skipped = 0
    try:
        t = start
        while t < stop:
            # Jump to the next day that has records: years of history may hold a few days.
            first = _first_time(client, bucket, args, t, stop)
            if first is None:
                break
            t = max(t, first.replace(hour=0, minute=0, second=0, microsecond=0))
            chunk_end = min(t + timedelta(days=1), stop)
            lines: list[str] = []
            for row in _rows(client, bucket, args, t, chunk_end):
                read += 1
                value = convert(row.get("_value", ""))
                if value is None:
                    skipped += 1
                    if skipped <= 5:
                        sys.stderr.write(
                            f"skipped {row.get('_time')}: {row.get('_value', '')[:40]!r} "
                            "is not a number\n"
                        )
                    continue
                converted += 1
                tags = {k: v for k, v in row.items() if k not in _META and v}
                point = Point(
                    args.measurement, {args.to_field: value}, parse_rfc3339_ns(row["_time"]), tags
                )
                lines.append(point.to_line())
            if lines and not args.dry_run:
                for i in range(0, len(lines), 5000):
                    res = client.write(lines[i : i + 5000])
                    if not res.ok:
                        sys.stderr.write(
                            f"wattkeeper: write to bucket {bucket}: {res.describe()}\n"
                        )
                        return EX_TEMPFAIL
            t = chunk_end
    except InfluxError as exc:
        sys.stderr.write(f"wattkeeper: query of bucket {bucket} at {cfg.influxdb.url}: {exc}\n")
        return EX_TEMPFAIL if exc.result.status in (0, 500, 502, 503, 504) else EX_CONFIG
    finally:
        client.close()
    if read == 0:
        print(f"no `{args.from_field}` records of `{args.measurement}` in bucket {bucket}")
        return 0
    verb = "would convert" if args.dry_run else "converted"
    print(
        f"{read} records of {args.measurement}.{args.from_field} read; "
        f"{verb} {converted} to {args.to_field}; skipped {skipped} that are not numbers"
    )
    return 0


def _filter(args: argparse.Namespace) -> str:
    return (
        f'|> filter(fn: (r) => r._measurement == "{args.measurement}" '
        f'and r._field == "{args.from_field}")'
    )


def _first_time(
    client: InfluxClient, bucket: str, args: argparse.Namespace, start: datetime, stop: datetime
) -> datetime | None:
    rows = client.query(
        f'from(bucket: "{bucket}") |> range(start: {_flux_time(start)}, stop: {_flux_time(stop)}) '
        f"{_filter(args)} |> group() |> first()"
    )
    if not rows:
        return None
    return datetime.fromtimestamp(parse_rfc3339_ns(rows[0]["_time"]) / 1e9, UTC)


def _rows(
    client: InfluxClient, bucket: str, args: argparse.Namespace, start: datetime, stop: datetime
) -> list[dict[str, str]]:
    return client.query(
        f'from(bucket: "{bucket}") |> range(start: {_flux_time(start)}, stop: {_flux_time(stop)}) '
        f"{_filter(args)} |> toString()"
    )


def _flux_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
