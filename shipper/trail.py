"""ActionTrail events -> `api-call` records of `ecs-events`: who called which ECS API on which instance (pure).

Wire facts are reference/actiontrail.md (§1.5 event fields, §1.6 userIdentity, §1.8 where instance ids
appear, §1.9 the lifecycle calls, §1.10 system-initiated actions). One record per (event, instance), so a
batch StopInstances of 3 instances is 3 rows, each found by `instance_id` like any state change. The uid
`actiontrail:<eventId>:<instance_id>` makes the poller, its overlap window and `shipper backfill`
idempotent with each other: the same call always makes the same rows.
"""
from __future__ import annotations

import json

import orjson

from shipper.events import API_CALL_CATEGORY, API_CALL_ENVELOPE, new_event
from shipper.times import format_time_ms, parse_time_ms

# The ECS calls that touch instances, by what they do (actiontrail.md §1.9; `Create` is the buy page's
# purchase and `Release` the non-API delete event ActionTrail itself groups with DeleteInstance[s] [A20]).
CALL_KINDS = {
    "RunInstances": "create", "CreateInstance": "create", "Create": "create",
    "StartInstance": "start", "StartInstances": "start",
    "StopInstance": "stop", "StopInstances": "stop",
    "RebootInstance": "reboot", "RebootInstances": "reboot",
    "DeleteInstance": "delete", "DeleteInstances": "delete", "Release": "delete",
    "ModifyInstanceChargeType": "charge-type",
}
EVENT_NAME_PREFIX = "ActionTrail:"
ECS_INSTANCE = "ACS::ECS::Instance"
SYSTEM, ASSUMED_ROLE = "system", "assumed-role"
SERVICE_ROLE_PREFIX = "AliyunServiceRoleFor"  # service-linked roles: AliyunServiceRoleForAutoScaling, …
VIA = ("console", "cli", "sdk", "service")
KEY_ID_KEYS = frozenset({"accessKeyId", "AccessKeyId"})
SECRET_KEYS = frozenset({"SecurityToken", "securityToken", "Signature"})


def records(event: dict, received_ms: int, source: str = "poller") -> list[dict]:
    """One api-call record per instance the event names; [] for a call that touches no instance (an
    unlisted API, another product, a failed creation that made nothing). `source` ("poller", "backfill")
    goes into `detail`: a record says how it came, and never poses as a CloudMonitor event."""
    name = _text(event.get("eventName"))
    service = _text(event.get("serviceName"))
    if name not in CALL_KINDS or (service and service.lower() != "ecs"):
        return []
    ids = instance_ids(event)
    if not ids:
        return []
    identity = event.get("userIdentity") if isinstance(event.get("userIdentity"), dict) else {}
    event_ms = parse_time_ms(event.get("eventTime"))
    event_ms = received_ms if event_ms is None else event_ms
    error_code = _text(event.get("errorCode"))
    detail = {key: event[key] for key in ("eventType", "eventRW", "requestParameters", "responseElements",
                                          "referencedResources", "errorMessage") if key in event}
    shared = dict(
        envelope=API_CALL_ENVELOPE, category=API_CALL_CATEGORY, product="ECS", event_name=EVENT_NAME_PREFIX + name,
        event_time=format_time_ms(event_ms), event_time_ms=str(event_ms), received_time=format_time_ms(received_ms),
        account_id=_text(identity.get("accountId")) or _text(event.get("recipientAccountId")),
        region_id=_text(event.get("acsRegion")), resource_type="instance", level="WARN" if error_code else "INFO",
        actor_type=actor_type(event), actor_name=_text(identity.get("userName")),
        actor_principal_id=_text(identity.get("principalId")),
        actor_access_key_id=mask_access_key_id(_text(identity.get("accessKeyId"))),
        source_ip=_text(event.get("sourceIpAddress")), user_agent=_text(event.get("userAgent")),
        request_id=_text(event.get("requestId")), error_code=error_code,
        detail=_compact(_scrubbed(detail) | {"source": source}), raw=_compact(_scrubbed(event)),
    )
    event_id = _text(event.get("eventId"))
    return [new_event(event_uid=f"actiontrail:{event_id}:{instance_id}".lower(), resource_id=instance_id,
                      instance_id=instance_id, **shared) for instance_id in ids]


def instance_ids(event: dict) -> list[str]:
    """The instances a call names, each once, in the order found (actiontrail.md §1.8): InstanceId,
    InstanceId.N, InstanceIds (a JSON array in a string), referencedResources, and for a creation the ids
    in its response (InstanceIdSets.InstanceIdSet)."""
    params = event.get("requestParameters") if isinstance(event.get("requestParameters"), dict) else {}
    found = [params.get("InstanceId")]
    numbered = [(int(key[len("InstanceId."):]), value) for key, value in params.items()
                if key.startswith("InstanceId.") and key[len("InstanceId."):].isdigit()]
    found += [value for _, value in sorted(numbered)]
    found += _json_list(params.get("InstanceIds"))
    referenced = event.get("referencedResources")
    if isinstance(referenced, dict):
        found += _json_list(referenced.get(ECS_INSTANCE))
    if CALL_KINDS.get(event.get("eventName")) == "create":
        response = event.get("responseElements")
        sets = response.get("InstanceIdSets") if isinstance(response, dict) else None
        found += _json_list(sets.get("InstanceIdSet") if isinstance(sets, dict) else None)
    return list(dict.fromkeys(i for i in found if isinstance(i, str) and i.startswith("i-")))


def actor_type(event: dict) -> str:
    """userIdentity.type (root-account, ram-user, assumed-role, system); an `AliyunServiceEvent` (Alibaba
    Cloud acting on its own, e.g. releasing an expired subscription, §1.10) is `system` whatever it says."""
    if event.get("eventType") == "AliyunServiceEvent":
        return SYSTEM
    identity = event.get("userIdentity")
    return _text(identity.get("type")) if isinstance(identity, dict) else ""


def mask_access_key_id(key_id: str) -> str:
    """The first 4 and last 4 characters around `****`: enough to tell keys apart, never the whole id."""
    if not key_id:
        return ""
    return f"{key_id[:4]}****{key_id[-4:]}" if len(key_id) > 12 else "****"


def via(user_agent: str, actor_type: str, actor_name: str = "") -> str:
    """How a call was made, for display and the stop cause: `service` (Alibaba Cloud or one of its
    services: a system identity, a service-linked role, a service host such as ecs.aliyuncs.com or
    ess.aliyuncs.com as the user agent), `console` (AliyunConsole, *.console.aliyun.com, a browser),
    `cli` (Aliyun-CLI/…), else `sdk`."""
    agent = user_agent.strip().lower()
    if (actor_type == SYSTEM or agent.endswith(".aliyuncs.com")
            or (actor_type == ASSUMED_ROLE and actor_name.startswith(SERVICE_ROLE_PREFIX))):
        return "service"
    if agent == "aliyunconsole" or agent.endswith(".console.aliyun.com") or agent.startswith("mozilla/"):
        return "console"
    if agent.startswith("aliyun-cli"):
        return "cli"
    return "sdk"


def _scrubbed(event: dict) -> dict:
    """The event with its access key ids masked and any security token or signature left out: `raw` and
    `detail` keep everything else as ActionTrail said it."""
    event = dict(event)
    for key in ("userIdentity", "requestParameters"):
        if isinstance(event.get(key), dict):
            part = {k: v for k, v in event[key].items() if k not in SECRET_KEYS}
            for k in KEY_ID_KEYS & part.keys():
                part[k] = mask_access_key_id(_text(part[k]))
            event[key] = part
    return event


def _json_list(value) -> list:
    """A list as given, or one held in a string (`InstanceIds = '["i-a","i-b"]'`); else []."""
    if isinstance(value, str) and value.startswith("["):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    return value if isinstance(value, list) else []


def _text(value) -> str:
    return value if isinstance(value, str) else "" if value is None or isinstance(value, (bool, dict, list)) else str(value)


def _compact(value) -> str:
    """Compact JSON; what orjson refuses (an integer beyond 64 bits in a hostile event) goes through json."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode("utf-8")
    except orjson.JSONEncodeError:
        return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))
