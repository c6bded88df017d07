"""Luxtronik as real controllers answer (issue 13, items 12-13), and the truth test.

The real CLI against `wattkeeper simulate luxtronik` with one real behaviour switched on,
and a real InfluxDB. The truth test compares every complete reading the simulator served
(all its words, --truth-words) with what landed in the bucket.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import test_luxtronik
from conftest import Target, run_wattkeeper, spawn_wattkeeper
from support.agentproc import wait_for
from support.influxd import free_port
from test_luxtronik import FREEZE, Sim, influx_fields, lux_config

from wattkeeper.downsample import rollup_query
from wattkeeper.sources.luxtronik import PLUGIN
from wattkeeper.sources.luxtronik.reader import field_value

start_sim = test_luxtronik.start_sim  # the simulator fixture, shared


@pytest.fixture
def refusing_controller(tmp_path: Path) -> Iterator[int]:
    """A 3.90 controller with its interface off: its port refuses every connection."""
    port = free_port()
    log = tmp_path / "sim-off.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "wattkeeper", "simulate", "luxtronik", "--listen",
         f"127.0.0.1:{port}", "--interface-off", "--firmware", "V3.90.1"],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for(lambda: "connections refused" in log.read_text(), 20, "the simulator")
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


# -- item 12: firmware 3.90 switches the interface off ----------------------------------


def test_refused_port_says_what_to_switch_on_and_where(
    refusing_controller: int, target: Target, tmp_path: Path
) -> None:
    cfg = lux_config(tmp_path, target, refusing_controller)
    chk = run_wattkeeper("check", "-c", cfg)
    assert chk.returncode == 75, chk.stdout + chk.stderr
    line = next(x for x in chk.stdout.splitlines() if x.startswith("FAIL luxtronik"))
    for words in (
        f"nothing listens on port {refusing_controller}",
        "Firmware 3.90 and later switch this interface off by default",
        "switch the web interface on in the heat pump's own menu",
        "luxtronik.port",
    ):
        assert words in line, line
    run = run_wattkeeper("run", "luxtronik", "-c", cfg, "--once")
    assert run.returncode == 75
    assert "Firmware 3.90 and later switch this interface off" in run.stderr
    assert "Traceback" not in run.stderr + chk.stderr


# -- item 13: codes python-luxtronik converts to None ------------------------------------


def test_unknown_codes_land_raw_and_are_counted(
    start_sim: Callable[..., Sim], target: Target, tmp_path: Path
) -> None:
    sim = start_sim("--freeze-at", FREEZE, "--unknown-codes")
    cfg = lux_config(tmp_path, target, sim.port)
    res = run_wattkeeper("run", "luxtronik", "-c", cfg, "--once")
    assert res.returncode == 0, res.stderr
    calc = influx_fields(target, "calculations")
    # The named fields python-luxtronik gave None for are absent; the raw codes are there.
    for name in ("ID_WEB_Code_WP_akt", "ID_WEB_Code_WP_akt_2", "ID_WEB_WP_BZ_akt"):
        assert name not in calc
    assert float(calc["ID_WEB_Code_WP_akt_raw"]) == 76.0
    assert float(calc["ID_WEB_Code_WP_akt_2_raw"]) == 76.0
    assert float(calc["ID_WEB_WP_BZ_akt_raw"]) == 8.0
    assert "ID_WEB_SoftStand_raw" not in calc and calc["ID_WEB_SoftStand"] == "V3.88.1"
    assert (
        "poll: 1814 values from 127.0.0.1:"
        f"{sim.port}; 3 written raw, codes python-luxtronik has no name for: "
        "ID_WEB_Code_WP_akt_2_raw=76, ID_WEB_Code_WP_akt_raw=76, ID_WEB_WP_BZ_akt_raw=8"
    ) in res.stderr
    # The tiers keep a raw code's last value (declared with the source's roll-up).
    flux = rollup_query(list(PLUGIN.rollups), target.bucket, "1m", "-1h", "now()")
    tier = [r for r in target.server.query(flux) if r.get("_field") == "ID_WEB_Code_WP_akt_raw"]
    assert [float(r["_value"]) for r in tier] == [76.0], tier


# -- the truth test -----------------------------------------------------------------------


def expected_fields(words: dict[str, list[int]]) -> dict[str, dict[str, Any]]:
    """What one served reading must become: python-luxtronik's conversion of the words
    (the documented one), booleans as 0/1, and NAME_raw where it gives None."""
    from luxtronik.calculations import Calculations
    from luxtronik.parameters import Parameters
    from luxtronik.visibilities import Visibilities

    out: dict[str, dict[str, Any]] = {}
    tables: dict[str, Any] = {
        "parameters": Parameters(safe=True),
        "calculations": Calculations(),
        "visibilities": Visibilities(),
    }
    for group, obj in tables.items():
        raw = words[group]
        obj.parse(raw)
        table = getattr(obj, group)
        fields: dict[str, Any] = {}
        for index, entry in sorted(table.items()):
            if index >= len(raw):
                continue
            v = field_value(entry.value)
            if v is not None:
                fields[entry.name] = v
            elif not (group == "calculations" and 81 <= index <= 90):
                fields[entry.name + "_raw"] = float(raw[index])
        out[group] = fields
    return out


def test_every_served_reading_lands_once_with_its_served_values(
    start_sim: Callable[..., Sim], target: Target, tmp_path: Path
) -> None:
    served_file = tmp_path / "served.jsonl"
    sim = start_sim("--time-scale", "60", "--unknown-codes", "--truth-words", str(served_file))
    cfg = lux_config(tmp_path, target, sim.port, interval="300ms")
    log = tmp_path / "agent.log"
    agent = spawn_wattkeeper("run", "luxtronik", "-c", cfg, log=log)
    try:
        wait_for(
            lambda: served_file.exists() and len(served_file.read_text().splitlines()) >= 5,
            60,
            "five readings served",
        )
    finally:
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(30) == 0, log.read_text()
    served = [json.loads(line) for line in served_file.read_text().splitlines()]
    # Each reading is named by its controller timestamp (unique: the clock runs 60x).
    by_stamp = {w["calculations"][134]: w for w in served}
    assert len(by_stamp) == len(served)
    rows = target.query('|> range(start: 0) |> filter(fn: (r) => r._measurement == "luxtronik")')
    landed: dict[str, dict[str, dict[str, str]]] = {}
    for r in rows:
        landed.setdefault(r["_time"], {}).setdefault(r["group"], {})[r["_field"]] = r["_value"]
    stamp_of = {
        t: int(float(groups["calculations"]["ID_WEB_AktuelleTimeStamp"]))
        for t, groups in landed.items()
    }
    # None missing, none twice: one poll in the bucket per reading served.
    assert sorted(stamp_of.values()) == sorted(by_stamp), (len(stamp_of), len(by_stamp))
    for t, stamp in stamp_of.items():
        want = expected_fields(by_stamp[stamp])
        for group, fields in want.items():
            got = landed[t][group]
            assert set(got) == set(fields), (group, set(got) ^ set(fields))
            for name, value in fields.items():
                if isinstance(value, str):
                    assert got[name] == value, (name, got[name], value)
                else:
                    assert float(got[name]) == value, (name, got[name], value)
    assert "Traceback" not in log.read_text()
