"""Find sources and simulators by name, so a new source touches no core module.

A source is a module ``wattkeeper.sources.NAME`` exposing ``PLUGIN``; its simulator is
``wattkeeper.simulate.NAME`` exposing ``serve(args)`` and ``add_arguments(parser)``. A
source outside the package can be named as ``module:attribute`` (``mypkg.mysource:PLUGIN``).
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import wattkeeper.simulate
import wattkeeper.sources
from wattkeeper.source import SourcePlugin


class UnknownSource(Exception):
    pass


def source_names() -> list[str]:
    # A leading underscore marks a helper module shared by plugins, not a plugin.
    return sorted(
        m.name
        for m in pkgutil.iter_modules(wattkeeper.sources.__path__)
        if not m.name.startswith("_")
    )


def simulator_names() -> list[str]:
    return sorted(
        m.name
        for m in pkgutil.iter_modules(wattkeeper.simulate.__path__)
        if not m.name.startswith("_")
    )


def load_plugin(name: str) -> SourcePlugin:
    module_name, _, attr = name.partition(":")
    if not attr:
        module_name, attr = f"wattkeeper.sources.{name}", "PLUGIN"
    if ":" not in name and name not in source_names():
        raise UnknownSource(
            f"unknown source {name!r} (known: {', '.join(source_names()) or 'none'})"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownSource(f"cannot load source {name!r}: {exc}") from exc
    plugin = getattr(module, attr, None)
    if not isinstance(plugin, SourcePlugin):
        raise UnknownSource(f"module {module_name} has no SourcePlugin {attr}")
    return plugin


def all_plugins() -> list[SourcePlugin]:
    """Every built-in source whose dependencies import on this host."""
    plugins = []
    for name in source_names():
        try:
            plugins.append(load_plugin(name))
        except UnknownSource:
            continue
    return plugins


def load_simulator(name: str) -> ModuleType:
    if name not in simulator_names():
        raise UnknownSource(
            f"no simulator for {name!r} (known: {', '.join(simulator_names()) or 'none'})"
        )
    return importlib.import_module(f"wattkeeper.simulate.{name}")
