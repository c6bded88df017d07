"""WattiVahti portal: B2C token endpoint (rotating refresh tokens) and meterdata2.

Endpoints (any path prefix): POST .../oauth2/v2.0/token, GET .../oauth2/v2.0/authorize
(signs the user in at once and redirects with a PKCE code), GET .../meterdata2. Test
controls: GET /_stats, POST /_fault {"kind": K, "count": N} (K: 500, 503, hang, nonjson,
empty, badvalue (the first four measured quantities are not numbers) for meterdata2;
token500, b2c_transient (invalid_grant AADB2C90085) for the token endpoint), POST
/_tokens {"refresh_token"}.

Behaviours of the real portal that tests switch on: --spring-labels (the night of the
spring DST switch labelled in winter time, see data.SPRING_WINTER_LABELS),
--pt15min-old-error (PT15MIN for a period before quarter-hour data answers HTTP 500),
--old-refresh-tokens-stay-valid (see tokens.py). --truth FILE logs every measured entry
served, one JSON line each.
"""

from __future__ import annotations

import argparse
import logging
from datetime import date
from pathlib import Path

from wattkeeper.simulate._serving import duration, listen_address, serve_until_signalled
from wattkeeper.simulate.wattivahti.data import local_midnight
from wattkeeper.simulate.wattivahti.server import FAULTS, Portal, PortalServer
from wattkeeper.simulate.wattivahti.tokens import TokenIssuer

log = logging.getLogger("wattkeeper.simulate.wattivahti")
DEFAULT_CLIENT_ID = "84ebdb93-9ea6-42c7-bd7d-302abf7556fa"


def _fault(text: str) -> list[str]:
    kind, _, count = text.partition(":")
    if kind not in FAULTS or (count and not count.isdigit()):
        raise argparse.ArgumentTypeError(f"use KIND[:COUNT], KIND one of {', '.join(FAULTS)}")
    return [kind] * int(count or 1)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", type=listen_address, required=True, metavar="HOST:PORT")
    parser.add_argument(
        "--initial-refresh-token",
        action="append",
        default=[],
        metavar="TOKEN",
        help="a refresh token the portal accepts (once; it rotates); may repeat",
    )
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument(
        "--state",
        type=Path,
        metavar="FILE",
        help="keep issued and spent refresh tokens here, so they survive a restart",
    )
    parser.add_argument(
        "--old-refresh-tokens-stay-valid",
        action="store_true",
        help="a used refresh token stays valid until it expires (Microsoft's documented "
        "behaviour for its identity platform); default: spent at first use",
    )
    parser.add_argument("--refresh-token-lifetime", type=duration, default=14 * 86400.0)
    parser.add_argument("--access-token-lifetime", type=duration, default=3600.0)
    parser.add_argument(
        "--quarter-hour-since",
        type=date.fromisoformat,
        default=date(2025, 10, 1),
        metavar="YYYY-MM-DD",
        help="local date from which PT15MIN data exists (PT1H only before)",
    )
    parser.add_argument(
        "--lag", type=duration, default=0.0, help="data exists up to now minus this"
    )
    parser.add_argument(
        "--delay", type=duration, default=0.0, help="wait before each meterdata2 answer"
    )
    parser.add_argument("--hang", type=duration, default=30.0, help="length of a 'hang' fault")
    parser.add_argument(
        "--spring-labels",
        action="store_true",
        help="label the hours after the spring DST switch in winter time (03:00-05:45), "
        "as the portal has been seen to",
    )
    parser.add_argument(
        "--pt15min-old-error",
        action="store_true",
        help="answer PT15MIN requests for periods before --quarter-hour-since with HTTP 500",
    )
    parser.add_argument(
        "--truth", type=Path, metavar="FILE", help="append every measured entry served here"
    )
    parser.add_argument(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        metavar="KIND[:COUNT]",
        help=f"queue faults for the next requests ({', '.join(FAULTS)})",
    )


def serve(args: argparse.Namespace) -> int:
    issuer = TokenIssuer(
        args.client_id,
        args.refresh_token_lifetime,
        args.access_token_lifetime,
        list(args.initial_refresh_token),
        args.state,
        old_stay_valid=args.old_refresh_tokens_stay_valid,
    )
    portal = Portal(
        issuer,
        quarter_since=local_midnight(args.quarter_hour_since),
        lag=args.lag,
        delay=args.delay,
        hang=args.hang,
        faults=[k for group in args.fault for k in group],
        pt15min_old_error=args.pt15min_old_error,
        spring_labels=args.spring_labels,
        truth=args.truth,
    )
    server = PortalServer(args.listen, portal)

    host, port = server.server_address[:2]
    log.info(
        "WattiVahti simulator on http://%s:%s (PT15MIN since %s, %d initial token(s))",
        host,
        port,
        args.quarter_hour_since,
        len(args.initial_refresh_token),
    )
    return serve_until_signalled(server)
