"""A seeded fleet simulator: realistic ECS event streams in the three envelopes.

Shapes follow reference/events.md §2–§5 and the fixtures in /work/shared/fixtures. Every instance gets a
short, self-consistent timeline (created → running → maybe stopped, restarted, released, reclaimed as
spot, maintained or failed), planned with its own RNG as a few small tuples. A heap merge yields them in
time order and renders each message only when it is yielded, so memory grows with the planned steps, never
with message bodies, and 10k+ instances stream. The same arguments and seed give byte-identical messages.
"""
from __future__ import annotations

import heapq
import io
import itertools
import random
import uuid
from dataclasses import dataclass, replace
from typing import IO, Iterable, Iterator, NamedTuple

import orjson

from shipper.times import format_cms_time_ms, format_rfc3339_seconds, format_time_ms

ENVELOPES = ("cms", "cms-subscription", "eventbridge")
DEFAULT_ACCOUNT_ID = "1827364554637281"

_SECOND = 1000
_MINUTE = 60 * _SECOND
RECLAIM_NOTICE_MS = 5 * _MINUTE  # a spot instance is released 5 minutes after its interruption notice


@dataclass(frozen=True)
class SimInstance:
    instance_id: str
    name: str
    instance_type: str
    region_id: str
    zone_id: str
    private_ip: str
    public_ip: str  # empty when the instance has none
    spot: bool
    charge_type: str  # "PostPaid" or "PrePaid"
    tags: dict[str, str]


@dataclass(frozen=True)
class SimEvent:
    """One message as the sender delivers it, with the values it must normalize to.

    `time_ms` is when it is delivered: the event time, or later for a redelivered duplicate. `state` is
    the schema state (`Pending` for a `Created` message), `event_status` the system-event status.
    `stop_cause` is why a Stopped or Deleted instance stopped, as the simulator planned it (the truth a
    stored row's inferred stop_cause is checked against). `caller` is the eventId of the ActionTrail event
    (FleetSimulator.trail) of the API call that caused this state change, "" when none did.
    """

    time_ms: int
    instance_id: str
    event_name: str
    state: str
    event_status: str
    envelope: str
    body: bytes
    stop_cause: str = ""
    caller: str = ""


class _Region(NamedTuple):
    region_id: str
    id_prefix: str  # what real instance and system-event ids in the region start with
    zones: tuple[str, ...]
    name_zh: str  # B `regionNameZh`
    vpc_prefix: str  # first two octets of the simulated VPC
    weight: int


_REGIONS = (
    _Region("cn-hangzhou", "bp1", ("cn-hangzhou-h", "cn-hangzhou-i", "cn-hangzhou-j", "cn-hangzhou-k"),
            "华东1（杭州）", "172.16", 40),
    _Region("cn-shanghai", "uf6", ("cn-shanghai-e", "cn-shanghai-f", "cn-shanghai-g", "cn-shanghai-l"),
            "华东2（上海）", "172.19", 20),
    _Region("cn-beijing", "2ze", ("cn-beijing-g", "cn-beijing-h", "cn-beijing-i", "cn-beijing-k"),
            "华北2（北京）", "10.31", 15),
    _Region("cn-shenzhen", "wz9", ("cn-shenzhen-c", "cn-shenzhen-d", "cn-shenzhen-e"),
            "华南1（深圳）", "192.168", 8),
    _Region("cn-zhangjiakou", "8vb", ("cn-zhangjiakou-a", "cn-zhangjiakou-b", "cn-zhangjiakou-c"),
            "华北3（张家口）", "10.52", 5),
    _Region("ap-southeast-1", "t4n", ("ap-southeast-1a", "ap-southeast-1b", "ap-southeast-1c"),
            "新加坡", "172.21", 8),
    _Region("eu-central-1", "gw8", ("eu-central-1a", "eu-central-1b"),
            "德国（法兰克福）", "10.77", 4),
)
_REGION_BY_ID = {region.region_id: region for region in _REGIONS}
_REGION_WEIGHTS = [region.weight for region in _REGIONS]

_INSTANCE_TYPES = (
    "ecs.g7.large", "ecs.g7.xlarge", "ecs.c7.large", "ecs.c7.2xlarge", "ecs.r7.xlarge",
    "ecs.g8i.xlarge", "ecs.u1-c1m2.large", "ecs.t6-c1m2.large", "ecs.hfc7.xlarge",
)
_ROLES = ("web", "api-gw", "batch-worker", "queue-consumer", "db-proxy", "render", "cache", "ci-runner")
_TEAMS = ("platform", "payments", "search", "media", "data")
_ENVIRONMENTS = ("prod", "prod", "staging", "dev")
_PUBLIC_NETS = ("198.51.100", "203.0.113")  # documentation ranges: invented addresses must not be real
_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_AUTO_RESTART_TAG = ("shipper:auto-restart", "true")  # the restart hook's default opt-in tag

# (level, CMS class) per event type; the class is B `eventType` and A-callback `eventType`.
_STATE_CHANGE = "Instance:StateChange"
_INTERRUPTION = "Instance:PreemptibleInstanceInterruption"
_SYSTEM_EVENT_KINDS = {
    "SystemMaintenance.Reboot": ("CRITICAL", "Maintenance"),
    "SystemFailure.Reboot": ("CRITICAL", "Exception"),
    "InstanceFailure.Reboot": ("WARN", "Exception"),
    "SystemFailure.Stop": ("CRITICAL", "Exception"),
    "AccountUnbalanced.Stop": ("CRITICAL", "Billing"),
    "InstanceExpiration.Stop": ("CRITICAL", "Billing"),
}
# Why a planned stop happens: mostly deliberate; some by the platform or by billing (reference/events.md §6).
_STOP_CAUSES = (("user-or-api", 0.8), ("system", 0.1), ("billing", 0.1))
# B `eventNameZh`: the first two are from a real push; the others are composed [inferred].
_NAMES_ZH = {
    _STATE_CHANGE: "实例状态变更",
    _INTERRUPTION: "抢占式实例中断通知",
    "Instance:SystemMaintenance.Reboot": "因系统维护实例重启",
    "Instance:SystemFailure.Reboot": "因系统错误实例重启",
    "Instance:InstanceFailure.Reboot": "因实例错误实例重启",
    "Instance:SystemFailure.Stop": "因系统错误实例停止",
    "Instance:AccountUnbalanced.Stop": "因欠费实例停止",
    "Instance:InstanceExpiration.Stop": "因到期实例停止",
}
_STATUS_ZH = {"Scheduled": "计划中", "Executing": "执行中", "Executed": "执行完成", "Avoided": "已避免"}


class _SystemEvent(NamedTuple):
    """One notification of a system event; times in whole seconds since the epoch (content is RFC 3339 s)."""

    event_type: str
    event_id: str
    status: str
    name_status: str  # the name suffix; `Scheduled` on an Avoided notification (the documented defect)
    publish_s: int
    not_before_s: int | None
    start_s: int | None
    finish_s: int | None


class _Step(NamedTuple):
    """A planned message; `what` is a raw state (StateChange), None (interruption) or a _SystemEvent."""

    time_ms: int
    index: int  # the instance's place in the fleet; with `seq` it makes every sort key unique
    seq: int
    what: str | _SystemEvent | None
    stop_cause: str = ""
    caller: str = ""  # the eventId of the call that caused this state change


class _Call(NamedTuple):
    """A planned API call: made `time_ms`, it causes the state changes at `caused` (indexes into the plan)."""

    time_ms: int
    event_id: str
    name: str
    actor: str      # a key of _ACTORS
    caused: tuple[int, ...]


class _EventParts(NamedTuple):
    event_name: str  # canonical
    cms_name: str  # as A `name` / B `eventName` spell it
    level: str
    cms_class: str
    content: dict
    state: str
    event_status: str


# Who calls (reference/actiontrail.md §1.6, §1.7, §1.10): (eventType, userIdentity, userAgent, source IP).
# Console calls carry no access key; CLI calls carry the caller's. Auto Scaling as a service-linked role and
# the expiry release as a system `AliyunServiceEvent`: both identities are UNCONFIRMED in the reference.
_ACTORS = {
    "console": ("ConsoleOperation", {"type": "ram-user", "userName": "alice", "principalId": "203800412298761234"},
                "ecs.console.aliyun.com", "203.0.113.7"),
    "cli": ("ApiCall", {"type": "ram-user", "userName": "deploy", "principalId": "207511830044912345",
                        "accessKeyId": "LTAI5tSimDeployKey0042"}, "Aliyun-CLI/3.0.200", "198.51.100.23"),
    "autoscaling": ("ApiCall", {"type": "assumed-role", "userName": "AliyunServiceRoleForAutoScaling:ess",
                                "principalId": "300928371625487123:ess", "accessKeyId": "STS.NSimEssToken0000001"},
                    "ess.aliyuncs.com", "ess.aliyuncs.com"),
    "system": ("AliyunServiceEvent", {"type": "system", "userName": "ecs.aliyuncs.com"}, "ecs.aliyuncs.com",
               "ecs.aliyuncs.com"),
}


class FleetSimulator:
    """A fleet and its events over one window.

    `spot_ratio` is a share of the fleet; `maintenance_ratio` and `failure_ratio` are shares of the
    on-demand instances; `duplicate_ratio` is the share of messages delivered a second time, verbatim.
    """

    def __init__(
        self,
        *,
        instances: int = 20,
        seed: int = 1,
        start_ms: int,
        duration_s: float = 3600,
        envelope: str = "mixed",
        spot_ratio: float = 0.25,
        maintenance_ratio: float = 0.1,
        failure_ratio: float = 0.05,
        duplicate_ratio: float = 0.0,
        account_id: str = DEFAULT_ACCOUNT_ID,
    ) -> None:
        if envelope != "mixed" and envelope not in ENVELOPES:
            raise ValueError(f"envelope must be 'mixed' or one of {ENVELOPES}, not {envelope!r}")
        if instances < 0:
            raise ValueError(f"instances must be >= 0, not {instances}")
        if duration_s <= 0:
            raise ValueError(f"duration_s must be > 0, not {duration_s}")
        for name, ratio in (("spot_ratio", spot_ratio), ("maintenance_ratio", maintenance_ratio),
                            ("failure_ratio", failure_ratio), ("duplicate_ratio", duplicate_ratio)):
            if not 0.0 <= ratio <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], not {ratio}")
        self.seed = seed
        self.start_ms = start_ms
        self.end_ms = start_ms + round(duration_s * 1000)
        self.envelope = envelope
        self.maintenance_ratio = maintenance_ratio
        self.failure_ratio = failure_ratio
        self.duplicate_ratio = duplicate_ratio
        self.account_id = account_id
        rng = random.Random(f"{seed}:fleet")
        self.subscription_uuid = _hex32(rng)
        self.fleet: list[SimInstance] = _build_fleet(rng, instances, spot_ratio)

    def events(self) -> Iterator[SimEvent]:
        """All messages in delivery order, within [start_ms, end_ms]; duplicates re-sent 10–120 s later."""
        rng = random.Random(f"{self.seed}:render")
        redeliveries: list[tuple[int, int, SimEvent]] = []  # (delivery time, tie-breaker, message)
        scheduled = itertools.count()
        timelines = [self._timeline(index) for index in range(len(self.fleet))]
        for step in heapq.merge(*timelines):
            while redeliveries and redeliveries[0][0] <= step.time_ms:
                yield heapq.heappop(redeliveries)[2]
            event = self._render(step, rng)
            yield event
            if self.duplicate_ratio and rng.random() < self.duplicate_ratio:
                again_ms = step.time_ms + rng.randint(10 * _SECOND, 120 * _SECOND)
                if again_ms <= self.end_ms:
                    heapq.heappush(redeliveries, (again_ms, next(scheduled), replace(event, time_ms=again_ms)))
        while redeliveries:
            yield heapq.heappop(redeliveries)[2]

    # -- planning ------------------------------------------------------------------------------------

    def _timeline(self, index: int) -> Iterator[_Step]:
        """One instance's steps in time order, cut at the window's end; planned on first use."""
        planned = self._plan(index)
        callers = [""] * len(planned)
        for call in self._calls(index, planned):
            for seq in call.caused:
                callers[seq] = call.event_id
        for seq, ((time_ms, what, *cause), caller) in enumerate(zip(planned, callers)):
            if time_ms > self.end_ms:
                return
            yield _Step(time_ms, index, seq, what, cause[0] if cause else "", caller)

    def trail(self) -> Iterator[dict]:
        """The ActionTrail events (reference/actiontrail.md §1.5) of the API calls behind the planned state
        changes, in time order within the window: creations by the console, the CLI or Auto Scaling,
        deliberate stops, restarts and releases by console or CLI users, the release of an expired
        subscription by the system. Spot reclaims, system and billing stops have no call. The same seed gives
        the same events, and SimEvent.caller names each one's eventId."""
        calls = [(call, index) for index in range(len(self.fleet)) for call in self._calls(index, self._plan(index))]
        for call, index in sorted(calls, key=lambda item: (item[0].time_ms, item[1])):
            if call.time_ms <= self.end_ms:
                yield self._trail_event(self.fleet[index], call)

    def _plan(self, index: int) -> list[tuple]:
        """One instance's (time_ms, what[, stop cause]) in time order, with its own RNG."""
        instance = self.fleet[index]
        rng = random.Random(f"{self.seed}:{instance.instance_id}")
        planned: list[tuple[int, str | _SystemEvent | None]] = []
        t = self.start_ms + rng.randint(0, (self.end_ms - self.start_ms) // 2)
        planned.append((t, "Created" if rng.random() < 0.4 else "Pending"))
        t += rng.randint(5 * _SECOND, 30 * _SECOND)
        planned.append((t, "Starting"))
        t += rng.randint(10 * _SECOND, 40 * _SECOND)
        planned.append((t, "Running"))
        if instance.spot:
            planned += self._plan_reclaim(rng, t)
        else:
            draw = rng.random()
            if draw < self.maintenance_ratio:
                planned += self._plan_maintenance(rng, t, instance.region_id)
            elif draw < self.maintenance_ratio + self.failure_ratio:
                planned += self._plan_failure(rng, t, instance.region_id)
            else:
                planned += self._plan_stop(rng, t, instance)
        planned.sort(key=lambda item: item[0])
        return planned

    def _calls(self, index: int, planned: list[tuple]) -> list[_Call]:
        """The calls behind an instance's planned state changes, each a few seconds before the first change it
        causes: the creation (Pending, Starting, Running), a deliberate stop (Stopping, Stopped), a start
        after a stop (Starting, Running), a release (Deleted: by a user after a deliberate stop, by the system
        after an expiry). Its own RNG: the events' rendering is unchanged by it."""
        instance = self.fleet[index]
        rng = random.Random(f"{self.seed}:{instance.instance_id}:trail")
        states = [(seq, what, cause[0] if cause else "") for seq, (_, what, *cause) in enumerate(planned)
                  if isinstance(what, str)]
        calls = []

        def call(name: str, actor: str, caused: tuple[int, ...]) -> None:
            time_ms = planned[caused[0]][0] - rng.randint(1 * _SECOND, 8 * _SECOND)
            calls.append(_Call(time_ms, str(uuid.UUID(int=rng.getrandbits(128), version=4)), name, actor, caused))

        for position, (seq, what, cause) in enumerate(states):
            following = [s for s, _, _ in states[position + 1:position + 3]]
            if any(seq in c.caused for c in calls):
                continue
            if position == 0:
                actor = "autoscaling" if instance.spot and rng.random() < 0.5 else rng.choice(("console", "cli"))
                call("RunInstances", actor, (seq, *following))
            elif what == "Stopping" and states[position + 1][2] == "user-or-api":
                call("StopInstance", rng.choice(("console", "cli")), (seq, following[0]))
            elif what == "Starting":
                call("StartInstance", rng.choice(("console", "cli")), (seq, *following[:1]))
            elif what == "Deleted" and cause == "user-or-api":
                call("DeleteInstance", rng.choice(("console", "cli")), (seq,))
            elif what == "Deleted" and cause == "expired":
                call("Release", "system", (seq,))
        return calls

    def _trail_event(self, instance: SimInstance, call: _Call) -> dict:
        event_type, identity, user_agent, source_ip = _ACTORS[call.actor]
        rng = random.Random(call.event_id)
        event = {
            "eventId": call.event_id, "eventVersion": 1, "eventType": event_type, "eventRW": "Write",
            "eventCategory": "Management", "eventName": call.name, "serviceName": "Ecs", "apiVersion": "2014-05-26",
            "eventSource": f"ecs.{instance.region_id}.aliyuncs.com", "eventTime": format_rfc3339_seconds(call.time_ms // 1000),
            "acsRegion": instance.region_id, "requestId": str(uuid.UUID(int=rng.getrandbits(128), version=4)).upper(),
            "isGlobal": False, "sourceIpAddress": source_ip, "userAgent": user_agent,
            "userIdentity": ({"accountId": self.account_id} if call.actor != "system" else {}) | identity,
            "requestParameters": {"InstanceId": instance.instance_id, "RegionId": instance.region_id},
            "referencedResources": {"ACS::ECS::Instance": [instance.instance_id]},
        }
        if call.name == "RunInstances":
            event["requestParameters"] = {"RegionId": instance.region_id, "InstanceType": instance.instance_type,
                                          "ZoneId": instance.zone_id, "MinAmount": 1, "MaxAmount": 1}
            event["responseElements"] = {"InstanceIdSets": {"InstanceIdSet": [instance.instance_id]}}
        return event

    def _plan_reclaim(self, rng: random.Random, running_ms: int) -> list:
        notice_ms = _between(rng, running_ms + 30 * _SECOND, self.end_ms)
        return [(notice_ms, None), (notice_ms + RECLAIM_NOTICE_MS, "Deleted", "spot-reclaim")]

    def _plan_stop(self, rng: random.Random, running_ms: int, instance: SimInstance) -> list:
        """Keep running (45 %), or stop and start again (30 %), or stop and release (25 %). A stop is
        deliberate, or announced a few seconds ahead by a system failure or a billing event (_STOP_CAUSES)."""
        fate = rng.random()
        if fate < 0.45:
            return []
        stopping_ms = _between(rng, running_ms + _MINUTE, self.end_ms)
        stopped_ms = stopping_ms + rng.randint(10 * _SECOND, 40 * _SECOND)
        cause = rng.choices([c for c, _ in _STOP_CAUSES], [w for _, w in _STOP_CAUSES])[0]
        planned = []
        if cause != "user-or-api":
            planned += self._plan_stop_event(rng, stopping_ms, stopped_ms, cause, instance)
            cause = "expired" if planned[0][1].event_type == "InstanceExpiration.Stop" else cause
            cause = "billing-lock" if cause == "billing" else cause
        planned += [(stopping_ms, "Stopping"), (stopped_ms, "Stopped", cause)]
        if fate < 0.75:
            starting_ms = stopped_ms + rng.randint(30 * _SECOND, 20 * _MINUTE)
            running_again_ms = starting_ms + rng.randint(10 * _SECOND, 40 * _SECOND)
            planned += [(starting_ms, "Starting"), (running_again_ms, "Running")]
        else:
            planned.append((stopped_ms + rng.randint(30 * _SECOND, 10 * _MINUTE), "Deleted", cause))
        return planned

    def _plan_stop_event(self, rng: random.Random, stopping_ms: int, stopped_ms: int, cause: str,
                         instance: SimInstance) -> list:
        """The system event that stops the instance: Executing just before Stopping, Executed after Stopped.
        Billing stops a subscription at its expiry and a pay-as-you-go instance for an unpaid balance."""
        if cause == "system":
            event_type = "SystemFailure.Stop"
        else:
            event_type = "InstanceExpiration.Stop" if instance.charge_type == "PrePaid" else "AccountUnbalanced.Stop"
        start_s = (stopping_ms - rng.randint(2 * _SECOND, 8 * _SECOND)) // 1000
        finish_s = stopped_ms // 1000 + 1
        executing = _SystemEvent(event_type, _system_event_id(rng, instance.region_id), "Executing", "Executing",
                                 start_s, None, start_s, None)
        return [
            (start_s * 1000 + rng.randint(0, 999), executing),
            (finish_s * 1000 + rng.randint(0, 999),
             executing._replace(status="Executed", name_status="Executed", finish_s=finish_s)),
        ]

    def _plan_maintenance(self, rng: random.Random, running_ms: int, region_id: str) -> list:
        """Scheduled → Executing → Executed (75 %), or Scheduled → Avoided, all with one eventId.

        The real notice comes 24–48 h ahead; when that would fall outside the window, the maintenance is
        moved inside it so the whole sequence can be seen.
        """
        event_id = _system_event_id(rng, region_id)
        first_third_ms = max(30 * _SECOND, (self.end_ms - running_ms) // 3)
        publish_ms = _between(rng, running_ms + 30 * _SECOND, running_ms + first_third_ms)
        publish_s = publish_ms // 1000
        next_hour_s = publish_s - publish_s % 3600 + 3600  # real windows start on the hour
        not_before_s = next_hour_s + rng.randint(24, 47) * 3600
        if not_before_s * 1000 > self.end_ms:
            room_s = max(120, (self.end_ms - publish_ms) // 1000)
            not_before_s = publish_s + rng.randint(room_s * 3 // 10, room_s * 7 // 10)
        event = _SystemEvent("SystemMaintenance.Reboot", event_id, "Scheduled", "Scheduled",
                             publish_s, not_before_s, None, None)
        planned = [(publish_s * 1000 + rng.randint(100, 900), event)]
        if rng.random() < 0.25:
            avoided_s = rng.randint(publish_s + 10, max(publish_s + 10, not_before_s - 1))
            planned.append((avoided_s * 1000 + rng.randint(100, 900),
                            event._replace(status="Avoided", start_s=avoided_s, finish_s=avoided_s)))
        else:
            start_s = not_before_s + rng.randint(1, 10)
            finish_s = start_s + rng.randint(60, 240)
            planned += [
                (start_s * 1000 + rng.randint(200, 999),
                 event._replace(status="Executing", name_status="Executing", start_s=start_s)),
                (finish_s * 1000 + rng.randint(1000, 3000),
                 event._replace(status="Executed", name_status="Executed", start_s=start_s, finish_s=finish_s)),
            ]
        return planned

    def _plan_failure(self, rng: random.Random, running_ms: int, region_id: str) -> list:
        """An unplanned reboot by the platform: Executing then Executed, one eventId."""
        event_type = rng.choice(("SystemFailure.Reboot", "InstanceFailure.Reboot"))
        start_s = _between(rng, running_ms + _MINUTE, self.end_ms) // 1000
        finish_s = start_s + rng.randint(40, 180)
        executing = _SystemEvent(event_type, _system_event_id(rng, region_id), "Executing", "Executing",
                                 start_s, None, start_s, None)
        return [
            (start_s * 1000 + rng.randint(1000, 1999), executing),
            (finish_s * 1000 + rng.randint(1000, 1999),
             executing._replace(status="Executed", name_status="Executed", finish_s=finish_s)),
        ]

    # -- rendering -----------------------------------------------------------------------------------

    def _render(self, step: _Step, rng: random.Random) -> SimEvent:
        instance = self.fleet[step.index]
        envelope = rng.choice(ENVELOPES) if self.envelope == "mixed" else self.envelope
        event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        what = step.what
        if isinstance(what, _SystemEvent):
            level, cms_class = _SYSTEM_EVENT_KINDS[what.event_type]
            event = _EventParts(f"Instance:{what.event_type}", f"Instance:{what.event_type}:{what.name_status}",
                                level, cms_class, _system_event_content(instance, what), "", what.status)
        elif what is None:
            content = {"instanceId": instance.instance_id, "instanceName": instance.name, "action": "delete"}
            event = _EventParts(_INTERRUPTION, _INTERRUPTION, "WARN", "StatusNotification", content, "", "")
        else:
            event = _EventParts(_STATE_CHANGE, _STATE_CHANGE, "INFO", "StatusNotification",
                                _state_change_content(instance, what), "Pending" if what == "Created" else what, "")
        if envelope == "cms":
            message = self._cms_message(instance, event, step.time_ms, event_id, rng)
        elif envelope == "cms-subscription":
            message = self._subscription_message(instance, event, step.time_ms, event_id, rng)
        else:
            message = self._eventbridge_message(instance, event, step.time_ms, event_id, rng)
        return SimEvent(step.time_ms, instance.instance_id, event.event_name, event.state, event.event_status,
                        envelope, orjson.dumps(message), step.stop_cause, step.caller)

    def _cms_message(self, instance: SimInstance, event: _EventParts, time_ms: int, event_id: str,
                     rng: random.Random) -> dict:
        """Envelope A in one of three real field sets: MNS (upper-case id), newer MNS, URL callback."""
        arn = _arn(instance, self.account_id)
        style = rng.random()
        if style < 0.2:  # URL callback, as fixture a_statechange_deleted.json
            return {
                "resourceId": arn, "product": "ECS", "ver": "1.0", "instanceName": instance.name,
                "level": event.level, "groupId": "", "eventType": event.cms_class, "userId": self.account_id,
                "content": event.content, "regionId": instance.region_id, "eventTime": format_cms_time_ms(time_ms),
                "name": event.cms_name, "ruleName": "ecs-events-to-shipper", "id": event_id, "status": "Normal",
            }
        message = {
            "ver": "1.0", "id": event_id.upper(), "product": "ECS", "resourceId": arn, "level": event.level,
            "name": event.cms_name, "userId": self.account_id, "eventTime": format_cms_time_ms(time_ms),
            "regionId": instance.region_id, "content": event.content,
        }
        if style < 0.5:  # newer MNS, as fixture a_preemptible_interruption.json
            message.update(instanceName=instance.name, groupId="0", status="Normal")
        return message

    def _subscription_message(self, instance: SimInstance, event: _EventParts, time_ms: int, event_id: str,
                              rng: random.Random) -> dict:
        """Envelope B, POST-JSON style, as fixture b_subscription_json_statechange_stopped.json."""
        account = self.account_id
        arn = _arn(instance, account)
        region = _REGION_BY_ID[instance.region_id]
        whole_second_ms = time_ms - time_ms % 1000
        name_zh = _NAMES_ZH[event.event_name] + _STATUS_ZH.get(event.cms_name.rpartition(":")[2], "")
        return {
            "userInfo": {
                "aliyunId": "ops@example.com", "userIdSec": f"{account[:6]}***{account[-3:]}",
                "aliyunIdSec": "op***om", "nickName": "ops", "nickNameSec": "o***s", "userName": "ops",
                "userId": account, "userNameSec": "o***s",
            },
            "subscription": {
                "subscriptionUuid": self.subscription_uuid,
                "conditions": [{"field": "source", "op": "EQ", "value": "SYS_EVENT"},
                               {"field": "product", "op": "IN", "value": "ECS"}],
                "relation": "AND",
            },
            "batchId": _hex32(rng),
            "alert": {
                "alertStatus": "TRIGGERED", "groupId": "", "source": "SYS_EVENT",
                "eventContentMap": event.content, "dedupId": event_id, "eventName": event.cms_name, "arn": arn,
                "timestamp": whole_second_ms, "traceId": event_id, "severity": event.level, "product": "ECS",
                "eventRawContent": orjson.dumps(event.content).decode(), "eventType": event.cms_class,
                "userId": account,
                "meta": {"sysEventMeta": {
                    "regionNameEn": instance.region_id, "resourceId": arn, "product": "ECS",
                    "eventNameEn": event.cms_name, "instanceName": instance.name, "level": event.level,
                    "resource": "", "regionNameZh": region.name_zh, "groupId": "", "serviceTypeEn": "ECS",
                    "eventType": event.cms_class, "serviceTypeZh": "云服务器ECS",
                    "regionId": instance.region_id, "eventTime": format_cms_time_ms(time_ms), "name": event.cms_name,
                    "id": event_id, "status": "Normal", "eventNameZh": name_zh,
                }},
            },
            "severity": event.level,
            "strategyName": "ecs-to-shipper",
            "userId": account,
            "time": whole_second_ms,
        }

    def _eventbridge_message(self, instance: SimInstance, event: _EventParts, time_ms: int, event_id: str,
                             rng: random.Random) -> dict:
        """Envelope C, as fixture c_preemptible_interruption.json; `type` never carries the status."""
        return {
            "id": event_id,
            "source": "acs.ecs",
            "specversion": "1.0",
            "type": "ecs:" + event.event_name,
            "subject": f"acs.ecs:{instance.region_id}:{self.account_id}:{instance.instance_id}",
            "time": format_time_ms(time_ms),
            "datacontenttype": "application/json;charset=utf-8",
            "aliyunaccountid": self.account_id,
            "aliyunpublishtime": format_time_ms(time_ms + rng.randint(50, 900)),
            "aliyuneventbusname": "default",
            "aliyunregionid": instance.region_id,
            "aliyunpublishaddr": f"10.{rng.randint(1, 254)}.XX.XX",
            "data": event.content,
        }


def write_ndjson(events: Iterable[SimEvent], fp: IO) -> int:
    """Write each message as one compact JSON line to a binary or text file; return how many."""
    count = 0
    text = isinstance(fp, io.TextIOBase)
    for event in events:
        fp.write(event.body.decode() + "\n" if text else event.body + b"\n")
        count += 1
    return count


def _build_fleet(rng: random.Random, count: int, spot_ratio: float) -> list[SimInstance]:
    fleet = []
    used_ids: set[str] = set()
    for number in range(1, count + 1):
        region = rng.choices(_REGIONS, weights=_REGION_WEIGHTS)[0]
        instance_id = "i-" + region.id_prefix + _alnum(rng, 17)
        while instance_id in used_ids:
            instance_id = "i-" + region.id_prefix + _alnum(rng, 17)
        used_ids.add(instance_id)
        spot = rng.random() < spot_ratio
        role = rng.choice(_ROLES)
        tags = {"env": rng.choice(_ENVIRONMENTS), "team": rng.choice(_TEAMS)}
        if not spot and rng.random() < 0.3:
            tags[_AUTO_RESTART_TAG[0]] = _AUTO_RESTART_TAG[1]
        fleet.append(SimInstance(
            instance_id=instance_id,
            name=f"spot-{role}-{number:02d}" if spot else f"{role}-{number:02d}",
            instance_type=rng.choice(_INSTANCE_TYPES),
            region_id=region.region_id,
            zone_id=rng.choice(region.zones),
            private_ip=f"{region.vpc_prefix}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            public_ip=f"{rng.choice(_PUBLIC_NETS)}.{rng.randint(1, 254)}" if rng.random() < 0.4 else "",
            spot=spot,
            charge_type="PostPaid" if spot or rng.random() < 0.7 else "PrePaid",
            tags=tags,
        ))
    return fleet


def _state_change_content(instance: SimInstance, state_raw: str) -> dict:
    """The newer StateChange content: name, type and addresses (no public key without a public IP)."""
    content = {
        "resourceId": instance.instance_id,
        "resourceType": "ALIYUN::ECS::Instance",
        "state": state_raw,
        "instanceName": instance.name,
        "instanceType": instance.instance_type,
        "privateIpAddress": instance.private_ip,
    }
    if instance.public_ip:
        content["publicIpAddress"] = instance.public_ip
    return content


def _system_event_content(instance: SimInstance, event: _SystemEvent) -> dict:
    content = {"eventId": event.event_id, "publishTime": format_rfc3339_seconds(event.publish_s)}
    if event.not_before_s is not None:
        content["notBefore"] = format_rfc3339_seconds(event.not_before_s)
    content.update(instanceId=instance.instance_id, eventType=event.event_type, eventStatus=event.status)
    if event.start_s is not None:
        content["executeStartTime"] = format_rfc3339_seconds(event.start_s)
    if event.finish_s is not None:
        content["executeFinishTime"] = format_rfc3339_seconds(event.finish_s)
    return content


def _arn(instance: SimInstance, account_id: str) -> str:
    return f"acs:ecs:{instance.region_id}:{account_id}:instance/{instance.instance_id}"


def _between(rng: random.Random, low_ms: int, high_ms: int) -> int:
    """Uniform in [low, high]; `low` when the window has no room left (the step then falls outside it)."""
    return rng.randint(low_ms, high_ms) if high_ms > low_ms else low_ms


def _alnum(rng: random.Random, length: int) -> str:
    return "".join(rng.choices(_ID_ALPHABET, k=length))


def _hex32(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


def _system_event_id(rng: random.Random, region_id: str) -> str:
    return "e-" + _REGION_BY_ID[region_id].id_prefix + _alnum(rng, 17)

