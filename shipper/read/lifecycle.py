"""One instance's lifecycle: its events in order, identity carried forward, each stop's cause, the call that
caused each state change (ActionTrail `api-call` records), and the summary an operator reads first (name/type
come from earlier events or the registry when the Deleted event lacks them)."""
from __future__ import annotations

import bisect

from shipper.events import API_CALL_CATEGORY, IDENTITY_FIELDS, STATE_ORDER
from shipper.instances import stop_cause
from shipper.times import format_duration
from shipper.trail import CALL_KINDS, EVENT_NAME_PREFIX, via

STOP_STATES = ("Stopped", "Deleted")

# What each kind of call (trail.CALL_KINDS) does to an instance: the state changes it causes and the one that
# ends it (ECS instance states: a stop is Stopping then Stopped, a start Starting then Running, a reboot
# Stopping .. Running; a release may stop the instance first; a creation by RunInstances or the buy page starts
# it too). A charge-type change causes no state change.
CALL_EFFECTS = {
    "create": (("Pending", "Starting", "Running"), "Running"),
    "start": (("Starting", "Running"), "Running"),
    "stop": (("Stopping", "Stopped"), "Stopped"),
    "reboot": (("Stopping", "Stopped", "Starting", "Running"), "Running"),
    "delete": (("Stopping", "Stopped", "Deleted"), "Deleted"),
}
# The join's window: a call explains the state changes of its instance that follow it within CALL_WINDOW_MS,
# up to the state that ends it. ActionTrail times are whole seconds from another clock than CloudMonitor's,
# so a state change up to CLOCK_SKEW_MS before the call's time is still the call's.
CALL_WINDOW_MS = 10 * 60_000
CLOCK_SKEW_MS = 5_000
ACTOR_WORDS = {"root-account": "root account", "ram-user": "RAM user", "assumed-role": "role", "system": "system"}


def order_key(event: dict) -> tuple:
    """Event time; at the same time, the place in the lifecycle (events.STATE_ORDER); then receipt."""
    return (stop_cause.event_ms(event), STATE_ORDER.get(event.get("state", ""), -1), event.get("received_time", ""))


def timeline(store, instance_id: str) -> list[dict]:
    """Every event of one instance (from a store of shipper.read.stores) in lifecycle order, identity fields
    carried forward, a stop cause on each stop stored before rows carried one, and on each state change the
    call that caused it (`caused_by`, None when no call explains it)."""
    events, known = sorted(store.instance_events(instance_id), key=order_key), {}
    for event in events:
        for name in IDENTITY_FIELDS:
            if event.get(name):
                known[name] = event[name]
            elif name in known:
                event[name] = known[name]
        if event.get("state") in STOP_STATES and not event.get("stop_cause"):
            event["stop_cause"] = stop_cause.classify(event, None, events, stop_cause.event_ms(event) / 1000)
    attribute(events)
    return events


def attribute(events: list[dict]) -> None:
    """Sets `caused_by` on each state change of `events` (one instance, in lifecycle order): of the successful
    calls whose effects (CALL_EFFECTS) cover the state within the window, the last one made before it (else the
    first made just after it, within the clock skew). A stop so explained turns its inferred `user-or-api` into
    `user` (console), `api` (CLI, SDK) or `service`. A failed call (error_code set) changed nothing, so it
    explains nothing."""
    changes = [e for e in events if e.get("state")]
    times = [stop_cause.event_ms(e) for e in changes]
    for event in changes:
        event["caused_by"] = None
    for call in events:
        effects = CALL_EFFECTS.get(CALL_KINDS.get(call_name(call), ""))
        if call.get("category") != API_CALL_CATEGORY or call.get("error_code") or effects is None:
            continue
        states, last = effects
        at = stop_cause.event_ms(call)
        for change in changes[bisect.bisect_left(times, at - CLOCK_SKEW_MS):
                              bisect.bisect_right(times, at + CALL_WINDOW_MS)]:
            if change["state"] not in states:
                continue
            delay_ms = stop_cause.event_ms(change) - at
            if change["caused_by"] is None or delay_ms >= 0:
                change["caused_by"] = cause(call, delay_ms)
            if change["state"] == last:
                break
    for change in changes:
        caller = change["caused_by"]
        if caller and change["state"] in STOP_STATES and change.get("stop_cause") in ("", stop_cause.USER_OR_API):
            change["stop_cause"] = stop_cause.CALLER_CAUSES[caller["via"]]


def call_name(event: dict) -> str:
    """`ActionTrail:StopInstance` -> `StopInstance`; other events give ""."""
    name = event.get("event_name", "")
    return name[len(EVENT_NAME_PREFIX):] if name.startswith(EVENT_NAME_PREFIX) else ""


def cause(call: dict, delay_ms: int) -> dict:
    """What `lifecycle --json` says of the call that caused a state change `delay_ms` after it, with `text` the
    line people read: "StopInstance by RAM user alice from 203.0.113.7 via console, 4 s before"."""
    how = via(call.get("user_agent", ""), call.get("actor_type", ""), call.get("actor_name", ""))
    fields = ("event_uid", "event_time", "actor_type", "actor_name", "actor_principal_id", "actor_access_key_id",
              "source_ip", "user_agent", "request_id")
    found = {"call": call_name(call), **{name: call.get(name, "") for name in fields}, "via": how,
             "seconds_before": round(delay_ms / 1000)}
    source = f" from {call['source_ip']}" if call.get("source_ip") else ""
    found["text"] = f"{found['call']} by {actor(call)}{source} via {how}, {_distance(delay_ms)}"
    return found


def actor(call: dict) -> str:
    """Who made a call, for people: "RAM user alice", "role AliyunServiceRoleForAutoScaling:ess", "root account"."""
    kind, name = call.get("actor_type", ""), call.get("actor_name", "")
    if kind == "root-account":
        return ACTOR_WORDS[kind]
    return " ".join(part for part in (ACTOR_WORDS.get(kind, kind), name) if part) or "an unknown caller"


def _distance(delay_ms: int) -> str:
    seconds = round(abs(delay_ms) / 1000)
    amount = f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60} s"
    return f"{amount} {'before' if delay_ms >= 0 else 'after'}"


def summarize(timeline: list[dict], registered: dict | None = None) -> dict:
    """What an operator asks first: what it was, when and by whom it was created and released, how long it lived,
    why it last stopped. `registered` is the instance registry's entry (instances/registry.py)."""
    if not timeline:
        return {}
    last = timeline[-1]
    created = next((e for e in timeline if e["state"] == "Pending"), None)
    released = next((e for e in reversed(timeline) if e["state"] == "Deleted"), None)
    stopped = next((e for e in reversed(timeline) if e["state"] in STOP_STATES), None)
    states = [e for e in timeline if e["state"]]
    summary = {
        "instance_id": last["instance_id"],
        "instance_name": last["instance_name"],
        "instance_type": last["instance_type"],
        "region_id": last["region_id"],
        "zone_id": last.get("zone_id", ""),
        "private_ip": last["private_ip"],
        "created": created["event_time"] if created else "",
        "released": released["event_time"] if released else "",
        "last_state": states[-1]["state"] if states else "",
        "stop_cause": stopped.get("stop_cause", "") if stopped else "",
        "events": len(timeline),
        "interruptions": sum(1 for e in timeline if e["category"] == "interruption"),
    }
    if created and released:
        summary["lifetime"] = format_duration(int(released["event_time_ms"]) - int(created["event_time_ms"]))
    for key, event in (("created_by", created), ("released_by", released)):
        if event and event.get("caused_by"):
            summary[key] = event["caused_by"]["text"]
    registered = registered or {}
    for key in ("instance_name", "instance_type", "private_ip", "zone_id"):
        summary[key] = summary[key] or registered.get(key, "")
    for key in ("charge_type", "spot_strategy", "tags"):
        value = last.get(key) or registered.get(key, "")
        if value:
            summary[key] = value
    return summary

