"""The policy a hook obeys before it touches anything: opt-in, locks, supersession, budgets (the stop cause
is shared with the stored rows: shipper/instances/stop_cause.py).

Pure functions over the normalized event, the re-read Instance and the instance's recent events
(`history`: normalized event dicts of the same instance, any order); the budget and the breaker keep
their own small state and read an injected clock.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable, Iterable

from shipper.instances.model import Instance
from shipper.instances.stop_cause import FINANCIAL_LOCKS
from shipper.times import parse_schema_seconds

STATE_CHANGE = "Instance:StateChange"
INTERRUPTION = "Instance:PreemptibleInstanceInterruption"
RECLAIM_NOTICE_SECONDS = 300.0          # a spot notice comes about 5 minutes before the release


def opted_in(instance_id: str, tags: dict, opt_in_tag: str, instances: Iterable[str]) -> bool:
    """Listed in `instances`, or tagged `Key=Value`; with neither configured, every instance is in."""
    instances = tuple(instances)
    if not opt_in_tag and not instances:
        return True
    if instance_id in instances:
        return True
    if opt_in_tag:
        key, _, value = opt_in_tag.partition("=")
        return key in tags and tags[key] == value
    return False


def reclaim_time(event: dict) -> float:
    """Epoch seconds of the expected release: `not_before`, else event time + 5 minutes."""
    text = event.get("not_before", "")
    if text:
        try:
            return parse_schema_seconds(text)
        except ValueError:
            pass
    return _ms(event) / 1000 + RECLAIM_NOTICE_SECONDS


def interruption_notice(event: dict, inline: bool, history: Iterable[dict], now: float) -> dict | None:
    """The interruption notice that makes a drain legitimate, or None.

    Inline, the event is the notice. An alert only names an instance (anyone holding the webhook token
    can name any instance), so a committed notice for it whose reclaim time is still ahead must be on
    record; the newest such notice is returned."""
    if inline:
        return event if event.get("event_name") == INTERRUPTION else None
    notices = [e for e in history if e.get("event_name") == INTERRUPTION and reclaim_time(e) > now]
    return max(notices, key=_ms, default=None)


def drain_refusal(instance: Instance, notice: dict | None) -> str:
    """"" when the instance may be drained: spot per its DescribeInstances re-read, and under interruption
    (`notice` from interruption_notice); otherwise `not-spot` or `not-interrupted`."""
    if not instance.is_spot:
        return "not-spot"
    return "" if notice is not None else "not-interrupted"


def lock_reason(instance: Instance) -> str:
    """`locked-financial`, `locked-security`, `locked-recycling`, … or "" when unlocked."""
    if FINANCIAL_LOCKS & set(instance.lock_reasons):
        return "locked-financial"
    return f"locked-{instance.lock_reasons[0].lower()}" if instance.lock_reasons else ""


def is_superseded(event: dict, history: Iterable[dict]) -> bool:
    """A newer Starting/Running state change of the same instance makes a Stopped event stale."""
    return any(e.get("event_name") == STATE_CHANGE and e.get("state") in ("Starting", "Running")
               and _ms(e) > _ms(event) for e in history)


def charge_note(instance: Instance) -> str:
    """What the billing mode means for a restart, for the record's detail."""
    notes = []
    if instance.charge_type == "PrePaid":
        notes.append(f"subscription, expires {instance.expired_time or 'unknown'}")
    elif instance.charge_type == "PostPaid":
        notes.append("pay-as-you-go")
    if instance.stopped_mode == "StopCharging":
        notes.append("economical stop: resources released, start may fail for lack of stock")
    if instance.is_spot:
        notes.append(f"spot ({instance.spot_strategy})")
    return "; ".join(notes)


class RestartLimits:
    """Per-instance budget with quarantine, and a fleet-wide breaker; thread-safe.

    An instance that used up `per_instance` starts within `window_seconds` is quarantined until its
    newest start leaves the window (a flapping instance stays down, recorded, instead of looping)."""

    def __init__(self, per_instance: int, per_minute: int, *, window_seconds: float = 3600.0,
                 clock: Callable[[], float] = time.time):
        self._per_instance = per_instance
        self._per_minute = per_minute
        self._window = window_seconds
        self._clock = clock
        self._starts: dict[str, deque] = {}
        self._quarantine: dict[str, float] = {}
        self._fleet: deque = deque()
        self._lock = threading.Lock()

    def acquire(self, instance_id: str) -> str:
        """"" and the start is counted, or the reason it may not happen: budget-exhausted / breaker-open."""
        with self._lock:
            now = self._clock()
            if self._quarantine.get(instance_id, 0.0) > now:
                return "budget-exhausted"
            self._quarantine.pop(instance_id, None)
            starts = self._starts.setdefault(instance_id, deque())
            _expire(starts, now - self._window)
            if len(starts) >= self._per_instance:
                self._quarantine[instance_id] = starts[-1] + self._window
                return "budget-exhausted"
            _expire(self._fleet, now - 60.0)
            if len(self._fleet) >= self._per_minute:
                return "breaker-open"
            starts.append(now)
            self._fleet.append(now)
            return ""

    def quarantined_until(self, instance_id: str) -> float | None:
        with self._lock:
            return self._quarantine.get(instance_id)


def _expire(times: deque, before: float) -> None:
    while times and times[0] <= before:
        times.popleft()


def _ms(event: dict) -> int:
    try:
        return int(event.get("event_time_ms") or 0)
    except ValueError:
        return 0
