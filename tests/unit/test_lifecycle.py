"""`shipper lifecycle`'s timeline and summary: lifecycle order at equal times, stop causes, identity."""
from shipper.events import new_event
from shipper.read.lifecycle import summarize, timeline

ID = "i-bp1life000000000001"


class ListStore:
    """A store as shipper.read.stores gives it: events of one instance, in the store's own order."""

    def __init__(self, rows):
        self.rows = rows

    def instance_events(self, instance_id):
        return [dict(r) for r in self.rows if r["instance_id"] == instance_id]


def row(state, ms, received="2026-01-01T00:00:00.000Z", **values):
    return new_event(instance_id=ID, event_name="Instance:StateChange", category="lifecycle", state=state,
                     event_uid=f"{state}-{ms}", event_time_ms=str(ms), event_time=f"t{ms}", received_time=received,
                     **values)


def test_events_with_the_same_time_follow_the_lifecycle_order_whatever_the_store_order():
    store = ListStore([row("Stopped", 5000, received="2026-01-01T00:00:01.000Z"),
                       row("Starting", 5000, received="2026-01-01T00:00:00.000Z"),
                       row("Running", 1000)])
    states = [e["state"] for e in timeline(store, ID)]
    assert states == ["Running", "Starting", "Stopped"]
    assert summarize(timeline(store, ID))["last_state"] == "Stopped"


def test_a_stop_stored_before_rows_carried_a_cause_is_classified_from_the_timeline():
    notice = new_event(instance_id=ID, event_name="Instance:PreemptibleInstanceInterruption",
                       category="interruption", event_uid="n", event_time_ms="1000")
    store = ListStore([notice, row("Deleted", 301_000), row("Running", 500)])
    events = timeline(store, ID)
    assert events[-1]["stop_cause"] == "spot-reclaim"
    assert summarize(events)["stop_cause"] == "spot-reclaim"


def test_a_stored_cause_is_kept_and_the_summary_takes_zone_and_charge_type_from_the_rows():
    store = ListStore([row("Running", 1000, zone_id="cn-hangzhou-h", charge_type="PrePaid"),
                       row("Stopped", 2000, stop_cause="billing-lock")])
    summary = summarize(timeline(store, ID), {"tags": '{"team":"web"}'})
    assert (summary["stop_cause"], summary["zone_id"], summary["charge_type"], summary["tags"]) == \
        ("billing-lock", "cn-hangzhou-h", "PrePaid", '{"team":"web"}')
