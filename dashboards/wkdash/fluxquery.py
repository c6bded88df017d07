"""The InfluxDB (Flux) query type for grafana-foundation-sdk.

The SDK ships query types for Prometheus, Loki and other core datasources but none for
InfluxDB; its documented way to add one ("Defining a custom query type") is a Dataquery
variant with a builder, registered with the runtime so that ``Dashboard.from_json`` reads
such queries back as this type. Grafana's InfluxDB datasource in Flux mode stores a
query as ``{"refId", "datasource", "query"}`` (plus ``hide``).
"""

from __future__ import annotations

from typing import Any, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

DATASOURCE_TYPE = "influxdb"


class FluxQuery(cogvariants.Dataquery):
    """One Flux query of a panel."""

    def __init__(
        self,
        query: str = "",
        ref_id: str | None = None,
        hide: bool | None = None,
        datasource: dashboard.DataSourceRef | None = None,
    ) -> None:
        self.query = query
        self.ref_id = ref_id
        self.hide = hide
        self.datasource = datasource

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {"query": self.query}
        if self.ref_id is not None:
            payload["refId"] = self.ref_id
        if self.hide is not None:
            payload["hide"] = self.hide
        if self.datasource is not None:
            payload["datasource"] = self.datasource.to_json()
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        ds = data.get("datasource")
        return cls(
            query=data.get("query", ""),
            ref_id=data.get("refId"),
            hide=data.get("hide"),
            datasource=dashboard.DataSourceRef.from_json(ds) if ds is not None else None,
        )


class Flux(cogbuilder.Builder[cogvariants.Dataquery]):
    """Builder of a FluxQuery, in the style of the SDK's own query builders."""

    def __init__(self, query: str) -> None:
        self._internal = FluxQuery(query=query)

    def build(self) -> FluxQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def hide(self, hide: bool) -> Self:
        self._internal.hide = hide
        return self

    def datasource(self, ref: dashboard.DataSourceRef) -> Self:
        self._internal.datasource = ref
        return self


def register() -> None:
    """Let ``Dashboard.from_json`` parse InfluxDB queries as FluxQuery (idempotent)."""
    cogruntime.register_dataquery_variant(
        cogruntime.DataqueryConfig(identifier=DATASOURCE_TYPE, from_json_hook=FluxQuery.from_json)
    )
