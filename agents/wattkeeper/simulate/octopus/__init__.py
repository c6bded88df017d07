"""Octopus Energy's Kraken GraphQL API, for the Octopus Home Mini agent.

POST /v1/graphql/ with {query, variables, operationName}: obtainKrakenToken (API key or
refresh token; rotating refresh tokens), account { electricityAgreements { meterPoint {
meters { smartImportElectricityMeter { deviceId } ... } } } } and smartMeterTelemetry
(deviceId, start, end, grouping) with a deterministic household's readings as decimal
strings. Errors as Kraken gives them (HTTP 200, errors[].extensions.errorCode), a per-key
rolling rate limit (KT-GB-4042), a history limit (KT-GB-4051). The Date header carries
the server's clock.

With no options besides --listen it accepts the API key sk_live_simulated0000000000000000
and knows account A-DEMO0001 (one Home Mini), A-SOLAR002 (import and export meters),
A-NOMINI03 (no smart meter) and A-TWOMTR04 (two meters).

Values are written as Kraken writes its Decimal scalar (str(Decimal): "624.0", "0E+1");
``--decimals exponent`` sends the other finite forms ("4E+4", "1E-7"). Behaviours of the
live service, each behind a switch: ``--partial-groups`` (the still-filling group is in
the answer), ``--rate-limit-code KT-CT-1199``, ``--mini no-ten-seconds|frozen|unpaired``.

Test controls: GET /_stats; GET /_served (every row served); POST /_fault {"kind", "op",
"count"} (kind: 500 502 503 504 429 hang nonjson truncated nodata missing badvalue
nullvalue nulllist or a Kraken code such as KT-CT-1124; op: telemetry account token login
refresh any); POST /_clock {"offset"|"advance": seconds};
POST /_calls {"api_key", "count"} (calls made by the Octopus app); POST /_offline
{"start", "end"} (ISO times or "-2h"-style offsets: the Home Mini was offline);
POST /_mini {"device" (default: all), "state": ok|no-ten-seconds|frozen|unpaired};
POST /_swap {"device"} (its meter is replaced: a new device, the old one KT-GB-4050).
"""

from __future__ import annotations

import argparse
import logging

from wattkeeper.simulate._serving import (
    duration,
    listen_address,
    serve_until_signalled,
    signed_duration,
)

from .household import DECIMAL_FORMS
from .kraken import (
    DEFAULT_API_KEY,
    FAULT_OPS,
    MINI_STATES,
    Clock,
    Fault,
    Kraken,
    Options,
    parse_when,
)
from .server import GRAPHQL_PATH, KrakenServer

log = logging.getLogger("wattkeeper.simulate.octopus")

__all__ = ["add_arguments", "serve"]


def _fault(text: str) -> list[Fault]:
    """[OP:]KIND[*COUNT], e.g. 500, token:500, telemetry:KT-CT-1124*2."""
    spec, _, count = text.partition("*")
    op, _, kind = spec.rpartition(":")
    if op and op not in FAULT_OPS:
        raise argparse.ArgumentTypeError(f"op must be one of {', '.join(FAULT_OPS)}")
    if count and not count.isdigit():
        raise argparse.ArgumentTypeError("use [OP:]KIND[*COUNT]")
    return [Fault(kind, op or "telemetry") for _ in range(int(count or 1))]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", type=listen_address, required=True, metavar="HOST:PORT")
    parser.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY",
        help=f"an API key the server accepts (default: {DEFAULT_API_KEY}); may repeat",
    )
    parser.add_argument("--token-lifetime", type=duration, default=3600.0, help="JWT lifetime")
    parser.add_argument(
        "--refresh-lifetime",
        type=duration,
        default=7 * 86400.0,
        help="how long after an API-key login its refresh tokens stop working",
    )
    parser.add_argument(
        "--rate-limit", type=int, default=100, help="calls per --rate-period per API key"
    )
    parser.add_argument("--rate-period", type=duration, default=3600.0)
    parser.add_argument(
        "--history",
        type=duration,
        default=7 * 86400.0,
        help="how far back telemetry may start (older: KT-GB-4051)",
    )
    parser.add_argument(
        "--lag", type=duration, default=0.0, help="a reading is served this long after its end"
    )
    parser.add_argument(
        "--clock-offset",
        type=signed_duration,
        default=0.0,
        help="the server's clock minus the real one (e.g. 2h, -30s)",
    )
    parser.add_argument(
        "--offline",
        action="append",
        default=[],
        metavar="START/END",
        help="the Home Mini sent nothing in [START, END) (ISO times or -2h-style offsets)",
    )
    parser.add_argument("--hang", type=duration, default=30.0, help="length of a 'hang' fault")
    parser.add_argument(
        "--retry-after", type=int, default=30, help="Retry-After of 429 and 503 faults (s)"
    )
    parser.add_argument(
        "--decimals",
        choices=DECIMAL_FORMS,
        default="real",
        help="value forms: as the live service writes them, or every exponent form",
    )
    parser.add_argument(
        "--partial-groups",
        action="store_true",
        help="answers include the current, still-filling group (ONE_MINUTE and coarser)",
    )
    parser.add_argument(
        "--rate-limit-code",
        choices=("KT-GB-4042", "KT-CT-1199"),
        default="KT-GB-4042",
        help="the error the rate limit answers with",
    )
    parser.add_argument(
        "--mini", choices=MINI_STATES, default="ok", help="what every Home Mini does"
    )
    parser.add_argument(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        metavar="[OP:]KIND[*N]",
        help="queue faults for the next matching requests",
    )


def serve(args: argparse.Namespace) -> int:
    clock = Clock(args.clock_offset)
    offline = []
    for spec in args.offline:
        a, _, b = spec.partition("/")
        offline.append((parse_when(a, clock.now()), parse_when(b, clock.now())))
    options = Options(
        api_keys=tuple(args.api_key) or (DEFAULT_API_KEY,),
        token_lifetime=args.token_lifetime,
        refresh_lifetime=args.refresh_lifetime,
        rate_limit=args.rate_limit,
        rate_period=args.rate_period,
        history=args.history,
        lag=args.lag,
        hang=args.hang,
        retry_after=args.retry_after,
        offline=offline,
        decimals=args.decimals,
        partial_groups=args.partial_groups,
        rate_limit_code=args.rate_limit_code,
        mini=args.mini,
    )
    kraken = Kraken(options, clock, [f for group in args.fault for f in group])
    server = KrakenServer(args.listen, kraken)

    host, port = server.server_address[:2]
    log.info(
        "Kraken simulator on http://%s:%s%s (%d API key(s), token %gs, %d calls per %gs)",
        host,
        port,
        GRAPHQL_PATH,
        len(options.api_keys),
        options.token_lifetime,
        options.rate_limit,
        options.rate_period,
    )
    return serve_until_signalled(server)
