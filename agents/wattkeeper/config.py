"""Agent configuration: one TOML file per agent, mapped onto typed dataclasses.

Every section is a dataclass; its type hints are the schema. Loading walks the hints, so
a wrong type, a bad duration, a missing key or an unknown key is reported as one line
naming the key and the file (exit 78), and a source adds its own section by declaring
one more dataclass, without touching this module.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import re
import socket
import ssl
import stat
import tomllib
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin, get_type_hints

EX_CONFIG = 78
EX_TEMPFAIL = 75

T = TypeVar("T")


class ConfigError(Exception):
    """A configuration problem, always tied to a key and a file."""

    def __init__(self, key: str, file: Path | str, message: str) -> None:
        super().__init__(f"{file}: {key}: {message}")
        self.key = key
        self.file = str(file)
        self.message = message


class _Duration:
    """Marker: a string like "30s", "5m", "1h30m" converted to seconds."""


class _ByteSize:
    """Marker: a string like "64MB" or an integer number of bytes."""


Duration = Annotated[float, _Duration]
ByteSize = Annotated[int, _ByteSize]

# The one duration grammar of the project (agent files, inventory, simulators, tiers):
# numbers with units, largest first or not, e.g. "250ms", "30s", "5m", "1h30m", "2w".
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}


def parse_duration(text: str) -> float:
    """Parse "30s", "5m", "1h30m", "250ms" into seconds; raise ValueError otherwise."""
    s = text.strip()
    pos = 0
    total = 0.0
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if not s or pos != len(s):
        raise ValueError(f'"{text}" is not a duration (use e.g. "30s", "5m", "1h", "1h30m")')
    return total


def format_duration(seconds: float) -> str:
    """Seconds as parse_duration reads them back, in the largest whole unit: 3600 -> "1h"."""
    if seconds == 0:
        return "0s"
    for unit in ("w", "d", "h", "m", "s"):
        size = _DURATION_UNITS[unit]
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    ms = seconds * 1000
    return f"{int(ms)}ms" if float(ms).is_integer() else f"{seconds}s"


def parse_size(value: str | int) -> int:
    """Parse "64MB", "1GiB" or a plain integer into bytes."""
    if isinstance(value, int):
        return value
    m = _SIZE.match(value)
    if not m:
        raise ValueError(f'"{value}" is not a size (use e.g. "64MB", "1GiB" or bytes)')
    return int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "B").lower()])


_INVENTORY_CHECK: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "inventory_check", default=False
)


@contextlib.contextmanager
def inventory_check() -> Iterator[None]:
    """Validate sections without touching the files they name: the role checks an
    inventory on the controller, where the secret and CA files of the host do not exist."""
    token = _INVENTORY_CHECK.set(True)
    try:
        yield
    finally:
        _INVENTORY_CHECK.reset(token)


def read_secret_file(path: Path, key: str, file: Path | str) -> str:
    """Read a secret from a file that only its owner may read (mode 0600)."""
    if _INVENTORY_CHECK.get():
        return "(a secret, checked on the host)"
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(key, file, f"secret file {path} does not exist") from None
    except PermissionError:
        raise ConfigError(key, file, f"secret file {path}: permission denied") from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise ConfigError(
            key,
            file,
            f"secret file {path} has mode {stat.S_IMODE(st.st_mode):04o}; "
            f"other users must not read it (chmod 600 {path})",
        )
    try:
        value = path.read_text(encoding="utf-8").strip()
    except PermissionError:
        raise ConfigError(key, file, f"secret file {path}: permission denied") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(key, file, f"cannot read secret file {path}: {exc}") from None
    if not value:
        raise ConfigError(key, file, f"secret file {path} is empty")
    return value


def check_ca_file(path: Path, url: str, key: str, file: Path | str) -> None:
    """A CA file must be readable PEM with at least one certificate, for an https URL: a
    mistake here would otherwise only show as failed deliveries."""
    if not url.startswith("https://"):
        raise ConfigError(key, file, f'is set but the URL "{url}" is not https://')
    if _INVENTORY_CHECK.get():
        return
    try:
        ssl.create_default_context(cafile=str(path))
    except FileNotFoundError:
        raise ConfigError(key, file, f"CA file {path} does not exist") from None
    except PermissionError:
        raise ConfigError(key, file, f"CA file {path}: permission denied") from None
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(key, file, f"{path} is not a PEM CA certificate ({exc})") from None


# ---------------------------------------------------------------------------
# The sections every agent shares
# ---------------------------------------------------------------------------


@dataclass
class AgentSection:
    """[agent]: how the agent itself behaves."""

    # Least severe message logged.
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # "auto" logs to journald when its socket exists, otherwise to stderr.
    log_target: Literal["auto", "journal", "stderr"] = "auto"
    # The host tag of the agent's own metrics and alerts (default: the hostname).
    host: str = field(default_factory=socket.gethostname)
    # How often the agent writes its own metrics (wattkeeper_agent measurement).
    metrics_interval: Duration = 60.0
    # How long SIGTERM (or --once) may spend delivering what is buffered before exiting.
    flush_timeout: Duration = 10.0
    # Consecutive failed polls before the source is reported failing.
    failure_threshold: int = 3
    # Alert when the newest reading is older than this ("0s": never). Unset: the source's
    # own default (octopus 30m; the other sources never).
    stale_after: Duration | None = None

    def validate(self, where: str, file: Path) -> None:
        if self.failure_threshold < 1:
            raise ConfigError(f"{where}.failure_threshold", file, "must be at least 1")
        if self.metrics_interval < 1:
            raise ConfigError(f"{where}.metrics_interval", file, "must be at least 1s")


@dataclass
class InfluxSection:
    """[influxdb]: where readings go."""

    # InfluxDB's base URL, http(s)://HOST:8086.
    url: str
    # The InfluxDB organization.
    org: str
    # The bucket readings are written to (the source's raw bucket).
    bucket: str
    # File holding the agent's InfluxDB token (mode 0600).
    token_file: Path | None = None
    # The token itself, instead of token_file (tests only).
    token: str | None = None
    # https: the CA certificate(s) (PEM) that signed the server's certificate; unset, the
    # system's CAs. Verification is never switched off.
    ca_file: Path | None = None
    # Timeout of one write or query.
    timeout: Duration = 10.0
    # Points per write (InfluxDB's own recommendation is at most 5000).
    batch_size: int = 5000
    # A batch is also cut at this many bytes of line protocol (wide Luxtronik points).
    batch_bytes: ByteSize = 8_000_000
    # Compress writes (line protocol shrinks about tenfold).
    gzip: bool = True
    # Exponential backoff with jitter between failed deliveries. The ceiling is short so that
    # a backlog starts to drain soon after InfluxDB is back (Telegraf retries at every 10 s
    # flush); a refused or failed attempt costs little, and a Retry-After is still honoured.
    retry_initial: Duration = 1.0
    # The longest wait between two delivery attempts.
    retry_max: Duration = 30.0
    # Points delivered longer than this after their reading time get a late marker, so
    # the downsampling tasks re-aggregate their windows; keep it below the tasks' offset
    # (influxdb_task_offset, 30s). 0 turns markers off.
    late_after: Duration = 10.0

    def validate(self, where: str, file: Path) -> None:
        if not re.match(r"^https?://[^/\s]+", self.url):
            raise ConfigError(f"{where}.url", file, f'"{self.url}" is not an http(s) URL')
        if self.ca_file is not None:
            check_ca_file(self.ca_file, self.url, f"{where}.ca_file", file)
        if self.token_file is not None:
            self.token = read_secret_file(self.token_file, f"{where}.token_file", file)
        elif not self.token:
            raise ConfigError(f"{where}.token_file", file, "missing required key (or token)")
        if not 1 <= self.batch_size <= 5000:
            raise ConfigError(f"{where}.batch_size", file, "must be between 1 and 5000")
        if self.timeout <= 0:
            raise ConfigError(f"{where}.timeout", file, "must be positive")
        if self.late_after < 0:
            raise ConfigError(f"{where}.late_after", file, "must be 0 (off) or positive")

    def __repr__(self) -> str:  # never show the token
        return f"InfluxSection(url={self.url!r}, org={self.org!r}, bucket={self.bucket!r})"


@dataclass
class BufferSection:
    """[buffer]: the local SQLite file that holds every reading until InfluxDB has it."""

    # The SQLite file (default: /var/lib/wattkeeper/SOURCE/buffer.sqlite).
    path: Path | None = None
    # The most undelivered points kept; beyond it the oldest go (and are counted).
    max_rows: int = 2_000_000
    # The most bytes of undelivered points kept, like max_rows.
    max_bytes: ByteSize = 512 * 1000**2
    # "full" fsyncs every commit (survives power loss); "normal" survives process crashes only.
    synchronous: Literal["full", "normal"] = "full"
    # Streaming sources (pulses) gather readings in memory this long per commit.
    commit_interval: Duration = 1.0

    def validate(self, where: str, file: Path) -> None:
        if self.max_rows < 1:
            raise ConfigError(f"{where}.max_rows", file, "must be at least 1")
        if self.max_bytes < 4096:
            raise ConfigError(f"{where}.max_bytes", file, "must be at least 4096 bytes")


@dataclass
class AlertsSection:
    """[alerts]: optional Slack incoming webhook."""

    # File holding the Slack incoming-webhook URL (mode 0600); unset: no alerts.
    slack_webhook_url_file: Path | None = None
    # The webhook URL itself, instead of the file (tests only).
    slack_webhook_url: str | None = None
    # At most one alert of each kind per this period.
    min_interval: Duration = 3600.0
    # Timeout of one webhook call.
    timeout: Duration = 5.0

    def validate(self, where: str, file: Path) -> None:
        if self.slack_webhook_url_file is not None:
            self.slack_webhook_url = read_secret_file(
                self.slack_webhook_url_file, f"{where}.slack_webhook_url_file", file
            )
        if self.slack_webhook_url and not self.slack_webhook_url.startswith(
            ("http://", "https://")
        ):
            raise ConfigError(f"{where}.slack_webhook_url", file, "is not an http(s) URL")

    def __repr__(self) -> str:
        return f"AlertsSection(enabled={bool(self.slack_webhook_url)})"


@dataclass
class MqttSection:
    """[mqtt]: the optional live view in Home Assistant (MQTT discovery); off without url."""

    # mqtt://HOST[:1883], or mqtts://HOST[:8883] for TLS with the broker's certificate verified.
    url: str = ""
    # User at the broker.
    username: str | None = None
    # File holding the broker password (mode 0600).
    password_file: Path | None = None
    # CA certificate(s) the broker's certificate is checked against (default: the system's).
    ca_file: Path | None = None
    # Default: wattkeeper-SOURCE-HOST.
    client_id: str = ""
    # State and availability topics: PREFIX/HOST/SOURCE/...
    topic_prefix: str = "wattkeeper"
    # Home Assistant's discovery prefix (a setting of its MQTT integration).
    discovery_prefix: str = "homeassistant"
    # At most one state message per sensor this often; the newest value wins.
    interval: Duration = 5.0
    # MQTT keepalive: the broker drops the agent after 1.5 times this without a packet.
    keepalive: Duration = 60.0
    # Values outside the source's default set to publish too, by field name (Luxtronik).
    sensors: list[str] = field(default_factory=list)
    # No reading for this long: the agent is reported stale (0: 15m; for a oneshot, 2 days).
    stale_after: Duration = 0.0
    password: str | None = field(default=None, init=False, repr=False)

    def validate(self, where: str, file: Path) -> None:
        if not self.url:
            for key in ("username", "password_file", "ca_file", "client_id", "sensors"):
                if getattr(self, key):
                    raise ConfigError(f"{where}.url", file, f"missing ({where}.{key} needs it)")
            return
        m = _MQTT_URL.match(self.url)
        if not m:
            raise ConfigError(
                f"{where}.url",
                file,
                f'"{self.url}" is not like mqtt://HOST:1883 or mqtts://HOST:8883 (credentials '
                "go in username and password_file, not in the URL)",
            )
        if m.group("port") and not 1 <= int(m.group("port")) <= 65535:
            raise ConfigError(f"{where}.url", file, f"port {m.group('port')} is out of range")
        if self.password_file is not None:
            if not self.username:
                raise ConfigError(f"{where}.username", file, "missing (password_file needs it)")
            self.password = read_secret_file(self.password_file, f"{where}.password_file", file)
        if self.ca_file is not None:
            if not self.tls:
                raise ConfigError(f"{where}.ca_file", file, "needs an mqtts:// url")
            if not self.ca_file.is_file() and not _INVENTORY_CHECK.get():
                raise ConfigError(f"{where}.ca_file", file, f"{self.ca_file} does not exist")
        for key in ("topic_prefix", "discovery_prefix"):
            value = getattr(self, key)
            if not _MQTT_TOPIC.match(value):
                raise ConfigError(
                    f"{where}.{key}", file, f'"{value}": use letters, digits, _ - and inner /'
                )
        if self.interval < 0.1:
            raise ConfigError(f"{where}.interval", file, "must be at least 100ms")
        if not 5 <= self.keepalive <= 65535:
            raise ConfigError(f"{where}.keepalive", file, "must be between 5s and 65535s")

    @property
    def tls(self) -> bool:
        return self.url.startswith("mqtts://")

    @property
    def host(self) -> str:
        m = _MQTT_URL.match(self.url)
        return m.group("host").strip("[]") if m else ""

    @property
    def port(self) -> int:
        m = _MQTT_URL.match(self.url)
        if m and m.group("port"):
            return int(m.group("port"))
        return 8883 if self.tls else 1883


_MQTT_URL = re.compile(
    r"^mqtts?://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>\d{1,5}))?/?$"
)
_MQTT_TOPIC = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")


@dataclass
class AgentConfig:
    """A whole agent file: the shared sections plus the one source's section."""

    file: Path
    source_name: str
    agent: AgentSection
    influxdb: InfluxSection
    buffer: BufferSection
    alerts: AlertsSection
    source: Any
    mqtt: MqttSection = field(default_factory=MqttSection)

    @property
    def buffer_path(self) -> Path:
        return self.buffer.path or Path(f"/var/lib/wattkeeper/{self.source_name}/buffer.sqlite")


SHARED_SECTIONS: dict[str, type] = {
    "agent": AgentSection,
    "influxdb": InfluxSection,
    "buffer": BufferSection,
    "alerts": AlertsSection,
    "mqtt": MqttSection,
}


def read_toml(file: Path) -> dict[str, Any]:
    """Read a TOML file, turning every failure into a ConfigError on the file."""
    try:
        with file.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("-c", file, "config file does not exist") from None
    except PermissionError:
        raise ConfigError("-c", file, "permission denied reading the config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("(syntax)", file, f"not valid TOML: {exc}") from None
    except IsADirectoryError:
        raise ConfigError("-c", file, "is a directory, not a config file") from None


def load_config(
    file: Path, source_name: str, source_section: type | None, known_sources: set[str]
) -> AgentConfig:
    """Load and validate one agent file for ``source_name``."""
    data = read_toml(file)
    for name in data:
        if name in SHARED_SECTIONS or name == source_name:
            continue
        if name in known_sources:
            raise ConfigError(
                f"[{name}]",
                file,
                f"this file configures the {source_name} agent; "
                f"a [{name}] section belongs in the {name} agent's own file",
            )
        raise ConfigError(
            f"[{name}]",
            file,
            f"unknown section (known: {', '.join([*SHARED_SECTIONS, source_name])})",
        )
    sections: dict[str, Any] = {}
    for name, cls in SHARED_SECTIONS.items():
        table = data.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(name, file, "must be a table ([" + name + "])")
        if name == "influxdb" and name not in data:
            raise ConfigError("[influxdb]", file, "missing required section")
        sections[name] = load_section(table, cls, name, file)
    src: Any = None
    if source_section is not None:
        table = data.get(source_name, {})
        if not isinstance(table, dict):
            raise ConfigError(source_name, file, f"must be a table ([{source_name}])")
        src = load_section(table, source_section, source_name, file)
    return AgentConfig(file=file, source_name=source_name, source=src, **sections)


def load_section(table: dict[str, Any], cls: type[T], where: str, file: Path) -> T:
    """Build dataclass ``cls`` from a TOML table, reporting problems by dotted key."""
    hints = get_type_hints(cls, include_extras=True)
    # Fields a validate() fills in (a secret read from its file) are not keys of the file.
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    for key in table:
        if key not in fields:
            raise ConfigError(
                f"{where}.{key}", file, f"unknown key (known: {', '.join(sorted(fields))})"
            )
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key = f"{where}.{name}"
        if name in table:
            kwargs[name] = _convert(table[name], hints[name], key, file)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(key, file, "missing required key")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate(where, file)
    return obj


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Annotated:
        marker = get_args(tp)[1]
        return "duration string" if marker is _Duration else "size"
    if tp is Path:
        return "path string"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str, file: Path) -> Any:
    origin = get_origin(tp)
    if origin is Annotated:
        base, marker = get_args(tp)[:2]
        try:
            if marker is _Duration:
                if isinstance(value, bool) or not isinstance(value, str | int | float):
                    raise ValueError(f'expected a duration string such as "30s", got {value!r}')
                return float(value) if not isinstance(value, str) else parse_duration(value)
            if marker is _ByteSize:
                if isinstance(value, bool) or not isinstance(value, str | int):
                    raise ValueError(f'expected a size such as "64MB", got {value!r}')
                return parse_size(value)
        except ValueError as exc:
            raise ConfigError(key, file, str(exc)) from None
        return _convert(value, base, key, file)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in get_args(tp) if a is not type(None)]
        errors = []
        for arg in args:
            try:
                return _convert(value, arg, key, file)
            except ConfigError as exc:
                errors.append(exc.message)
        raise ConfigError(key, file, errors[0] if len(errors) == 1 else " / ".join(errors))
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(
                key, file, f"must be one of {', '.join(repr(a) for a in allowed)}, got {value!r}"
            )
        return value
    if origin is list:
        (item_tp,) = get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(key, file, f"expected a list, got {type(value).__name__}")
        return [_convert(v, item_tp, f"{key}[{i}]", file) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, file, f"expected a table, got {type(value).__name__}")
        _, val_tp = get_args(tp)
        return {k: _convert(v, val_tp, f"{key}.{k}", file) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(key, file, f"expected a table, got {type(value).__name__}")
        return load_section(value, tp, key, file)  # type: ignore[arg-type]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, file, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, file, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, file, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, file, f"expected a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(key, file, f"expected a path string, got {value!r}")
        return Path(value).expanduser()
    raise ConfigError(key, file, f"unsupported type {_type_name(tp)}")  # pragma: no cover
