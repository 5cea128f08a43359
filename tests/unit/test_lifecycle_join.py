"""The lifecycle join: each state change with the ActionTrail call that caused it, and the stop cause it gives."""
import pytest

from shipper.events import new_event
from shipper.read.lifecycle import CALL_WINDOW_MS, summarize, timeline
from shipper.times import format_time_ms
from tests.unit.test_lifecycle import ID, ListStore

T0 = 1772697600000  # 2026-03-05T08:00:00Z
ALICE = dict(actor_type="ram-user", actor_name="alice", source_ip="203.0.113.7", user_agent="AliyunConsole")
CLI = dict(actor_type="ram-user", actor_name="ops", source_ip="198.51.100.4", user_agent="Aliyun-CLI/3.0.200")
SDK = dict(actor_type="assumed-role", actor_name="deployer:ci-42", source_ip="198.51.100.9",
           user_agent="AlibabaCloud (Linux; x86_64) Python/3.11.9 Core/2.16.1 python-requests/2.32.3")
SYSTEM = dict(actor_type="system", actor_name="ecs.aliyuncs.com", source_ip="ecs.aliyuncs.com",
              user_agent="ecs.aliyuncs.com")


def change(state, at_ms, **values):
    return new_event(instance_id=ID, event_name="Instance:StateChange", category="lifecycle", state=state,
                     event_uid=f"{state}-{at_ms}", event_time_ms=str(at_ms), event_time=format_time_ms(at_ms),
                     **values)


def call(name, at_ms, who=ALICE, **values):
    """An api-call record as shipper/trail.py makes it (ActionTrail times are whole seconds)."""
    return new_event(instance_id=ID, resource_id=ID, event_name=f"ActionTrail:{name}", category="api-call",
                     envelope="actiontrail", event_uid=f"actiontrail:{name.lower()}-{at_ms}:{ID}",
                     event_time_ms=str(at_ms), event_time=format_time_ms(at_ms), level="INFO",
                     request_id=f"req-{at_ms}", actor_access_key_id="LTAI****abcd", **who, **values)


def joined(*rows):
    """The state changes of the timeline: state -> (the call's text or None, stop_cause)."""
    return {e["state"]: (e["caused_by"]["text"] if e["caused_by"] else None, e["stop_cause"])
            for e in timeline(ListStore(list(rows)), ID) if e["state"]}


def test_a_console_stop_is_shown_with_its_caller_and_becomes_a_user_stop():
    found = joined(change("Running", T0), call("StopInstance", T0 + 60_000),
                   change("Stopping", T0 + 64_000), change("Stopped", T0 + 90_000, stop_cause="user-or-api"))
    assert found == {
        "Running": (None, ""),
        "Stopping": ("StopInstance by RAM user alice from 203.0.113.7 via console, 4 s before", ""),
        "Stopped": ("StopInstance by RAM user alice from 203.0.113.7 via console, 30 s before", "user"),
    }


@pytest.mark.parametrize("who, name, state, text, cause", [
    (CLI, "StopInstances", "Stopped", "StopInstances by RAM user ops from 198.51.100.4 via cli", "api"),
    (SDK, "DeleteInstance", "Deleted", "DeleteInstance by role deployer:ci-42 from 198.51.100.9 via sdk", "api"),
    (SYSTEM, "Release", "Deleted", "Release by system ecs.aliyuncs.com from ecs.aliyuncs.com via service",
     "service"),
    (dict(ALICE, actor_type="root-account", actor_name="root", source_ip=""), "DeleteInstances", "Deleted",
     "DeleteInstances by root account via console", "user"),
    (SDK, "RebootInstances", "Stopped", "RebootInstances by role deployer:ci-42 from 198.51.100.9 via sdk", "api"),
])
def test_each_way_of_calling_gives_its_stop_cause(who, name, state, text, cause):
    found = joined(call(name, T0, who), change(state, T0 + 2_000))
    assert found[state] == (f"{text}, 2 s before", cause)


def test_a_failed_call_explains_nothing_and_the_stop_stays_user_or_api():
    found = joined(call("StopInstance", T0, error_code="IncorrectInstanceStatus"),
                   change("Stopping", T0 + 1_000), change("Stopped", T0 + 20_000))
    assert found == {"Stopping": (None, ""), "Stopped": (None, "user-or-api")}


@pytest.mark.parametrize("call_at, explained", [
    (T0 - CALL_WINDOW_MS, True),          # the window's far end
    (T0 - CALL_WINDOW_MS - 1_000, False),
    (T0 + 5_000, True),                   # another clock, whole seconds: a little after still counts
    (T0 + 6_000, False),
])
def test_the_window_before_and_the_clock_skew_after(call_at, explained):
    found = joined(call("StopInstance", call_at), change("Stopped", T0))
    assert (found["Stopped"][0] is not None) is explained
    assert found["Stopped"][1] == ("user" if explained else "user-or-api")


def test_a_call_explains_its_own_transitions_and_ends_with_its_last_state():
    """A stop, a start nobody called (restarted by a hook without a trail), then a stop of unknown cause."""
    found = timeline(ListStore([
        call("StopInstance", T0), change("Stopping", T0 + 1_000), change("Stopped", T0 + 30_000),
        change("Starting", T0 + 60_000), change("Running", T0 + 80_000),
        change("Stopping", T0 + 120_000), change("Stopped", T0 + 150_000)]), ID)
    callers = [(e["state"], e["caused_by"]["call"] if e["caused_by"] else "") for e in found if e["state"]]
    assert callers == [("Stopping", "StopInstance"), ("Stopped", "StopInstance"), ("Starting", ""),
                       ("Running", ""), ("Stopping", ""), ("Stopped", "")]
    assert [e["stop_cause"] for e in found if e["state"] == "Stopped"] == ["user", "user-or-api"]


def test_each_call_explains_only_the_states_it_causes():
    found = joined(call("RunInstances", T0, CLI), change("Pending", T0 + 1_000), change("Starting", T0 + 5_000),
                   change("Running", T0 + 20_000),
                   call("ModifyInstanceChargeType", T0 + 30_000), call("StartInstance", T0 + 40_000),
                   call("RebootInstance", T0 + 100_000, SDK), change("Stopping", T0 + 101_000),
                   change("Starting", T0 + 110_000))
    assert {state: text.split(" by ")[0] for state, (text, _) in found.items()} == {
        "Pending": "RunInstances", "Starting": "RebootInstance", "Running": "RunInstances",
        "Stopping": "RebootInstance"}


def test_the_last_call_before_a_change_wins_over_earlier_ones_and_over_a_call_after_it():
    """A stop retried by a script, then a release 3 s after the Stopped: the Stopped is the retry's."""
    found = timeline(ListStore([call("StopInstance", T0), call("StopInstance", T0 + 3_000, CLI),
                                change("Stopped", T0 + 4_000), call("DeleteInstance", T0 + 7_000),
                                change("Deleted", T0 + 9_000)]), ID)
    assert [(e["state"], e["caused_by"]["request_id"]) for e in found if e["state"]] == [
        ("Stopped", f"req-{T0 + 3_000}"), ("Deleted", f"req-{T0 + 7_000}")]


def test_a_stop_cause_the_evidence_decided_is_kept():
    found = joined(call("DeleteInstance", T0, SYSTEM), change("Deleted", T0 + 1_000, stop_cause="spot-reclaim"))
    assert found["Deleted"][1] == "spot-reclaim"


def test_the_caller_in_json_and_in_the_summary():
    rows = [call("RunInstances", T0, CLI), change("Pending", T0 + 2_000), change("Running", T0 + 30_000),
            call("DeleteInstance", T0 + 3_600_000), change("Deleted", T0 + 3_607_000)]
    found = timeline(ListStore(rows), ID)
    deleted = found[-1]["caused_by"]
    assert {k: deleted[k] for k in ("call", "event_uid", "actor_type", "actor_name", "actor_access_key_id",
                                    "source_ip", "via", "request_id", "seconds_before")} == {
        "call": "DeleteInstance", "event_uid": f"actiontrail:deleteinstance-{T0 + 3_600_000}:{ID}",
        "actor_type": "ram-user", "actor_name": "alice", "actor_access_key_id": "LTAI****abcd",
        "source_ip": "203.0.113.7", "via": "console", "request_id": f"req-{T0 + 3_600_000}", "seconds_before": 7}
    assert [e.get("caused_by", "absent") is None for e in found] == [False, False, False, False, False]
    summary = summarize(found)
    assert summary["created_by"] == "RunInstances by RAM user ops from 198.51.100.4 via cli, 2 s before"
    assert summary["released_by"] == "DeleteInstance by RAM user alice from 203.0.113.7 via console, 7 s before"
    assert "released_by" not in summarize(timeline(ListStore(rows[1:3]), ID))
