"""What an SLS alert asks of a hook (`POST /hooks/<name>` on the http source): the webhook body, the
repeat key of a firing, one synthetic event per instance, the `accepted` records, then the hook's tasks.

The http source owns the request (token, body limits, answers); this module owns what the request means.
"""
from __future__ import annotations

import time

import orjson

from shipper import events
from shipper.hooks import ALERT, Hook, action_record
from shipper.hooks.alert_keys import AlertKeys
from shipper.hooks.engine import HookEngine
from shipper.times import format_time_ms, parse_time_ms

# The decision of an alert notification's `shipper-actions` record once it is durably accepted: the SLS
# webhook waits 5 s and counts only a 200 as delivered, so the endpoint answers on acceptance, not on the
# hook's decision (recorded later, as for inline events).
ACCEPTED = "accepted"


class AlertIntake:
    """The enabled hooks an alert may name, and the accepted notifications (`AlertKeys`)."""

    def __init__(self, engine: HookEngine, keys: AlertKeys):
        self.engine, self.keys = engine, keys

    def hook(self, name: str) -> Hook | None:
        return next((h for h in self.engine.hooks if h.name == name), None)

    def claim(self, hook: str, key: str, targets: list[dict]) -> list[dict]:
        """The targets whose (hook, repeat key, instance) is new; blocking (SQLite)."""
        new = set(self.keys.claim(hook, key, [t["instance_id"] for t in targets]))
        return [t for t in targets if t["instance_id"] in new]

    def release(self, hook: str, key: str, targets: list[dict]) -> None:
        self.keys.release(hook, key, [t["instance_id"] for t in targets])

    def schedule(self, hook: Hook, targets: list[dict]) -> None:
        """Decided on a hook worker; the decision is recorded as for inline events."""
        for event in targets:
            self.engine.schedule(event, [hook], ALERT, lambda: None, delay=0)

    def close(self) -> None:
        self.keys.close()


def accepted_records(hook: str, targets: list[dict], payload: dict) -> list[dict]:
    """One `accepted` record per instance, carrying what identifies the notification."""
    detail = orjson.dumps({k: payload.get(k, "") for k in ("alert", "fingerprint", "fired_time",
                                                           "alert_instance_id")}).decode()
    return [action_record(hook=hook, trigger=ALERT, event=event, decision=ACCEPTED, reason="alert", detail=detail)
            for event in targets]


def alert_payload(body: bytes) -> dict:
    """The SLS alert webhook body; ValueError names what is wrong."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValueError("the alert body is not JSON") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("rows"), list):
        raise ValueError("the alert body must be an object with a `rows` list")
    if not all(isinstance(row, dict) for row in payload["rows"]):
        raise ValueError("every alert row must be an object")
    payload.setdefault("status", "firing")
    payload.setdefault("alert_instance_id", "")
    repeat_key(payload)
    return payload


def repeat_key(payload: dict) -> str:
    """What every notification of one firing shares: `fingerprint:fired_time`, or `alert:fired_time` when the
    fingerprint is empty (`alert_instance_id` changes on every repeat, so it cannot be the key)."""
    fingerprint, name, fired = payload.get("fingerprint"), payload.get("alert"), payload.get("fired_time")
    if fingerprint is not None and not isinstance(fingerprint, str):
        raise ValueError("`fingerprint` must be a string")
    if isinstance(fired, bool) or not isinstance(fired, (int, str, type(None))):
        raise ValueError("`fired_time` must be unix seconds")
    if fingerprint:
        return f"{fingerprint}:{fired or 0}"
    # A name alone would make every firing of the rule one key for a week: the fire time must tell them apart.
    if not isinstance(name, str) or not name or not fired or fired == "0":
        raise ValueError("the alert body needs a `fingerprint`, or an `alert` name and a `fired_time`, "
                         "to recognise repeats")
    return f"{name}:{fired}"


def alert_events(payload: dict, hook: str) -> list[dict]:
    """One synthetic event per distinct instance in the alert rows, shaped like the event the hook acts on.

    Its event_uid is `alert:<repeat key>:<instance>`: the same on every repeat of the firing."""
    now = format_time_ms(int(time.time() * 1000))
    firing = repeat_key(payload)
    made, seen = [], set()
    for row in payload["rows"]:
        instance = row.get("instance_id")
        if not isinstance(instance, str) or not instance or instance in seen:
            continue
        seen.add(instance)
        values = {"event_uid": f"alert:{firing}:{instance}", "instance_id": instance, "received_time": now,
                  "region_id": str(row.get("region", "")), "instance_name": str(row.get("name", "")),
                  "resource_type": "instance", "resource_id": instance, "product": "ECS",
                  "detail": orjson.dumps(row).decode()}
        if hook == "lb_drain":
            values.update(event_name="Instance:PreemptibleInstanceInterruption", category="interruption",
                          action="delete", not_before=str(row.get("reclaim_time", "")),
                          event_time=str(row.get("interrupted_time", "")) or now)
        else:
            values.update(event_name="Instance:StateChange", category="lifecycle", state="Stopped",
                          state_raw="Stopped", event_time=str(row.get("stopped_time", "")) or now)
        event_ms = parse_time_ms(values["event_time"]) or int(time.time() * 1000)
        values.update(event_time=format_time_ms(event_ms), event_time_ms=str(event_ms))
        if values.get("not_before"):
            reclaim_ms = parse_time_ms(values["not_before"])
            values["not_before"] = format_time_ms(reclaim_ms) if reclaim_ms else ""
        made.append(events.new_event(**values))
    return made
