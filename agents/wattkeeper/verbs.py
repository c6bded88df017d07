"""The command line's one grammar: ``wattkeeper VERB SOURCE [options]``.

A source adds its own verbs (``sync wattivahti``, ``login wattivahti``, ``report
luxtronik``, ``migrate octopus``) through :func:`source_verb`, which makes the verb's parser
the first time any source asks for it and hangs the source under it; the earlier spelling
``wattkeeper SOURCE VERB`` is turned into this one by :func:`canonical_argv`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

# What each shared verb does, for `wattkeeper --help`.
VERB_HELP = {
    "sync": "fetch a date range of a source into InfluxDB",
    "login": "sign in to a source's service and store its first token",
    "report": "write a source's reports (CSV roll-ups)",
    "migrate": "one-off data migrations of a source",
}
_SOURCES = "_wattkeeper_sources"


def source_verb(
    sub: argparse._SubParsersAction[Any],
    verb: str,
    source: str,
    help: str,
    **kwargs: Any,
) -> argparse.ArgumentParser:
    """The parser of ``wattkeeper VERB SOURCE``; its caller adds options and ``func``."""
    parser: argparse.ArgumentParser | None = sub.choices.get(verb)
    if parser is None:
        parser = sub.add_parser(verb, help=VERB_HELP.get(verb, f"{verb} SOURCE"))
        inner = parser.add_subparsers(dest="verb_source", required=True, metavar="SOURCE")
        setattr(parser, _SOURCES, inner)
    inner = getattr(parser, _SOURCES, None)
    if inner is None:
        raise ValueError(f"`wattkeeper {verb}` is a core command, not a source verb")
    result: argparse.ArgumentParser = inner.add_parser(source, help=help, **kwargs)
    return result


def canonical_argv(argv: Sequence[str], sources: Sequence[str]) -> list[str]:
    """``SOURCE VERB ...`` (the spelling of earlier releases) as ``VERB SOURCE ...``."""
    args = list(argv)
    if len(args) >= 2 and args[0] in sources and not args[1].startswith("-"):
        args[0], args[1] = args[1], args[0]
    return args
