"""Why an instance stopped: one pure classifier, used for the `stop_cause` of every stored Stopped and
Deleted row and by the restart hook's decision.

A Stopped event never says who stopped the instance (reference/events.md §5.1), so the cause is inferred
from what came shortly before it (an interruption notice, a system event, a billing event) and from what
DescribeInstances last said (OperationLocks, charge type and expiry); what none of these explains was a
deliberate stop: `user-or-api`. When ActionTrail recorded the call that made the stop, the lifecycle join
(read/lifecycle.py) says which: `user` (console), `api` (CLI, SDK) or `service` (a cloud service or the system).
"""
from __future__ import annotations

from typing import Iterable

from shipper.instances.model import Instance
from shipper.times import parse_minute_seconds

SPOT_RECLAIM, SYSTEM, BILLING_LOCK, EXPIRED, USER_OR_API = (
    "spot-reclaim", "system", "billing-lock", "expired", "user-or-api")
USER, API, SERVICE = "user", "api", "service"
# A deliberate stop explained by a call: the cause by how the call was made (trail.via()).
CALLER_CAUSES = {"console": USER, "cli": API, "sdk": API, "service": SERVICE}

INTERRUPTION = "Instance:PreemptibleInstanceInterruption"
RECENT_SECONDS = 3600.0                  # events this close to a stop can explain it
FINANCIAL_LOCKS = frozenset({"financial", "dedicatedhostfinancial"})
SPOT_LOCK = "recycling"                  # a spot instance locked, pending release (actiontrail.md §2)
# Events that can explain a stop: kept by the instance registry for RECENT_SECONDS.
EVIDENCE_CATEGORIES = frozenset({"interruption", "maintenance", "failure"})
EVIDENCE_PREFIXES = ("Instance:AccountUnbalanced.", "Instance:InstanceExpiration.")


def is_evidence(event: dict) -> bool:
    """An event that may explain a later stop (the registry keeps these per instance)."""
    name = event.get("event_name", "")
    return event.get("category") in EVIDENCE_CATEGORIES or name.startswith(EVIDENCE_PREFIXES)


def lock_reasons(instance: Instance | None) -> set[str]:
    """OperationLocks reasons, lower-cased: the documented list says `recycling`, its example `Recycling`."""
    return {reason.lower() for reason in instance.lock_reasons} if instance else set()


def recent_events(event: dict, history: Iterable[dict]) -> list[dict]:
    """The instance's other events from RECENT_SECONDS before `event` on (later ones included)."""
    since = event_ms(event) - RECENT_SECONDS * 1000
    uid = event.get("event_uid")
    return [e for e in history if event_ms(e) >= since and (not uid or e.get("event_uid") != uid)]


def is_spot_reclaim(instance: Instance | None, recent: list[dict]) -> bool:
    """A spot instance with an interruption notice seen or a recycling lock is being taken back; when its
    spot strategy is not known (gone, or a registry entry never described), the notice alone tells."""
    interrupted = any(e.get("event_name") == INTERRUPTION for e in recent)
    if instance is None or not instance.spot_strategy:
        return interrupted
    return instance.is_spot and (interrupted or SPOT_LOCK in lock_reasons(instance))


def is_expired(instance: Instance | None, now: float) -> bool:
    """A subscription (PrePaid) instance past its ExpiredTime is stopped by billing, not by a fault."""
    if instance is None or instance.charge_type != "PrePaid" or not instance.expired_time:
        return False
    expires = parse_minute_seconds(instance.expired_time)
    return expires is not None and expires <= now


def classify(event: dict, instance: Instance | None, history: Iterable[dict], now: float) -> str:
    """The stop cause of a Stopped/Deleted `event`: the first of spot reclaim, billing lock, expiry, system
    (a recent system failure or maintenance, or any other lock), else a deliberate stop (`user-or-api`)."""
    recent = recent_events(event, history)
    names = [e.get("event_name", "") for e in recent]
    locks = lock_reasons(instance)
    if is_spot_reclaim(instance, recent):
        return SPOT_RECLAIM
    if locks & FINANCIAL_LOCKS or any(n.startswith("Instance:AccountUnbalanced.") for n in names):
        return BILLING_LOCK
    if any(n.startswith("Instance:InstanceExpiration.") for n in names) or is_expired(instance, now):
        return EXPIRED
    if locks or any(e.get("category") in ("failure", "maintenance") for e in recent):
        return SYSTEM
    return USER_OR_API


def event_ms(event: dict) -> int:
    try:
        return int(event.get("event_time_ms") or 0)
    except ValueError:
        return 0
