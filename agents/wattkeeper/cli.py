"""The ``wattkeeper`` command line.

Every failure a user can cause ends in one line on stderr naming what is wrong and where,
and an exit code systemd understands (78 = configuration, 75 = try again later).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wattkeeper import __version__
from wattkeeper.config import EX_CONFIG, EX_TEMPFAIL, AgentConfig, ConfigError, load_config
from wattkeeper.hastats import add_command as add_ha_statistics
from wattkeeper.registry import (
    UnknownSource,
    load_plugin,
    load_simulator,
    simulator_names,
    source_names,
)
from wattkeeper.verbs import canonical_argv

log = logging.getLogger("wattkeeper")


def _error(message: str) -> None:
    sys.stderr.write(f"wattkeeper: {message}\n")


def load_agent_config(path: Path, source: str | None) -> tuple[AgentConfig, Any]:
    """Load FILE for SOURCE, or for the one source section the file has."""
    from wattkeeper.config import read_toml

    if source is None:
        names = set(source_names())
        present = [k for k in read_toml(path) if k in names]
        if len(present) != 1:
            raise ConfigError(
                "(source)",
                path,
                "cannot tell which source this file configures "
                f"(found sections: {', '.join(present) or 'none of ' + ', '.join(sorted(names))})",
            )
        source = present[0]
    plugin = load_plugin(source)
    cfg = load_config(path, plugin.name, plugin.config_class, set(source_names()))
    return cfg, plugin


def cmd_run(args: argparse.Namespace) -> int:
    from wattkeeper.journal import setup_logging
    from wattkeeper.runner import Agent

    cfg, plugin = load_agent_config(args.config, args.source)
    setup_logging(plugin.name, cfg.agent.log_level, cfg.agent.log_target)
    return Agent(cfg, plugin, once=args.once).run()


def cmd_check(args: argparse.Namespace) -> int:
    from wattkeeper.check import run_checks

    try:
        cfg, plugin = load_agent_config(args.config, args.source)
    except ConfigError as exc:
        print(f"FAIL config      {exc}")
        return EX_CONFIG
    print(f"OK   config      {args.config} ({plugin.name} agent)")
    return run_checks(cfg, plugin)


def cmd_buffer(args: argparse.Namespace) -> int:
    from wattkeeper.buffer import Buffer
    from wattkeeper.journal import setup_logging

    cfg, plugin = load_agent_config(args.config, args.source)
    path = cfg.buffer_path
    if not path.exists():
        _error(f"no buffer at {path} (buffer.path in {cfg.file}); the agent has not run yet")
        return EX_CONFIG
    buf = Buffer(path, max_rows=cfg.buffer.max_rows, max_bytes=cfg.buffer.max_bytes)
    try:
        if args.action == "stats":
            st = buf.stats()
            age = st.oldest_age()
            print(f"buffer          {path}")
            print(f"pending         {st.pending} points ({st.pending_bytes} bytes)")
            print(f"dead-lettered   {st.dead_lettered} points")
            print(f"oldest age      {'-' if age is None else f'{age:.0f}s'}")
            for name, value in st.counters.items():
                print(f"{name:<15} {value}")
            if args.dead and st.dead_lettered:
                print("dead letters:")
                for row_id, line, status, error in buf.dead_letters(args.dead):
                    print(f"  #{row_id} HTTP {status}: {error}\n    {line[:200]}")
            return 0
        # flush
        from wattkeeper.delivery import Deliverer, Flush
        from wattkeeper.influx import InfluxClient

        setup_logging(plugin.name, cfg.agent.log_level, "stderr")
        client = InfluxClient.from_section(cfg.influxdb)
        before = buf.pending
        outcome = Deliverer(
            buf,
            client,
            batch_size=cfg.influxdb.batch_size,
            batch_bytes=cfg.influxdb.batch_bytes,
            late_after=cfg.influxdb.late_after,
            marker_tags={"host": cfg.agent.host},
        ).flush(time.monotonic() + args.timeout)
        print(f"delivered {before - buf.pending} points; {buf.pending} pending")
        return 0 if outcome is Flush.EMPTY else EX_TEMPFAIL
    finally:
        buf.close()


def cmd_simulate(args: argparse.Namespace) -> int:
    from wattkeeper.journal import setup_logging

    module = load_simulator(args.sim_source)
    parser = argparse.ArgumentParser(
        prog=f"wattkeeper simulate {args.sim_source}",
        description=(module.__doc__ or "").strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    module.add_arguments(parser)
    sim_args = parser.parse_args(args.sim_args)
    setup_logging(f"simulate-{args.sim_source}", sim_args.log_level, "stderr")
    return int(module.serve(sim_args))


CORE_COMMANDS = {"run", "check", "buffer", "simulate", "ha-statistics"}


def build_parser(with_source_commands: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wattkeeper",
        description="Home-energy telemetry agents that buffer every reading until InfluxDB has it.",
    )
    parser.add_argument("--version", action="version", version=f"wattkeeper {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the agent of SOURCE")
    p.add_argument("source", metavar="SOURCE", help=f"one of: {', '.join(source_names())}")
    p.add_argument("-c", "--config", type=Path, required=True, metavar="FILE")
    p.add_argument(
        "--once",
        action="store_true",
        help="one poll, flush, exit (0 delivered, 75 kept in buffer, 78 config error)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check", help="check config, InfluxDB, the source and the webhook")
    p.add_argument("-c", "--config", type=Path, required=True, metavar="FILE")
    p.add_argument("--source", help="the source (default: the one section in FILE)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("buffer", help="inspect or deliver the local buffer")
    p.add_argument("action", choices=["stats", "flush"])
    p.add_argument("-c", "--config", type=Path, required=True, metavar="FILE")
    p.add_argument("--source", help="the source (default: the one section in FILE)")
    p.add_argument("--dead", type=int, default=0, metavar="N", help="show N dead letters")
    p.add_argument("--timeout", type=float, default=60.0, help="flush: seconds to try")
    p.set_defaults(func=cmd_buffer)

    p = sub.add_parser(
        "simulate",
        help="serve a local stand-in of a source's real interface",
    )
    p.add_argument("sim_source", metavar="SOURCE", help=f"one of: {', '.join(simulator_names())}")
    p.add_argument("sim_args", nargs=argparse.REMAINDER, help="the simulator's own options")
    p.set_defaults(func=cmd_simulate)
    add_ha_statistics(sub)

    # Source verbs (sync, report, migrate, login) need their source module imported; only
    # do that when such a verb is asked for, so that one source's missing optional
    # dependency can never stop another source's agent from starting.
    if with_source_commands:
        for name in source_names():
            try:
                plugin = load_plugin(name)
            except UnknownSource as exc:
                log.debug("source %s unavailable: %s", name, exc)
                continue
            if plugin.add_commands is not None:
                plugin.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = canonical_argv(sys.argv[1:] if argv is None else argv, source_names())
    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(with_source_commands=first not in CORE_COMMANDS)
    args = parser.parse_args(argv)
    # The source's own verbs (sync, report, migrate) share run's exit conventions.
    source = getattr(args, "source", None)
    if args.command == "run" and source is not None:
        try:
            load_plugin(source)
        except UnknownSource as exc:
            _error(str(exc))
            return EX_CONFIG
    try:
        return int(args.func(args))
    except ConfigError as exc:
        _error(f"configuration error: {exc}")
        return EX_CONFIG
    except UnknownSource as exc:
        _error(str(exc))
        return EX_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
