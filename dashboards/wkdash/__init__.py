"""Generates wattkeeper's Grafana dashboards with grafana-foundation-sdk.

``python dashboards/generate.py`` writes ``dashboards/*.json``; the JSON is committed so
that users can import it without Python, and a test holds it equal to this output.
"""

from __future__ import annotations

import json
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from .boards import ALL
from .common import Board
from .fluxquery import register

OUT = Path(__file__).resolve().parents[1]


def build_boards() -> list[Board]:
    register()
    return [make() for make in ALL]


def render(board: Board) -> str:
    """The dashboard as the committed file holds it (stable key order, final newline)."""
    obj = json.loads(json.dumps(board.builder.build(), cls=JSONEncoder))
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def files() -> dict[Path, str]:
    return {OUT / f"{b.uid}.json": render(b) for b in build_boards()}
