"""Decoded message objects -> schema-1 records for the three envelopes (pure, no I/O).

Every rule here is reference/events.md: envelope classification section 1, field sources
sections 2-5, normalization section 7, time formats section 8.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import orjson

from .decode import BAD_ENCODING, DEFAULT_MAX_BYTES, NOT_AN_EVENT, Rejected, decode
from .events import STATES, new_event
from .times import format_time_ms, parse_time_ms  # noqa: F401  parse_time_ms: also read from here (sources/http.py)

ENVELOPE_CMS, ENVELOPE_SUBSCRIPTION, ENVELOPE_EVENTBRIDGE = "cms", "cms-subscription", "eventbridge"

SYSTEM_EVENT_STATUSES = frozenset({"Inquiring", "Scheduled", "Executing", "Executed", "Avoided", "Canceled", "Failed"})
STATE_CHANGE = "Instance:StateChange"
INTERRUPTION_NOTICE_MS = 5 * 60 * 1000  # the interruption event comes 5 minutes before the reclaim

# (event name, or a prefix ending in "." or ":", category); first match wins (events.md section 7 rule 3).
_CATEGORY_RULES = (
    ("Instance:StateChange", "lifecycle"),
    ("Instance:InstanceExpiration.", "lifecycle"),
    ("Instance:AccountUnbalanced.", "lifecycle"),
    ("Instance:PreemptibleInstanceInterruption", "interruption"),
    ("Instance:SystemMaintenance.", "maintenance"),
    ("Instance:LiveMigrationAcrossDDH", "maintenance"),
    ("Instance:SystemFailure.", "failure"),
    ("Instance:InstanceFailure.", "failure"),
    ("Instance:Security.", "failure"),
    ("Instance:PerformanceModeChange", "performance"),
    ("Instance:BurstablePerformanceRestricted", "performance"),
    ("Instance:SurplusCreditIncurCharge", "performance"),
    ("Disk:", "disk"),
    ("Snapshot:", "snapshot"),
    ("NetworkInterface:", "network"),
    ("Instance:VSwitchChanged", "network"),
)
_ARN_KIND_TYPES = {"instance": "instance", "disk": "disk", "snapshot": "snapshot", "eni": "network-interface"}
_NAME_PREFIX_TYPES = {"Instance": "instance", "Disk": "disk", "Snapshot": "snapshot", "NetworkInterface": "network-interface"}
_CONTENT_ID_KEYS = {"disk": "diskId", "snapshot": "snapshotId", "network-interface": "eniId"}

_INT_TEXT_RANGE = range(-(2**63), 2**64)  # what JSON producers write as numbers; orjson reads no others


@dataclass(frozen=True)
class _Envelope:
    """What one envelope says, before the rules shared by all three apply."""

    envelope: str
    uid: str
    event_name: str
    name_status: str
    times: tuple  # event time candidates, best first
    level: str
    account_id: str
    region_id: str
    product: str
    arn: str
    resource_name: str  # the envelope's name of its resource
    content: dict


@dataclass(frozen=True)
class _Arn:
    region_id: str
    account_id: str
    kind: str
    resource_id: str


def events_from_bytes(data: bytes, *, received_ms: int, content_type: str | None = None,
                      max_bytes: int = DEFAULT_MAX_BYTES) -> list[dict]:
    """decode + normalize every object; raises Rejected for the whole message if any object is not an event."""
    text, objects = decode(data, content_type=content_type, max_bytes=max_bytes)
    if len(objects) == 1:
        return [normalize(objects[0], raw=text, received_ms=received_ms)]
    return [normalize(obj, raw=_compact_json(obj), received_ms=received_ms) for obj in objects]


def normalize(doc: dict, *, raw: str, received_ms: int) -> dict:
    """One decoded message object -> one schema-1 record (dict of str, every EVENT_FIELDS key). Raises decode.Rejected(not-an-event)."""
    env = _classify(doc)
    content = env.content
    arn = _parse_arn(env.arn)
    event_name = env.event_name
    category = _category(event_name)

    state_raw = _text(content.get("state")) if event_name == STATE_CHANGE else ""
    state = "Pending" if state_raw == "Created" else state_raw if state_raw in STATES else ""

    instance_id = _instance_id(content, arn)
    if arn:
        resource_type = _ARN_KIND_TYPES.get(arn.kind, "other")
        resource_id = arn.resource_id
    else:
        resource_type = _NAME_PREFIX_TYPES.get(event_name.partition(":")[0], "other")
        resource_id = instance_id if resource_type == "instance" else _text(content.get(_CONTENT_ID_KEYS.get(resource_type)))

    event_ms = next((ms for ms in map(parse_time_ms, env.times) if ms is not None), received_ms)
    not_before_ms = parse_time_ms(content.get("notBefore"))
    if not_before_ms is None and category == "interruption":
        not_before_ms = event_ms + INTERRUPTION_NOTICE_MS

    detail = _compact_json(content)
    return _valid_unicode(new_event(
        event_uid=env.uid.lower() or _content_uid(content),  # event ids are case-insensitive: one form
        envelope=env.envelope,
        event_time=format_time_ms(event_ms),
        event_time_ms=str(event_ms),
        received_time=format_time_ms(received_ms),
        account_id=env.account_id or (arn.account_id if arn else ""),
        region_id=env.region_id or (arn.region_id if arn else ""),
        product=env.product,
        resource_type=resource_type,
        resource_id=resource_id,
        resource_arn=env.arn,
        instance_id=instance_id,
        event_name=event_name,
        event_status=_text(content.get("eventStatus")) or env.name_status,
        category=category,
        state=state,
        state_raw=state_raw,
        level=env.level,
        action=_text(content.get("action")),
        not_before=format_time_ms(not_before_ms) if not_before_ms is not None else "",
        instance_name=(_text(content.get("instanceName")) or _text(content.get("ecsInstanceName"))
                       or (env.resource_name if resource_type == "instance" else "")),
        instance_type=_text(content.get("instanceType")),
        private_ip=_text(content.get("privateIpAddress")),
        public_ip=_text(content.get("publicIpAddress")),
        detail=detail,
        raw=raw,
    ))


def _classify(doc) -> _Envelope:
    """events.md section 1: the first matching envelope, with its required fields type-checked."""
    if not isinstance(doc, dict):
        raise Rejected(NOT_AN_EVENT, f"a JSON {type(doc).__name__}, not an object")
    if "specversion" in doc and "type" in doc and "source" in doc:
        return _eventbridge(doc)
    if "alert" in doc:
        return _subscription(doc)
    if "name" in doc and ("content" in doc or "product" in doc):
        return _notification(doc)
    raise Rejected(NOT_AN_EVENT, "matches no event envelope (no specversion/type/source, alert, or name)")


def _notification(doc: dict) -> _Envelope:
    """A: a CloudMonitor event notification."""
    name = _require(doc, "name", str, "a string")
    content = _require(doc, "content", dict, "an object", default={})
    _require(doc, "eventTime", str, "a string", default="")
    event_name, name_status = _split_status(name)
    return _Envelope(
        envelope=ENVELOPE_CMS,
        uid=_text(doc.get("id")),
        event_name=event_name,
        name_status=name_status,
        times=(doc.get("eventTime"), doc.get("time")),  # `time`: epoch ms in CMS API results
        level=_text(doc.get("level")),
        account_id=_text(doc.get("userId")),
        region_id=_text(doc.get("regionId")),
        product=_text(doc.get("product")),
        arn=_text(doc.get("resourceId")),
        resource_name=_text(doc.get("instanceName")),
        content=content,
    )


def _subscription(doc: dict) -> _Envelope:
    """B: a CloudMonitor event-subscription push; the event sits in `alert`."""
    alert = _require(doc, "alert", dict, "an object")
    name = _require(alert, "eventName", str, "a string")
    meta = alert.get("meta")
    sys_meta = meta.get("sysEventMeta") if isinstance(meta, dict) else None
    if not isinstance(sys_meta, dict):
        sys_meta = {}
    content = next((c for c in (alert.get("eventContentMap"), alert.get("eventRawContent")) if isinstance(c, dict) and c), {})
    event_name, name_status = _split_status(name)
    return _Envelope(
        envelope=ENVELOPE_SUBSCRIPTION,
        uid=_text(alert.get("dedupId")) or _text(alert.get("traceId")) or _text(sys_meta.get("id")),
        event_name=event_name,
        name_status=name_status,
        times=(sys_meta.get("eventTime"), alert.get("timestamp"), doc.get("time")),
        level=_text(sys_meta.get("level")) or _text(alert.get("severity")),
        account_id=_text(alert.get("userId")),
        region_id=_text(sys_meta.get("regionId")),
        product=_text(alert.get("product")) or _text(sys_meta.get("product")),
        arn=_text(alert.get("arn")) or _text(sys_meta.get("resourceId")),
        resource_name=_text(sys_meta.get("instanceName")),
        content=content,
    )


def _eventbridge(doc: dict) -> _Envelope:
    """C: an EventBridge CloudEvent; `type` never carries the status suffix, there is no ARN or level."""
    event_type = _require(doc, "type", str, "a string")
    source = _require(doc, "source", str, "a string")
    content = _require(doc, "data", dict, "an object", default={})
    event_id = _text(doc.get("id"))
    return _Envelope(
        envelope=ENVELOPE_EVENTBRIDGE,
        uid=f"{source}:{event_id}" if event_id else "",
        event_name=event_type.removeprefix("ecs:"),
        name_status="",
        times=(doc.get("time"),),
        level=_text(content.get("level")) or _text(content.get("eventLevel")),
        account_id=_text(doc.get("aliyunaccountid")),
        region_id=_text(doc.get("aliyunregionid")),
        product=source.removeprefix("acs.").upper() if source.startswith("acs.") else "",
        arn="",
        resource_name="",
        content=content,
    )


_REQUIRED = object()


def _require(obj: dict, key: str, kind: type, kind_name: str, default=_REQUIRED):
    """obj[key] when it has the right type; a missing key gives the default (if any)."""
    if key not in obj and default is not _REQUIRED:
        return default
    value = obj.get(key)
    if not isinstance(value, kind):
        raise Rejected(NOT_AN_EVENT, f"`{key}` is not {kind_name}")
    return value


def _split_status(name: str) -> tuple[str, str]:
    """`Disk:Stalled:Executing` -> (`Disk:Stalled`, `Executing`); only the seven statuses are a suffix."""
    parts = name.split(":")
    if len(parts) == 3 and parts[2] in SYSTEM_EVENT_STATUSES:
        return f"{parts[0]}:{parts[1]}", parts[2]
    return name, ""


def _category(event_name: str) -> str:
    for pattern, category in _CATEGORY_RULES:
        if event_name == pattern or (pattern.endswith((".", ":")) and event_name.startswith(pattern)):
            return category
    return "other"


def _parse_arn(arn: str) -> _Arn | None:
    """`acs:ecs:<region>:<uid>:<kind>/<id>` -> its parts; None when it is not shaped like that."""
    parts = arn.split(":", 4)
    if len(parts) != 5 or parts[0] != "acs":
        return None
    kind, slash, resource_id = parts[4].partition("/")
    return _Arn(parts[2], parts[3], kind, resource_id) if slash else None


def _instance_id(content: dict, arn: _Arn | None) -> str:
    """events.md section 7 rule 5: each family names the instance differently."""
    for key in ("instanceId", "ecsInstanceId"):
        if value := _text(content.get(key)):
            return value
    resource_id = _text(content.get("resourceId"))
    if resource_id.startswith("i-"):
        return resource_id
    return arn.resource_id if arn and arn.kind == "instance" else ""


def _text(value) -> str:
    """A scalar as schema text; anything else (missing, null, objects, lists, booleans) is empty."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return ""
    if isinstance(value, int):
        if value not in _INT_TEXT_RANGE:  # only a dict built in Python holds one (str() fails past 4300 digits)
            raise Rejected(NOT_AN_EVENT, "an integer beyond 64 bits where the schema expects text")
        return str(value)
    if isinstance(value, float):
        return str(value)
    return ""


def _valid_unicode(record: dict) -> dict:
    """The record, when every value encodes as UTF-8; a lone surrogate (from a decoded dict, never from bytes
    decode() accepted) would fail every store later, so the message is rejected here, whole."""
    try:
        "".join(record.values()).encode("utf-8")  # one pass in C; the loop below only names the field
        return record
    except UnicodeEncodeError:
        pass
    for name, value in record.items():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise Rejected(BAD_ENCODING, f"`{name}` is not valid Unicode: lone surrogate "
                                         f"U+{ord(value[exc.start]):04X} at character {exc.start}") from None
    return record


def _compact_json(value) -> str:
    try:
        return orjson.dumps(value).decode("utf-8")
    except orjson.JSONEncodeError as exc:
        raise _unserializable(value, exc) from None


def _unserializable(value, exc: orjson.JSONEncodeError) -> Rejected:
    """Why orjson could not write `value`: text that is not valid Unicode (bad-encoding), or a shape JSON
    cannot hold: nesting deeper than orjson writes, integers beyond 64 bits, non-JSON values (not-an-event)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return Rejected(BAD_ENCODING, "the event content is not valid Unicode (a lone surrogate)")
    except (TypeError, ValueError, RecursionError):
        pass
    return Rejected(NOT_AN_EVENT, f"cannot serialize the event: {exc}")


def _content_uid(content: dict) -> str:
    """The uid of an event without an id: the same content, however formatted, gets the same uid."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]
