"""The Ansible side's Python (filters, argument specs) against the agent's own config code:
what the role renders must load in the agent, what the role checks early must match what the
agent would refuse, and the argument specs must name every key the agent knows."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from wattkeeper.config import ConfigError, load_config
from wattkeeper.registry import load_plugin, source_names

ROOT = Path(__file__).resolve().parents[1]
SOURCES = source_names()
# Keys the role writes itself (secret files), never taken from the inventory.
ROLE_SET = {"api_key_file", "refresh_token_file"}


def _load_filters(file: str = "wattkeeper.py", name: str = "wattkeeper_filters") -> Any:
    spec = importlib.util.spec_from_file_location(
        name, ROOT / "ansible" / "plugins" / "filter" / file
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


F = _load_filters()
FV = _load_filters("wattkeeper_validate.py", "wattkeeper_validate_filters")
FR = _load_filters("wattkeeper_render.py", "wattkeeper_render_filters")
FX = _load_filters("wattkeeper_verify.py", "wattkeeper_verify_filters")
FT = _load_filters("wattkeeper_tiers.py", "wattkeeper_tier_filters")
DEFS = yaml.safe_load((ROOT / "roles" / "wattkeeper_common" / "defaults" / "main.yml").read_text())[
    "wattkeeper_source_defs"
]
SPECS = yaml.safe_load((ROOT / "roles" / "wattkeeper" / "meta" / "argument_specs.yml").read_text())[
    "argument_specs"
]["main"]["options"]

GOOD: dict[str, dict[str, Any]] = {
    "octopus": {"account_number": "A-1234ABCD", "calls_per_hour": 50},
    "wattivahti": {"metering_point": "1234567", "initial_days": 2, "overlap": "2h"},
    "pulse": {
        "channels": [
            {"name": "import", "pin": 20, "pulses_per_kwh": 1000},
            {"name": "export", "pin": 26, "pulses_per_kwh": 800, "debounce": "10ms"},
        ],
        "backend": "gpiod",
    },
    "luxtronik": {"host": "192.0.2.10", "interval": "30s", "report_time": "06:30"},
}
# A source without an entry here is tried with the example of its declaration.
for _name in SOURCES:
    GOOD.setdefault(_name, load_plugin(_name).example)
SECRETS = {
    "wattkeeper_octopus_api_key": "sk_live_0123456789abcdef0123",
    "wattkeeper_wattivahti_refresh_token": "x" * 40,
}
for _name in SOURCES:
    for _secret in DEFS[_name].get("secrets", []):
        SECRETS.setdefault(_secret["var"], "a-secret-0123456789")


def _sections(source: str, settings: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """What roles/wattkeeper/tasks/files.yml renders, with secret files under tmp_path."""
    token = tmp_path / f"{source}.token"
    token.write_text("an-agent-token-0123456789\n")
    token.chmod(0o600)
    secret_paths = {}
    for s in DEFS[source].get("secrets", []):
        path = tmp_path / Path(s["path"]).name
        path.write_text(SECRETS[s["var"]] + "\n")
        path.chmod(0o600)
        secret_paths[s["key"]] = str(path)
    return {
        "agent": {"log_level": "info", "metrics_interval": "10s"},
        "influxdb": {
            "url": "http://192.0.2.1:8086",
            "org": "home",
            "bucket": f"{source}_raw",
            "token_file": str(token),
        },
        "buffer": {"path": str(tmp_path / "buffer.sqlite")},
        "alerts": {},
        source: {**settings, **secret_paths},
    }


@pytest.mark.parametrize("source", SOURCES)
def test_rendered_config_loads_in_the_agent(source: str, tmp_path: Path) -> None:
    text = FR.to_toml(_sections(source, GOOD[source], tmp_path))
    path = tmp_path / f"{source}.toml"
    path.write_text(text)
    tomllib.loads(text)
    plugin = load_plugin(source)
    cfg = load_config(path, source, plugin.config_class, set(source_names()))
    assert cfg.influxdb.bucket == f"{source}_raw"
    assert FV.inventory_problems([source], {source: GOOD[source]}, SECRETS, DEFS) == []


def test_rendered_https_config_with_the_ca_loads_in_the_agent(tmp_path: Path) -> None:
    """What files.yml renders with wattkeeper_influxdb_ca_file: [influxdb] ca_file."""
    from support.tls import make_server_tls

    sections = _sections("pulse", GOOD["pulse"], tmp_path)
    sections["influxdb"].update(
        url="https://influx.home.lan:8086", ca_file=str(make_server_tls(tmp_path / "tls").ca)
    )
    path = tmp_path / "pulse.toml"
    path.write_text(FR.to_toml(sections))
    cfg = load_config(path, "pulse", load_plugin("pulse").config_class, set(source_names()))
    assert cfg.influxdb.ca_file == tmp_path / "tls" / "ca.pem"


@pytest.mark.parametrize("source", [s for s in SOURCES if "simulate" in DEFS[s]])
def test_simulated_config_loads_in_the_agent(source: str, tmp_path: Path) -> None:
    settings = {**GOOD[source], **DEFS[source]["simulate"]["config"]}
    path = tmp_path / f"{source}.toml"
    path.write_text(FR.to_toml(_sections(source, settings, tmp_path)))
    load_config(path, source, load_plugin(source).config_class, set(source_names()))


BAD = [
    ("octopus", {}, {}, "wattkeeper_octopus.account_number: missing required key"),
    (
        "octopus",
        {"account_number": "12345"},
        SECRETS,
        'account_number: "12345" is not an Octopus account number (like "A-1234ABCD")',
    ),
    ("octopus", {"account_number": "A-1234ABCD"}, {}, "wattkeeper_octopus_api_key is not set"),
    ("wattivahti", {}, SECRETS, "wattkeeper_wattivahti.metering_point: missing required key"),
    ("wattivahti", {"metering_point": "12 34"}, SECRETS, "must be the metering point code"),
    ("pulse", {}, {}, "wattkeeper_pulse.channels: missing required key"),
    (
        "pulse",
        {"channels": [{"name": "import", "pin": 99, "pulses_per_kwh": 1000}]},
        {},
        "wattkeeper_pulse.channels[0].pin: 99 is not a GPIO line number (0-53)",
    ),
    (
        "pulse",
        {"channels": [{"name": "import", "pin": "20", "pulses_per_kwh": 1000}]},
        {},
        "channels[0].pin: expected an integer, got '20'",
    ),
    (
        "pulse",
        {
            "channels": [
                {"name": "a", "pin": 20, "pulses_per_kwh": 1},
                {"name": "b", "pin": 20, "pulses_per_kwh": 1},
            ]
        },
        {},
        "wattkeeper_pulse.channels[1].pin: pin 20 is used by two channels",
    ),
    (
        "pulse",
        {"channels": [{"name": "a", "pin": 20, "pulses_per_kwh": 0}]},
        {},
        "channels[0].pulses_per_kwh: must be positive (the imp/kWh on the label)",
    ),
    (
        "luxtronik",
        {"host": "192.0.2.10", "interval": "30 s"},
        {},
        'wattkeeper_luxtronik.interval: "30 s" is not a duration',
    ),
    ("luxtronik", {}, {}, "wattkeeper_luxtronik.host: missing required key"),
    ("luxtronik", {"host": "192.0.2.10", "retention": "2w"}, {}, "retention: unknown key"),
]


@pytest.mark.parametrize(("source", "settings", "secrets", "message"), BAD)
def test_bad_inventory_named_before_anything_is_installed(
    source: str, settings: dict[str, Any], secrets: dict[str, str], message: str
) -> None:
    problems = FV.inventory_problems([source], {source: settings}, secrets, DEFS)
    assert any(message in p for p in problems), problems


# A missing Vault secret is the role's own knowledge (the agent sees a secret file); the
# rest is the agent's own validation, run on the controller.
AGENT_REFUSES_TOO = [case for case in BAD if "is not set" not in case[3]]


@pytest.mark.parametrize(("source", "settings", "secrets", "message"), AGENT_REFUSES_TOO)
def test_what_the_role_refuses_the_agent_refuses_too(
    source: str, settings: dict[str, Any], secrets: dict[str, str], message: str, tmp_path: Path
) -> None:
    """The early checks are no stricter than the agent (a bad inventory would exit 78)."""
    path = tmp_path / f"{source}.toml"
    path.write_text(FR.to_toml(_sections(source, settings, tmp_path)))
    with pytest.raises(ConfigError):
        load_config(path, source, load_plugin(source).config_class, set(source_names()))


def test_simulation_needs_no_secrets_from_the_inventory() -> None:
    sources = [s for s in SOURCES if "simulate" in DEFS[s]]
    settings = {s: {k: v for k, v in GOOD[s].items()} for s in sources}
    assert FV.inventory_problems(sources, settings, {}, DEFS, True) == []


def _dataclass_fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _all_config_classes() -> list[type]:
    from wattkeeper.config import SHARED_SECTIONS

    classes = list(SHARED_SECTIONS.values())
    for s in SOURCES:
        cls = load_plugin(s).config_class
        classes.append(cls)
        for tp in _dataclass_fields(cls).values():
            for arg in typing.get_args(tp):
                if dataclasses.is_dataclass(arg):
                    classes.append(arg)  # type: ignore[arg-type]
    return classes


def test_one_duration_grammar() -> None:
    """The agent, the tiers and the inventory read the same durations ("2w" included)."""
    from wattkeeper.config import format_duration, parse_duration
    from wattkeeper.downsample import duration_seconds

    assert parse_duration("2w") == duration_seconds("2w") == 14 * 86400
    assert parse_duration("1h30m") == 5400
    for seconds in (0.005, 1.0, 90.0, 3600.0, 604800.0, 5400.0):
        assert parse_duration(format_duration(seconds)) == seconds
    problems = FV.inventory_problems(
        ["luxtronik"], {"luxtronik": {"host": "h", "min_spacing": "2w"}}, {}, DEFS
    )
    assert problems == []


@pytest.mark.parametrize("source", SOURCES)
def test_argument_specs_name_every_key_of_the_source(source: str) -> None:
    cls = load_plugin(source).config_class
    keys = set(_dataclass_fields(cls)) - ROLE_SET
    spec = SPECS[f"wattkeeper_{source}"]["options"]
    role_keys = {"on_calendar", "randomized_delay"} if source == "wattivahti" else set()
    assert set(spec) == keys | role_keys


def test_every_default_is_in_the_argument_specs() -> None:
    for role in ("wattkeeper", "influxdb", "grafana"):
        defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())
        options = yaml.safe_load(
            (ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text()
        )["argument_specs"]["main"]["options"]
        missing = {k for k in defaults if not k.startswith("_")} - set(options)
        assert not missing, f"{role}: {sorted(missing)}"


def test_every_default_has_a_comment() -> None:
    for role in ("wattkeeper", "influxdb", "wattkeeper_common", "grafana"):
        lines = (ROOT / "roles" / role / "defaults" / "main.yml").read_text().splitlines()
        for i, line in enumerate(lines):
            if line and not line[0].isspace() and not line.startswith(("#", "---")) and ":" in line:
                above = lines[i - 1] if i else ""
                assert above.startswith("#"), (
                    f"roles/{role}/defaults/main.yml: {line.split(':')[0]} has no comment"
                )


TIERS = [
    {"name": "raw", "retention": "30d"},
    {"name": "1m", "every": "1m", "retention": "90d", "chunk": "1d"},
    {"name": "5m", "every": "5m", "retention": "365d"},
    {"name": "1h", "every": "1h", "retention": 0, "chunk": "7d"},
]


@pytest.mark.parametrize("cascade", [False, True])
@pytest.mark.parametrize("source", [s for s in SOURCES if load_plugin(s).rollups])
def test_tier_flux_for_every_tier(source: str, cascade: bool) -> None:
    plan = [e for e in F.bucket_plan([source], TIERS, cascade=cascade) if e["task"]]
    assert [e["every"] for e in plan] == ["1m", "5m", "1h"]
    assert [e["src"] for e in plan] == (
        [f"{source}_raw", f"{source}_1m", f"{source}_5m"] if cascade else [f"{source}_raw"] * 3
    )
    # A tier without a chunk gets a day; a new tier starts as far back as raw keeps; only
    # a tier another one reads writes markers for it.
    assert [e["chunk"] for e in plan] == ["1d", "1d", "7d"]
    assert {e["first"] for e in plan} == {"30d"}
    assert [e["announce"] for e in plan] == [cascade, cascade, False]
    # verify.yml allows a late point the time to go through the finer tiers.
    assert [e["lag"] for e in plan] == (["0s", "90s", "420s"] if cascade else ["0s"] * 3)
    for entry in plan:
        flux = FT.tier_flux(entry, "home", "30s")
        assert f'option task = {{name: "wattkeeper_{source}_{entry["every"]}", every: ' in flux
        assert f'dst = "{source}_{entry["every"]}"' in flux
        assert "|> to(bucket: dst, org: org)" in flux
        assert f'from(bucket: "{source}_{entry["every"]}")' in FT.tier_check_flux(entry)
    # The old filter (raw to one tier) still works.
    assert 'dst = "x_1m"' in F.task_flux(source, "1m", f"{source}_raw", "x_1m", "home")


def _check_row(**values: str) -> dict[str, Any]:
    row = {
        "checkpoint": "2026-11-30T12:00:31.000000000Z",
        "stop": "2026-11-30T12:00:00Z",
        "late_from": "",
        "late_to": "",
        "from": "2026-11-29T12:00:00Z",
        "now": "2026-11-30T12:00:50.5Z",
        "windows": "4320",
        "differing": "0",
        "waiting_from": "",
        "waiting_to": "",
        **values,
    }
    header = ",result,table," + ",".join(row)
    return {"status": 200, "content": header + "\n,_result,0," + ",".join(row.values()) + "\n"}


def test_verify_tier_says_whether_a_tier_is_complete_and_what_to_do() -> None:
    entry = next(e for e in F.bucket_plan(["pulse"], TIERS) if e["tier"] == "1m")

    tasks: list[dict[str, str]] = [{"name": "wattkeeper_pulse_1m", "id": "0a1b"}]

    def verdict(**values: str) -> tuple[bool, str, str]:
        v = FT.verify_tier({**_check_row(**values), "item": entry}, "30s", tasks)
        return v["ok"], v["detail"], v["next"]

    ok, detail, _ = verdict()
    assert ok and detail == "complete: 4320 windows since 2026-11-29T12:00Z equal raw"
    ok, detail, nxt = verdict(checkpoint="", stop="")
    assert not ok and "no checkpoint" in detail and "every 1m" in nxt
    tasks[0]["createdAt"] = "2026-11-30T12:00:10Z"  # a new task: its first run is due
    ok, detail, _ = verdict(checkpoint="", stop="")
    assert ok and detail == "new: its first run is due within 1m"
    del tasks[0]["createdAt"]
    ok, detail, nxt = verdict(checkpoint="2026-11-30T11:40:00Z")
    assert not ok and "21m old" in detail and "GET /api/v2/tasks/0a1b/runs" in nxt
    ok, detail, nxt = verdict(stop="2026-11-28T12:00:00Z")
    assert not ok and "catching up: 2d of windows left (2 runs at 1d each)" in detail, detail
    assert "wait about 2m" in nxt
    ok, detail, _ = verdict(late_from="2026-11-30T06:00:00Z", late_to="2026-11-30T09:00:00Z")
    assert not ok and "catching up: 3h of windows left (1 run at 1d each)" in detail
    ok, detail, nxt = verdict(differing="3")
    assert not ok and detail == "3 of 4320 windows since 2026-11-29T12:00Z differ from raw"
    assert "redo-tiers.yml" in nxt


def test_deployable_sources_skip_missing_modules() -> None:
    assert F.deployable_sources(["pulse", "nosuchsource"]) == ["pulse"]
    simulated = F.deployable_sources(["pulse", "luxtronik", "octopus"], True)
    assert {"pulse", "luxtronik"} <= set(simulated)
    octopus_sim = (ROOT / "agents/wattkeeper/simulate/octopus").exists() or (
        ROOT / "agents/wattkeeper/simulate/octopus.py"
    ).exists()
    assert ("octopus" in simulated) == octopus_sim


def test_buffer_stats_parse() -> None:
    out = (
        "buffer  /x\npending         3 points (120 bytes)\ndead-lettered   1 points\n"
        "oldest age      42s\npoints_written  10\n"
    )
    assert FX.buffer_stats(out) == {
        "pending": 3,
        "dead_lettered": 1,
        "oldest_age": 42.0,
        "points_written": 10,
    }
    assert FX.buffer_stats("oldest age      -\n")["oldest_age"] is None


def test_no_secret_reaches_the_toml_through_a_typo() -> None:
    # null values are refused loudly rather than written as an empty string
    with pytest.raises(Exception, match="null has no TOML form"):
        FR.to_toml({"agent": {"log_level": [None]}})
    assert os.sep  # keep the import used on every platform


MODULES = sorted(p.stem for p in (ROOT / "ansible" / "plugins" / "modules").glob("*.py"))


class _SpecSeen(Exception):
    """Raised by the stand-in AnsibleModule once it has the module's argument spec."""


def _argument_spec(name: str) -> dict[str, Any]:
    """The argument spec a module hands to AnsibleModule, without running the module."""
    import ansible.module_utils as module_utils

    utils_path = ROOT / "ansible" / "plugins" / "module_utils" / "wattkeeper_influx.py"
    utils_spec = importlib.util.spec_from_file_location(
        "ansible.module_utils.wattkeeper_influx", utils_path
    )
    assert utils_spec is not None and utils_spec.loader is not None
    utils = importlib.util.module_from_spec(utils_spec)
    sys.modules[utils_spec.name] = utils
    utils_spec.loader.exec_module(utils)
    module_utils.wattkeeper_influx = utils  # type: ignore[attr-defined]
    spec = importlib.util.spec_from_file_location(
        f"wattkeeper_module_{name}", ROOT / "ansible" / "plugins" / "modules" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    seen: dict[str, Any] = {}

    def stand_in(argument_spec: dict[str, Any], **_: Any) -> None:
        seen.update(argument_spec)
        raise _SpecSeen

    module.AnsibleModule = stand_in
    with pytest.raises(_SpecSeen):
        module.main()
    return seen


@pytest.mark.parametrize("name", MODULES)
def test_module_documents_exactly_its_arguments(name: str) -> None:
    # ansible-doc resolves the shared doc fragment the way ansible-playbook does, so a
    # broken DOCUMENTATION block or fragment fails here and not in a user's ansible-doc.
    import json
    import subprocess

    out = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-doc"), "--json", name],
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr
    doc = json.loads(out.stdout)[name]["doc"]
    texts = [doc["description"], *(o["description"] for o in doc["options"].values())]
    for text in texts:  # an unquoted "{...}" in YAML turns a sentence into a mapping
        assert all(isinstance(t, str) for t in (text if isinstance(text, list) else [text]))
    spec = _argument_spec(name)
    assert set(doc["options"]) == set(spec)
    for option, arg in spec.items():
        documented = doc["options"][option]
        assert documented.get("type", "str") == arg.get("type", "str"), option
        assert bool(documented.get("required")) == bool(arg.get("required")), option
        if "default" in arg:
            assert documented.get("default") == arg["default"], option


def _render_unit_env(tls_cert: str) -> set[str]:
    """The Environment= lines of the binary unit and of the apt drop-in, rendered."""
    import jinja2

    env = jinja2.Environment(trim_blocks=True)
    context = {
        "ansible_managed": "managed",
        "influxdb_binary_dest": "/usr/local/bin/influxd",
        "influxdb_http_bind_address": ":8086",
        "influxdb_reporting_enabled": False,
        "influxdb_tls_cert": tls_cert,
        "_influxdb_tls_dir": yaml.safe_load((ROOT / "roles/influxdb/vars/main.yml").read_text())[
            "_influxdb_tls_dir"
        ],
    }
    unit = (ROOT / "roles/influxdb/templates/influxdb.service.j2").read_text()
    tasks = yaml.safe_load((ROOT / "roles/influxdb/tasks/install_apt.yml").read_text())
    dropin = next(t for t in tasks if "Environment=" in str(t))["ansible.builtin.copy"]["content"]
    lines: set[str] = set()
    for text in (unit, dropin):
        rendered = env.from_string(text).render(context).splitlines()
        lines |= {line.strip() for line in rendered if line.strip().startswith("Environment=")}
    return lines


def test_binary_and_apt_serve_tls_from_the_given_files() -> None:
    """influxd reads INFLUXD_TLS_CERT/KEY (the variables tests/support/influxd.py starts the
    https test server with); both methods set them only when influxdb_tls_cert is given."""
    with_tls = _render_unit_env("/controller/influx.crt")
    assert "Environment=INFLUXD_TLS_CERT=/etc/influxdb2/tls/server.crt" in with_tls
    assert "Environment=INFLUXD_TLS_KEY=/etc/influxdb2/tls/server.key" in with_tls
    assert not any("TLS" in line for line in _render_unit_env(""))


@pytest.mark.parametrize(
    ("given", "meant"),
    [("seed000", "power-numeric"), ("seed001", "energy-consumption"), ("power-numeric", None)],
)
def test_schema_names_say_what_they_are_and_the_old_ones_still_work(
    given: str, meant: str | None, tmp_path: Path
) -> None:
    from wattkeeper.config import inventory_check, load_section

    with inventory_check():
        section = load_section(
            {"account_number": "A-1234ABCD", "api_key_file": "/k", "schema": given},
            load_plugin("octopus").config_class,
            "octopus",
            tmp_path / "octopus.toml",
        )
    assert section.schema == (meant or given)
