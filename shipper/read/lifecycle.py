"""One instance's lifecycle: its events in order, identity carried forward, each stop's cause, and the summary
an operator reads first (name/type come from earlier events or the registry when the Deleted event lacks them)."""
from __future__ import annotations

from shipper.events import IDENTITY_FIELDS, STATE_ORDER
from shipper.instances import stop_cause
from shipper.times import format_duration

STOP_STATES = ("Stopped", "Deleted")


def order_key(event: dict) -> tuple:
    """Event time; at the same time, the place in the lifecycle (events.STATE_ORDER); then receipt."""
    return (stop_cause.event_ms(event), STATE_ORDER.get(event.get("state", ""), -1), event.get("received_time", ""))


def timeline(store, instance_id: str) -> list[dict]:
    """Every event of one instance (from a store of shipper.read.stores) in lifecycle order, identity fields
    carried forward, and a stop cause on each stop stored before rows carried one."""
    events, known = sorted(store.instance_events(instance_id), key=order_key), {}
    for event in events:
        for name in IDENTITY_FIELDS:
            if event.get(name):
                known[name] = event[name]
            elif name in known:
                event[name] = known[name]
        if event.get("state") in STOP_STATES and not event.get("stop_cause"):
            event["stop_cause"] = stop_cause.classify(event, None, events, stop_cause.event_ms(event) / 1000)
    return events


def summarize(timeline: list[dict], registered: dict | None = None) -> dict:
    """What an operator asks first: what it was, when it was created and released, how long it lived, why it
    last stopped. `registered` is the instance registry's entry (instances/registry.py)."""
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
    registered = registered or {}
    for key in ("instance_name", "instance_type", "private_ip", "zone_id"):
        summary[key] = summary[key] or registered.get(key, "")
    for key in ("charge_type", "spot_strategy", "tags"):
        value = last.get(key) or registered.get(key, "")
        if value:
            summary[key] = value
    return summary
