"""config.toml -> typed, validated settings.

Every key has a documented default; an unknown key, a wrong type or a bad value is a ConfigError whose
one line names the file, the table and the key, and says what would be accepted. The top-level tables'
settings live here; each source, sink and hook brings its own settings class (see registry.py), and each
settings class validates its own values.

Which file is in force, and how a config is shown, is config_files.py's job. Before the settings are built, every string value gets `${VAR}` /
`${VAR:-default}` substituted from the environment (`$$` is a literal `$`), and a relative path
(PATH_KEYS) is resolved against the config file's folder, so a config means the same files from any
working directory.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipper import registry
from shipper.config_files import ENV, FLAG


class ConfigError(ValueError):
    """A problem in the config file an operator can fix; the message is one line naming the key."""


LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class ShipperSettings:
    data_dir: str = "./shipper-data"
    shutdown_grace_seconds: float = 20.0
    max_inflight_events: int = 20000        # receivers wait while this many events are buffered
    max_message_bytes: int = 1 << 20        # larger messages are dead-lettered as too-large
    log_level: str = "info"
    log_format: str = "text"                # "json": one object per line, for Logtail / LoongCollector
    ledger_days: float = 7.0                # event_uids committed to a store are remembered this long (MNS keeps 7 days at most)

    def validate(self) -> None:
        registry.positive(self, "shutdown_grace_seconds", "max_inflight_events", "max_message_bytes", "ledger_days")
        if self.log_level not in LOG_LEVELS:
            raise registry.Invalid(f"`log_level` must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        if self.log_format not in LOG_FORMATS:
            raise registry.Invalid(f"`log_format` must be one of {', '.join(LOG_FORMATS)}, got {self.log_format!r}")


API_OFF = ("", "off")


def parse_listen(listen: str) -> tuple[str, int]:
    """`host:port` -> (host, port); raises ValueError with the reason."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"must be host:port such as 127.0.0.1:8787, got {listen!r}")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class ApiSettings:
    """The monitoring port (/metrics, /healthz, /readyz), on in every `shipper run` whatever the sources."""
    listen: str = "127.0.0.1:9598"          # "" or "off": no monitoring port; port 0: any free port (logged)
    ready_window_seconds: float = 30.0      # /readyz: a sink or source may fail this long before it is unready

    @property
    def enabled(self) -> bool:
        return self.listen not in API_OFF

    def validate(self) -> None:
        registry.positive(self, "ready_window_seconds")
        if self.enabled:
            try:
                parse_listen(self.listen)
            except ValueError as e:
                raise registry.Invalid(f"`listen` {e}, or \"off\"") from None


@dataclass(frozen=True)
class BatchSettings:
    max_events: int = 4096
    max_bytes: int = 3_000_000
    linger_ms: int = 500

    def validate(self) -> None:
        registry.positive(self, "max_events", "max_bytes")
        if self.linger_ms < 0:
            raise registry.Invalid(f"`linger_ms` must be 0 or more, got {self.linger_ms!r}")


@dataclass(frozen=True)
class OpenApiSettings:
    regions: tuple = ("cn-hangzhou",)               # a call goes to its instance's region; ("all",): DescribeRegions
    ecs_endpoint: str = ""                          # default ecs.<region>.aliyuncs.com
    slb_endpoint: str = ""                          # default slb.aliyuncs.com
    alb_endpoint: str = ""                          # default alb.<region>.aliyuncs.com
    nlb_endpoint: str = ""                          # default nlb.<region>.aliyuncs.com
    actiontrail_endpoint: str = ""                  # default actiontrail.<region>.aliyuncs.com
    timeout_seconds: float = 10.0

    def validate(self) -> None:
        registry.positive(self, "timeout_seconds")
        if not self.regions:
            raise registry.Invalid('`regions` must name at least one region, e.g. ["cn-hangzhou"], or be ["all"]')
        if "all" in self.regions and len(self.regions) > 1:
            raise registry.Invalid('`regions` = ["all"] stands alone: list regions or say "all", not both')
        if len(set(self.regions)) < len(self.regions):
            raise registry.Invalid(f"`regions` lists a region twice: {list(self.regions)!r}")
        for region in self.regions:
            _check_region("regions", region)


REGION_ID = re.compile(r"[a-z0-9]+(-[a-z0-9]+)+")


def _check_region(key: str, region: str) -> None:
    if region != "all" and not REGION_ID.fullmatch(region):
        raise registry.Invalid(f"`{key}`: {region!r} is not a region id (like cn-hangzhou or ap-southeast-1)")


def _openapi_table(values: Any, path: str) -> Any:
    """[openapi] as written, the old single `region = "x"` read as `regions = ["x"]`."""
    if not isinstance(values, dict) or "region" not in values:
        return values
    if "regions" in values:
        raise ConfigError(f"{path}: [openapi]: both `region` and `regions` are set: keep `regions` only")
    region = values["region"]
    if not isinstance(region, str):
        raise ConfigError(f"{path}: [openapi]: `region` must be a string, got {region!r}")
    try:
        _check_region("region", region)
    except registry.Invalid as e:
        raise ConfigError(f"{path}: [openapi]: {e}") from None
    return {k: v for k, v in values.items() if k != "region"} | {"regions": [region]}


@dataclass(frozen=True)
class InventorySettings:
    """DescribeInstances into the instance registry: a read-only key is enough (see `shipper check --permissions`)."""
    enabled: bool = False
    interval_seconds: float = 600.0         # list every configured region at start and this often
    lookup_wait_ms: int = 1000              # a batch waits this long at most for instances no answer described yet
    startup_wait_seconds: float = 30.0      # sources start after the first sync, or after this long

    def validate(self) -> None:
        registry.positive(self, "interval_seconds")
        if self.lookup_wait_ms < 0 or self.startup_wait_seconds < 0:
            raise registry.Invalid("`lookup_wait_ms` and `startup_wait_seconds` must be 0 or more")


@dataclass(frozen=True)
class AuditSettings:
    """The inventory against the trail after each inventory sync, findings into shipper-audit; it needs
    [inventory] (nothing beyond its permissions, plus reading the store it writes)."""
    enabled: bool = False
    drift_window_seconds: float = 1800.0    # a listed status that differs from the recorded state this long: state-drift

    def validate(self) -> None:
        registry.positive(self, "drift_window_seconds")


TRAIL_RETENTION_DAYS = 90  # ActionTrail answers LookupEvents for the last 90 days (reference/actiontrail.md §1.11)


@dataclass(frozen=True)
class ActionTrailSettings:
    """LookupEvents into `ecs-events` as api-call records: who made each ECS call (actiontrail:LookupEvents)."""
    enabled: bool = False
    interval_seconds: float = 60.0          # poll every configured region this often
    overlap_seconds: float = 900.0          # each poll asks again this far back: ActionTrail delivers ~10 min late
    start_days: float = 1.0                 # the first poll looks back this far; older history: `shipper backfill`

    def validate(self) -> None:
        registry.positive(self, "interval_seconds", "start_days")
        if self.overlap_seconds < 0:
            raise registry.Invalid(f"`overlap_seconds` must be 0 or more, got {self.overlap_seconds!r}")
        if self.start_days > TRAIL_RETENTION_DAYS:
            raise registry.Invalid(f"`start_days` must be at most {TRAIL_RETENTION_DAYS} (ActionTrail keeps "
                                   f"{TRAIL_RETENTION_DAYS} days), got {self.start_days!r}")


@dataclass(frozen=True)
class Config:
    path: str
    shipper: ShipperSettings = field(default_factory=ShipperSettings)
    batch: BatchSettings = field(default_factory=BatchSettings)
    sources: tuple = ()
    sinks: tuple = ()
    hooks: dict = field(default_factory=dict)   # hook name -> its settings, every registered hook
    openapi: OpenApiSettings = field(default_factory=OpenApiSettings)
    inventory: InventorySettings = field(default_factory=InventorySettings)
    actiontrail: ActionTrailSettings = field(default_factory=ActionTrailSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    origin: str = ""                            # why this file is in force (see `discover`)
    secrets: frozenset = field(default=frozenset(), repr=False)  # substituted values of secret-named variables

    def sink(self, type_: str):
        """The first sink of that type (`sqlite`, `sls`), None without one."""
        return next((s for s in self.sinks if s.type == type_), None)

    def enabled_hooks(self) -> list:
        return [settings for settings in self.hooks.values() if settings.enabled]


def load(path: str | Path, environ: Mapping[str, str] | None = None, base: Path | None = None,
         origin: str = FLAG) -> Config:
    """The config file at `path`, its relative paths resolved against `base` (default: the file's folder)."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        hint = "fix or unset $SHIPPER_CONFIG" if origin == ENV else "check --config; `shipper config` shows the discovery"
        raise ConfigError(f"{path}: no such config file ({hint})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the config file: {e}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return from_dict(doc, str(path), environ, Path(os.path.abspath(path.parent)) if base is None else base, origin)


def from_dict(doc: dict, path: str = "config.toml", environ: Mapping[str, str] | None = None,
              base: Path | None = None, origin: str = "") -> Config:
    """Settings from a parsed document: ${VAR} substituted from `environ` (default os.environ), relative paths
    resolved against `base` (None: left as written)."""
    secrets: set[str] = set()
    doc = _prepare(doc, TOP, "", _Context(path, os.environ if environ is None else environ, base, secrets))
    known = {"shipper", "batch", "sources", "sinks", "hooks", "openapi", "inventory", "actiontrail", "audit", "api"}
    _reject_unknown(doc, known, path, "the top level")
    shipper = _build(ShipperSettings, doc.get("shipper", {}), path, "[shipper]")
    batch = _build(BatchSettings, doc.get("batch", {}), path, "[batch]")
    openapi = _build(OpenApiSettings, _openapi_table(doc.get("openapi", {}), path), path, "[openapi]")
    inventory = _build(InventorySettings, doc.get("inventory", {}), path, "[inventory]")
    actiontrail = _build(ActionTrailSettings, doc.get("actiontrail", {}), path, "[actiontrail]")
    audit = _build(AuditSettings, doc.get("audit", {}), path, "[audit]")
    api = _build(ApiSettings, doc.get("api", {}), path, "[api]")
    if audit.enabled and not inventory.enabled:
        raise ConfigError(f"{path}: [audit] enabled = true needs [inventory] enabled = true: the audit compares "
                          "the trail with the inventory sync")
    hooks_doc = doc.get("hooks", {})
    if not isinstance(hooks_doc, dict):
        raise ConfigError(f"{path}: [hooks] must be a table")
    hook_types = registry.of_kind(registry.HOOK)
    _reject_unknown(hooks_doc, set(hook_types), path, "[hooks]")
    hooks = {name: _build(c.settings, hooks_doc.get(name, {}), path, f"[hooks.{name}]")
             for name, c in hook_types.items()}
    sources = tuple(_typed(item, registry.SOURCE, path, f"[[sources]] #{i + 1}")
                    for i, item in enumerate(_array_of_tables(doc, "sources", path)))
    sinks = tuple(_typed(item, registry.SINK, path, f"[[sinks]] #{i + 1}")
                  for i, item in enumerate(_array_of_tables(doc, "sinks", path)))
    if not sinks:
        raise ConfigError(f"{path}: no [[sinks]]: add at least one, e.g. [[sinks]] type = \"sqlite\"")
    return Config(path=path, shipper=shipper, batch=batch, sources=tuple(_resolved(s, shipper) for s in sources),
                  sinks=tuple(_resolved(s, shipper) for s in sinks), hooks=hooks, openapi=openapi,
                  inventory=inventory, actiontrail=actiontrail, audit=audit, api=api, origin=origin,
                  secrets=frozenset(secrets))


TOP = "the top level"
PATH_KEYS = frozenset({"data_dir", "path", "tls_cert", "tls_key"})  # settings that name a local file or folder
SECRET_SUFFIXES = ("SECRET", "TOKEN", "PASSWORD", "KEY")              # variables whose values `shipper config` masks
# $$ | ${NAME} | ${NAME:-default} | a `${` that is neither (an error). Vector's syntax, in string values only.
_REFERENCE = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|(\{))")


@dataclass(frozen=True)
class _Context:
    path: str
    environ: Mapping[str, str]
    base: Path | None
    secrets: set


def _prepare(value: Any, where: str, key: str, ctx: _Context) -> Any:
    """`value` with ${VAR} substituted in every string and each relative path under PATH_KEYS resolved."""
    if isinstance(value, dict):
        return {k: _prepare(v, _table(where, k) if isinstance(v, dict) else where, k, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [_prepare(v, f"[[{key}]] #{i + 1}" if isinstance(v, dict) else where, key, ctx)
                for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    text = _substitute(value, f"{where}: `{key}`", ctx)
    if key in PATH_KEYS and text and ctx.base is not None:
        return os.path.normpath(ctx.base / text)
    return text


def _table(where: str, key: str) -> str:
    return f"[{key}]" if where == TOP else f"{where[:-1]}.{key}]"


def _substitute(text: str, where: str, ctx: _Context) -> str:
    def value_of(match: re.Match) -> str:
        escaped, name, default, broken = match.groups()
        if escaped:
            return "$"
        if broken:
            raise ConfigError(f"{ctx.path}: {where}: {text!r} has a `${{` that is not ${{VAR}} or ${{VAR:-default}}; "
                              "write $$ for a literal $")
        value = ctx.environ.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                raise ConfigError(f"{ctx.path}: {where}: ${{{name}}} is not set; set it, or give a default: "
                                  f"${{{name}:-...}}")
            return default
        if value and name.upper().endswith(SECRET_SUFFIXES):
            ctx.secrets.add(value)
        return value
    return _REFERENCE.sub(value_of, text)


def _resolved(settings, shipper: ShipperSettings):
    """A component's settings with defaults that depend on [shipper] filled in (its `resolve`, if any)."""
    resolve = getattr(settings, "resolve", None)
    return resolve(shipper) if resolve else settings


def _array_of_tables(doc: dict, key: str, path: str) -> list[dict]:
    items = doc.get(key, [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ConfigError(f"{path}: `{key}` must be an array of tables ([[{key}]])")
    return items


def _typed(item: dict, kind: str, path: str, where: str):
    components = registry.of_kind(kind)
    type_ = item.get("type")
    if type_ not in components:
        choices = ", ".join(sorted(components))
        raise ConfigError(f"{path}: {where}: type = {type_!r} is not known; use one of: {choices}")
    return _build(components[type_].settings, item, path, f"{where} (type {type_!r})")


def _build(cls, values: Any, path: str, where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: {where} must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _reject_unknown(values, set(fields), path, where)
    kwargs = {}
    for name, value in values.items():
        expected = type(fields[name].default)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if expected is tuple:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{path}: {where}: `{name}` must be a list of strings, got {value!r}")
            value = tuple(value)
        if type(value) is not expected:
            raise ConfigError(f"{path}: {where}: `{name}` must be {_type_word(expected)}, got {value!r}")
        if expected is float and not math.isfinite(value):  # TOML allows nan and inf; no setting means them
            raise ConfigError(f"{path}: {where}: `{name}` must be a finite number, got {value!r}")
        kwargs[name] = value
    settings = cls(**kwargs)
    validate = getattr(settings, "validate", None)
    if validate:
        try:
            validate()
        except registry.Invalid as e:
            raise ConfigError(f"{path}: {where}: {e}") from None
    return settings


def _type_word(t: type) -> str:
    return {int: "a whole number", float: "a number", str: "a string", bool: "true or false",
            tuple: "a list of strings"}.get(t, t.__name__)


def _reject_unknown(values: dict, known: set[str], path: str, where: str) -> None:
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"; did you mean `{close[0]}`?" if close else f"; known keys: {', '.join(sorted(known))}"
            raise ConfigError(f"{path}: {where}: unknown key `{key}`{hint}")


def endpoint_url(endpoint: str) -> str:
    """`host:port` or a URL -> a URL; without a scheme, http for loopback/IP hosts, else https."""
    if "://" in endpoint:
        return endpoint.rstrip("/")
    host = endpoint.rsplit(":", 1)[0] if endpoint.count(":") == 1 else endpoint
    local = host == "localhost" or host.replace(".", "").isdigit()
    return ("http://" if local else "https://") + endpoint.rstrip("/")
