"""config.toml -> typed, validated settings.

Every key has a documented default; an unknown key, a wrong type or a bad value is a ConfigError whose
one line names the file, the table and the key, and says what would be accepted.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A problem in the config file an operator can fix; the message is one line naming the key."""


@dataclass(frozen=True)
class ShipperSettings:
    data_dir: str = "./shipper-data"
    shutdown_grace_seconds: float = 20.0
    max_inflight_events: int = 20000        # receivers wait while this many events are buffered
    max_message_bytes: int = 1 << 20        # larger messages are dead-lettered as too-large
    log_level: str = "info"


@dataclass(frozen=True)
class BatchSettings:
    max_events: int = 4096
    max_bytes: int = 3_000_000
    linger_ms: int = 500


@dataclass(frozen=True)
class SimulateSourceSettings:
    """A demo fleet, like Vector's demo_logs: remove it in production."""
    type: str = "simulate"
    instances: int = 20
    seed: int = 1
    duration_seconds: float = 3600.0        # simulated span, ending now
    rate: float = 200.0                     # messages per second handed to the pipeline
    envelope: str = "mixed"


@dataclass(frozen=True)
class HttpSourceSettings:
    """CloudMonitor pushes, EventBridge HTTP targets (and, later, SLS alert hooks)."""
    type: str = "http"
    listen: str = "127.0.0.1:8787"
    token_env: str = "SHIPPER_WEBHOOK_TOKEN"
    max_body_bytes: int = 4 << 20           # 413 above this; bodies over [shipper] max_message_bytes are dead-lettered
    commit_timeout_seconds: float = 30.0    # answer 503 (sender retries) when a commit takes longer
    tls_cert: str = ""                      # PEM certificate chain; with tls_key, serve HTTPS
    tls_key: str = ""                       # PEM private key of tls_cert
    max_connections: int = 4096             # more open connections are answered 503 and closed at once
    header_timeout_seconds: float = 10.0    # a request head must arrive this soon after connect / the last answer
    body_timeout_seconds: float = 30.0      # the whole body must arrive within this
    max_token_failures: int = 10            # this many token failures from one address within token_lockout_seconds...
    token_lockout_seconds: float = 60.0     # ...get that address 429 for this long
    trusted_proxies: tuple = ()             # proxy addresses whose X-Forwarded-For names the client (rate limiting)


@dataclass(frozen=True)
class MnsSourceSettings:
    """A CloudMonitor / EventBridge queue; credentials come from the ALIBABA_CLOUD_* variables."""
    type: str = "mns"
    endpoint: str = ""                      # http(s)://<uid>.mns.<region>.aliyuncs.com
    queue: str = ""
    receivers: int = 4                      # concurrent long polls
    wait_seconds: int = 10                  # long-poll wait (<= 30)
    batch_size: int = 16                    # messages per receive (<= 16)
    max_receives: int = 10                  # dead-letter a message received more often than this


@dataclass(frozen=True)
class SqliteSinkSettings:
    type: str = "sqlite"
    path: str = ""                          # default: <data_dir>/events.db


@dataclass(frozen=True)
class SlsSinkSettings:
    """SLS logstores; credentials come from the ALIBABA_CLOUD_* variables."""
    type: str = "sls"
    endpoint: str = ""                      # cn-hangzhou.log.aliyuncs.com, https://..., or 127.0.0.1:<port>
    project: str = ""
    events_logstore: str = "ecs-events"
    actions_logstore: str = "shipper-actions"
    deadletter_logstore: str = "shipper-deadletter"
    compress: str = "lz4"                   # lz4 or deflate
    timeout_seconds: float = 30.0           # per request
    retry_seconds: float = 60.0             # retry a batch this long, then report it failed (redelivered)


@dataclass(frozen=True)
class RestartHookSettings:
    """Start an instance that stopped unexpectedly; never fights a deliberate stop, a lock or a reclaim."""
    enabled: bool = False
    dry_run: bool = True
    opt_in_tag: str = "shipper:auto-restart=true"   # TagKey=TagValue; `instances` also opts in
    instances: tuple = ()
    grace_seconds: float = 60.0                     # from receipt of the Stopped event; then re-read, decide
    confirm_timeout_seconds: float = 300.0          # Running must follow StartInstance within this
    max_per_instance_per_hour: int = 3              # then the instance is quarantined (recorded)
    max_per_minute: int = 10                        # fleet-wide breaker


@dataclass(frozen=True)
class LbDrainHookSettings:
    """Take a spot instance out of every load-balancer group before it is reclaimed."""
    enabled: bool = False
    dry_run: bool = True
    opt_in_tag: str = ""                            # empty: every interrupted instance
    instances: tuple = ()
    drain_seconds: float = 30.0                     # weight 0, then wait this long, bounded by the deadline
    safety_margin_seconds: float = 30.0             # removal is called at least this long before reclaim
    discovery_cache_seconds: float = 300.0          # how long discovered memberships are reused


@dataclass(frozen=True)
class HooksSettings:
    restart: RestartHookSettings = field(default_factory=RestartHookSettings)
    lb_drain: LbDrainHookSettings = field(default_factory=LbDrainHookSettings)


@dataclass(frozen=True)
class OpenApiSettings:
    region: str = "cn-hangzhou"
    ecs_endpoint: str = ""                          # default ecs.<region>.aliyuncs.com
    slb_endpoint: str = ""                          # default slb.aliyuncs.com
    alb_endpoint: str = ""                          # default alb.<region>.aliyuncs.com
    nlb_endpoint: str = ""                          # default nlb.<region>.aliyuncs.com
    timeout_seconds: float = 10.0


SOURCE_TYPES: dict[str, type] = {"simulate": SimulateSourceSettings, "http": HttpSourceSettings, "mns": MnsSourceSettings}
SINK_TYPES: dict[str, type] = {"sqlite": SqliteSinkSettings, "sls": SlsSinkSettings}
ENVELOPE_CHOICES = ("mixed", "cms", "cms-subscription", "eventbridge")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class Config:
    path: str
    shipper: ShipperSettings = field(default_factory=ShipperSettings)
    batch: BatchSettings = field(default_factory=BatchSettings)
    sources: tuple = ()
    sinks: tuple = ()
    hooks: HooksSettings = field(default_factory=HooksSettings)
    openapi: OpenApiSettings = field(default_factory=OpenApiSettings)

    def sqlite_sink(self) -> SqliteSinkSettings | None:
        return next((s for s in self.sinks if isinstance(s, SqliteSinkSettings)), None)


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
    known = {"shipper", "batch", "sources", "sinks", "hooks", "openapi"}
    _reject_unknown(doc, known, path, "the top level")
    shipper = _build(ShipperSettings, doc.get("shipper", {}), path, "[shipper]")
    batch = _build(BatchSettings, doc.get("batch", {}), path, "[batch]")
    hooks_doc = doc.get("hooks", {})
    if not isinstance(hooks_doc, dict):
        raise ConfigError(f"{path}: [hooks] must be a table")
    _reject_unknown(hooks_doc, {"restart", "lb_drain"}, path, "[hooks]")
    hooks = HooksSettings(restart=_build(RestartHookSettings, hooks_doc.get("restart", {}), path, "[hooks.restart]"),
                          lb_drain=_build(LbDrainHookSettings, hooks_doc.get("lb_drain", {}), path, "[hooks.lb_drain]"))
    openapi = _build(OpenApiSettings, doc.get("openapi", {}), path, "[openapi]")
    sources = tuple(_typed(item, SOURCE_TYPES, path, f"[[sources]] #{i + 1}")
                    for i, item in enumerate(_array_of_tables(doc, "sources", path)))
    sinks = tuple(_typed(item, SINK_TYPES, path, f"[[sinks]] #{i + 1}")
                  for i, item in enumerate(_array_of_tables(doc, "sinks", path)))
    sources = tuple(dataclasses.replace(s, endpoint=endpoint_url(s.endpoint))
                    if isinstance(s, MnsSourceSettings) and s.endpoint else s for s in sources)
    sinks = tuple(dataclasses.replace(s, path=str(Path(shipper.data_dir) / "events.db"))
                  if isinstance(s, SqliteSinkSettings) and not s.path else s for s in sinks)
    config = Config(path=path, shipper=shipper, batch=batch, sources=sources, sinks=sinks, hooks=hooks,
                    openapi=openapi)
    _validate(config)
    return config


def _array_of_tables(doc: dict, key: str, path: str) -> list[dict]:
    items = doc.get(key, [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ConfigError(f"{path}: `{key}` must be an array of tables ([[{key}]])")
    return items


def _typed(item: dict, registry: dict[str, type], path: str, where: str):
    kind = item.get("type")
    if kind not in registry:
        choices = ", ".join(sorted(registry))
        raise ConfigError(f"{path}: {where}: type = {kind!r} is not known; use one of: {choices}")
    return _build(registry[kind], item, path, f"{where} (type {kind!r})")


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
    return cls(**kwargs)


def _type_word(t: type) -> str:
    return {int: "a whole number", float: "a number", str: "a string", bool: "true or false",
            tuple: "a list of strings"}.get(t, t.__name__)


def _reject_unknown(values: dict, known: set[str], path: str, where: str) -> None:
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"; did you mean `{close[0]}`?" if close else f"; known keys: {', '.join(sorted(known))}"
            raise ConfigError(f"{path}: {where}: unknown key `{key}`{hint}")


def _validate(config: Config) -> None:
    p = config.path

    def positive(where: str, name: str, value: float) -> None:
        if value <= 0:
            raise ConfigError(f"{p}: {where}: `{name}` must be greater than 0, got {value!r}")

    s = config.shipper
    positive("[shipper]", "shutdown_grace_seconds", s.shutdown_grace_seconds)
    positive("[shipper]", "max_inflight_events", s.max_inflight_events)
    positive("[shipper]", "max_message_bytes", s.max_message_bytes)
    if s.log_level not in LOG_LEVELS:
        raise ConfigError(f"{p}: [shipper]: `log_level` must be one of {', '.join(LOG_LEVELS)}, got {s.log_level!r}")
    b = config.batch
    positive("[batch]", "max_events", b.max_events)
    positive("[batch]", "max_bytes", b.max_bytes)
    if b.linger_ms < 0:
        raise ConfigError(f"{p}: [batch]: `linger_ms` must be 0 or more, got {b.linger_ms!r}")
    for i, src in enumerate(config.sources):
        where = f"[[sources]] #{i + 1} (type {src.type!r})"
        if isinstance(src, SimulateSourceSettings):
            positive(where, "instances", src.instances)
            positive(where, "duration_seconds", src.duration_seconds)
            positive(where, "rate", src.rate)
            if src.envelope not in ENVELOPE_CHOICES:
                raise ConfigError(f"{p}: {where}: `envelope` must be one of {', '.join(ENVELOPE_CHOICES)}, got {src.envelope!r}")
        elif isinstance(src, HttpSourceSettings):
            try:
                parse_listen(src.listen)
            except ValueError as e:
                raise ConfigError(f"{p}: {where}: `listen` {e}") from None
            positive(where, "max_body_bytes", src.max_body_bytes)
            positive(where, "commit_timeout_seconds", src.commit_timeout_seconds)
            if not src.token_env:
                raise ConfigError(f"{p}: {where}: `token_env` must name the environment variable holding the push token")
            for name in ("max_connections", "header_timeout_seconds", "body_timeout_seconds", "max_token_failures",
                         "token_lockout_seconds"):
                positive(where, name, getattr(src, name))
            if bool(src.tls_cert) != bool(src.tls_key):
                raise ConfigError(f"{p}: {where}: `tls_cert` and `tls_key` go together: set both (HTTPS) or neither")
        elif isinstance(src, MnsSourceSettings):
            if not src.endpoint:
                raise ConfigError(f"{p}: {where}: `endpoint` is required, e.g. "
                                  f"https://<uid>.mns.cn-hangzhou.aliyuncs.com or 127.0.0.1:9921")
            if not src.queue:
                raise ConfigError(f"{p}: {where}: `queue` must name the MNS queue, e.g. \"ecs-cms-event\"")
            positive(where, "receivers", src.receivers)
            positive(where, "max_receives", src.max_receives)
            if not 0 <= src.wait_seconds <= 30:
                raise ConfigError(f"{p}: {where}: `wait_seconds` must be 0 to 30 (the MNS long-poll limit), got {src.wait_seconds}")
            if not 1 <= src.batch_size <= 16:
                raise ConfigError(f"{p}: {where}: `batch_size` must be 1 to 16 (the MNS batch limit), got {src.batch_size}")
    for i, sink in enumerate(config.sinks):
        where = f"[[sinks]] #{i + 1} (type {sink.type!r})"
        if isinstance(sink, SlsSinkSettings):
            if not sink.endpoint or not sink.project:
                raise ConfigError(f"{p}: {where}: `endpoint` and `project` are required, e.g. "
                                  f"endpoint = \"cn-hangzhou.log.aliyuncs.com\", project = \"ecs-audit\"")
            if sink.compress not in ("lz4", "deflate"):
                raise ConfigError(f"{p}: {where}: `compress` must be lz4 or deflate, got {sink.compress!r}")
            positive(where, "timeout_seconds", sink.timeout_seconds)
            positive(where, "retry_seconds", sink.retry_seconds)
    r, d = config.hooks.restart, config.hooks.lb_drain
    for where, hook in (("[hooks.restart]", r), ("[hooks.lb_drain]", d)):
        if hook.opt_in_tag and "=" not in hook.opt_in_tag:
            raise ConfigError(f"{p}: {where}: `opt_in_tag` must be TagKey=TagValue, got {hook.opt_in_tag!r}")
    if r.enabled and not r.opt_in_tag and not r.instances:
        raise ConfigError(f"{p}: [hooks.restart]: set `opt_in_tag` or `instances`: restarting every stopped "
                          f"instance would fight deliberate stops")
    positive("[hooks.restart]", "confirm_timeout_seconds", r.confirm_timeout_seconds)
    positive("[hooks.restart]", "max_per_instance_per_hour", r.max_per_instance_per_hour)
    positive("[hooks.restart]", "max_per_minute", r.max_per_minute)
    if r.grace_seconds < 0 or d.drain_seconds < 0 or d.safety_margin_seconds < 0:
        raise ConfigError(f"{p}: [hooks]: grace_seconds, drain_seconds and safety_margin_seconds must be 0 or more")
    positive("[openapi]", "timeout_seconds", config.openapi.timeout_seconds)
    if not config.sinks:
        raise ConfigError(f"{p}: no [[sinks]]: add at least one, e.g. [[sinks]] type = \"sqlite\"")


def parse_listen(listen: str) -> tuple[str, int]:
    """`host:port` -> (host, port); raises ValueError with the reason."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"must be host:port such as 127.0.0.1:8787, got {listen!r}")
    return host.strip("[]"), int(port)


def endpoint_url(endpoint: str) -> str:
    """`host:port` or a URL -> a URL; without a scheme, http for loopback/IP hosts, else https."""
    if "://" in endpoint:
        return endpoint.rstrip("/")
    host = endpoint.rsplit(":", 1)[0] if endpoint.count(":") == 1 else endpoint
    local = host == "localhost" or host.replace(".", "").isdigit()
    return ("http://" if local else "https://") + endpoint.rstrip("/")
