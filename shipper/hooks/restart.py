"""restart: start an opted-in instance that stopped, unless anything says the stop was meant or forced.

After the grace delay the instance is re-read: a Stopped event can be stale (a later Running overtook
it), the instance can be locked (billing, security, release) or a reclaimed spot instance, and a
flapping instance must not be restarted forever (budget) nor the whole fleet at once (breaker).
"""
from __future__ import annotations

from dataclasses import dataclass

import time
from functools import partial
from typing import Callable, Iterable

from shipper import events, registry
from shipper.hooks import (
    ACTED, DRY_RUN, FAILED, PENDING, SKIPPED, SUCCEEDED, Act, Emit, action_record, detail_json, guards,
    not_negative, validate_opt_in,
)
from shipper.cloud import CloudError, NotFound
from shipper.cloud.openapi import OpenApi
from shipper.instances import stop_cause
from shipper.instances.model import Instance
from shipper.times import format_time_ms

POLL_SECONDS = 5.0


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

    def validate(self) -> None:
        validate_opt_in(self)
        if self.enabled and not self.opt_in_tag and not self.instances:
            raise registry.Invalid("set `opt_in_tag` or `instances`: restarting every stopped instance would "
                                   "fight deliberate stops")
        registry.positive(self, "confirm_timeout_seconds", "max_per_instance_per_hour", "max_per_minute")
        not_negative(self, "grace_seconds")


class RestartHook:
    name = "restart"

    def __init__(self, settings: RestartHookSettings, api: OpenApi, *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep,
                 recent_events: Callable[[str], Iterable[dict]] | None = None):
        """`recent_events(instance_id)`: the normalized events known for that instance (any order), used
        to spot a newer Starting/Running state change and the events that explain a stop."""
        self._settings = settings
        self._api = api
        self._clock = clock
        self._sleep = sleep
        self._recent_events = recent_events or (lambda instance_id: ())
        self._limits = guards.RestartLimits(settings.max_per_instance_per_hour, settings.max_per_minute,
                                            clock=clock)

    def wants(self, event: dict) -> bool:
        return (event.get("event_name") == guards.STATE_CHANGE and event.get("state") == "Stopped"
                and events.is_real_instance_id(event.get("instance_id", "")))

    def delay_seconds(self, event: dict) -> float:
        return self._settings.grace_seconds

    @property
    def dry_run(self) -> bool:
        return self._settings.dry_run

    def decide(self, event: dict, trigger: str) -> dict | Act:
        instance_id = event.get("instance_id", "")
        record = partial(action_record, hook=self.name, trigger=trigger, event=event)
        if not events.is_real_instance_id(instance_id):
            return record(decision=SKIPPED, reason="masked-id")
        history = list(self._recent_events(instance_id))
        try:
            instance = self._api.describe_instance(instance_id, event.get("region_id", ""))
        except NotFound:
            cause = stop_cause.classify(event, None, history, self._clock())
            return record(decision=SKIPPED, reason="not-found", stop_cause=cause)
        except CloudError as e:
            return record(decision=SKIPPED, reason="describe-failed", error_code=e.code)
        record = partial(record, stop_cause=stop_cause.classify(event, instance, history, self._clock()))
        detail = {"status": instance.status, "charge": guards.charge_note(instance)}
        reason = self._skip_reason(event, instance, history)
        if reason:
            until = self._limits.quarantined_until(instance_id) if reason == "budget-exhausted" else None
            if until:
                detail["quarantined_until"] = format_time_ms(int(until * 1000))
            return record(decision=SKIPPED, reason=reason, detail=detail_json(detail))
        return Act(dry_run=record(decision=DRY_RUN, detail=detail_json(detail)),
                   act=partial(self._start, instance, record, detail))

    def _start(self, instance: Instance, record: Callable[..., dict], detail: dict, emit: Emit) -> None:
        """StartInstance, then confirm Running, in the instance's region: the decision record, then the outcome."""
        try:
            self._api.start_instance(instance.instance_id, instance.region_id)
        except CloudError as e:
            emit(record(decision=ACTED, outcome=FAILED, error_code=e.code, finished=True, detail=detail_json(detail)))
            return
        decision = record(decision=ACTED, outcome=PENDING, detail=detail_json(detail))
        emit(decision)
        outcome, error_code, last_status = self._confirm_running(instance)
        detail["status"] = last_status
        emit(record(decision=ACTED, outcome=outcome, error_code=error_code, finished=True,
                    decided_time=decision["decided_time"], detail=detail_json(detail)))

    def _skip_reason(self, event: dict, instance: Instance, history: list[dict]) -> str:
        """The first guard that forbids a start; "" when every guard allows it (the start is then counted)."""
        s = self._settings
        if not guards.opted_in(instance.instance_id, instance.tags, s.opt_in_tag, s.instances):
            return "not-opted-in"
        if guards.is_superseded(event, history):
            return "superseded"
        if instance.status in ("Starting", "Running"):
            return "already-running"
        if instance.status != "Stopped":
            return "not-stopped"
        if stop_cause.is_spot_reclaim(instance, stop_cause.recent_events(event, history)):
            return "spot-reclaim"
        return guards.lock_reason(instance) or self._limits.acquire(instance.instance_id)

    def _confirm_running(self, instance: Instance) -> tuple[str, str, str]:
        """(outcome, error code, last status seen) after polling until Running or the confirm timeout."""
        deadline = self._clock() + self._settings.confirm_timeout_seconds
        status, error_code = "", ""
        while True:
            try:
                status = self._api.instance_status(instance.instance_id, instance.region_id)
            except CloudError as e:
                error_code = e.code
            else:
                error_code = ""
                if status == "Running":
                    return SUCCEEDED, "", status
            left = deadline - self._clock()
            if left <= 0:
                return FAILED, error_code or "confirm-timeout", status
            self._sleep(min(POLL_SECONDS, left))


registry.register(registry.Component(
    registry.HOOK, "restart", RestartHookSettings,
    build=lambda settings, runtime: RestartHook(settings, runtime.openapi(), recent_events=runtime.recent_events),
    permissions=("ecs:DescribeInstances", "ecs:DescribeInstanceStatus", "ecs:StartInstance"),
))
