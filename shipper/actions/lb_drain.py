"""lb_drain: take an interrupted spot instance out of every load-balancer group before it is reclaimed.

A spot instance gets one notice about 5 minutes before release (reference/events.md §5.2). Within that
budget: find every membership (CLB vserver groups, CLB default backend lists, ALB and NLB server
groups), optionally set weight 0 and let connections drain, then remove each membership exactly as it
is listed (port, weight, type) — not the article's one hard-coded group on port 80.
"""
from __future__ import annotations

import datetime as _dt
import json
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Callable

from shipper.actions import ACTED, DRY_RUN, FAILED, PENDING, SKIPPED, SUCCEEDED, action_record, guards
from shipper.actions.openapi import ALB, NLB, ApiError, Backend, NotFound, OpenApi
from shipper.config import LbDrainHook as LbDrainSettings

RECLAIM_NOTICE_SECONDS = 300.0
CLB_VSERVER, CLB_DEFAULT = "clb-vserver", "clb-default"


@dataclass(frozen=True)
class Membership:
    """One place an instance receives traffic from: `kind` is clb-vserver, clb-default, alb or nlb;
    `group_id` a vserver group, a CLB (its default list) or an ALB/NLB server group."""
    kind: str
    group_id: str
    backend: Backend

    def as_detail(self) -> dict:
        return {"kind": self.kind, "group": self.group_id, "port": self.backend.port,
                "weight": self.backend.weight, "type": self.backend.type}


class MembershipIndex:
    """instance id -> memberships over every LB of the region, rebuilt when older than `max_age`.

    Building it lists every CLB and group (expensive), so it is shared; an instance missing from an
    index built before the interruption was issued triggers one rebuild (it may have joined since)."""

    def __init__(self, api: OpenApi, max_age: float, clock: Callable[[], float]):
        self._api = api
        self._max_age = max_age
        self._clock = clock
        self._index: dict[str, list[Membership]] = {}
        self._built_at: float | None = None
        self._errors: list[str] = []
        self._lock = threading.Lock()

    def lookup(self, instance_id: str, event_time: float) -> tuple[list[Membership], list[str]]:
        """(memberships, error codes of the discovery calls that failed)."""
        with self._lock:
            stale = self._built_at is None or self._clock() - self._built_at > self._max_age
            if stale or (instance_id not in self._index and self._built_at < event_time):
                self._rebuild()
            return list(self._index.get(instance_id, [])), list(self._errors)

    def forget(self, instance_id: str) -> None:
        with self._lock:
            self._index.pop(instance_id, None)

    def _rebuild(self) -> None:
        index: dict[str, list[Membership]] = defaultdict(list)
        errors: list[str] = []
        built_at = self._clock()
        for discover in (self._clb, partial(self._server_groups, ALB), partial(self._server_groups, NLB)):
            try:
                for membership in discover():
                    index[membership.backend.server_id].append(membership)
            except ApiError as e:
                errors.append(e.code)
        self._index, self._errors, self._built_at = dict(index), errors, built_at

    def _clb(self) -> list[Membership]:
        found = []
        for lb_id in self._api.load_balancers():
            found += [Membership(CLB_DEFAULT, lb_id, b) for b in self._api.default_backends(lb_id)]
            for group_id in self._api.vserver_groups(lb_id):
                found += [Membership(CLB_VSERVER, group_id, b) for b in self._api.vserver_group_backends(group_id)]
        return found

    def _server_groups(self, product: str) -> list[Membership]:
        return [Membership(product.lower(), group_id, b) for group_id, b in self._api.server_group_servers(product)]


class _Waiter:
    __slots__ = ("backends", "done", "error")

    def __init__(self, backends: list[Backend]):
        self.backends, self.done, self.error = backends, threading.Event(), None


class GroupCalls:
    """Changes to one group are made together: one call for every instance waiting on that group.

    Spot reclaims come in waves, and ALB/NLB lock a server group while a change is applied (another
    change gets IncorrectStatus.ServerGroup), so one call per instance would queue up behind retries.
    The first caller for a group waits `window` seconds, then changes every waiting member in one call
    (the client splits it at the API's per-call limit); later callers join the next call.
    """

    def __init__(self, window: float = 0.05, sleep: Callable[[float], None] = time.sleep):
        self._window, self._sleep = window, sleep
        self._lock = threading.Lock()
        self._pending: dict[tuple, list[_Waiter]] = {}
        self._leading: set[tuple] = set()

    def run(self, key: tuple, backends: list[Backend], call: Callable[[list[Backend]], None]) -> None:
        """Apply `call` to `backends` (within a shared batch for `key`); raises that batch's ApiError."""
        waiter = _Waiter(backends)
        with self._lock:
            self._pending.setdefault(key, []).append(waiter)
            lead = key not in self._leading
            if lead:
                self._leading.add(key)
        if lead:
            self._lead(key, call)
        waiter.done.wait()
        if waiter.error:
            raise waiter.error

    def _lead(self, key: tuple, call: Callable[[list[Backend]], None]) -> None:
        self._sleep(self._window)
        while True:
            with self._lock:
                batch = self._pending.pop(key, [])
                if not batch:
                    self._leading.discard(key)
                    return
            error = None
            try:
                call([b for w in batch for b in w.backends])
            except ApiError as e:
                error = e
            for waiter in batch:
                waiter.error = error
                waiter.done.set()


class LbDrainHook:
    name = "lb_drain"

    def __init__(self, settings: LbDrainSettings, api: OpenApi, *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep):
        self._settings = settings
        self._api = api
        self._clock = clock
        self._sleep = sleep
        self._index = MembershipIndex(api, settings.discovery_cache_seconds, clock)
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="shipper-lb-drain")
        self._group_calls = GroupCalls()  # a real 50 ms gathering window, not part of the drain timeline

    def wants(self, event: dict) -> bool:
        return (event.get("event_name") == guards.INTERRUPTION
                and guards.is_real_instance_id(event.get("instance_id", "")))

    def delay_seconds(self, event: dict) -> float:
        return 0.0

    def run(self, event: dict, trigger: str, emit: Callable[[dict], None]) -> None:
        instance_id = event.get("instance_id", "")
        record = partial(action_record, hook=self.name, trigger=trigger, event=event)
        if not guards.is_real_instance_id(instance_id):
            emit(record(decision=SKIPPED, reason="masked-id"))
            return
        deadline = reclaim_time(event)
        if deadline <= self._clock():
            emit(record(decision=SKIPPED, reason="deadline-passed", seconds_before_reclaim=deadline - self._clock()))
            return
        reason, error_code = self._opt_in_reason(instance_id)
        if reason:
            emit(record(decision=SKIPPED, reason=reason, error_code=error_code))
            return
        memberships, errors = self._index.lookup(instance_id, _event_seconds(event))
        detail = {"memberships": [m.as_detail() for m in memberships]}
        record = partial(record, detail=_json(detail))
        if not memberships:
            emit(record(decision=SKIPPED, reason="no-memberships", error_code=",".join(errors),
                        seconds_before_reclaim=deadline - self._clock()))
            return
        if self._settings.dry_run:
            emit(record(decision=DRY_RUN, seconds_before_reclaim=deadline - self._clock()))
            return
        decision = record(decision=ACTED, outcome=PENDING, seconds_before_reclaim=deadline - self._clock())
        emit(decision)
        groups = _by_group(memberships)
        if self._settings.drain_seconds > 0 and self._drain_wait(deadline) > 0:
            errors += self._drain(groups, deadline)
        removed, seconds_left, removal_errors = self._remove_all(groups, deadline)
        if removed == len(memberships):
            self._index.forget(instance_id)
        detail |= {"removed": removed, "total": len(memberships)}
        emit(record(decision=ACTED, outcome=SUCCEEDED if removed == len(memberships) else FAILED,
                    error_code=",".join(dict.fromkeys(errors + removal_errors)), finished=True,
                    detail=_json(detail), decided_time=decision["decided_time"],
                    seconds_before_reclaim=seconds_left))

    def _drain(self, groups: dict[tuple[str, str], list[Backend]], deadline: float) -> list[str]:
        """Weight 0 everywhere, then wait while the deadline allows; the error codes of failed calls."""
        errors = []
        for (kind, group_id), backends in groups.items():
            try:
                self._set_weight_zero(kind, group_id, backends)
            except ApiError as e:
                errors.append(e.code)
        wait = self._drain_wait(deadline)
        if wait > 0:
            self._sleep(wait)
        return errors

    def _remove_all(self, groups: dict[tuple[str, str], list[Backend]],
                    deadline: float) -> tuple[int, float, list[str]]:
        """(members removed, seconds before reclaim after the last removal call, error codes).

        The groups are independent, so their removals run at once: the slowest one sets the time."""
        def remove(item) -> tuple[int, str]:
            (kind, group_id), backends = item
            try:
                self._remove(kind, group_id, backends)
            except NotFound:
                pass                         # already gone: the goal is reached
            except ApiError as e:
                return 0, e.code
            return len(backends), ""

        results = list(self._pool.map(remove, groups.items()))
        seconds_left = deadline - self._clock()
        return sum(n for n, _ in results), seconds_left, [code for _, code in results if code]

    def _opt_in_reason(self, instance_id: str) -> tuple[str, str]:
        """(skip reason, error code), both "" when opted in; the tag is read only when it matters."""
        s = self._settings
        if instance_id in s.instances or not s.opt_in_tag:
            return ("", "") if guards.opted_in(instance_id, {}, "", s.instances) else ("not-opted-in", "")
        try:
            tags = self._api.describe_instance(instance_id).tags
        except NotFound:
            return "not-found", ""
        except ApiError as e:
            return "describe-failed", e.code
        return ("", "") if guards.opted_in(instance_id, tags, s.opt_in_tag, s.instances) else ("not-opted-in", "")

    def _drain_wait(self, deadline: float) -> float:
        return min(self._settings.drain_seconds, deadline - self._settings.safety_margin_seconds - self._clock())

    def _set_weight_zero(self, kind: str, group_id: str, backends: list[Backend]) -> None:
        drained = [Backend(b.server_id, b.port, 0, b.type, b.server_ip) for b in backends]
        if kind == CLB_VSERVER:
            call = partial(self._api.set_vserver_group_weights, group_id)
        elif kind == CLB_DEFAULT:
            call = partial(self._api.set_default_backend_weights, group_id)
        else:
            call = partial(self._api.set_server_group_weights, _product(kind), group_id)
        self._group_calls.run(("weight", kind, group_id), drained, call)

    def _remove(self, kind: str, group_id: str, backends: list[Backend]) -> None:
        if kind == CLB_VSERVER:
            call = partial(self._api.remove_vserver_group_backends, group_id)
        elif kind == CLB_DEFAULT:
            call = partial(self._api.remove_default_backends, group_id)
        else:
            call = partial(self._api.remove_server_group_servers, _product(kind), group_id)
        self._group_calls.run(("remove", kind, group_id), backends, call)


def reclaim_time(event: dict) -> float:
    """Epoch seconds of the expected release: `not_before`, else event time + 5 minutes."""
    text = event.get("not_before", "")
    if text:
        try:
            return _dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=_dt.timezone.utc).timestamp()
        except ValueError:
            pass
    return _event_seconds(event) + RECLAIM_NOTICE_SECONDS


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


def _json(detail: dict) -> str:
    return json.dumps(detail, separators=(",", ":"), sort_keys=True)


def _product(kind: str) -> str:
    return {"alb": ALB, "nlb": NLB}[kind]
