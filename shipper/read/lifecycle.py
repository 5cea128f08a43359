"""One instance's lifecycle: its events in time order, identity carried forward, and the summary an operator
reads first (name/type come from earlier events when the Deleted event lacks them)."""
from __future__ import annotations

from shipper.events import IDENTITY_FIELDS
from shipper.times import format_duration


def timeline(store, instance_id: str) -> list[dict]:
    """Every event of one instance in time order (from a store of shipper.read.stores), identity fields
    carried forward."""
    events, known = [], {}
    for event in store.instance_events(instance_id):
        for name in IDENTITY_FIELDS:
            if event[name]:
                known[name] = event[name]
            elif name in known:
                event[name] = known[name]
        events.append(event)
    return events


def summarize(timeline: list[dict], cached: dict | None = None) -> dict:
    """What an operator asks first: what it was, when it was created and released, how long it lived.

    `cached` is the instance cache's entry (instances/cache.py): zone, tags and charge type the events do not carry."""
    if not timeline:
        return {}
    last = timeline[-1]
    created = next((e for e in timeline if e["state"] == "Pending"), None)
    released = next((e for e in reversed(timeline) if e["state"] == "Deleted"), None)
    states = [e for e in timeline if e["state"]]
    summary = {
        "instance_id": last["instance_id"],
        "instance_name": last["instance_name"],
        "instance_type": last["instance_type"],
        "region_id": last["region_id"],
        "private_ip": last["private_ip"],
        "created": created["event_time"] if created else "",
        "released": released["event_time"] if released else "",
        "last_state": states[-1]["state"] if states else "",
        "events": len(timeline),
        "interruptions": sum(1 for e in timeline if e["category"] == "interruption"),
    }
    if created and released:
        summary["lifetime"] = format_duration(int(released["event_time_ms"]) - int(created["event_time_ms"]))
    for key in ("instance_name", "instance_type", "private_ip"):
        summary[key] = summary[key] or (cached or {}).get(key, "")
    for key in ("zone_id", "charge_type", "spot_strategy", "tags"):
        if cached and cached.get(key):
            summary[key] = cached[key]
    return summary
