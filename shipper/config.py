"""config.toml -> typed, validated settings.

Every key has a documented default; an unknown key, a wrong type or a bad value is a ConfigError whose
one line names the file, the table and the key, and says what would be accepted. The top-level tables'
settings live here; each source, sink and hook brings its own settings class (see registry.py), and each
settings class validates its own values.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipper import registry


class ConfigError(ValueError):
    """A problem in the config file an operator can fix; the message is one line naming the key."""


LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class ShipperSettings:
    data_dir: str = "./shipper-data"
    shutdown_grace_seconds: float = 20.0
    max_inflight_events: int = 20000        # receivers wait while this many events are buffered
    max_message_bytes: int = 1 << 20        # larger messages are dead-lettered as too-large
    log_level: str = "info"
    ledger_days: float = 7.0                # event_uids committed to a store are remembered this long (MNS keeps 7 days at most)

    def validate(self) -> None:
        registry.positive(self, "shutdown_grace_seconds", "max_inflight_events", "max_message_bytes", "ledger_days")
        if self.log_level not in LOG_LEVELS:
            raise registry.Invalid(f"`log_level` must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")


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

    def sink(self, type_: str):
        """The first sink of that type (`sqlite`, `sls`), None without one."""
        return next((s for s in self.sinks if s.type == type_), None)

    def enabled_hooks(self) -> list:
        return [settings for settings in self.hooks.values() if settings.enabled]


def load(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file (pass --config PATH, or run where config.toml is)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the config file: {e}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return from_dict(doc, str(path))


def from_dict(doc: dict, path: str = "config.toml") -> Config:
    known = {"shipper", "batch", "sources", "sinks", "hooks", "openapi", "inventory", "actiontrail", "audit"}
    _reject_unknown(doc, known, path, "the top level")
    shipper = _build(ShipperSettings, doc.get("shipper", {}), path, "[shipper]")
    batch = _build(BatchSettings, doc.get("batch", {}), path, "[batch]")
    openapi = _build(OpenApiSettings, _openapi_table(doc.get("openapi", {}), path), path, "[openapi]")
    inventory = _build(InventorySettings, doc.get("inventory", {}), path, "[inventory]")
    actiontrail = _build(ActionTrailSettings, doc.get("actiontrail", {}), path, "[actiontrail]")
    audit = _build(AuditSettings, doc.get("audit", {}), path, "[audit]")
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
                  inventory=inventory, actiontrail=actiontrail, audit=audit)


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
