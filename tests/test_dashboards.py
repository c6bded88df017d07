"""The committed dashboards: the generator's output, valid for the SDK's types, and every
datasource reference and variable resolves (no InfluxDB needed; see
test_dashboards_data.py for the queries against data)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "dashboards"))

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard
from wkdash import build_boards, files
from wkdash.fluxquery import FluxQuery, register

DASHBOARDS = sorted((ROOT / "dashboards").glob("wattkeeper-*.json"))
# Grafana's own variables a query may use (global variables; the interval is the backend's).
BUILTIN = {"__interval", "__interval_ms", "__from", "__to", "__range", "__rate_interval",
           "__dashboard", "__org", "__user", "__timezone"}  # fmt: skip
VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\${(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?}")
# What the Flux backend replaces: any word.NAME with one of these names.
MACRO = re.compile(r"\b([a-zA-Z]+)\.(timeRangeStart|timeRangeStop|windowPeriod|bucket|"
                   r"defaultBucket|organization)\b")  # fmt: skip


def _load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def test_the_committed_json_is_the_generators_output() -> None:
    r = subprocess.run(
        [sys.executable, str(ROOT / "dashboards" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert {p.name for p in files()} == {p.name for p in DASHBOARDS}
    assert len(DASHBOARDS) == 6


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_the_json_is_valid_for_the_sdk_types(path: Path) -> None:
    """The SDK reads the file into its Dashboard model and writes back the same JSON:
    no unknown or misspelt key, every panel's options of its panel type, every query an
    InfluxDB Flux query."""
    register_default_plugins()
    register()
    data = _load(path)
    model = Dashboard.from_json(data)
    again = json.loads(json.dumps(model, cls=JSONEncoder))
    assert again == data
    queries = [t for p in model.panels or [] for t in getattr(p, "targets", None) or []]
    assert queries and all(isinstance(q, FluxQuery) for q in queries)


def _panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_datasource_reference_and_variable_resolves(path: Path) -> None:
    board = _load(path)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "influxdb"
    ids = [p["id"] for p in _panels(board)]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in _panels(board):
        refs = [panel.get("datasource")] + [t.get("datasource") for t in panel.get("targets", [])]
        for ref in refs:
            if ref is not None:
                assert ref == {"type": "influxdb", "uid": "${datasource}"}, panel["title"]
        for target in panel.get("targets", []):
            query = target["query"]
            used = {m.group(1) or m.group(2) or m.group(4) for m in VARIABLE.finditer(query)}
            unknown = used - set(variables) - BUILTIN
            assert not unknown, f"{panel['title']}: undefined variables {unknown}"
            for m in MACRO.finditer(query):
                assert m.group(1) == "v", f"{panel['title']}: {m.group(0)} would be replaced"
    for v in variables.values():
        assert v["type"] in {"datasource", "textbox", "constant"}, v
    for uid in {link.get("uid") for link in board.get("links", []) if link.get("uid")}:
        assert (ROOT / "dashboards" / f"{uid}.json").exists()


def test_every_panel_has_a_known_expectation() -> None:
    """Each query of each generated dashboard says which columns its panel reads (the
    data test holds every query to it)."""
    for b in build_boards():
        built = json.loads(json.dumps(b.builder.build(), cls=JSONEncoder))
        targets = {(p["title"], t["refId"]) for p in built["panels"] for t in p.get("targets", [])}
        assert targets == {(e.panel, e.ref_id) for e in b.expects}, b.uid
