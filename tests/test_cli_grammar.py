"""One grammar, `wattkeeper VERB SOURCE`, and the spellings of earlier releases as aliases."""

from __future__ import annotations

import pytest

from wattkeeper.cli import build_parser, main
from wattkeeper.registry import source_names
from wattkeeper.verbs import canonical_argv

SAME = [
    (["login", "wattivahti", "-c", "f.toml"], ["wattivahti", "login", "-c", "f.toml"]),
    (
        ["sync", "wattivahti", "-c", "f.toml", "--start-date", "2026-01-01"],
        ["wattivahti", "sync", "-c", "f.toml", "--start-date", "2026-01-01"],
    ),
    (["migrate", "octopus", "-c", "f.toml"], ["migrate", "octopus-string-fields", "-c", "f.toml"]),
    (["report", "luxtronik", "-c", "f.toml"], ["luxtronik", "report", "-c", "f.toml"]),
    (["run", "pulse", "-c", "f.toml"], ["pulse", "run", "-c", "f.toml"]),
]


@pytest.mark.parametrize(("new", "old"), SAME)
def test_old_spelling_is_an_alias(new: list[str], old: list[str]) -> None:
    parser = build_parser()
    a = parser.parse_args(canonical_argv(new, source_names()))
    b = parser.parse_args(canonical_argv(old, source_names()))
    assert a.func is b.func
    assert a.config == b.config


def test_help_lists_the_shared_verbs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for verb in ("run", "check", "simulate", "sync", "login", "report", "migrate"):
        assert verb in out
    # No source is a command of its own any more (its verbs live under the verbs).
    assert "wattivahti" not in out.split("positional arguments")[1].split("options")[0]
