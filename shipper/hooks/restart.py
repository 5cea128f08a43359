"""restart: start an opted-in instance that stopped, unless anything says the stop was meant or forced.

After the grace delay the instance is re-read: a Stopped event can be stale (a later Running overtook
it), the instance can be locked (billing, security, release) or a reclaimed spot instance, and a
flapping instance must not be restarted forever (budget) nor the whole fleet at once (breaker).
"""
from __future__ import annotations

import json
import time
from functools import partial
from typing import Callable, Iterable

from shipper.hooks import ACTED, DRY_RUN, FAILED, PENDING, SKIPPED, SUCCEEDED, action_record, guards
from shipper.hooks.openapi import ApiError, NotFound, OpenApi
from shipper.instances.model import Instance
from shipper.config import RestartHookSettings
from shipper.events import format_time_ms

POLL_SECONDS = 5.0


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
                and guards.is_real_instance_id(event.get("instance_id", "")))

    def delay_seconds(self, event: dict) -> float:
        return self._settings.grace_seconds

    def run(self, event: dict, trigger: str, emit: Callable[[dict], None]) -> None:
        instance_id = event.get("instance_id", "")
        record = partial(action_record, hook=self.name, trigger=trigger, event=event)
        if not guards.is_real_instance_id(instance_id):
            emit(record(decision=SKIPPED, reason="masked-id"))
            return
        history = list(self._recent_events(instance_id))
        try:
            instance = self._api.describe_instance(instance_id)
        except NotFound:
            cause = guards.stop_cause(event, None, history, self._clock())
            emit(record(decision=SKIPPED, reason="not-found", stop_cause=cause))
            return
        except ApiError as e:
            emit(record(decision=SKIPPED, reason="describe-failed", error_code=e.code))
            return
        record = partial(record, stop_cause=guards.stop_cause(event, instance, history, self._clock()))
        detail = {"status": instance.status, "charge": guards.charge_note(instance)}
        reason = self._skip_reason(event, instance, history)
        if reason:
            until = self._limits.quarantined_until(instance_id) if reason == "budget-exhausted" else None
            if until:
                detail["quarantined_until"] = format_time_ms(int(until * 1000))
            emit(record(decision=SKIPPED, reason=reason, detail=_json(detail)))
            return
        if self._settings.dry_run:
            emit(record(decision=DRY_RUN, detail=_json(detail)))
            return
        try:
            self._api.start_instance(instance_id)
        except ApiError as e:
            emit(record(decision=ACTED, outcome=FAILED, error_code=e.code, finished=True, detail=_json(detail)))
            return
        decision = record(decision=ACTED, outcome=PENDING, detail=_json(detail))
        emit(decision)
        outcome, error_code, last_status = self._confirm_running(instance_id)
        detail["status"] = last_status
        emit(record(decision=ACTED, outcome=outcome, error_code=error_code, finished=True,
                    decided_time=decision["decided_time"], detail=_json(detail)))

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
        if guards.is_spot_reclaim(instance, guards.recent_events(event, history)):
            return "spot-reclaim"
        return guards.lock_reason(instance) or self._limits.acquire(instance.instance_id)

    def _confirm_running(self, instance_id: str) -> tuple[str, str, str]:
        """(outcome, error code, last status seen) after polling until Running or the confirm timeout."""
        deadline = self._clock() + self._settings.confirm_timeout_seconds
        status, error_code = "", ""
        while True:
            try:
                status = self._api.instance_status(instance_id)
            except ApiError as e:
                error_code = e.code
            else:
                error_code = ""
                if status == "Running":
                    return SUCCEEDED, "", status
            left = deadline - self._clock()
            if left <= 0:
                return FAILED, error_code or "confirm-timeout", status
            self._sleep(min(POLL_SECONDS, left))


def _json(detail: dict) -> str:
    return json.dumps(detail, separators=(",", ":"), sort_keys=True)
