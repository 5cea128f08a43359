"""The few ECS / CLB / ALB / NLB OpenAPI calls the hooks make, through aliyunsdkcore's CommonRequest.

Why it is built the way it is (reference/openapi.md):
- a new CommonRequest per attempt: a reused one accumulates query parameters (§7) and is not thread-safe;
- `proxy={"http": None, "https": None}`: otherwise HTTP(S)_PROXY captures even 127.0.0.1 and NO_PROXY is
  ignored (§4);
- `auto_retry=False`: the SDK retries only ECS Describe* (never StartInstance, SLB, ALB, NLB, nor
  Throttling.User/Api), sleeps with an uninjectable time.sleep and would multiply with our own retries
  (§6); one bounded policy here retries throttling, busy and 5xx answers on every action;
- explicit connect/read timeouts instead of the SDK's per-API table (StartInstance would wait 46 s);
- every call names its region: the endpoint is the region's (unless an `*_endpoint` override points
  elsewhere) and `RegionId` is a query parameter of the request, which the SDK then sends instead of the
  client's own region (RpcRequest.get_url fills RegionId only when the request has none); an empty
  region means the first configured one;
- the SDK's own logger is silenced: it logs every failure at ERROR and, at DEBUG, the request parameters,
  which carry the STS SecurityToken (§5). Errors surface as CloudError (NotFound for a missing instance,
  load balancer, group or member) with the secret and token redacted, never chained to the SDK's exception.
"""
from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Iterator

from aliyunsdkcore.acs_exception.exceptions import ClientException, ServerException
from aliyunsdkcore.auth.credentials import StsTokenCredential
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import CommonRequest

from shipper.cloud.backoff import Backoff
from shipper.cloud.credentials import Credentials
from shipper.cloud.errors import CloudError, NotFound, redact
from shipper.config import OpenApiSettings, endpoint_url
from shipper.instances.model import Instance

log = logging.getLogger(__name__)

ECS, SLB, ALB, NLB, ACTIONTRAIL = "Ecs", "Slb", "Alb", "Nlb", "Actiontrail"
VERSIONS = {ECS: "2014-05-26", SLB: "2014-05-15", ALB: "2020-06-16", NLB: "2022-04-30", ACTIONTRAIL: "2020-07-06"}

MAX_ATTEMPTS = 5
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 8.0
BACKOFF = Backoff(BACKOFF_BASE_SECONDS, BACKOFF_CAP_SECONDS, floor=0.5)  # never less than half the step
CONNECT_TIMEOUT_SECONDS = 5.0
CLB_SERVERS_PER_CALL = 20           # documented limit of BackendServers per CLB call
# ALB/NLB: RemoveServersFromServerGroup takes up to 200 servers a call, UpdateServerGroupServersAttribute
# up to 40 (the API references, repeated in the alibabacloud SDK models of both products)
SERVER_GROUP_REMOVALS_PER_CALL = 200
SERVER_GROUP_UPDATES_PER_CALL = 40
ECS_IDS_PER_CALL = 100              # DescribeInstances InstanceIds
ECS_PAGE_SIZE = 100                 # DescribeInstances MaxResults: at most 100 (actiontrail.md §2.2)
ALL_REGIONS = "all"                 # `[openapi] regions = ["all"]`: every region DescribeRegions answers
HOME_REGION = "cn-hangzhou"         # where DescribeRegions is asked when no region is configured
# The public endpoints; `{region}` is the call's region (openapi.md, the table at the top).
PUBLIC_ENDPOINTS = {ECS: "ecs.{region}.aliyuncs.com", SLB: "slb.aliyuncs.com", ALB: "alb.{region}.aliyuncs.com",
                    NLB: "nlb.{region}.aliyuncs.com", ACTIONTRAIL: "actiontrail.{region}.aliyuncs.com"}

RETRYABLE_CODES = frozenset({
    "Throttling", "Throttling.User", "Throttling.Api", "ServiceUnavailable", "InternalError", "UnknownError",
    "SystemBusy", "ServiceIsConfiguring", "BackendServer.configuring", "IncorrectStatus.ServerGroup",
    "IncorrectStatus.serverGroup", "Conflict.Lock", "SDK.HttpError",
})
NOT_FOUND_CODES = frozenset({
    "InvalidInstanceId.NotFound", "InvalidLoadBalancerId.NotFound", "ResourceNotFound.BackendServer",
    "ResourceNotFound.ServerGroup", "ResourceNotFound.serverGroup",
})
# The access key refused (openapi.md §5, §8, §10): no call will succeed until the key or its RAM policy changes.
FATAL_CODES = frozenset({
    "SignatureDoesNotMatch", "InvalidAccessKeySecret", "InvalidAccessKeyId.NotFound", "Forbidden.RAM",
    "Forbidden.NoPermission",
})


@dataclass(frozen=True)
class Backend:
    """One member of a CLB vserver group / default backend list or of an ALB/NLB server group.

    `port` is 0 in a CLB default backend list; `type` is spelled as the product lists it
    (CLB `ecs`, ALB/NLB `Ecs`)."""
    server_id: str
    port: int
    weight: int
    type: str
    server_ip: str = ""


class OpenApi:
    def __init__(self, settings: OpenApiSettings, credentials: Credentials, *,
                 sleep: Callable[[float], None] = time.sleep,
                 on_instance: Callable[[Instance], None] = lambda instance: None):
        """`on_instance` sees every instance DescribeInstances returns (the instance cache keeps them)."""
        logging.getLogger("aliyunsdkcore").setLevel(logging.CRITICAL)
        self._sleep = sleep
        self._on_instance = on_instance
        self._random = random.Random()
        self._secrets = tuple(s for s in (credentials.access_key_secret, credentials.security_token) if s)
        self._configured = list(settings.regions)
        self._all_regions: list[str] | None = None
        self._regions_lock = threading.Lock()
        # the client's own region (the SDK checks it is well formed) and where DescribeRegions is asked
        self._home = HOME_REGION if self._configured == [ALL_REGIONS] else self._configured[0]
        timeouts = {"connect_timeout": min(CONNECT_TIMEOUT_SECONDS, settings.timeout_seconds),
                     "timeout": settings.timeout_seconds}
        no_proxy = {"http": None, "https": None}
        if credentials.security_token:
            sts = StsTokenCredential(credentials.access_key_id, credentials.access_key_secret,
                                     credentials.security_token)
            self._client = AcsClient(region_id=self._home, credential=sts, auto_retry=False, proxy=no_proxy,
                                     **timeouts)
        else:
            self._client = AcsClient(credentials.access_key_id, credentials.access_key_secret, self._home,
                                     auto_retry=False, proxy=no_proxy, **timeouts)
        overrides = {ECS: settings.ecs_endpoint, SLB: settings.slb_endpoint, ALB: settings.alb_endpoint,
                     NLB: settings.nlb_endpoint, ACTIONTRAIL: settings.actiontrail_endpoint}
        self._endpoints = {product: endpoint_url(overrides[product] or PUBLIC_ENDPOINTS[product])
                           for product in PUBLIC_ENDPOINTS}

    # ---- regions ------------------------------------------------------------------------------------

    def regions(self) -> list[str]:
        """The configured regions; for "all", DescribeRegions' answer, asked once for the process."""
        if self._configured != [ALL_REGIONS]:
            return list(self._configured)
        with self._regions_lock:
            if self._all_regions is None:
                self._all_regions = self.describe_regions()
            return list(self._all_regions)

    def describe_regions(self) -> list[str]:
        """Every ECS region the account can use (actiontrail.md §3), sold-out ones included: they still
        hold instances."""
        body = self._call(ECS, "DescribeRegions", {}, self._home)
        regions = [r["RegionId"] for r in _listed(body, "Regions", "Region")]
        if not regions:
            raise CloudError(_service(ECS), "NoRegion", "DescribeRegions answered no region", retryable=False,
                             fatal=False)
        return regions

    def _region(self, region_id: str) -> str:
        """The region a call goes to: the instance's, else the first configured one."""
        return region_id or self.regions()[0]

    # ---- ECS ----------------------------------------------------------------------------------------

    def list_instances(self, region_id: str) -> Iterator[Instance]:
        """Every instance of the region, a page of ECS_PAGE_SIZE at a time until NextToken is empty."""
        token = ""
        while True:
            params = {"MaxResults": str(ECS_PAGE_SIZE)}
            if token:
                params["NextToken"] = token
            body = self._call(ECS, "DescribeInstances", params, region_id)
            for raw in _listed(body, "Instances", "Instance"):
                instance = _instance(raw)
                self._on_instance(instance)
                yield instance
            token = body.get("NextToken") or ""
            if not token:
                return

    def describe_instances(self, instance_ids: list[str], region_id: str) -> dict[str, Instance]:
        """The instances that exist among `instance_ids` in the region (released ones are simply absent,
        and so are those of another region)."""
        found: dict[str, Instance] = {}
        for ids in _chunks(instance_ids, ECS_IDS_PER_CALL):
            body = self._call(ECS, "DescribeInstances", {"InstanceIds": json.dumps(ids), "PageSize": "100"},
                              region_id)
            for raw in _listed(body, "Instances", "Instance"):
                instance = _instance(raw)
                found[instance.instance_id] = instance
                self._on_instance(instance)
        return found

    def count_instances(self, region_id: str) -> int:
        """How many instances the region holds: one cheap signed call (`shipper check` uses it)."""
        body = self._call(ECS, "DescribeInstances", {"PageSize": "1"}, region_id)
        return int(body.get("TotalCount", 0))

    def describe_instance(self, instance_id: str, region_id: str) -> Instance:
        instance = self.describe_instances([instance_id], region_id).get(instance_id)
        if instance is None:
            raise NotFound(_service(ECS), "InvalidInstanceId.NotFound", f"{instance_id} does not exist")
        return instance

    def instance_status(self, instance_id: str, region_id: str) -> str:
        body = self._call(ECS, "DescribeInstanceStatus", {"InstanceId.1": instance_id}, region_id)
        for item in _listed(body, "InstanceStatuses", "InstanceStatus"):
            if item.get("InstanceId") == instance_id:
                return item.get("Status", "")
        raise NotFound(_service(ECS), "InvalidInstanceId.NotFound", f"{instance_id} does not exist")

    def start_instance(self, instance_id: str, region_id: str) -> None:
        self._call(ECS, "StartInstance", {"InstanceId": instance_id}, region_id)

    # ---- CLB (SLB) ----------------------------------------------------------------------------------

    def load_balancers(self, region_id: str) -> list[str]:
        """Ids of every CLB in the region."""
        ids: list[str] = []
        page = 1
        while True:
            body = self._call(SLB, "DescribeLoadBalancers", {"PageNumber": str(page), "PageSize": "100"}, region_id)
            batch = [lb["LoadBalancerId"] for lb in _listed(body, "LoadBalancers", "LoadBalancer")]
            ids += batch
            if not batch or len(ids) >= int(body.get("TotalCount", 0)):
                return ids
            page += 1

    def default_backends(self, load_balancer_id: str, region_id: str) -> list[Backend]:
        body = self._call(SLB, "DescribeLoadBalancerAttribute", {"LoadBalancerId": load_balancer_id}, region_id)
        return [_clb_backend(b) for b in _listed(body, "BackendServers", "BackendServer")]

    def vserver_groups(self, load_balancer_id: str, region_id: str) -> list[str]:
        body = self._call(SLB, "DescribeVServerGroups", {"LoadBalancerId": load_balancer_id}, region_id)
        return [g["VServerGroupId"] for g in _listed(body, "VServerGroups", "VServerGroup")]

    def vserver_group_backends(self, group_id: str, region_id: str) -> list[Backend]:
        body = self._call(SLB, "DescribeVServerGroupAttribute", {"VServerGroupId": group_id}, region_id)
        return [_clb_backend(b) for b in _listed(body, "BackendServers", "BackendServer")]

    # The mutating calls below take `retry=False` from a caller that retries on its own schedule (lb_drain
    # merges a busy group's retry with the members queued meanwhile instead of sleeping on a thread).

    def set_vserver_group_weights(self, group_id: str, backends: list[Backend], region_id: str, *,
                                  retry: bool = True) -> None:
        """Change the weight of existing members (identified by ServerId + Port) to their `weight`."""
        for chunk in _chunks(backends, CLB_SERVERS_PER_CALL):
            self._call(SLB, "SetVServerGroupAttribute",
                       {"VServerGroupId": group_id, "BackendServers": _clb_servers(chunk, with_port=True)},
                       region_id, retry)

    def remove_vserver_group_backends(self, group_id: str, backends: list[Backend], region_id: str, *,
                                      retry: bool = True) -> None:
        for chunk in _chunks(backends, CLB_SERVERS_PER_CALL):
            self._call(SLB, "RemoveVServerGroupBackendServers",
                       {"VServerGroupId": group_id, "BackendServers": _clb_servers(chunk, with_port=True)},
                       region_id, retry)

    def set_default_backend_weights(self, load_balancer_id: str, backends: list[Backend], region_id: str, *,
                                    retry: bool = True) -> None:
        for chunk in _chunks(backends, CLB_SERVERS_PER_CALL):
            self._call(SLB, "SetBackendServers",
                       {"LoadBalancerId": load_balancer_id, "BackendServers": _clb_servers(chunk, with_port=False)},
                       region_id, retry)

    def remove_default_backends(self, load_balancer_id: str, backends: list[Backend], region_id: str, *,
                                retry: bool = True) -> None:
        for chunk in _chunks(backends, CLB_SERVERS_PER_CALL):
            self._call(SLB, "RemoveBackendServers",
                       {"LoadBalancerId": load_balancer_id, "BackendServers": _clb_servers(chunk, with_port=False)},
                       region_id, retry)

    # ---- ALB / NLB ----------------------------------------------------------------------------------

    def server_group_servers(self, product: str, region_id: str, server_id: str = "") -> list[tuple[str, Backend]]:
        """(ServerGroupId, member) for every member of every ALB or NLB server group of the region,
        or only the memberships of `server_id`."""
        found: list[tuple[str, Backend]] = []
        token = ""
        while True:
            params = {"MaxResults": "100"}
            if server_id:
                params["ServerIds.1"] = server_id
            if token:
                params["NextToken"] = token
            body = self._call(product, "ListServerGroupServers", params, region_id)
            for s in body.get("Servers") or []:
                found.append((s["ServerGroupId"], Backend(
                    server_id=s["ServerId"], port=int(s.get("Port") or 0), weight=int(s.get("Weight") or 0),
                    type=s.get("ServerType") or "Ecs", server_ip=s.get("ServerIp") or "")))
            token = body.get("NextToken") or ""
            if not token:
                return found

    def set_server_group_weights(self, product: str, group_id: str, backends: list[Backend], region_id: str, *,
                                 retry: bool = True) -> None:
        for chunk in _chunks(backends, SERVER_GROUP_UPDATES_PER_CALL):
            params = {"ServerGroupId": group_id, "ClientToken": str(uuid.uuid4())}
            for n, b in enumerate(chunk, 1):
                params.update(_group_server(n, b))
                params[f"Servers.{n}.Weight"] = str(b.weight)
            self._call(product, "UpdateServerGroupServersAttribute", params, region_id, retry)

    def remove_server_group_servers(self, product: str, group_id: str, backends: list[Backend], region_id: str, *,
                                    retry: bool = True) -> None:
        for chunk in _chunks(backends, SERVER_GROUP_REMOVALS_PER_CALL):
            params = {"ServerGroupId": group_id, "ClientToken": str(uuid.uuid4())}
            for n, b in enumerate(chunk, 1):
                params.update(_group_server(n, b))
            self._call(product, "RemoveServersFromServerGroup", params, region_id, retry)

    # ---- the one place requests are made ------------------------------------------------------------

    def _call(self, product: str, action: str, params: dict[str, str], region_id: str, retry: bool = True) -> dict:
        """One action in a region, retried on throttling / busy / 5xx with jittered exponential backoff (unless
        not `retry`: then the first CloudError is raised, `retryable` telling the caller whether to try again)."""
        region = self._region(region_id)
        domain = self._endpoints[product].format(region=region)
        attempt = 1
        while True:
            request = CommonRequest(domain=domain, version=VERSIONS[product], action_name=action, product=product)
            request.set_method("POST")
            request.add_query_param("RegionId", region)
            for key, value in params.items():
                request.add_query_param(key, value)
            try:
                body = self._client.do_action_with_exception(request)
            except (ServerException, ClientException) as e:
                error = self._error(product, e)
            else:
                try:
                    return json.loads(body)
                except ValueError:
                    raise CloudError(_service(product), "InvalidResponse", f"{action} answered with non-JSON",
                                     retryable=False, fatal=False) from None
            if not retry or not error.retryable or attempt == MAX_ATTEMPTS:
                final = not (error.retryable and not retry)     # else the caller tries again
                log.log(logging.WARNING if final else logging.INFO, "%s %s failed: %s", product, action, error)
                raise error
            delay = backoff_seconds(attempt, self._random)
            log.info("%s %s: %s; retry %d/%d in %.2fs", product, action, error.code, attempt, MAX_ATTEMPTS - 1,
                     delay)
            self._sleep(delay)
            attempt += 1

    def _error(self, product: str, e: ServerException | ClientException) -> CloudError:
        """The CloudError for an SDK exception, the secret and the STS token redacted (raw or percent-encoded,
        as the SDK may echo them in a string to sign or a signed URL)."""
        code = e.get_error_code() or "Unknown"
        message = redact(e.get_error_msg() or "", self._secrets)
        if isinstance(e, ServerException):
            status = e.get_http_status()
            retryable = code in RETRYABLE_CODES or (status is not None and status >= 500)
            if code in NOT_FOUND_CODES:
                return NotFound(_service(product), code, message, retryable=retryable,
                                request_id=e.get_request_id() or "", http_status=status)
            return CloudError(_service(product), code, message, retryable=retryable, fatal=code in FATAL_CODES,
                              request_id=e.get_request_id() or "", http_status=status)
        return CloudError(_service(product), code, message, retryable=code in RETRYABLE_CODES, fatal=False)


def backoff_seconds(attempt: int, rng: random.Random) -> float:
    """The jittered exponential wait after failed attempt number `attempt` (1, 2, …)."""
    return BACKOFF.seconds(attempt - 1, rng)


def _service(product: str) -> str:
    """CloudError.service of a product: ecs, slb, alb, nlb."""
    return product.lower()


def _listed(body: dict, outer: str, inner: str) -> list[dict]:
    """ECS/SLB keep the XML-derived nesting: {"Instances": {"Instance": [...]}}."""
    return (body.get(outer) or {}).get(inner) or []


def _instance(raw: dict) -> Instance:
    tags = {t.get("TagKey", ""): t.get("TagValue", "") for t in _listed(raw, "Tags", "Tag")}
    locks = tuple(lock.get("LockReason", "") for lock in _listed(raw, "OperationLocks", "LockReason"))
    vpc = raw.get("VpcAttributes") or {}
    private = _listed(vpc, "PrivateIpAddress", "IpAddress") + _listed(raw, "InnerIpAddress", "IpAddress")
    public = _listed(raw, "PublicIpAddress", "IpAddress") + [
        ip for ip in [(raw.get("EipAddress") or {}).get("IpAddress", "")] if ip]
    return Instance(
        instance_id=raw["InstanceId"], region_id=raw.get("RegionId", ""), status=raw.get("Status", ""), tags=tags,
        lock_reasons=locks,
        spot_strategy=raw.get("SpotStrategy") or "NoSpot", charge_type=raw.get("InstanceChargeType", ""),
        stopped_mode=raw.get("StoppedMode", ""), expired_time=raw.get("ExpiredTime", ""),
        creation_time=raw.get("CreationTime", ""),
        zone_id=raw.get("ZoneId", ""), instance_type=raw.get("InstanceType", ""),
        instance_name=raw.get("InstanceName", ""), private_ips=tuple(private), public_ips=tuple(public))


def _clb_backend(raw: dict) -> Backend:
    return Backend(server_id=raw.get("ServerId", ""), port=int(raw.get("Port") or 0),
                   weight=int(raw.get("Weight") or 0), type=raw.get("Type") or "ecs",
                   server_ip=raw.get("ServerIp") or "")


def _clb_servers(backends: list[Backend], *, with_port: bool) -> str:
    """The BackendServers JSON string, with each member exactly as it was listed."""
    servers = []
    for b in backends:
        server = {"ServerId": b.server_id, "Weight": str(b.weight), "Type": b.type}
        if with_port:
            server["Port"] = str(b.port)
        if b.server_ip:
            server["ServerIp"] = b.server_ip
        servers.append(server)
    return json.dumps(servers, separators=(",", ":"))


def _group_server(n: int, b: Backend) -> dict[str, str]:
    params = {f"Servers.{n}.ServerId": b.server_id, f"Servers.{n}.ServerType": b.type,
              f"Servers.{n}.Port": str(b.port)}
    if b.server_ip:
        params[f"Servers.{n}.ServerIp"] = b.server_ip
    return params


def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]
