"""A small InfluxDB 2 HTTP API client shared by the wattkeeper modules.

Why our own: the controller and the InfluxDB host need nothing beyond Ansible itself (no
influxdb-client package, no influx CLI). Ansible's ``fetch_url`` brings proxies, TLS
options and timeouts for free; every failure becomes one line naming the HTTP status and
InfluxDB's error code (or, for a refused certificate, the URL and the reason), never a
traceback and never the token.

What wattkeeper manages it recognises by name *and* description (``MANAGED_PREFIX``): an
object of the same name that someone else made is reported and never changed or deleted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from ansible.module_utils.urls import fetch_url

INFLUX_COMMON_ARGS: dict[str, Any] = {
    "url": {"type": "str", "default": "http://127.0.0.1:8086"},
    "token": {"type": "str", "no_log": True},
    "org": {"type": "str", "default": "home"},
    "validate_certs": {"type": "bool", "default": True},
    "ca_path": {"type": "path"},
    "timeout": {"type": "int", "default": 30},
}

# Every bucket, task and token wattkeeper creates has a description starting with this.
MANAGED_PREFIX = "wattkeeper"


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def retention_seconds(text: str) -> int:
    """Turn "30d" / "1h30m" / "2592000" / "forever" into seconds (0 = forever)."""
    t = str(text).strip().lower()
    if t in ("", "0", "inf", "infinite", "forever", "none"):
        return 0
    if t.isdigit():
        return int(t)
    parts = re.findall(r"(\d+)([smhdw])", t)
    if not parts or "".join(n + u for n, u in parts) != t:
        raise ValueError(f"retention: {text!r} is not a duration such as 30d, 90d or 1h")
    return sum(int(n) * _UNITS[u] for n, u in parts)


class InfluxError(Exception):
    """An API call failed; the message is safe to show (no token)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def is_managed(obj: dict[str, Any], prefix: str = MANAGED_PREFIX) -> bool:
    """Whether wattkeeper made this bucket or task (its description says so)."""
    return not prefix or str(obj.get("description") or "").startswith(prefix)


def not_ours(kind: str, obj: dict[str, Any], prefix: str) -> str:
    """The message for an object of one of our names that someone else made."""
    return (
        f"{kind} {obj.get('name')!r} exists but was not created by wattkeeper (its description "
        f"{str(obj.get('description') or '')!r} does not start with {prefix!r}); "
        f"it is left untouched"
    )


_VERIFY_FAILED = re.compile(r"certificate verify failed: ([^(<>]+)")


def connect_error(msg: str, url: str, ca_path: str | None) -> str:
    """fetch_url's message for a request that got no answer, in one line with the fix."""
    found = _VERIFY_FAILED.search(msg)
    if found:
        reason = found.group(1).strip().rstrip(".")
        if "mismatch" in reason:
            fix = "use a name the certificate was issued for in the URL"
        elif ca_path:
            fix = f"trusting only the CA file {ca_path}"
        else:
            fix = "trusting the system's CAs; set wattkeeper_influxdb_ca_file to its CA"
        return f"{url}: TLS: certificate verify failed: {reason} ({fix})"
    if "WRONG_VERSION_NUMBER" in msg:
        return f"{url}: TLS handshake failed: the server does not speak https there (http://?)"
    return f"{url}: cannot connect: {msg}"


class Influx:
    """Just the endpoints the modules use, with JSON in and out."""

    def __init__(self, module: Any, token: str | None = None) -> None:
        self.module = module
        self.base = module.params["url"].rstrip("/")
        self.token = token if token is not None else module.params.get("token")
        self._org_id: str | None = None

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        expect: tuple[int, ...] = (200, 201, 204),
        raw: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        url = self.base + path
        if query:
            url += "?" + urlencode(query)
        hdrs = {"Accept": "application/json"}
        if self.token:
            hdrs["Authorization"] = "Token " + self.token
        data = None
        if raw is not None:
            data = raw
        elif body is not None:
            data = json.dumps(body)
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        resp, info = fetch_url(
            self.module,
            url,
            data=data,
            headers=hdrs,
            method=method,
            timeout=self.module.params["timeout"],
            ca_path=self.module.params.get("ca_path"),
        )
        status = int(info.get("status", -1))
        content = b""
        if resp is not None:
            content = resp.read()
        if not content and info.get("body"):
            # An HTTP error: fetch_url has read the body already.
            content = info["body"]
        if status not in expect:
            detail = ""
            try:
                err = json.loads(content or b"{}")
                detail = f" {err.get('code', '')}: {err.get('message', '')}".rstrip(": ")
            except ValueError:
                detail = f" {info.get('msg', '')}"
            if status == -1:
                raise InfluxError(
                    f"{method} "
                    + connect_error(
                        str(info.get("msg")), self.base + path, self.module.params.get("ca_path")
                    ),
                    status,
                )
            raise InfluxError(f"{method} {path}: HTTP {status}{detail}", status)
        if not content:
            return None
        try:
            return json.loads(content)
        except ValueError:
            return content.decode("utf-8", "replace")

    def org_id(self, name: str | None = None) -> str:
        name = name or self.module.params["org"]
        if self._org_id is None:
            orgs = self.call("GET", "/api/v2/orgs", query={"org": name}, expect=(200, 404))
            found = [o for o in (orgs or {}).get("orgs", []) if o.get("name") == name]
            if not found:
                seen = self.call("GET", "/api/v2/orgs", expect=(200, 401, 403, 404)) or {}
                names = sorted(str(o.get("name")) for o in seen.get("orgs", []) if o.get("name"))
                raise InfluxError(
                    f"organization {name!r} does not exist at {self.base} or the token cannot "
                    f"see it; the token sees: {', '.join(map(repr, names)) or 'no organization'} "
                    "(set wattkeeper_influxdb_org; on InfluxDB Cloud it is the organization "
                    "name shown under your account)"
                )
            self._org_id = found[0]["id"]
        return self._org_id

    def find_bucket(self, name: str) -> dict[str, Any] | None:
        res = self.call(
            "GET",
            "/api/v2/buckets",
            query={"name": name, "orgID": self.org_id()},
            expect=(200, 404),
        )
        for b in (res or {}).get("buckets", []):
            if b.get("name") == name:
                return dict(b)
        return None

    def all_buckets(self) -> list[dict[str, Any]]:
        """Every bucket of the organization, page by page (100 a page: the API's default)."""
        found: list[dict[str, Any]] = []
        while True:
            query = {"orgID": self.org_id(), "limit": 100, "offset": len(found)}
            page = list((self.call("GET", "/api/v2/buckets", query=query) or {}).get("buckets", []))
            found += page
            if len(page) < 100:
                return found

    def find_task(self, name: str) -> dict[str, Any] | None:
        res = self.call(
            "GET", "/api/v2/tasks", query={"name": name, "orgID": self.org_id(), "limit": 500}
        )
        for t in (res or {}).get("tasks", []):
            if t.get("name") == name:
                return dict(t)
        return None

    def all_tasks(self) -> list[dict[str, Any]]:
        """Every task of the organization (with its Flux), 500 a page (the API's maximum)."""
        found: list[dict[str, Any]] = []
        query: dict[str, Any] = {"orgID": self.org_id(), "limit": 500}
        while True:
            page = list((self.call("GET", "/api/v2/tasks", query=query) or {}).get("tasks", []))
            found += page
            if len(page) < 500:
                return found
            query["after"] = page[-1]["id"]

    def authorizations(self) -> list[dict[str, Any]]:
        res = self.call("GET", "/api/v2/authorizations", query={"orgID": self.org_id()})
        return list((res or {}).get("authorizations", []))


def fail(module: Any, exc: InfluxError, **extra: Any) -> None:
    module.fail_json(msg=str(exc), status=exc.status, **extra)


def by_name(objects: list[dict[str, Any]], key: str = "name") -> dict[str, dict[str, Any]]:
    """Objects indexed by name (the first of a name wins, as a lookup by name finds it)."""
    index: dict[str, dict[str, Any]] = {}
    for obj in objects:
        index.setdefault(str(obj.get(key)), dict(obj))
    return index


def duplicates(names: list[str]) -> list[str]:
    """Names given more than once in a list option (each would fight the other)."""
    seen: set[str] = set()
    twice: set[str] = set()
    for name in names:
        (twice if name in seen else seen).add(name)
    return sorted(twice)


def listed(module: Any, key: str, label: str, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """The objects asked for: the list option KEY, or the one object the single-object
    options (KEYS) describe. Fails the module when a LABEL is given twice."""
    p = module.params
    items: list[dict[str, Any]] = p[key] if p[key] is not None else [{k: p[k] for k in keys}]
    twice = duplicates([i[label] for i in items])
    if twice:
        module.fail_json(
            msg=f"{key}: each {label} once ({', '.join(map(repr, twice))} more than once)"
        )
    return items


class Failures:
    """The errors of a list call: every item is tried, the call fails at the end naming each.

    An error that every further call would repeat (no connection, token refused) ends it at
    once, as the loop of single calls it replaces would have failed the same way each time.
    """

    def __init__(self) -> None:
        self.errors: list[InfluxError] = []

    def add(self, exc: InfluxError) -> None:
        if exc.status in (-1, 401):
            raise exc
        if str(exc) not in map(str, self.errors):
            self.errors.append(exc)

    def check(self, module: Any, **extra: Any) -> None:
        """Fail the module with every message, one per line, if there was any."""
        if self.errors:
            msg = "\n".join(str(e) for e in self.errors)
            module.fail_json(msg=msg, status=self.errors[0].status, **extra)


def apply_each(
    module: Any,
    key: str,
    label: str,
    wanted: list[dict[str, Any]],
    apply: Callable[[dict[str, Any]], dict[str, Any]],
    describe: Callable[[dict[str, Any], InfluxError], InfluxError] = lambda want, exc: exc,
) -> None:
    """Bring every object of the list option KEY to its state and exit the module.

    Each result is named by its LABEL (name or description); a changed object adds a diff;
    an object that fails is named on a line of its own while the others are still done.
    """
    results: list[dict[str, Any]] = []
    failures = Failures()
    for want in wanted:
        try:
            results.append({label: want[label], **apply(want)})
        except InfluxError as exc:
            failures.add(describe(want, exc))
            results.append({label: want[label], "changed": False, "failed": True})
    diffs = [
        {**r.pop("diff"), "before_header": r[label], "after_header": r[label]}
        for r in results
        if "diff" in r
    ]
    changed = any(r["changed"] for r in results)
    failures.check(module, changed=changed, **{key: results})
    module.exit_json(changed=changed, diff=diffs, **{key: results})
