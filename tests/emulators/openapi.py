"""Local RPC-style OpenAPI service (ECS, SLB/CLB, ALB, NLB, ActionTrail) that aliyun-python-sdk-core talks to unchanged.

Wire format, signature, error shapes and per-action semantics follow Alibaba Cloud's documented RPC
OpenAPI (reference/openapi.md in the team's shared notes, §1-§11). One port serves every product:
requests are dispatched on (Version, Action), which is unique per product, so `ecs_endpoint`,
`slb_endpoint`, `alb_endpoint` and `nlb_endpoint` all point at `api.endpoint` ("127.0.0.1:<port>",
the form `CommonRequest(domain=...)` takes).

    with OpenApiEmulator(credentials={"LTAIexampleKEY01": "secret"}) as api:
        api.add_instance("i-bp1example0000000001", status="Stopped")
        request = CommonRequest(domain=api.endpoint, version="2014-05-26", action_name="StartInstance",
                                product="Ecs")

Resources live in regions: a request only sees resources of its `RegionId` (the SDK always sends one), and
ECS answers `InvalidRegionId.NotFound` for a region it does not know (REGIONS; DescribeRegions lists them).
ECS starts and ALB/NLB jobs complete asynchronously after `start_delay` / `job_delay` seconds; with
`emit_to=(mns_emulator, queue)` every instance state change is also enqueued as a CloudMonitor
`Instance:StateChange` event (events.md §2, base64 of the compact JSON, as CMS writes to MNS).

ActionTrail (actiontrail.md §1): every mutating call that reaches its action (whatever the outcome) joins the
trail as an `ApiCall` event of the signing key's identity (`identities`, by AccessKeyId; a RAM user "shipper"
by default). `add_trail` seeds history (e.g. `FleetSimulator.trail()`). LookupEvents shows an event
`delivery_delay` seconds after its eventTime, by the injectable `clock` (ActionTrail's is ~10 minutes, §1.11).

Command line: python -m tests.emulators.openapi --port 18080 --access-key-id ID [--fleet 20 --seed 1]
(the secret comes from ALIBABA_CLOUD_ACCESS_KEY_SECRET).
"""

from __future__ import annotations

import argparse
import base64
import copy
import datetime as _dt
import hashlib
import hmac
import json
import logging
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, quote

from shipper.simulate import DEFAULT_ACCOUNT_ID, FleetSimulator, SimInstance
from tests.emulators._common import EmulatorHandler, EmulatorServer, FaultControls, FaultKnobs, serve_until_interrupted

log = logging.getLogger(__name__)

MAX_CLOCK_SKEW_SECONDS = 15 * 60
MAX_CLB_BACKENDS_PER_CALL = 20
MAX_ECS_INSTANCE_IDS = 100
# DescribeInstances MaxResults: "<10 or unset => 10; >100 => 100" (actiontrail.md §2.2)
MIN_ECS_MAX_RESULTS, MAX_ECS_MAX_RESULTS = 10, 100
MAX_SERVER_IDS_FILTER = 40

ECS_VERSION = "2014-05-26"
SLB_VERSION = "2014-05-15"
ALB_VERSION = "2020-06-16"
NLB_VERSION = "2022-04-30"
ACTIONTRAIL_VERSION = "2020-07-06"
# Version -> (product code as in Recommend links, HostId of error bodies)
PRODUCTS: dict[str, tuple[str, str]] = {
    ECS_VERSION: ("Ecs", "ecs.aliyuncs.com"),
    SLB_VERSION: ("Slb", "slb.aliyuncs.com"),
    ALB_VERSION: ("Alb", "alb.{region}.aliyuncs.com"),
    NLB_VERSION: ("Nlb", "nlb.{region}.aliyuncs.com"),
    ACTIONTRAIL_VERSION: ("Actiontrail", "actiontrail.{region}.aliyuncs.com"),
}
# The services ActionTrail names the calls of each version with (`serviceName`, actiontrail.md §1.5).
TRAIL_SERVICE_NAMES = {ECS_VERSION: "Ecs", SLB_VERSION: "Slb", ALB_VERSION: "Alb", NLB_VERSION: "Nlb"}
# Common request parameters (actiontrail.md §0): not part of an event's requestParameters.
COMMON_PARAMS = frozenset({"Action", "Version", "AccessKeyId", "Signature", "SignatureMethod", "SignatureType",
                           "SignatureVersion", "SignatureNonce", "Timestamp", "Format", "SecurityToken"})

# LookupEvents (actiontrail.md §1.2-§1.4, §1.11)
LOOKUP_MAX_RESULTS = 50
LOOKUP_DEFAULT_MAX_RESULTS = 20         # [inferred] the documented example value; the default is not stated
LOOKUP_DEFAULT_SPAN_SECONDS = 7 * 86400  # without StartTime/EndTime: the last 7 days
TRAIL_RETENTION_SECONDS = 90 * 86400    # events of the last 90 days are queryable
LOOKUP_CALLS_PER_SECOND = 2.0           # per account (here: per AccessKeyId)
# The code answered past the rate limit: UNCONFIRMED in actiontrail.md §4 (`Throttling.User` or `Throttling`);
# this emulator answers Throttling.User (the gateway's flow-control code), HTTP 400 (also unconfirmed).
LOOKUP_THROTTLE_CODE = "Throttling.User"
TRAIL_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# LookupAttribute key -> the value(s) of an event it matches exactly (actiontrail.md §1.3)
LOOKUP_KEYS: dict[str, Callable[[dict], list]] = {
    "ServiceName": lambda e: [e.get("serviceName")],
    "EventName": lambda e: [e.get("eventName")],
    "EventRW": lambda e: [e.get("eventRW")],
    "EventId": lambda e: [e.get("eventId")],
    "EventType": lambda e: [e.get("eventType")],
    "User": lambda e: [(e.get("userIdentity") or {}).get("userName")],
    "EventAccessKeyId": lambda e: [(e.get("userIdentity") or {}).get("accessKeyId")],
    "SourceIpAddress": lambda e: [e.get("sourceIpAddress")],
    "ResourceType": lambda e: list(e.get("referencedResources") or {}),
    "ResourceName": lambda e: [r for ids in (e.get("referencedResources") or {}).values() for r in ids],
}

# Actions that change state: every request to one is recorded (see `calls`).
MUTATING_ACTIONS = frozenset({
    "StartInstance",
    "SetVServerGroupAttribute", "RemoveVServerGroupBackendServers", "SetBackendServers", "RemoveBackendServers",
    "RemoveServersFromServerGroup", "UpdateServerGroupServersAttribute",
})

# The ECS regions (DescribeRegions, actiontrail.md §3): RegionId -> LocalName in zh-CN and en-US. The
# RegionEndpoint is ecs.<region>.aliyuncs.com (§2.1); every region is `available`.
REGIONS: dict[str, tuple[str, str]] = {
    "cn-qingdao": ("华北1（青岛）", "China (Qingdao)"),
    "cn-beijing": ("华北2（北京）", "China (Beijing)"),
    "cn-zhangjiakou": ("华北3（张家口）", "China (Zhangjiakou)"),
    "cn-hangzhou": ("华东1（杭州）", "China (Hangzhou)"),
    "cn-shanghai": ("华东2（上海）", "China (Shanghai)"),
    "cn-shenzhen": ("华南1（深圳）", "China (Shenzhen)"),
    "cn-hongkong": ("中国香港", "China (Hong Kong)"),
    "ap-southeast-1": ("新加坡", "Singapore"),
    "us-west-1": ("美国（硅谷）", "US (Silicon Valley)"),
    "eu-central-1": ("德国（法兰克福）", "Germany (Frankfurt)"),
}
ACCEPT_LANGUAGES = ("zh-CN", "en-US", "ja")  # ja: the English names here [inferred: no Japanese names known]
RESOURCE_TYPES = ("instance", "disk", "reservedinstance", "scu")

INSTANCE_STATUSES = ("Pending", "Starting", "Running", "Stopping", "Stopped")
LOCK_REASONS = ("financial", "security", "Recycling", "dedicatedhostfinancial", "refunded")
SPOT_STRATEGIES = ("NoSpot", "SpotAsPriceGo", "SpotWithPriceLimit")
CLB_SERVER_TYPES = ("ecs", "eni", "eci")
SERVER_GROUP_SERVER_TYPES = ("Ecs", "Eni", "Eci", "Ip", "Fc")

# code -> (HTTP status, message). Statuses and codes follow openapi.md §5 and §8-§10; messages are the
# real services' wording where known. Codes marked [inferred] in the reference are used as it says.
ERRORS: dict[str, tuple[int, str]] = {
    # gateway and common errors
    "SignatureDoesNotMatch": (400, "Specified signature is not matched with our calculation."),
    "InvalidAccessKeyId.NotFound": (404, "Specified access key is not found."),
    "IncompleteSignature": (400, "The request signature does not conform to Aliyun standards."),
    "InvalidTimeStamp.Format": (400, "Specified time stamp or date value is not well formatted."),
    "InvalidTimeStamp.Expired": (400, "Specified time stamp or date value is expired."),
    "SignatureNonceUsed": (400, "Specified signature nonce was used already."),
    "InvalidAction.NotFound": (404, "Specified api is not found, please check your url and method."),
    "MissingParameter": (400, "A required parameter is missing."),
    "InvalidRegionId.NotFound": (404, "The specified RegionId does not exist."),
    "InvalidParameter": (400, "The specified parameter is not valid."),
    "Forbidden.RAM": (403, "User not authorized to operate on the specified resource."),
    "Throttling": (400, "Request was denied due to request throttling."),
    "Throttling.User": (400, "Request was denied due to user flow control."),
    "Throttling.Api": (400, "Request was denied due to api flow control."),
    "ServiceUnavailable": (503, "The request has failed due to a temporary failure of the server."),
    "InternalError": (500, "The request processing has failed due to some unknown error, exception or failure."),
    "UnknownError": (500, "The request processing has failed due to some unknown error."),
    "DryRunOperation": (400, "Request validation has been passed with DryRun flag set."),
    # ActionTrail (actiontrail.md §1.11: the 2017-12-04 codes; 2020-07-06's own list is unconfirmed)
    "InvalidTimeRangeException": (400, "The end time is earlier than the start time."),
    "InvalidParameterValue": (400, "The parameter value is not valid."),
    # ECS
    "IncorrectInstanceStatus": (403, "The current status of the resource does not support this operation."),
    "InvalidInstanceId.NotFound": (404, "The specified InstanceId does not exist."),
    "InstanceLockedForSecurity": (
        403, "The specified operation is denied as your instance is locked for security reasons."),
    "InstanceExpiredOrInArrears": (
        403, "The specified operation is denied as your prepay instance is expired (prepay mode) or in arrears "
             "(afterpay mode)."),
    "LackResource": (400, "There's no enough resource on the specified zone."),
    "OperationDenied.NoStock": (400, "Sales of this resource are temporarily suspended in the specified region."),
    "InvalidInstanceIds.Malformed": (400, "The specified parameter InstanceIds is not valid."),
    "InvalidParameter.TooManyInstanceIds": (403, "The number of instance ids exceeds the limit of 100."),
    # DescribeRegions (actiontrail.md §3)
    "Unauthorized.EmptyRegion": (403, "There is no region available for you."),
    "InvalidAcceptLanguage.NotFound": (404, "The specified AcceptLanguage is not found."),
    "InvalidResourceType.NotFound": (404, "The specified ResourceType is not found."),
    # SLB / CLB
    "InvalidLoadBalancerId.NotFound": (404, "The specified LoadBalancerId does not exist."),
    "LbStatusNotSupport": (400, "The current status of the load balancer does not support this action."),
    "ServiceIsConfiguring": (400, "The specified service is configuring, please try again later."),
    "SystemBusy": (400, "System is busy, please try again later."),
    "BackendServer.configuring": (
        400, "A previous configuration of the backend servers is pending, please try again later."),
    # ALB / NLB (NLB spells the resource `serverGroup`)
    "ResourceNotFound.ServerGroup": (404, "The specified resource ServerGroup is not found."),
    "ResourceNotFound.serverGroup": (404, "The specified resource serverGroup is not found."),
    "ResourceNotFound.BackendServer": (404, "The specified resource BackendServer is not found."),
    "IncorrectStatus.ServerGroup": (400, "The status of the ServerGroup is incorrect."),
    "IncorrectStatus.serverGroup": (400, "The status of the serverGroup is incorrect."),
    "Conflict.Lock": (400, "The resource is locked by another operation, please try again later."),
    "Forbidden.NoPermission": (403, "You are not authorized to perform this operation."),
}

_JSON_HEADERS = {"Content-Type": "application/json;charset=utf-8"}


class ApiError(Exception):
    """A service error, answered as the JSON error body of §5."""

    def __init__(self, code: str, message: str | None = None, status: int | None = None):
        known_status, known_message = ERRORS.get(code, (400, ""))
        self.code = code
        self.status = status or known_status
        self.message = message or known_message
        super().__init__(f"{code}: {self.message}")


def _missing(name: str) -> ApiError:
    return ApiError(
        "MissingParameter",
        f'The input parameter "{name}" that is mandatory for processing this request is not supplied.',
    )


def _invalid(name: str, why: str = "") -> ApiError:
    return ApiError("InvalidParameter", f"The specified parameter {name} is not valid.{' ' + why if why else ''}")


def _illegal(name: str, why: str) -> ApiError:
    """ALB/NLB spell a bad parameter `IllegalParam.<name>` (§10)."""
    return ApiError(f"IllegalParam.{name}", f"The param {name} is illegal: {why}", status=400)


# ---------------------------------------------------------------------------------------------
# Signature V1 (§2)


def percent_encode(text: str) -> str:
    """RFC 3986: keep A-Z a-z 0-9 - _ . ~, encode every other UTF-8 byte as upper-case %XY."""
    return quote(text, safe="~")


def string_to_sign(method: str, params: Mapping[str, str]) -> str:
    """`params`: every parameter except `Signature`, decoded, empty ones included."""
    pairs = sorted((percent_encode(name), percent_encode(value)) for name, value in params.items())
    canonical = "&".join(f"{name}={value}" for name, value in pairs)
    return f"{method}&{percent_encode('/')}&{percent_encode(canonical)}"


def signature(secret: str, text: str) -> str:
    return base64.b64encode(hmac.new((secret + "&").encode(), text.encode(), hashlib.sha1).digest()).decode()


# ---------------------------------------------------------------------------------------------
# Parameters


def _required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "")
    if not value:
        raise _missing(name)
    return value


def _parse_int(text: str, low: int, high: int) -> int | None:
    """The integer in `text` if it lies within [low, high], else None."""
    try:
        value = int(text)
    except ValueError:
        return None
    return value if low <= value <= high else None


def _int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = params.get(name, "")
    if not text:
        return default
    value = _parse_int(text, low, high)
    if value is None:
        raise _invalid(name, f"It must be an integer from {low} to {high}.")
    return value


def _bool_param(params: Mapping[str, str], name: str) -> bool:
    """Booleans arrive as `true`/`false`, or `True`/`False` from a careless `str()` (§1)."""
    text = params.get(name, "").lower()
    if text not in ("", "true", "false"):
        raise _invalid(name, "It must be true or false.")
    return text == "true"


def _numbered_list(params: Mapping[str, str], prefix: str) -> list[str]:
    """`Prefix.N` parameters (`InstanceId.1`, `ServerIds.2`) in N order."""
    numbered = {}
    for name, value in params.items():
        number = name[len(prefix) + 1:] if name.startswith(prefix + ".") else ""
        if number.isdigit():
            numbered[int(number)] = value
    return [value for _, value in sorted(numbered.items())]


def _numbered_records(params: Mapping[str, str], prefix: str) -> list[dict[str, str]]:
    """`Prefix.N.Field` parameters (`Tag.1.Key`, `Servers.2.Port`) as one dict per N, in N order."""
    records: dict[int, dict[str, str]] = {}
    for name, value in params.items():
        if not name.startswith(prefix + "."):
            continue
        number, dot, field_name = name[len(prefix) + 1:].partition(".")
        if dot and number.isdigit() and field_name:
            records.setdefault(int(number), {})[field_name] = value
    return [record for _, record in sorted(records.items())]


def _json_int(value: object, name: str, low: int, high: int) -> int:
    """A number in a JSON parameter: the docs show strings ("100"), callers send numbers too (§9)."""
    number = None
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        number = _parse_int(str(value), low, high)
    if number is None:
        raise _invalid("BackendServers", f"{name} must be an integer from {low} to {high}.")
    return number


def _page(items: list, page_number: int, page_size: int) -> list:
    start = (page_number - 1) * page_size
    return items[start:start + page_size]


def _token_page(items: list, next_token: str, max_results: int, bad_token: Callable[[], ApiError]) -> tuple[list, str]:
    """(page, next token): tokens are opaque offsets; an empty token means the first page."""
    if next_token and not next_token.isdigit():
        raise bad_token()
    start = int(next_token or 0)
    end = start + max_results
    return items[start:end], (str(end) if end < len(items) else "")


# ---------------------------------------------------------------------------------------------
# State


def _minute_time(seconds: float) -> str:
    return _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


def _cms_time(seconds: float) -> str:
    """CloudMonitor's eventTime: basic ISO 8601 in China time, `20250614T091502.114+0800` (events.md §8)."""
    local = _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone(_dt.timedelta(hours=8)))
    return local.strftime("%Y%m%dT%H%M%S.") + f"{local.microsecond // 1000:03d}+0800"


@dataclass
class Instance:
    """An ECS instance as DescribeInstances shows it (§8)."""

    instance_id: str
    name: str
    region_id: str
    zone_id: str
    instance_type: str
    status: str
    charge_type: str
    spot_strategy: str
    stopped_mode: str
    private_ip: str
    public_ip: str
    tags: dict[str, str]
    locks: list[dict[str, str]]  # {"LockReason", "LockMsg"}
    vpc_id: str
    vswitch_id: str
    security_group_id: str
    creation_time: str
    start_time: str
    expired_time: str
    # Bumped on every status change, so a pending Starting -> Running transition of an older start
    # never overrides a later change.
    generation: int = 0


@dataclass
class _LoadBalancer:
    lb_id: str
    name: str
    region_id: str
    status: str
    address: str
    address_type: str
    network_type: str
    vpc_id: str
    vswitch_id: str
    create_time: str
    listeners: list[tuple[int, str]]
    backends: list[dict[str, Any]]  # default group: {"ServerId", "Weight", "Type", "ServerIp", "Description"}


@dataclass
class _VServerGroup:
    group_id: str
    name: str
    lb_id: str
    listeners: list[tuple[int, str]]
    backends: list[dict[str, Any]]  # {"ServerId", "Port", "Weight", "Type", "ServerIp", "Description"}


@dataclass
class _ServerGroup:
    """An ALB or NLB server group; `status` is Available, or Configuring while a job runs."""

    product: str
    group_id: str
    region_id: str
    status: str
    # {"ServerId", "ServerIp", "ServerType", "Port", "Weight", "Status", "Description"}
    servers: list[dict[str, Any]] = field(default_factory=list)


class _Flavor(NamedTuple):
    """What tells ALB and NLB apart on the wire (§10)."""

    product: str
    group_not_found: str
    group_busy: str
    removal_echoes_group: bool  # NLB answers RemoveServersFromServerGroup with ServerGroupId too


_ALB = _Flavor("alb", "ResourceNotFound.ServerGroup", "IncorrectStatus.ServerGroup", False)
_NLB = _Flavor("nlb", "ResourceNotFound.serverGroup", "IncorrectStatus.serverGroup", True)


@dataclass(frozen=True)
class Call:
    """One request to a mutating action, whatever its outcome; `code` is "" on success."""

    action: str
    version: str
    params: dict[str, str]  # every parameter except Signature
    time: float
    status: int
    code: str


def _lock_entry(reason: str, message: str = "") -> dict[str, str]:
    if reason not in LOCK_REASONS:
        raise ValueError(f"lock reason must be one of {LOCK_REASONS}, not {reason!r}")
    return {"LockReason": reason, "LockMsg": message}


def _clb_backend(server: Mapping[str, Any], with_port: bool) -> dict[str, Any]:
    backend = {"ServerId": server["ServerId"]}
    if with_port:
        backend["Port"] = int(server["Port"])
    backend |= {
        "Weight": int(server.get("Weight", 100)),
        "Type": server.get("Type", "ecs"),
        "ServerIp": server.get("ServerIp", ""),
        "Description": server.get("Description", ""),
    }
    return backend


def _group_server(server: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "ServerId": server["ServerId"],
        "ServerIp": server.get("ServerIp", ""),
        "ServerType": server.get("ServerType", "Ecs"),
        "Port": int(server["Port"]),
        "Weight": int(server.get("Weight", 100)),
        "Status": server.get("Status", "Available"),
        "Description": server.get("Description", ""),
    }


# ---------------------------------------------------------------------------------------------
# Faults


# ---------------------------------------------------------------------------------------------
# The service


Response = tuple[int, dict[str, str], bytes]


class OpenApiEmulator(FaultControls):
    """In-process ECS/SLB/ALB/NLB OpenAPI. Use as a context manager, or start() / stop().

    `clock` is the service's idea of now for Timestamp checks only; state changes use real time.
    """

    known_errors = ERRORS

    def __init__(
        self,
        credentials: Mapping[str, str],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        seed: int = 0,
        start_delay: float = 1.0,
        job_delay: float = 1.0,
        emit_to: tuple[Any, str] | None = None,
        account_id: str = DEFAULT_ACCOUNT_ID,
        clock: Callable[[], float] = time.time,
        identities: Mapping[str, Mapping[str, str]] | None = None,
        delivery_delay: float = 0.0,
        lookup_calls_per_second: float = LOOKUP_CALLS_PER_SECOND,
    ):
        """`identities`: AccessKeyId -> the userIdentity its calls carry in the trail (type, userName,
        principalId, accountId); a key without one is a RAM user named "shipper"."""
        self.start_delay = start_delay
        self.job_delay = job_delay
        self.delivery_delay = delivery_delay
        self.lookup_calls_per_second = lookup_calls_per_second
        self._credentials = dict(credentials)
        self._identities = {key: dict(identity) for key, identity in (identities or {}).items()}
        self._trail: list[tuple[float, dict]] = []  # (clock when it joined, event)
        self._lookups: dict[str, list[float]] = {}  # AccessKeyId -> monotonic times of its accepted LookupEvents
        self._emit_to = emit_to
        self._account_id = account_id
        self._clock = clock
        self._lock = threading.RLock()
        self._instances: dict[str, Instance] = {}
        self._load_balancers: dict[str, _LoadBalancer] = {}
        self._vserver_groups: dict[str, _VServerGroup] = {}
        self._server_groups: dict[str, _ServerGroup] = {}
        self._timers: set[threading.Timer] = set()
        self._nonces: dict[str, float] = {}
        self._faults = FaultKnobs(seed)
        self._calls: list[Call] = []
        self._requests: Counter[str] = Counter()
        self._server = EmulatorServer(_OpenApiHandler, host, port)
        self._server.emulator = self  # type: ignore[attr-defined]
        self.endpoint = self._server.endpoint.removeprefix("http://")
        self._operations: dict[tuple[str, str], Callable[[Mapping[str, str], str], dict]] = {
            (ECS_VERSION, "DescribeRegions"): self._describe_regions,
            (ECS_VERSION, "DescribeInstances"): self._describe_instances,
            (ECS_VERSION, "DescribeInstanceStatus"): self._describe_instance_status,
            (ECS_VERSION, "StartInstance"): self._start_instance,
            (ACTIONTRAIL_VERSION, "LookupEvents"): self._lookup_events,
            (SLB_VERSION, "DescribeLoadBalancers"): self._describe_load_balancers,
            (SLB_VERSION, "DescribeLoadBalancerAttribute"): self._describe_load_balancer_attribute,
            (SLB_VERSION, "DescribeVServerGroups"): self._describe_vserver_groups,
            (SLB_VERSION, "DescribeVServerGroupAttribute"): self._describe_vserver_group_attribute,
            (SLB_VERSION, "SetVServerGroupAttribute"): self._set_vserver_group_attribute,
            (SLB_VERSION, "RemoveVServerGroupBackendServers"): self._remove_vserver_group_backend_servers,
            (SLB_VERSION, "SetBackendServers"): self._set_backend_servers,
            (SLB_VERSION, "RemoveBackendServers"): self._remove_backend_servers,
        }
        for version, flavor in ((ALB_VERSION, _ALB), (NLB_VERSION, _NLB)):
            self._operations |= {
                (version, "ListServerGroupServers"): partial(self._list_server_group_servers, flavor),
                (version, "RemoveServersFromServerGroup"): partial(self._remove_servers, flavor),
                (version, "UpdateServerGroupServersAttribute"): partial(self._update_servers, flavor),
            }

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> OpenApiEmulator:
        self._server.start()
        return self

    def stop(self) -> None:
        with self._lock:
            timers, self._timers = self._timers, set()
        for timer in timers:
            timer.cancel()
        self._server.stop()

    # -- seeding and reading state (no HTTP) -------------------------------------------------

    def add_instance(
        self,
        instance_id: str,
        *,
        name: str = "",
        region_id: str = "cn-hangzhou",
        zone_id: str = "",
        instance_type: str = "ecs.g7.large",
        status: str = "Running",
        charge_type: str = "PostPaid",
        spot_strategy: str = "NoSpot",
        stopped_mode: str = "Not-applicable",
        private_ip: str = "10.0.0.1",
        public_ip: str = "",
        tags: Mapping[str, str] | None = None,
        locks: Iterable[str] = (),
        expired_time: str = "2099-12-31T15:59Z",  # pay-as-you-go's value is unconfirmed: openapi.md §8's sample
    ) -> None:
        if region_id not in REGIONS:
            raise ValueError(f"region {region_id!r} is not one of the emulator's REGIONS")
        if status not in INSTANCE_STATUSES or spot_strategy not in SPOT_STRATEGIES:
            raise ValueError(f"bad status {status!r} or spot strategy {spot_strategy!r}")
        if charge_type not in ("PrePaid", "PostPaid"):
            raise ValueError(f"bad charge type {charge_type!r}")
        lock_entries = [_lock_entry(reason) for reason in locks]
        created = _minute_time(time.time() - 86400)
        instance = Instance(
            instance_id=instance_id, name=name or instance_id, region_id=region_id,
            zone_id=zone_id or f"{region_id}-h", instance_type=instance_type, status=status,
            charge_type=charge_type, spot_strategy=spot_strategy, stopped_mode=stopped_mode,
            private_ip=private_ip, public_ip=public_ip, tags=dict(tags or {}), locks=lock_entries,
            vpc_id=f"vpc-{region_id}-emulator", vswitch_id=f"vsw-{region_id}-emulator",
            security_group_id=f"sg-{region_id}-emulator", creation_time=created, start_time=created,
            expired_time=expired_time,
        )
        with self._lock:
            self._instances[instance_id] = instance

    def add_sim_fleet(self, fleet: Iterable[SimInstance], status: str = "Running") -> None:
        """Seed instances from `FleetSimulator(...).fleet`; a spot instance gets SpotAsPriceGo."""
        for sim in fleet:
            self.add_instance(
                sim.instance_id, name=sim.name, region_id=sim.region_id, zone_id=sim.zone_id,
                instance_type=sim.instance_type, status=status, charge_type=sim.charge_type,
                spot_strategy="SpotAsPriceGo" if sim.spot else "NoSpot", private_ip=sim.private_ip,
                public_ip=sim.public_ip, tags=sim.tags,
            )

    def instance(self, instance_id: str) -> Instance:
        """A copy of the instance's current state."""
        with self._lock:
            return copy.deepcopy(self._instances[instance_id])

    def set_lock(self, instance_id: str, reason: str, message: str = "") -> None:
        """Add an OperationLocks entry (e.g. `Recycling` for a spot instance being reclaimed)."""
        entry = _lock_entry(reason, message)
        with self._lock:
            self._instances[instance_id].locks.append(entry)

    def clear_locks(self, instance_id: str) -> None:
        with self._lock:
            self._instances[instance_id].locks.clear()

    def set_status(self, instance_id: str, status: str) -> None:
        """Change an instance's status as the platform would (cancels a pending start), emitting the event."""
        if status not in INSTANCE_STATUSES:
            raise ValueError(f"status must be one of {INSTANCE_STATUSES}, not {status!r}")
        with self._lock:
            self._transition(self._instances[instance_id], status)

    def add_load_balancer(
        self,
        lb_id: str,
        *,
        name: str = "",
        region_id: str = "cn-hangzhou",
        status: str = "active",
        address: str = "10.0.0.100",
        address_type: str = "intranet",
        listeners: Iterable[tuple[int, str]] = ((80, "http"),),
        backends: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        """A CLB instance; `backends` is its default server group: dicts with ServerId [, Weight, Type]."""
        if status not in ("active", "inactive", "locked"):
            raise ValueError(f"bad load balancer status {status!r}")
        with self._lock:
            self._load_balancers[lb_id] = _LoadBalancer(
                lb_id=lb_id, name=name or lb_id, region_id=region_id, status=status, address=address,
                address_type=address_type, network_type="vpc", vpc_id=f"vpc-{region_id}-emulator",
                vswitch_id=f"vsw-{region_id}-emulator", create_time=_minute_time(time.time() - 86400),
                listeners=list(listeners), backends=[_clb_backend(b, with_port=False) for b in backends],
            )

    def add_vserver_group(
        self,
        lb_id: str,
        group_id: str,
        *,
        name: str = "",
        backends: Iterable[Mapping[str, Any]] = (),
        listeners: Iterable[tuple[int, str]] = (),
    ) -> None:
        """A vServer group of an existing CLB; `backends`: dicts with ServerId, Port [, Weight, Type, Description]."""
        with self._lock:
            if lb_id not in self._load_balancers:
                raise KeyError(lb_id)
            self._vserver_groups[group_id] = _VServerGroup(
                group_id=group_id, name=name or group_id, lb_id=lb_id, listeners=list(listeners),
                backends=[_clb_backend(b, with_port=True) for b in backends],
            )

    def add_server_group(
        self, product: str, group_id: str, *, region_id: str = "cn-hangzhou", servers: Iterable[Mapping[str, Any]] = ()
    ) -> None:
        """An ALB (`product="alb"`) or NLB (`"nlb"`) server group; `servers`: dicts with ServerId, Port
        [, ServerType (Ecs), Weight, Status (Available), ServerIp, Description]."""
        if product not in ("alb", "nlb"):
            raise ValueError(f"product must be 'alb' or 'nlb', not {product!r}")
        with self._lock:
            self._server_groups[group_id] = _ServerGroup(
                product=product, group_id=group_id, region_id=region_id, status="Available",
                servers=[_group_server(s) for s in servers],
            )

    def backend_servers(self, lb_id: str) -> list[dict[str, Any]]:
        """A CLB's default server group, as DescribeLoadBalancerAttribute shows it."""
        with self._lock:
            return copy.deepcopy(self._load_balancers[lb_id].backends)

    def vserver_group_backends(self, group_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._vserver_groups[group_id].backends)

    def server_group(self, group_id: str) -> tuple[str, list[dict[str, Any]]]:
        """An ALB/NLB group's (status, servers)."""
        with self._lock:
            group = self._server_groups[group_id]
            return group.status, copy.deepcopy(group.servers)

    def calls(self, action: str | None = None) -> list[Call]:
        """Requests to mutating actions (all of them, or one action's), in arrival order."""
        with self._lock:
            return [c for c in self._calls if action is None or c.action == action]

    def add_trail(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Seed ActionTrail history: events shaped as LookupEvents returns them (actiontrail.md §1.5)."""
        with self._lock:
            self._trail += [(self._clock(), copy.deepcopy(dict(event))) for event in events]

    def trail(self) -> list[dict]:
        """Every trail event, visible yet or not, in the order they were added."""
        with self._lock:
            return copy.deepcopy([event for _, event in self._trail])

    def request_counts(self) -> dict[str, int]:
        """Requests received per Action, failed and faulted ones included (SDK retries show here)."""
        with self._lock:
            return dict(self._requests)

    # -- request handling --------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Iterable[tuple[str, str]], body: bytes,
               source_ip: str = "127.0.0.1") -> Response | None:
        """Answer one HTTP request; None means close the connection without answering."""
        headers = list(headers)
        params = dict(parse_qsl(target.partition("?")[2], keep_blank_values=True))
        content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
        if body and content_type.startswith("application/x-www-form-urlencoded"):
            params |= dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        action, version, region = params.get("Action", ""), params.get("Version", ""), params.get("RegionId", "")
        with self._lock:
            self._requests[action] += 1
        if self._server.refuse_connections:
            return None
        drop, latency, injected = self._faults.draw(action)
        if drop:
            return None
        request_id = str(uuid.uuid4()).upper()
        reached = False  # the request got to its action: only then is a mutating call in the trail
        try:
            operation = self._operations.get((version, action))
            if operation is None:
                raise ApiError("InvalidAction.NotFound")
            self._authenticate(method, params)
            if not region:
                raise _missing("RegionId")
            # actiontrail.md §2.6, common ECS errors; ActionTrail's regions as ECS's [inferred]
            if version in (ECS_VERSION, ACTIONTRAIL_VERSION) and region not in REGIONS:
                raise ApiError("InvalidRegionId.NotFound")
            if injected:
                raise ApiError(injected)
            with self._lock:
                reached = True
                result = operation(params, region)
            status, payload = 200, {"RequestId": request_id, **result}
        except ApiError as error:
            status, payload = error.status, self._error_body(error, request_id, version, region)
        except Exception:
            log.exception("OpenAPI emulator failed on %s %s", version, action)
            error = ApiError("InternalError")
            status, payload = error.status, self._error_body(error, request_id, version, region)
        if action in MUTATING_ACTIONS:
            recorded = {k: v for k, v in params.items() if k != "Signature"}
            with self._lock:
                self._calls.append(Call(action, version, recorded, time.time(), status, payload.get("Code", "")))
                if reached:
                    self._trail.append((self._clock(), self._trail_event(recorded, region, payload, headers, source_ip)))
        if latency:
            time.sleep(latency)
        body_out = json.dumps(payload, ensure_ascii=False).encode()
        return status, {**_JSON_HEADERS, "x-acs-request-id": request_id}, body_out

    def _error_body(self, error: ApiError, request_id: str, version: str, region: str) -> dict[str, str]:
        product, host = PRODUCTS.get(version, ("Ecs", self.endpoint))
        return {
            "RequestId": request_id,
            "HostId": host.format(region=region or "cn-hangzhou"),
            "Code": error.code,
            "Message": error.message,
            "Recommend": f"https://api.aliyun.com/troubleshoot?q={error.code}&product={product}",
        }

    def _authenticate(self, method: str, params: Mapping[str, str]) -> None:
        """Check the V1 signature (§2), then the Timestamp window and SignatureNonce reuse."""
        for name in ("AccessKeyId", "Signature", "SignatureMethod", "SignatureVersion", "SignatureNonce", "Timestamp"):
            if not params.get(name):
                raise _missing(name)
        if params["SignatureMethod"] != "HMAC-SHA1" or params["SignatureVersion"] != "1.0":
            raise ApiError("IncompleteSignature")
        secret = self._credentials.get(params["AccessKeyId"])
        if secret is None:
            raise ApiError("InvalidAccessKeyId.NotFound")
        text = string_to_sign(method, {k: v for k, v in params.items() if k != "Signature"})
        if not hmac.compare_digest(signature(secret, text).encode(), params["Signature"].encode()):
            # The SDK reads Message.split(':')[1] as the server's string to sign (§5): keep this format.
            raise ApiError(
                "SignatureDoesNotMatch",
                "Specified signature is not matched with our calculation. server string to sign is:" + text,
            )
        try:
            sent_at = _dt.datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            raise ApiError("InvalidTimeStamp.Format") from None
        now = self._clock()
        if abs(now - sent_at.replace(tzinfo=_dt.timezone.utc).timestamp()) > MAX_CLOCK_SKEW_SECONDS:
            raise ApiError("InvalidTimeStamp.Expired")
        with self._lock:
            # Nonces are kept in arrival order: forget them from the oldest once no Timestamp can reuse them.
            while self._nonces and now - next(iter(self._nonces.values())) > 2 * MAX_CLOCK_SKEW_SECONDS:
                del self._nonces[next(iter(self._nonces))]
            if params["SignatureNonce"] in self._nonces:
                raise ApiError("SignatureNonceUsed")
            self._nonces[params["SignatureNonce"]] = now

    def _later(self, delay: float, work: Callable[[], None]) -> None:
        """Run `work` under the state lock after `delay` seconds, unless the emulator stops first."""

        def run() -> None:
            with self._lock:
                if timer not in self._timers:
                    return
                self._timers.discard(timer)
                work()

        timer = threading.Timer(delay, run)
        timer.daemon = True
        self._timers.add(timer)
        timer.start()

    # -- ECS (§8) ----------------------------------------------------------------------------

    def _instance_fields(self, instance: Instance) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "InstanceId": instance.instance_id, "InstanceName": instance.name, "RegionId": instance.region_id,
            "ZoneId": instance.zone_id, "Status": instance.status, "InstanceType": instance.instance_type,
            "InstanceChargeType": instance.charge_type, "SpotStrategy": instance.spot_strategy,
            "SpotPriceLimit": 0, "SpotInterruptionBehavior": "Terminate", "StoppedMode": instance.stopped_mode,
            "OperationLocks": {"LockReason": [dict(lock) for lock in instance.locks]},
        }
        if instance.tags:  # the key is absent when an instance has no tags
            fields["Tags"] = {"Tag": [{"TagKey": k, "TagValue": v} for k, v in instance.tags.items()]}
        fields |= {
            "VpcAttributes": {
                "VpcId": instance.vpc_id, "VSwitchId": instance.vswitch_id,
                "PrivateIpAddress": {"IpAddress": [instance.private_ip] if instance.private_ip else []},
                "NatIpAddress": "",
            },
            "PublicIpAddress": {"IpAddress": [instance.public_ip] if instance.public_ip else []},
            "InnerIpAddress": {"IpAddress": []},
            "SecurityGroupIds": {"SecurityGroupId": [instance.security_group_id]},
            "CreationTime": instance.creation_time, "StartTime": instance.start_time,
            "ExpiredTime": instance.expired_time,
        }
        return fields

    def _describe_regions(self, params: Mapping[str, str], region: str) -> dict:
        """Every region, whatever RegionId the request carries (actiontrail.md §3); no paging."""
        language = params.get("AcceptLanguage") or "zh-CN"
        if language not in ACCEPT_LANGUAGES:
            raise ApiError("InvalidAcceptLanguage.NotFound")
        if (params.get("ResourceType") or "instance") not in RESOURCE_TYPES:
            raise ApiError("InvalidResourceType.NotFound")
        return {"Regions": {"Region": [
            {"RegionId": region_id, "RegionEndpoint": f"ecs.{region_id}.aliyuncs.com",
             "LocalName": names[0] if language == "zh-CN" else names[1], "Status": "available"}
            for region_id, names in REGIONS.items()
        ]}}

    def _regional_instances(self, region: str) -> list[Instance]:
        return [i for i in self._instances.values() if i.region_id == region]

    def _describe_instances(self, params: Mapping[str, str], region: str) -> dict:
        instances = self._regional_instances(region)
        if params.get("InstanceIds"):
            try:
                wanted = json.loads(params["InstanceIds"])
            except ValueError:
                raise ApiError("InvalidInstanceIds.Malformed") from None
            if not isinstance(wanted, list) or not all(isinstance(i, str) for i in wanted):
                raise ApiError("InvalidInstanceIds.Malformed")
            if len(wanted) > MAX_ECS_INSTANCE_IDS:  # [inferred] code for too many ids
                raise ApiError("InvalidInstanceIds.Malformed", "The number of InstanceIds exceeds 100.")
            instances = [i for i in instances if i.instance_id in wanted]
        for name, attribute in (("Status", "status"), ("InstanceChargeType", "charge_type"), ("ZoneId", "zone_id")):
            if params.get(name):
                instances = [i for i in instances if getattr(i, attribute) == params[name]]
        for tag in _numbered_records(params, "Tag"):
            if "Key" not in tag:
                raise _missing("Tag.N.Key")
            instances = [
                i for i in instances
                if tag["Key"] in i.tags and ("Value" not in tag or i.tags[tag["Key"]] == tag["Value"])
            ]
        response: dict[str, Any] = {"TotalCount": len(instances)}
        if "NextToken" in params or "MaxResults" in params:
            max_results = min(max(_int_param(params, "MaxResults", MIN_ECS_MAX_RESULTS, 1, 1 << 31),
                                  MIN_ECS_MAX_RESULTS), MAX_ECS_MAX_RESULTS)
            page, next_token = _token_page(instances, params.get("NextToken", ""), max_results,
                                           lambda: _invalid("NextToken"))
            response["NextToken"] = next_token
        else:
            page_number = _int_param(params, "PageNumber", 1, 1, 1 << 31)
            page_size = _int_param(params, "PageSize", 10, 1, 100)
            page = _page(instances, page_number, page_size)
            response |= {"PageNumber": page_number, "PageSize": page_size, "NextToken": ""}
        response["Instances"] = {"Instance": [self._instance_fields(i) for i in page]}
        return response

    def _describe_instance_status(self, params: Mapping[str, str], region: str) -> dict:
        instances = self._regional_instances(region)
        wanted = _numbered_list(params, "InstanceId")
        if len(wanted) > MAX_ECS_INSTANCE_IDS:
            raise ApiError("InvalidParameter.TooManyInstanceIds")
        if wanted:
            instances = [i for i in instances if i.instance_id in wanted]
        if params.get("ZoneId"):
            instances = [i for i in instances if i.zone_id == params["ZoneId"]]
        page_number = _int_param(params, "PageNumber", 1, 1, 1 << 31)
        page_size = _int_param(params, "PageSize", 10, 1, 50)
        statuses = [{"InstanceId": i.instance_id, "Status": i.status} for i in _page(instances, page_number, page_size)]
        return {
            "TotalCount": len(instances), "PageNumber": page_number, "PageSize": page_size,
            "InstanceStatuses": {"InstanceStatus": statuses},
        }

    def _start_instance(self, params: Mapping[str, str], region: str) -> dict:
        instance_id = _required(params, "InstanceId")
        dry_run = _bool_param(params, "DryRun")
        instance = self._instances.get(instance_id)
        if instance is None or instance.region_id != region:
            raise ApiError("InvalidInstanceId.NotFound")
        reasons = {lock["LockReason"] for lock in instance.locks}
        if reasons & {"financial", "dedicatedhostfinancial"}:
            raise ApiError("InstanceExpiredOrInArrears")
        if "security" in reasons:
            raise ApiError("InstanceLockedForSecurity")
        if reasons or instance.status != "Stopped":  # Recycling / refunded locks: [inferred] code
            raise ApiError("IncorrectInstanceStatus")
        if dry_run:
            raise ApiError("DryRunOperation")
        self._transition(instance, "Starting")
        generation = instance.generation
        self._later(self.start_delay, lambda: self._finish_start(instance, generation))
        return {}

    def _finish_start(self, instance: Instance, generation: int) -> None:
        if instance.generation == generation and instance.status == "Starting":
            self._transition(instance, "Running")

    def _transition(self, instance: Instance, status: str) -> None:
        """Set a new status (lock held) and enqueue its Instance:StateChange event if emitting."""
        instance.status = status
        instance.generation += 1
        if status == "Running":
            instance.start_time = _minute_time(time.time())
        if self._emit_to is not None:
            mns, queue = self._emit_to
            mns.send_message(queue, base64.b64encode(self._state_change_event(instance)).decode())

    def _state_change_event(self, instance: Instance) -> bytes:
        """A CloudMonitor event notification (envelope A, events.md §2 and §5.1)."""
        content = {
            "resourceId": instance.instance_id, "resourceType": "ALIYUN::ECS::Instance", "state": instance.status,
            "instanceName": instance.name, "instanceType": instance.instance_type,
            "privateIpAddress": instance.private_ip,
        }
        if instance.public_ip:
            content["publicIpAddress"] = instance.public_ip
        event = {
            "ver": "1.0", "id": str(uuid.uuid4()).upper(), "product": "ECS",
            "resourceId": f"acs:ecs:{instance.region_id}:{self._account_id}:instance/{instance.instance_id}",
            "level": "INFO", "name": "Instance:StateChange", "userId": self._account_id,
            "eventTime": _cms_time(time.time()), "regionId": instance.region_id, "content": content,
        }
        return json.dumps(event, separators=(",", ":")).encode()

    # -- ActionTrail (actiontrail.md §1) -------------------------------------------------------

    def identity(self, access_key_id: str) -> dict[str, str]:
        """The userIdentity of a key's calls (§1.6): the configured one, else a RAM user named "shipper"."""
        default = {"type": "ram-user", "userName": "shipper", "accountId": self._account_id,
                   "principalId": str(int(hashlib.sha1(access_key_id.encode()).hexdigest()[:12], 16))}
        return default | self._identities.get(access_key_id, {})

    def _trail_event(self, params: Mapping[str, str], region: str, payload: Mapping[str, Any],
                     headers: list[tuple[str, str]], source_ip: str) -> dict:
        """A mutating call as ActionTrail records it: an `ApiCall` (§1.5) by the signing key's identity, with
        its accessKeyId as SDK calls carry it (§1.6), and errorCode/errorMessage when it failed."""
        version, key = params["Version"], params["AccessKeyId"]
        instance_ids = [params["InstanceId"]] if params.get("InstanceId") else _numbered_list(params, "InstanceId")
        event: dict[str, Any] = {
            "eventId": str(uuid.uuid4()), "eventVersion": 1, "eventType": "ApiCall", "eventRW": "Write",
            "eventCategory": "Management", "eventName": params["Action"], "apiVersion": version,
            "eventSource": PRODUCTS[version][1].format(region=region), "serviceName": TRAIL_SERVICE_NAMES[version],
            "eventTime": _dt.datetime.fromtimestamp(self._clock(), tz=_dt.timezone.utc).strftime(TRAIL_TIME_FORMAT),
            "acsRegion": region, "requestId": payload["RequestId"], "isGlobal": False,
            "sourceIpAddress": source_ip,
            "userAgent": next((v for k, v in headers if k.lower() == "user-agent"), ""),
            "userIdentity": self.identity(key) | {"accessKeyId": key},
            "requestParameters": {k: v for k, v in params.items() if k not in COMMON_PARAMS},
            "responseElements": {k: v for k, v in payload.items() if k not in ("Code", "Message", "HostId",
                                                                               "Recommend")},
            "referencedResources": {"ACS::ECS::Instance": instance_ids} if instance_ids else {},
        }
        if payload.get("Code"):
            event |= {"errorCode": payload["Code"], "errorMessage": payload.get("Message", "")}
        return event

    def _lookup_events(self, params: Mapping[str, str], region: str) -> dict:
        """The region's visible events in [StartTime, EndTime] that match the LookupAttribute pairs, a page at
        a time (§1.2-§1.4). A NextToken carries the instant the first page saw, so events delivered while
        paging never shift a page; it is refused if any other parameter changed."""
        self._throttle_lookup(params["AccessKeyId"])
        start_text, end_text = params.get("StartTime", ""), params.get("EndTime", "")
        if bool(start_text) != bool(end_text):  # "set both or neither" (§1.2); the error code [inferred]
            raise ApiError("InvalidParameterValue", "StartTime and EndTime must be set together.")
        now = self._clock()
        start = _trail_time(start_text, "StartTime") if start_text else now - LOOKUP_DEFAULT_SPAN_SECONDS
        end = _trail_time(end_text, "EndTime") if end_text else now
        if end < start:
            raise ApiError("InvalidTimeRangeException")
        max_results = _int_param(params, "MaxResults", LOOKUP_DEFAULT_MAX_RESULTS, 1, LOOKUP_MAX_RESULTS)
        direction = params.get("Direction") or "BACKWARD"
        if direction not in ("FORWARD", "BACKWARD"):
            raise ApiError("InvalidParameterValue", "Direction must be FORWARD or BACKWARD.")
        # two pairs at most, the first two used; a key given twice: the second applies (§1.3)
        attributes = {a.get("Key", ""): a.get("Value", "") for a in _numbered_records(params, "LookupAttribute")[:2]}
        for key in attributes:
            if key not in LOOKUP_KEYS:
                raise ApiError("InvalidParameterValue", f"LookupAttribute key {key!r} is not supported.")
        query = {k: v for k, v in params.items() if k not in COMMON_PARAMS | {"NextToken", "RegionId"}}
        as_of, offset = _lookup_token(params.get("NextToken", ""), query, now)
        # an event is delivered `delivery_delay` after its time, and never before it joined the trail
        matched = [
            event for joined, event in self._trail
            if event.get("acsRegion") == region
            and start <= (at := _trail_time(event["eventTime"], "eventTime")) <= end
            and max(at + self.delivery_delay, joined) <= as_of and at >= as_of - TRAIL_RETENTION_SECONDS
            and all(value in LOOKUP_KEYS[key](event) for key, value in attributes.items())
        ]
        matched.sort(key=lambda event: event["eventTime"], reverse=direction == "BACKWARD")
        page = matched[offset:offset + max_results]
        more = offset + max_results < len(matched)
        return {"StartTime": _dt.datetime.fromtimestamp(start, tz=_dt.timezone.utc).strftime(TRAIL_TIME_FORMAT),
                "EndTime": _dt.datetime.fromtimestamp(end, tz=_dt.timezone.utc).strftime(TRAIL_TIME_FORMAT),
                "Events": copy.deepcopy(page),
                "NextToken": _encode_token(query, as_of, offset + max_results) if more else ""}

    def _throttle_lookup(self, access_key_id: str) -> None:
        """At most `lookup_calls_per_second` accepted calls per key in any second (§1.11); real time, not
        `clock`: the limit is about requests, not about the trail's time."""
        now = time.monotonic()
        recent = [t for t in self._lookups.get(access_key_id, []) if now - t < 1.0]
        if len(recent) >= self.lookup_calls_per_second:
            self._lookups[access_key_id] = recent
            raise ApiError(LOOKUP_THROTTLE_CODE)
        self._lookups[access_key_id] = recent + [now]

    # -- SLB / CLB (§9) ----------------------------------------------------------------------

    def _load_balancer(self, lb_id: str, region: str) -> _LoadBalancer:
        lb = self._load_balancers.get(lb_id)
        if lb is None or lb.region_id != region:
            raise ApiError("InvalidLoadBalancerId.NotFound")
        return lb

    def _vserver_group(self, group_id: str, region: str) -> _VServerGroup:
        group = self._vserver_groups.get(group_id)
        if group is None or self._load_balancers[group.lb_id].region_id != region:
            raise ApiError("InvalidParameter", "The specified VServerGroupId does not exist.")
        return group

    def _changeable(self, lb: _LoadBalancer) -> None:
        if lb.status == "locked":
            raise ApiError("LbStatusNotSupport")

    @staticmethod
    def _lb_fields(lb: _LoadBalancer) -> dict[str, Any]:
        return {
            "LoadBalancerId": lb.lb_id, "LoadBalancerName": lb.name, "LoadBalancerStatus": lb.status,
            "Address": lb.address, "AddressType": lb.address_type, "NetworkType": lb.network_type,
            "VpcId": lb.vpc_id, "VSwitchId": lb.vswitch_id, "RegionId": lb.region_id, "CreateTime": lb.create_time,
        }

    def _describe_load_balancers(self, params: Mapping[str, str], region: str) -> dict:
        """`ServerId` matches the default server group only: vServer-group membership is undocumented (§9)."""
        wanted = {i for i in params.get("LoadBalancerId", "").split(",") if i}
        server_id = params.get("ServerId", "")
        lbs = [
            lb for lb in self._load_balancers.values()
            if lb.region_id == region
            and (not wanted or lb.lb_id in wanted)
            and (not server_id or any(b["ServerId"] == server_id for b in lb.backends))
        ]
        page_number = _int_param(params, "PageNumber", 1, 1, 1 << 31)
        page_size = _int_param(params, "PageSize", 10, 1, 100)
        return {
            "TotalCount": len(lbs), "PageNumber": page_number, "PageSize": page_size,
            "LoadBalancers": {"LoadBalancer": [self._lb_fields(lb) for lb in _page(lbs, page_number, page_size)]},
        }

    def _describe_load_balancer_attribute(self, params: Mapping[str, str], region: str) -> dict:
        lb = self._load_balancer(_required(params, "LoadBalancerId"), region)
        return self._lb_fields(lb) | {
            "ListenerPorts": {"ListenerPort": [port for port, _ in lb.listeners]},
            "ListenerPortsAndProtocol": {"ListenerPortAndProtocol": [
                {"ListenerPort": port, "ListenerProtocol": protocol} for port, protocol in lb.listeners
            ]},
            "BackendServers": {"BackendServer": copy.deepcopy(lb.backends)},
        }

    def _describe_vserver_groups(self, params: Mapping[str, str], region: str) -> dict:
        lb = self._load_balancer(_required(params, "LoadBalancerId"), region)
        include_listener = _bool_param(params, "IncludeListener")
        groups = []
        for group in self._vserver_groups.values():
            if group.lb_id != lb.lb_id:
                continue
            listeners = [{"Protocol": p, "Port": port} for port, p in group.listeners] if include_listener else []
            groups.append({
                "VServerGroupId": group.group_id, "VServerGroupName": group.name, "ServerCount": len(group.backends),
                "AssociatedObjects": {"Listeners": {"Listener": listeners}, "Rules": {"Rule": []}},
            })
        return {"VServerGroups": {"VServerGroup": groups}}

    @staticmethod
    def _vserver_group_fields(group: _VServerGroup) -> dict[str, Any]:
        return {
            "VServerGroupId": group.group_id, "VServerGroupName": group.name, "LoadBalancerId": group.lb_id,
            "BackendServers": {"BackendServer": copy.deepcopy(group.backends)},
        }

    def _describe_vserver_group_attribute(self, params: Mapping[str, str], region: str) -> dict:
        return self._vserver_group_fields(self._vserver_group(_required(params, "VServerGroupId"), region))

    def _set_vserver_group_attribute(self, params: Mapping[str, str], region: str) -> dict:
        """Changes weights (members by ServerId + Port + Type) and the name; non-members are ignored."""
        group = self._vserver_group(_required(params, "VServerGroupId"), region)
        self._changeable(self._load_balancers[group.lb_id])
        changes = _clb_servers(params["BackendServers"], port_required=True) if params.get("BackendServers") else []
        for change in changes:
            for member in _clb_matches(group.backends, change, with_port=True):
                if change["Weight"] is not None:
                    member["Weight"] = change["Weight"]
        if params.get("VServerGroupName"):
            group.name = params["VServerGroupName"]
        return self._vserver_group_fields(group)

    def _remove_vserver_group_backend_servers(self, params: Mapping[str, str], region: str) -> dict:
        """Removes exactly matching memberships (ServerId + Port + Type); non-members are ignored (§9)."""
        group = self._vserver_group(_required(params, "VServerGroupId"), region)
        self._changeable(self._load_balancers[group.lb_id])
        removals = _clb_servers(_required(params, "BackendServers"), port_required=True)
        for removal in removals:
            for member in _clb_matches(group.backends, removal, with_port=True):
                group.backends.remove(member)
        return {"VServerGroupId": group.group_id, "BackendServers": {"BackendServer": copy.deepcopy(group.backends)}}

    def _set_backend_servers(self, params: Mapping[str, str], region: str) -> dict:
        """Changes default-group weights (members by ServerId + Type); non-members are ignored [project]."""
        lb = self._load_balancer(_required(params, "LoadBalancerId"), region)
        self._changeable(lb)
        for change in _clb_servers(_required(params, "BackendServers"), port_required=False):
            for member in _clb_matches(lb.backends, change, with_port=False):
                if change["Weight"] is not None:
                    member["Weight"] = change["Weight"]
        return {"LoadBalancerId": lb.lb_id, "BackendServers": {"BackendServer": copy.deepcopy(lb.backends)}}

    def _remove_backend_servers(self, params: Mapping[str, str], region: str) -> dict:
        """Removes default-group members by ServerId + Type (or a plain id list); non-members are ignored."""
        lb = self._load_balancer(_required(params, "LoadBalancerId"), region)
        self._changeable(lb)
        for removal in _clb_servers(_required(params, "BackendServers"), port_required=False, ids_allowed=True):
            for member in _clb_matches(lb.backends, removal, with_port=False):
                lb.backends.remove(member)
        return {"LoadBalancerId": lb.lb_id, "BackendServers": {"BackendServer": copy.deepcopy(lb.backends)}}

    # -- ALB / NLB (§10) ---------------------------------------------------------------------

    def _server_group(self, flavor: _Flavor, group_id: str, region: str) -> _ServerGroup:
        group = self._server_groups.get(group_id)
        if group is None or group.product != flavor.product or group.region_id != region:
            raise ApiError(flavor.group_not_found)
        return group

    def _list_server_group_servers(self, flavor: _Flavor, params: Mapping[str, str], region: str) -> dict:
        if params.get("ServerGroupId"):
            groups = [self._server_group(flavor, params["ServerGroupId"], region)]
        else:
            groups = [g for g in self._server_groups.values() if g.product == flavor.product and g.region_id == region]
        server_ids = set(_numbered_list(params, "ServerIds"))
        if len(server_ids) > MAX_SERVER_IDS_FILTER:
            raise _illegal("ServerIds", f"at most {MAX_SERVER_IDS_FILTER} ids")
        try:
            max_results = _int_param(params, "MaxResults", 20, 1, 100)
        except ApiError:
            raise _illegal("MaxResults", "must be an integer from 1 to 100") from None
        servers = [
            {"ServerGroupId": g.group_id, **s}
            for g in groups for s in g.servers if not server_ids or s["ServerId"] in server_ids
        ]
        page, next_token = _token_page(servers, params.get("NextToken", ""), max_results,
                                       lambda: _illegal("NextToken", "unknown token"))
        return {"TotalCount": len(servers), "MaxResults": max_results, "NextToken": next_token,
                "Servers": copy.deepcopy(page)}

    def _members(self, flavor: _Flavor, params: Mapping[str, str], region: str,
                 with_weight: bool) -> tuple[_ServerGroup, list[tuple[dict, int | None]]]:
        """The group and the (member, new weight) pairs named by `Servers.N.*`.

        Checked in order: parameters, the group being idle, then every server being a member.
        """
        group = self._server_group(flavor, _required(params, "ServerGroupId"), region)
        entries = _numbered_records(params, "Servers")
        if not entries:
            raise _missing("Servers.N.ServerId")
        wanted = []
        for entry in entries:
            server_id, server_type = entry.get("ServerId", ""), entry.get("ServerType", "")
            if not server_id:
                raise _missing("Servers.N.ServerId")
            if server_type not in SERVER_GROUP_SERVER_TYPES:
                raise _illegal("ServerType", f"must be one of {', '.join(SERVER_GROUP_SERVER_TYPES)}")
            port = None
            if server_type != "Fc":
                if not entry.get("Port"):
                    raise _missing("Servers.N.Port")
                port = _parse_int(entry["Port"], 1, 65535)
                if port is None:
                    raise _illegal("Port", "must be an integer from 1 to 65535")
            weight = None
            if with_weight:
                if not entry.get("Weight"):
                    raise _missing("Servers.N.Weight")
                weight = _parse_int(entry["Weight"], 0, 100)
                if weight is None:
                    raise _illegal("Weight", "must be an integer from 0 to 100")
            wanted.append((server_id, server_type, port, weight))
        if group.status != "Available":
            raise ApiError(flavor.group_busy)
        matched = []
        for server_id, server_type, port, weight in wanted:
            member = next((
                s for s in group.servers
                if s["ServerId"] == server_id and s["ServerType"] == server_type and (port is None or s["Port"] == port)
            ), None)
            if member is None:
                raise ApiError("ResourceNotFound.BackendServer")
            matched.append((member, weight))
        return group, matched

    def _start_job(self, group: _ServerGroup, params: Mapping[str, str], finish: Callable[[], None]) -> str:
        """Mark the group busy, finish the change after `job_delay`; DryRun stops before any change."""
        if _bool_param(params, "DryRun"):
            raise ApiError("DryRunOperation")
        group.status = "Configuring"

        def complete() -> None:
            finish()
            group.status = "Available"

        self._later(self.job_delay, complete)
        return str(uuid.uuid4())

    def _remove_servers(self, flavor: _Flavor, params: Mapping[str, str], region: str) -> dict:
        group, matched = self._members(flavor, params, region, with_weight=False)
        members = [member for member, _ in matched]

        def finish() -> None:
            group.servers = [s for s in group.servers if not any(s is m for m in members)]

        job_id = self._start_job(group, params, finish)
        for member in members:
            member["Status"] = "Removing"
        response = {"JobId": job_id}
        if flavor.removal_echoes_group:
            response = {"ServerGroupId": group.group_id, **response}
        return response

    def _update_servers(self, flavor: _Flavor, params: Mapping[str, str], region: str) -> dict:
        group, matched = self._members(flavor, params, region, with_weight=True)

        def finish() -> None:
            for member, weight in matched:
                member["Weight"] = weight
                member["Status"] = "Available"

        job_id = self._start_job(group, params, finish)
        for member, _ in matched:
            member["Status"] = "Configuring"
        return {"JobId": job_id}


def _trail_time(text: str, name: str) -> float:
    """`yyyy-MM-ddTHH:mm:ssZ` (§1.2, §1.5) -> epoch seconds; a malformed one is InvalidParameterValue [inferred]."""
    try:
        return _dt.datetime.strptime(text, TRAIL_TIME_FORMAT).replace(tzinfo=_dt.timezone.utc).timestamp()
    except ValueError:
        raise ApiError("InvalidParameterValue", f"{name} must be yyyy-MM-ddTHH:mm:ssZ, got {text!r}.") from None


def _encode_token(query: Mapping[str, str], as_of: float, offset: int) -> str:
    """An opaque base64 JSON token, like the documented example `eyJhY2NvdW50Ijoi...` (§1.2)."""
    fields = {"asOf": as_of, "offset": offset, "query": _query_digest(query)}
    return base64.b64encode(json.dumps(fields).encode()).decode()


def _query_digest(query: Mapping[str, str]) -> str:
    return hashlib.sha1(json.dumps(sorted(query.items())).encode()).hexdigest()


def _lookup_token(token: str, query: Mapping[str, str], now: float) -> tuple[float, int]:
    """(the instant the first page saw, where this page starts); a first page sees now."""
    if not token:
        return now, 0
    try:
        fields = json.loads(base64.b64decode(token, validate=True))
        as_of, offset, digest = float(fields["asOf"]), int(fields["offset"]), fields["query"]
    except (ValueError, KeyError, TypeError):
        raise ApiError("InvalidParameterValue", "The NextToken is not valid.") from None
    if digest != _query_digest(query):
        raise ApiError("InvalidParameterValue", "NextToken: the other parameters must be those of the first page.")
    return as_of, offset


def _clb_servers(text: str, *, port_required: bool, ids_allowed: bool = False) -> list[dict[str, Any]]:
    """Validate a CLB `BackendServers` JSON parameter (§9) into {"ServerId", "Port", "Weight", "Type"}.

    `Port` is None when not required; `Weight` None when not given.
    """
    try:
        items = json.loads(text)
    except ValueError:
        raise _invalid("BackendServers", "It is not a JSON array.") from None
    if not isinstance(items, list) or not items:
        raise _invalid("BackendServers", "It must be a non-empty JSON array.")
    if len(items) > MAX_CLB_BACKENDS_PER_CALL:
        raise _invalid("BackendServers", f"At most {MAX_CLB_BACKENDS_PER_CALL} servers per call.")
    servers = []
    for item in items:
        if ids_allowed and isinstance(item, str):
            item = {"ServerId": item}
        if not isinstance(item, dict) or not isinstance(item.get("ServerId"), str) or not item["ServerId"]:
            raise _invalid("BackendServers", "Every server needs a ServerId.")
        server_type = item.get("Type", "ecs")
        if server_type not in CLB_SERVER_TYPES:
            raise _invalid("BackendServers", f"Type must be one of {', '.join(CLB_SERVER_TYPES)}.")
        if port_required and "Port" not in item:
            raise _invalid("BackendServers", "Every server needs a Port.")
        servers.append({
            "ServerId": item["ServerId"],
            "Port": _json_int(item["Port"], "Port", 1, 65535) if port_required else None,
            "Weight": _json_int(item["Weight"], "Weight", 0, 100) if "Weight" in item else None,
            "Type": server_type,
        })
    return servers


def _clb_matches(members: list[dict[str, Any]], wanted: Mapping[str, Any], with_port: bool) -> list[dict[str, Any]]:
    return [
        m for m in members
        if m["ServerId"] == wanted["ServerId"] and m["Type"] == wanted["Type"]
        and (not with_port or m["Port"] == wanted["Port"])
    ]


class _OpenApiHandler(EmulatorHandler):
    def _serve(self) -> None:
        body = self.read_body()
        response = self.server.emulator.handle(self.command, self.path, self.headers.items(), body,
                                               source_ip=self.client_address[0])
        if response is None:
            self.drop_connection()
        else:
            self.send(*response)

    do_GET = do_POST = _serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local ECS/SLB/ALB/NLB OpenAPI emulator for aliyunsdkcore.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--access-key-id", default=os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_ID"))
    parser.add_argument("--fleet", type=int, default=0, help="seed this many instances from the fleet simulator")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--start-delay", type=float, default=5.0, help="seconds from Starting to Running")
    args = parser.parse_args(argv)
    secret = os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
    if not args.access_key_id or not secret:
        parser.error("set --access-key-id (or ALIBABA_CLOUD_ACCESS_KEY_ID) and ALIBABA_CLOUD_ACCESS_KEY_SECRET")
    emulator = OpenApiEmulator(
        credentials={args.access_key_id: secret}, host=args.host, port=args.port, seed=args.seed,
        start_delay=args.start_delay, job_delay=args.start_delay,
    )
    if args.fleet:
        emulator.add_sim_fleet(FleetSimulator(instances=args.fleet, seed=args.seed, start_ms=0).fleet)
    with emulator:
        print(emulator.endpoint, flush=True)
        serve_until_interrupted()


if __name__ == "__main__":
    main()
