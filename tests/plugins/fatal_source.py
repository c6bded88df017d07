"""A source whose configuration is refused by the service (a wrong API key, say)."""

from __future__ import annotations

from tiny_source import TinySection

from wattkeeper.source import SourceContext, SourceFatal, SourcePlugin


def _refuse(ctx: SourceContext) -> object:
    raise SourceFatal("the key was refused (check it on the dashboard)", key="tiny.api_key_file")


PLUGIN = SourcePlugin(name="tiny", config_class=TinySection, factory=_refuse)  # type: ignore[arg-type]
