"""lb_drain: take an interrupted spot instance out of every load-balancer group before it is reclaimed.

A spot instance gets one notice about 5 minutes before release (reference/events.md §5.2). Within that
budget: check it really is a spot instance under interruption, find every membership (CLB vserver
groups, CLB default backend lists, ALB and NLB server groups), optionally set weight 0 and let
connections drain, then remove each membership exactly as it is listed (port, weight, type) — not the
article's one hard-coded group on port 80.

Reclaims come in waves of hundreds of instances, so nothing is done per instance that can be shared: the
DescribeInstances re-read and the membership lookup of every instance asking at the same time are one
call (Coalescer), and the removals of every instance queued on a group are one call, groups in parallel
(GroupCalls). The hook decides on the engine's worker thread and hands the removals over: their outcome
record is emitted when the last of them is settled, so a wave is not limited to the engine's workers.
"""
from __future__ import annotations

import dataclasses
import heapq
import itertools
import logging
import random
import threading
import time
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Callable, Iterable

from shipper import events, registry
from shipper.hooks import (
    ACTED, DRY_RUN, FAILED, INLINE, PENDING, SKIPPED, SUCCEEDED, Act, Emit, action_record, detail_json, guards,
    not_negative, validate_opt_in,
)
from shipper.cloud import CloudError, NotFound
from shipper.cloud.openapi import (
    ALB, CLB_SERVERS_PER_CALL, ECS_IDS_PER_CALL, MAX_ATTEMPTS, NLB, SERVER_GROUP_REMOVALS_PER_CALL,
    SERVER_GROUP_UPDATES_PER_CALL, Backend, OpenApi, backoff_seconds,
)
from shipper.instances.model import Instance

log = logging.getLogger(__name__)

CLB_VSERVER, CLB_DEFAULT = "clb-vserver", "clb-default"
GATHER_SECONDS = 0.1    # a group's first change waits this long for the rest of its wave
CALL_THREADS = 16


@dataclasses.dataclass(frozen=True)
class LbDrainHookSettings:
    """Take a spot instance out of every load-balancer group before it is reclaimed."""
    enabled: bool = False
    dry_run: bool = True
    opt_in_tag: str = ""                            # empty: every interrupted instance
    instances: tuple = ()
    drain_seconds: float = 30.0                     # weight 0, then wait this long, bounded by the deadline
    safety_margin_seconds: float = 30.0             # removal is called at least this long before reclaim
    discovery_cache_seconds: float = 300.0          # how long discovered memberships are reused

    def validate(self) -> None:
        validate_opt_in(self)
        not_negative(self, "drain_seconds", "safety_margin_seconds")


@dataclasses.dataclass(frozen=True)
class Membership:
    """One place an instance receives traffic from: `kind` is clb-vserver, clb-default, alb or nlb;
    `group_id` a vserver group, a CLB (its default list) or an ALB/NLB server group."""
    kind: str
    group_id: str
    backend: Backend

    def as_detail(self) -> dict:
        return {"kind": self.kind, "group": self.group_id, "port": self.backend.port,
                "weight": self.backend.weight, "type": self.backend.type}


class Coalescer:
    """Answers lookups in shared calls: whoever asks while a call is in flight is served by the next one.

    The first caller is served at once (no gathering delay); a wave of callers then costs one call per
    `limit` keys instead of one per key. `fetch(keys)` returns {key: answer}; a missing key answers None."""

    def __init__(self, fetch: Callable[[list], dict], limit: int | None = None):
        self._fetch, self._limit = fetch, limit
        self._lock = threading.Lock()
        self._pending: dict = {}    # key -> Future
        self._fetching = False

    def get(self, key):
        """The answer for `key`; raises what the shared fetch raised."""
        with self._lock:
            future = self._pending.setdefault(key, Future())
        self._serve()
        return future.result()

    def _serve(self) -> None:
        """Fetch batches until nothing is pending, unless another caller is already doing it."""
        while True:
            with self._lock:
                if self._fetching or not self._pending:
                    return
                self._fetching = True
                batch = {k: self._pending.pop(k) for k in list(self._pending)[:self._limit]}
            try:
                answers = self._fetch(list(batch))
            except Exception as e:  # every caller of the batch gets the failure, as its own call would
                for future in batch.values():
                    future.set_exception(e)
            else:
                for key, future in batch.items():
                    future.set_result(answers.get(key))
            finally:
                with self._lock:
                    self._fetching = False


class MembershipIndex:
    """instance id -> memberships over every LB of one region, rebuilt when older than `max_age`.

    Building it lists every CLB and group (expensive), so it is shared; an instance missing from an
    index built before the interruption was issued triggers one rebuild (it may have joined since).
    The load balancers are described in parallel on `pool`."""

    def __init__(self, api: OpenApi, region_id: str, max_age: float, clock: Callable[[], float],
                 pool: ThreadPoolExecutor):
        self._api = api
        self._region_id = region_id
        self._max_age = max_age
        self._clock = clock
        self._pool = pool
        self._index: dict[str, list[Membership]] = {}
        self._built_at: float | None = None
        self._errors: list[str] = []
        self._lock = threading.Lock()

    def lookup_many(self, keys: Iterable[tuple[str, float]]) -> dict[tuple, tuple[list[Membership], list[str]]]:
        """(instance id, event time) -> (memberships, error codes of the discovery calls that failed);
        at most one rebuild for all of them."""
        keys = list(keys)
        with self._lock:
            stale = self._built_at is None or self._clock() - self._built_at > self._max_age
            if stale or any(i not in self._index and self._built_at < t for i, t in keys):
                self._rebuild()
            return {(i, t): (list(self._index.get(i, [])), list(self._errors)) for i, t in keys}

    def forget(self, instance_id: str) -> None:
        with self._lock:
            self._index.pop(instance_id, None)

    def _rebuild(self) -> None:
        index: dict[str, list[Membership]] = defaultdict(list)
        errors: list[str] = []
        built_at = self._clock()
        discoveries = [partial(self._server_groups, ALB), partial(self._server_groups, NLB)]
        try:
            discoveries += [partial(self._clb, lb_id) for lb_id in self._api.load_balancers(self._region_id)]
        except CloudError as e:
            errors.append(e.code)
        for future in [self._pool.submit(discover) for discover in discoveries]:
            try:
                for membership in future.result():
                    index[membership.backend.server_id].append(membership)
            except CloudError as e:
                errors.append(e.code)
        self._index, self._errors, self._built_at = dict(index), list(dict.fromkeys(errors)), built_at

    def _clb(self, lb_id: str) -> list[Membership]:
        api, region = self._api, self._region_id
        found = [Membership(CLB_DEFAULT, lb_id, b) for b in api.default_backends(lb_id, region)]
        for group_id in api.vserver_groups(lb_id, region):
            found += [Membership(CLB_VSERVER, group_id, b) for b in api.vserver_group_backends(group_id, region)]
        return found

    def _server_groups(self, product: str) -> list[Membership]:
        return [Membership(product.lower(), group_id, b)
                for group_id, b in self._api.server_group_servers(product, self._region_id)]


@dataclasses.dataclass
class _Member:
    backend: Backend
    settle: Callable[[str], None]   # called once: "" when the member is out (or was already), else the error code
    alone: bool = False             # goes in a call of its own: a shared call was refused as not found


class _Queue:
    """The members waiting on one group; `busy` while a call is scheduled or in flight. `locking`: a
    change applies asynchronously and locks the group meanwhile (ALB/NLB), so the next call waits."""

    def __init__(self, call: Callable[[list[Backend]], None], limit: int, locking: bool):
        self.call, self.limit, self.locking = call, limit, locking
        self.pending: list[_Member] = []
        self.busy = False
        self.failures = 0           # consecutive retryable failures

    def take(self) -> list[_Member]:
        """The next call's members: a solitary member alone, else up to `limit` (solitary ones come first)."""
        size = 1 if self.pending[0].alone else self.limit
        batch, self.pending = self.pending[:size], self.pending[size:]
        return batch


class GroupCalls:
    """Changes to one group go out together, one call in flight per group, groups in parallel.

    Spot reclaims come in waves, and ALB/NLB lock a server group while a change applies (another change
    gets IncorrectStatus.ServerGroup), so a call per instance would queue up behind retries. A group's
    first change waits GATHER_SECONDS for the rest of its wave, then one call carries every queued member
    up to the API's per-call limit; members queued while it is in flight go in the next call. A retryable
    failure puts the batch back at the head of the queue and the group is tried again after a backoff,
    together with whatever queued meanwhile. The waits are the dispatcher thread's timeouts: no calling
    thread ever sleeps in them."""

    def __init__(self, pool: ThreadPoolExecutor, gather: float = GATHER_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self._pool, self._gather, self._clock = pool, gather, clock
        self._random = random.Random()
        self._cond = threading.Condition()
        self._queues: dict[tuple, _Queue] = {}
        self._due: list[tuple[float, int, tuple]] = []   # heap of (when, seq, queue key)
        self._seq = itertools.count()
        self._dispatcher: threading.Thread | None = None

    def submit(self, key: tuple, call: Callable[[list[Backend]], None], limit: int, locking: bool,
               backends: list[Backend], settle: Callable[[str], None]) -> None:
        """Queue `backends` for `call` on the group `key`; settle(code) is called once per backend."""
        with self._cond:
            queue = self._queues.setdefault(key, _Queue(call, limit, locking))
            queue.pending += [_Member(b, settle) for b in backends]
            if not queue.busy:
                queue.busy = True
                self._schedule(key, self._gather)
            if self._dispatcher is None:
                self._dispatcher = threading.Thread(target=self._dispatch, name="shipper-lb-drain-calls",
                                                    daemon=True)
                self._dispatcher.start()

    def _schedule(self, key: tuple, delay: float) -> None:
        heapq.heappush(self._due, (self._clock() + delay, next(self._seq), key))
        self._cond.notify()

    def _dispatch(self) -> None:
        while True:
            with self._cond:
                while not self._due or self._due[0][0] > self._clock():
                    self._cond.wait(self._due[0][0] - self._clock() if self._due else None)
                _, _, key = heapq.heappop(self._due)
                queue = self._queues[key]
                batch = queue.take()
            self._pool.submit(self._send, key, queue, batch)

    def _send(self, key: tuple, queue: _Queue, batch: list[_Member]) -> None:
        try:
            queue.call(list(dict.fromkeys(m.backend for m in batch)))
        except NotFound:
            if len(batch) == 1:
                return self._settle(key, queue, batch, "")     # already gone: the goal is reached
            for member in batch:  # ALB/NLB refuse a whole call over one member already gone: find which
                member.alone = True
            return self._requeue(key, queue, batch, 0.0)
        except CloudError as e:
            queue.failures += 1
            if e.retryable and queue.failures < MAX_ATTEMPTS:
                return self._requeue(key, queue, batch, backoff_seconds(queue.failures, self._random))
            log.warning("lb_drain: %s on %s failed for %d members: %s", key[0], key[2], len(batch), e)
            return self._settle(key, queue, batch, e.code)
        self._settle(key, queue, batch, "")

    def _requeue(self, key: tuple, queue: _Queue, batch: list[_Member], delay: float) -> None:
        with self._cond:
            queue.pending = batch + queue.pending
            self._schedule(key, delay)

    def _settle(self, key: tuple, queue: _Queue, batch: list[_Member], code: str) -> None:
        with self._cond:
            queue.failures = 0
            if queue.pending:  # right after a change a locking group would only answer "busy"
                self._schedule(key, backoff_seconds(1, self._random) if queue.locking and not code else 0.0)
            else:
                queue.busy = False
        for member in batch:
            try:
                member.settle(code)
            except Exception:  # a failed record must not stop the other members' outcomes
                log.exception("lb_drain: settling a member of %s failed", key[2])


class _Tally:
    """Counts the settled members of one instance's change; after the last, done(members out, error codes)."""

    def __init__(self, total: int, done: Callable[[int, list[str]], None]):
        self._left, self._done = total, done
        self._out, self._codes = 0, []
        self._lock = threading.Lock()

    def settle(self, code: str) -> None:
        with self._lock:
            self._left -= 1
            if code:
                self._codes.append(code)
            else:
                self._out += 1
            last = self._left == 0
        if last:
            self._done(self._out, self._codes)


class LbDrainHook:
    name = "lb_drain"

    def __init__(self, settings: LbDrainHookSettings, api: OpenApi, *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep,
                 recent_events: Callable[[str], Iterable[dict]] | None = None):
        """`recent_events(instance_id)`: the committed events known for that instance (the engine's
        history), where an alert-triggered drain must find the instance's interruption notice. That history
        lives in process memory only: after a restart an alert finds no notice and is skipped
        `not-interrupted` (the safe side) until a notice is committed again."""
        self._settings = settings
        self._api = api
        self._clock = clock
        self._sleep = sleep
        self._recent_events = recent_events or (lambda instance_id: ())
        self._pool = ThreadPoolExecutor(max_workers=CALL_THREADS, thread_name_prefix="shipper-lb-drain")
        self._instances = Coalescer(self._describe, ECS_IDS_PER_CALL)   # keys: (region, instance id)
        self._regions: dict[str, tuple[MembershipIndex, Coalescer]] = {}
        self._regions_lock = threading.Lock()
        self._group_calls = GroupCalls(self._pool)

    def wants(self, event: dict) -> bool:
        return (event.get("event_name") == guards.INTERRUPTION
                and events.is_real_instance_id(event.get("instance_id", "")))

    def delay_seconds(self, event: dict) -> float:
        return 0.0

    @property
    def dry_run(self) -> bool:
        return self._settings.dry_run

    def decide(self, event: dict, trigger: str) -> dict | Act:
        """Decide on this thread; the Act's removals are handed over and their outcome record is emitted
        from the thread that settles the last of them."""
        instance_id, region = event.get("instance_id", ""), event.get("region_id", "")
        record = partial(action_record, hook=self.name, trigger=trigger, event=event)
        skip, deadline = self._admit(event, trigger)
        if skip:
            return record(decision=SKIPPED, **skip)
        index, memberships_of = self._regional(region)
        memberships, errors = memberships_of.get((instance_id, _event_seconds(event)))
        detail = {"memberships": [m.as_detail() for m in memberships]}
        record = partial(record, detail=detail_json(detail))
        if not memberships:
            return record(decision=SKIPPED, reason="no-memberships", error_code=",".join(errors),
                          seconds_before_reclaim=deadline - self._clock())
        return Act(dry_run=record(decision=DRY_RUN, seconds_before_reclaim=deadline - self._clock()),
                   act=partial(self._take_out, instance_id, region, index, memberships, errors, detail, record,
                               deadline))

    def _regional(self, region: str) -> tuple[MembershipIndex, Coalescer]:
        """The region's membership index and the coalescer of its lookups (one rebuild serves a wave)."""
        with self._regions_lock:
            if region not in self._regions:
                index = MembershipIndex(self._api, region, self._settings.discovery_cache_seconds, self._clock,
                                        self._pool)
                self._regions[region] = (index, Coalescer(index.lookup_many))
            return self._regions[region]

    def _describe(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Instance]:
        """The shared DescribeInstances re-read of (region, instance id) keys: one call per region."""
        by_region: dict[str, list[str]] = defaultdict(list)
        for region, instance_id in keys:
            by_region[region].append(instance_id)
        return {(region, i): instance for region, ids in by_region.items()
                for i, instance in self._api.describe_instances(ids, region).items()}

    def _take_out(self, instance_id: str, region: str, index: MembershipIndex, memberships: list,
                  errors: list[str], detail: dict, record: Callable[..., dict], deadline: float, emit: Emit) -> None:
        """Weight 0 and wait (drain_seconds), then remove from every group; decision first, outcome last."""
        decision = record(decision=ACTED, outcome=PENDING, seconds_before_reclaim=deadline - self._clock())
        emit(decision)
        groups = _by_group(memberships)
        if self._settings.drain_seconds > 0 and self._drain_wait(deadline) > 0:
            errors += self._drain(groups, region, deadline)

        def finished(removed: int, removal_errors: list[str]) -> None:
            if removed == len(memberships):
                index.forget(instance_id)
            emit(record(decision=ACTED, outcome=SUCCEEDED if removed == len(memberships) else FAILED,
                        error_code=",".join(dict.fromkeys(errors + removal_errors)), finished=True,
                        detail=detail_json(detail | {"removed": removed, "total": len(memberships)}),
                        decided_time=decision["decided_time"], seconds_before_reclaim=deadline - self._clock()))

        self._change(groups, region, "remove", _Tally(len(memberships), finished).settle)

    def _admit(self, event: dict, trigger: str) -> tuple[dict, float]:
        """(skip record fields, {} to go on; the reclaim deadline). The instance is re-read (shared
        DescribeInstances) only once the cheap checks pass."""
        instance_id = event.get("instance_id", "")
        if not events.is_real_instance_id(instance_id):
            return {"reason": "masked-id"}, 0.0
        history = () if trigger == INLINE else self._recent_events(instance_id)
        notice = guards.interruption_notice(event, trigger == INLINE, history, self._clock())
        deadline = guards.reclaim_time(notice) if notice else 0.0
        if notice and deadline <= self._clock():
            return {"reason": "deadline-passed", "seconds_before_reclaim": deadline - self._clock()}, deadline
        try:
            instance = self._instances.get((event.get("region_id", ""), instance_id))
        except CloudError as e:
            return {"reason": "describe-failed", "error_code": e.code}, deadline
        if instance is None:
            return {"reason": "not-found"}, deadline
        refusal = guards.drain_refusal(instance, notice)
        if refusal:
            return {"reason": refusal}, deadline
        s = self._settings
        if not guards.opted_in(instance_id, instance.tags, s.opt_in_tag, s.instances):
            return {"reason": "not-opted-in"}, deadline
        return {}, deadline

    def _drain(self, groups: dict[tuple[str, str], list[Backend]], region: str, deadline: float) -> list[str]:
        """Weight 0 everywhere, then wait while the deadline allows; the error codes of failed calls."""
        settled = threading.Event()
        codes: list[str] = []

        def done(_out: int, errors: list[str]) -> None:
            codes.extend(errors)
            settled.set()

        drained = {group: [dataclasses.replace(b, weight=0) for b in backends] for group, backends in groups.items()}
        self._change(drained, region, "weight", _Tally(sum(map(len, groups.values())), done).settle)
        settled.wait()
        wait = self._drain_wait(deadline)
        if wait > 0:
            self._sleep(wait)
        return codes

    def _change(self, groups: dict[tuple[str, str], list[Backend]], region: str, op: str,
                settle: Callable[[str], None]) -> None:
        for (kind, group_id), backends in groups.items():
            call, limit = self._call(op, kind, group_id, region)
            locking = kind not in (CLB_VSERVER, CLB_DEFAULT)
            self._group_calls.submit((op, kind, group_id, region), call, limit, locking, backends, settle)

    def _call(self, op: str, kind: str, group_id: str, region: str) -> tuple[Callable[[list[Backend]], None], int]:
        """The API call that applies `op` to a group of `kind` in `region`, and its per-call member limit."""
        api = self._api
        if kind == CLB_VSERVER:
            call = api.remove_vserver_group_backends if op == "remove" else api.set_vserver_group_weights
            limit = CLB_SERVERS_PER_CALL
        elif kind == CLB_DEFAULT:
            call = api.remove_default_backends if op == "remove" else api.set_default_backend_weights
            limit = CLB_SERVERS_PER_CALL
        elif op == "remove":
            call, limit = partial(api.remove_server_group_servers, _product(kind)), SERVER_GROUP_REMOVALS_PER_CALL
        else:
            call, limit = partial(api.set_server_group_weights, _product(kind)), SERVER_GROUP_UPDATES_PER_CALL
        return (lambda backends: call(group_id, backends, region, retry=False)), limit

    def _drain_wait(self, deadline: float) -> float:
        return min(self._settings.drain_seconds, deadline - self._settings.safety_margin_seconds - self._clock())


def _event_seconds(event: dict) -> float:
    try:
        return int(event.get("event_time_ms") or 0) / 1000
    except ValueError:
        return 0.0


def _by_group(memberships: list[Membership]) -> dict[tuple[str, str], list[Backend]]:
    groups: dict[tuple[str, str], list[Backend]] = defaultdict(list)
    for m in memberships:
        groups[(m.kind, m.group_id)].append(m.backend)
    return dict(groups)


def _product(kind: str) -> str:
    return {"alb": ALB, "nlb": NLB}[kind]


registry.register(registry.Component(
    registry.HOOK, "lb_drain", LbDrainHookSettings,
    build=lambda settings, runtime: LbDrainHook(settings, runtime.openapi(), recent_events=runtime.recent_events),
    permissions=(
        "ecs:DescribeInstances",
        "slb:DescribeLoadBalancers", "slb:DescribeLoadBalancerAttribute", "slb:DescribeVServerGroups",
        "slb:DescribeVServerGroupAttribute", "slb:SetBackendServers", "slb:SetVServerGroupAttribute",
        "slb:RemoveBackendServers", "slb:RemoveVServerGroupBackendServers",
        "alb:ListServerGroupServers", "alb:UpdateServerGroupServersAttribute", "alb:RemoveServersFromServerGroup",
        "nlb:ListServerGroupServers", "nlb:UpdateServerGroupServersAttribute", "nlb:RemoveServersFromServerGroup",
    ),
))
