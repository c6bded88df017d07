"""Verbs of the WattiVahti source: ``login wattivahti`` and ``sync wattivahti``."""

from __future__ import annotations

import argparse
import dataclasses
import secrets
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from wattkeeper.config import EX_CONFIG
from wattkeeper.source import SourceError, SourcePlugin
from wattkeeper.sources.wattivahti.auth import (
    TokenRefused,
    pkce_pair,
    token_request,
    write_refresh_token,
)
from wattkeeper.sources.wattivahti.localtime import parse_user_time
from wattkeeper.verbs import source_verb

# The web app first signs in with the OpenID scopes, then trades the refresh token for one
# that carries the API scope; ``login`` does the same.
LOGIN_SCOPE = "openid profile offline_access"
EX_USAGE = 2


def _err(message: str) -> None:
    sys.stderr.write(f"wattkeeper: {message}\n")


def _sync_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", type=Path, required=True, metavar="FILE")
    p.add_argument(
        "--start-date",
        required=True,
        metavar="D",
        help="YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS], Europe/Helsinki unless an offset is given",
    )
    p.add_argument(
        "--end-date",
        metavar="D",
        help="a date is included whole; a date-time is exclusive (default: now)",
    )
    p.set_defaults(func=cmd_sync)


def add_commands(sub: argparse._SubParsersAction[Any]) -> None:
    """``login wattivahti`` and ``sync wattivahti`` (earlier: ``wattivahti login|sync``)."""
    lp = source_verb(
        sub, "login", "wattivahti", "get the first refresh token (browser sign-in, PKCE)"
    )
    lp.add_argument("-c", "--config", type=Path, required=True, metavar="FILE")
    lp.set_defaults(func=cmd_login)
    _sync_arguments(source_verb(sub, "sync", "wattivahti", "WattiVahti consumption range"))


def _range(args: argparse.Namespace) -> tuple[datetime, datetime]:
    start = parse_user_time(args.start_date)
    if args.end_date is None:
        end = datetime.now(UTC)
    else:
        end = parse_user_time(args.end_date)
        if len(args.end_date.strip()) == 10:
            end = parse_user_time(
                (datetime.fromisoformat(args.end_date.strip()) + timedelta(days=1))
                .date()
                .isoformat()
            )
    return start, end


def cmd_sync(args: argparse.Namespace) -> int:
    from wattkeeper.cli import load_agent_config
    from wattkeeper.journal import setup_logging
    from wattkeeper.runner import Agent
    from wattkeeper.sources.wattivahti.source import WattiVahtiSource

    try:
        start, end = _range(args)
    except ValueError as exc:
        _err(str(exc))
        return EX_USAGE
    if end <= start:
        _err("--end-date must be after --start-date")
        return EX_USAGE
    cfg, plugin = load_agent_config(args.config, "wattivahti")
    setup_logging(plugin.name, cfg.agent.log_level, cfg.agent.log_target)
    ranged: SourcePlugin = dataclasses.replace(
        plugin, factory=lambda ctx: WattiVahtiSource(ctx, (start, end))
    )
    return Agent(cfg, ranged, once=True).run()


def _code_from(pasted: str, expected_state: str) -> str:
    """The authorization code from the redirect URL (fragment or query)."""
    parts = urlsplit(pasted.strip())
    params = {k: v[0] for k, v in parse_qs(parts.query).items()}
    params.update({k: v[0] for k, v in parse_qs(parts.fragment).items()})
    if "error" in params:
        raise ValueError(
            f"sign-in failed: {params['error']}: {params.get('error_description', '')[:200]}"
        )
    if "code" not in params:
        raise ValueError("the pasted address has no code=...; paste the whole address")
    if params.get("state") != expected_state:
        raise ValueError("the pasted address belongs to another sign-in (state mismatch)")
    return params["code"]


def cmd_login(args: argparse.Namespace) -> int:
    from wattkeeper.cli import load_agent_config

    cfg, _ = load_agent_config(args.config, "wattivahti")
    c = cfg.source
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(16)
    query = {
        "client_id": c.client_id,
        "scope": LOGIN_SCOPE,
        "redirect_uri": c.redirect_uri,
        "response_type": "code",
        "response_mode": "fragment",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": state,
        "nonce": secrets.token_urlsafe(16),
    }
    print("1. Open this address in a browser and sign in to WattiVahti:\n")
    print(f"   {c.authorize_url}?{urlencode(query)}\n")
    print(f"2. The browser lands on {c.redirect_uri}... ; copy that whole address")
    print("   from the address bar and paste it here, then press Enter:")
    sys.stdout.flush()
    pasted = sys.stdin.readline()
    try:
        code = _code_from(pasted, state)
    except ValueError as exc:
        _err(str(exc))
        return 1
    session = requests.Session()
    try:
        doc = token_request(
            session,
            c.token_url,
            {
                "grant_type": "authorization_code",
                "client_id": c.client_id,
                "scope": LOGIN_SCOPE,
                "code": code,
                "code_verifier": verifier,
                "redirect_uri": c.redirect_uri,
            },
            c.timeout,
        )
        first = doc.get("refresh_token")
        if not isinstance(first, str) or not first:
            _err("the token endpoint gave no refresh_token (is offline_access allowed?)")
            return 1
        doc = token_request(
            session,
            c.token_url,
            {
                "grant_type": "refresh_token",
                "client_id": c.client_id,
                "scope": c.scope,
                "refresh_token": first,
            },
            c.timeout,
        )
    except TokenRefused as exc:
        _err(f"{c.token_url} refused the sign-in: {exc}")
        return 1
    except SourceError as exc:
        _err(str(exc))
        return 1
    finally:
        session.close()
    final = doc.get("refresh_token") or first
    try:
        write_refresh_token(c.refresh_token_file, str(final))
    except OSError as exc:
        _err(f"cannot write {c.refresh_token_file} (wattivahti.refresh_token_file): {exc}")
        return EX_CONFIG
    print(f"Stored the refresh token in {c.refresh_token_file} (mode 0600).")
    print(f"Test it with: wattkeeper check -c {args.config}")
    return 0
