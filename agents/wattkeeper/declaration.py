"""Read a source's declaration (its SourcePlugin and config dataclass) as plain data.

The config dataclass is the one place a setting is described: its type hint is the type,
its default the default, the comment lines right above it the help, ``Duration`` marks a
duration and the plugin's ``secrets`` the keys naming secret files. scripts/generate.py
turns this data into the role's argument specs, defaults and table of sources and into
the docs' settings tables, so none of those is written by hand.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import textwrap
import tokenize
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin, get_type_hints

from wattkeeper.config import _ByteSize, _Duration, format_duration
from wattkeeper.source import SourcePlugin


@dataclass(frozen=True)
class Key:
    """One key of a config section."""

    name: str
    # The Ansible argument-spec type: str, int, float, bool, list, dict or raw.
    type: str
    required: bool
    # The default as the TOML file would spell it (None: no default, or computed).
    default: Any
    help: str
    duration: bool = False
    size: bool = False
    choices: tuple[Any, ...] = ()
    # list of str, or list of tables (then ``options`` describes one table).
    elements: str | None = None
    options: tuple[Key, ...] = ()


def _field_comments(cls: type) -> dict[str, str]:
    """The comment lines right above each field of a dataclass, joined: its help."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    body = ast.parse(source).body[0]
    out: dict[str, str] = {}
    assert isinstance(body, ast.ClassDef)
    for node in body.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            lines: list[str] = []
            line = node.lineno - 1
            while line in comments:
                lines.insert(0, comments[line])
                line -= 1
            if lines:
                out[node.target.id] = " ".join(lines)
    return out


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """The type without ``| None``, and whether None was allowed."""
    if get_origin(tp) in (types.UnionType, typing.Union):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], len(args) != len(get_args(tp))
    return tp, False


def _toml_default(value: Any, duration: bool) -> Any:
    if value is None:
        return None
    if duration and isinstance(value, int | float):
        return format_duration(float(value))
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def section_keys(cls: type, skip: frozenset[str] = frozenset()) -> list[Key]:
    """Every key of config section ``cls`` a file may set, in declaration order."""
    hints = get_type_hints(cls, include_extras=True)
    helps = _field_comments(cls)
    keys = []
    for f in dataclasses.fields(cls):
        if not f.init or f.name in skip:
            continue
        tp, _ = _unwrap(hints[f.name])
        duration = size = False
        if get_origin(tp) is Annotated:
            base, marker = get_args(tp)[:2]
            duration, size = marker is _Duration, marker is _ByteSize
            tp = base
        choices: tuple[Any, ...] = ()
        elements = None
        options: tuple[Key, ...] = ()
        if duration:
            kind = "str"
        elif size:
            kind = "raw"
        elif get_origin(tp) is Literal:
            kind, choices = "str", get_args(tp)
        elif get_origin(tp) is list:
            (item,) = get_args(tp)
            kind = "list"
            if dataclasses.is_dataclass(item):
                elements, options = "dict", tuple(section_keys(item))  # type: ignore[arg-type]
            else:
                elements = {int: "int", float: "float"}.get(item, "str")
        elif get_origin(tp) is dict:
            kind = "dict"
        else:
            kind = {bool: "bool", int: "int", float: "float"}.get(tp, "str")
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if f.default is not dataclasses.MISSING:
            default = _toml_default(f.default, duration)
        elif f.default_factory is not dataclasses.MISSING and kind in ("list", "dict"):
            default = f.default_factory()
        else:
            default = None
        keys.append(
            Key(
                f.name,
                kind,
                required,
                default,
                helps.get(f.name, ""),
                duration=duration,
                size=size,
                choices=choices,
                elements=elements,
                options=options,
            )
        )
    return keys


def secret_var(plugin: SourcePlugin, key: str) -> str:
    """The inventory (Vault) variable of a secret: wattkeeper_octopus_api_key."""
    return f"wattkeeper_{plugin.name}_{key.removesuffix('_file')}"


def role_only_keys(plugin: SourcePlugin) -> list[Key]:
    """Keys of wattkeeper_SOURCE that shape the systemd timer, not the agent's file."""
    timer = plugin.unit.timer
    if timer is None:
        return []
    return [
        Key(
            "on_calendar",
            "str",
            False,
            timer.on_calendar,
            "When the timer starts the agent (systemd OnCalendar=); not written to the "
            "agent's file.",
        ),
        Key(
            "randomized_delay",
            "str",
            False,
            timer.randomized_delay,
            "Random delay of each start (systemd RandomizedDelaySec=), so that many homes do "
            "not call the service at once.",
        ),
    ]


def role_definition(plugin: SourcePlugin, simulator: bool) -> dict[str, Any]:
    """The source's entry in the role's table of sources (wattkeeper_source_defs)."""
    unit = plugin.unit
    out: dict[str, Any] = {"kind": unit.kind, "extras": list(unit.extras)}
    if unit.timer is not None:
        out["timer"] = {
            "on_calendar": unit.timer.on_calendar,
            "randomized_delay": unit.timer.randomized_delay,
        }
    if unit.report is not None:
        out["report"] = dataclasses.asdict(unit.report)
    if unit.groups:
        out["groups"] = list(unit.groups)
    if unit.devices:
        out["devices"] = list(unit.devices)
    if unit.token_read:
        out["token_read"] = True
    if plugin.secrets:
        out["secrets"] = [
            {"key": s.key, "var": secret_var(plugin, s.key), "path": s.path}
            | ({"rotates": True} if s.rotates else {})
            for s in plugin.secrets
        ]
    if simulator and plugin.simulated is not None:
        sim = plugin.simulated
        out["simulate"] = {
            "port": sim.port,
            "args": list(sim.args),
            "config": dict(sim.config),
            "secrets": {secret_var(plugin, k): v for k, v in sim.secrets.items()},
        }
    return out
