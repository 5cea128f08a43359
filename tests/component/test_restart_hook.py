"""The restart hook, driven directly (as the engine would after the grace delay) against the emulator."""
import dataclasses
import json
import time

import pytest

from shipper import events
from shipper.hooks import ACTED, DRY_RUN, FAILED, INLINE, PENDING, SKIPPED, SUCCEEDED, execute
from shipper.cloud.openapi import OpenApi
from shipper.hooks.restart import RestartHook
from shipper.config import OpenApiSettings
from shipper.hooks.restart import RestartHookSettings
from shipper.cloud import Credentials
from tests.emulators.openapi import OpenApiEmulator
from tests.fakes import FakeClock

KEY_ID, SECRET = "LTAIexampleKEY01", "exampleSecret0123456789"
TAG = {"shipper:auto-restart": "true"}
INSTANCE = "i-bp1restart00000001"
LIVE = RestartHookSettings(enabled=True, dry_run=False, confirm_timeout_seconds=60.0)


def hook_clock() -> FakeClock:
    """The hook's clock and sleep: from now, sleeping advances the clock at once, with a blink of real time so
    the emulator's Starting -> Running timer can fire."""
    return FakeClock(time.time(), real_sleep=0.01)


@pytest.fixture
def emulator():
    with OpenApiEmulator(credentials={KEY_ID: SECRET}, start_delay=0.03, job_delay=0.02) as api:
        yield api


def openapi(emulator, regions=("cn-hangzhou",)) -> OpenApi:
    endpoint = emulator.endpoint
    return OpenApi(OpenApiSettings(regions=regions, ecs_endpoint=endpoint, slb_endpoint=endpoint,
                                   alb_endpoint=endpoint, nlb_endpoint=endpoint, timeout_seconds=5.0),
                   Credentials(KEY_ID, SECRET))


def state_event(instance_id: str, state: str, at: float, uid: str = "", region: str = "") -> dict:
    return events.new_event(event_uid=uid or f"{instance_id}-{state}-{at}", event_name="Instance:StateChange",
                            category="lifecycle", state=state, state_raw=state, instance_id=instance_id,
                            event_time_ms=str(int(at * 1000)), region_id=region)


def run(hook, event) -> list[dict]:
    records = []
    execute(hook, event, INLINE, records.append)
    assert records and all(set(r) == set(events.ACTION_FIELDS) for r in records)
    return records


def test_wants_real_stopped_state_changes_only():
    hook = RestartHook(LIVE, api=None)
    assert hook.wants(state_event(INSTANCE, "Stopped", 0))
    assert not hook.wants(state_event(INSTANCE, "Running", 0))
    assert not hook.wants(state_event("i-bp1res***001", "Stopped", 0))
    assert not hook.wants(events.new_event(event_name="Instance:PreemptibleInstanceInterruption", instance_id=INSTANCE))
    assert hook.delay_seconds(state_event(INSTANCE, "Stopped", 0)) == LIVE.grace_seconds


def test_opted_in_stopped_instance_is_started_once_and_confirmed(emulator):
    emulator.add_instance(INSTANCE, status="Stopped", tags=TAG)
    clock = hook_clock()
    hook = RestartHook(LIVE, openapi(emulator), clock=clock, sleep=clock.sleep)
    decision, outcome = run(hook, state_event(INSTANCE, "Stopped", clock.now - 60))
    assert (decision["decision"], decision["outcome"], decision["finished_time"]) == (ACTED, PENDING, "")
    assert (outcome["decision"], outcome["outcome"], outcome["error_code"]) == (ACTED, SUCCEEDED, "")
    assert outcome["decided_time"] == decision["decided_time"] and outcome["finished_time"]
    assert decision["stop_cause"] == outcome["stop_cause"] == "user-or-api"
    assert decision["hook"] == "restart" and decision["trigger"] == INLINE and decision["instance_id"] == INSTANCE
    assert json.loads(outcome["detail"])["status"] == "Running"
    assert len(emulator.calls("StartInstance")) == 1
    assert emulator.instance(INSTANCE).status == "Running"


def test_the_instance_is_read_started_and_confirmed_in_its_own_region(emulator):
    emulator.add_instance(INSTANCE, region_id="cn-beijing", status="Stopped", tags=TAG)
    emulator.add_instance("i-bp1restart00000002", status="Stopped", tags=TAG)     # Hangzhou, the first region
    clock = hook_clock()
    hook = RestartHook(LIVE, openapi(emulator, regions=("cn-hangzhou", "cn-shanghai", "cn-beijing")),
                       clock=clock, sleep=clock.sleep)
    assert run(hook, state_event(INSTANCE, "Stopped", clock.now - 60, region="cn-beijing"))[-1]["outcome"] == SUCCEEDED
    [record] = run(hook, state_event(INSTANCE, "Stopped", clock.now - 60, region="cn-shanghai"))
    assert record["reason"] == "not-found"                                        # not there: nothing started
    no_region = state_event("i-bp1restart00000002", "Stopped", clock.now - 60)
    assert run(hook, no_region)[-1]["outcome"] == SUCCEEDED
    assert [(c.params["InstanceId"], c.params["RegionId"]) for c in emulator.calls("StartInstance")] == [
        (INSTANCE, "cn-beijing"), ("i-bp1restart00000002", "cn-hangzhou")]
    assert emulator.instance(INSTANCE).status == "Running"


@pytest.mark.parametrize("setup, reason, cause", [
    (dict(status="Stopped"), "not-opted-in", "user-or-api"),
    (dict(status="Stopped", tags={"shipper:auto-restart": "false"}), "not-opted-in", "user-or-api"),
    (dict(status="Stopped", tags=TAG, locks=["financial"]), "locked-financial", "billing-lock"),
    (dict(status="Stopped", tags=TAG, locks=["security"]), "locked-security", "system"),
    (dict(status="Stopped", tags=TAG, spot_strategy="SpotAsPriceGo", locks=["Recycling"]), "spot-reclaim",
     "spot-reclaim"),
    (dict(status="Running", tags=TAG), "already-running", "user-or-api"),
    (dict(status="Stopping", tags=TAG), "not-stopped", "user-or-api"),
])
def test_instances_that_must_be_left_alone(emulator, setup, reason, cause):
    emulator.add_instance(INSTANCE, **setup)
    clock = hook_clock()
    hook = RestartHook(LIVE, openapi(emulator), clock=clock, sleep=clock.sleep)
    [record] = run(hook, state_event(INSTANCE, "Stopped", clock.now - 60))
    assert (record["decision"], record["reason"], record["stop_cause"]) == (SKIPPED, reason, cause)
    assert emulator.calls() == []


def test_spot_instance_with_an_interruption_notice_is_not_restarted(emulator):
    emulator.add_instance(INSTANCE, status="Stopped", tags=TAG, spot_strategy="SpotWithPriceLimit")
    clock = hook_clock()
    notice = events.new_event(event_uid="notice", event_name="Instance:PreemptibleInstanceInterruption",
                              category="interruption", instance_id=INSTANCE,
                              event_time_ms=str(int((clock.now - 360) * 1000)))
    hook = RestartHook(LIVE, openapi(emulator), clock=clock, sleep=clock.sleep, recent_events=lambda i: [notice])
    [record] = run(hook, state_event(INSTANCE, "Stopped", clock.now - 60))
    assert (record["reason"], record["stop_cause"]) == ("spot-reclaim", "spot-reclaim")
    assert emulator.calls() == []


def test_listed_instance_is_opted_in_without_a_tag(emulator):
    emulator.add_instance(INSTANCE, status="Stopped")
    clock = hook_clock()
    hook = RestartHook(dataclasses.replace(LIVE, opt_in_tag="", instances=(INSTANCE,)), openapi(emulator),
                       clock=clock, sleep=clock.sleep)
    assert [r["outcome"] for r in run(hook, state_event(INSTANCE, "Stopped", clock.now - 60))] == [PENDING, SUCCEEDED]


def test_late_stopped_for_an_instance_running_again_is_skipped(emulator):
    emulator.add_instance(INSTANCE, status="Running", tags=TAG)
    clock = hook_clock()
    stop = state_event(INSTANCE, "Stopped", clock.now - 120)
    newer = state_event(INSTANCE, "Running", clock.now - 90)
    hook = RestartHook(LIVE, openapi(emulator), clock=clock, sleep=clock.sleep,
                       recent_events=lambda instance_id: [stop, newer] if instance_id == INSTANCE else [])
    [record] = run(hook, stop)
    assert (record["decision"], record["reason"]) == (SKIPPED, "superseded")
    assert emulator.calls() == []


def test_flapping_instance_is_quarantined_after_its_budget(emulator):
    emulator.add_instance(INSTANCE, status="Stopped", tags=TAG)
    clock = hook_clock()
    hook = RestartHook(dataclasses.replace(LIVE, max_per_instance_per_hour=3), openapi(emulator),
                       clock=clock, sleep=clock.sleep)
    outcomes = []
    for _ in range(4):
        emulator.set_status(INSTANCE, "Stopped")
        records = run(hook, state_event(INSTANCE, "Stopped", clock.now))
        outcomes.append(records[-1]["outcome"] or records[-1]["reason"])
        clock.now += 120
    assert outcomes == [SUCCEEDED, SUCCEEDED, SUCCEEDED, "budget-exhausted"]
    assert len(emulator.calls("StartInstance")) == 3
    clock.now += 1800                       # still within the hour of the last start: still quarantined
    emulator.set_status(INSTANCE, "Stopped")
    [record] = run(hook, state_event(INSTANCE, "Stopped", clock.now))
    assert record["reason"] == "budget-exhausted" and "quarantined_until" in json.loads(record["detail"])
    clock.now += 3600
    assert run(hook, state_event(INSTANCE, "Stopped", clock.now))[-1]["outcome"] == SUCCEEDED


def test_a_burst_of_stops_trips_the_fleet_breaker(emulator):
    ids = [f"i-bp1burst{n:011d}" for n in range(50)]
    for instance_id in ids:
        emulator.add_instance(instance_id, status="Stopped", tags=TAG)
    clock = hook_clock()
    hook = RestartHook(dataclasses.replace(LIVE, max_per_minute=10, max_per_instance_per_hour=3), openapi(emulator),
                       clock=clock, sleep=lambda seconds: time.sleep(0.01))    # the burst is decided within a second
    decisions = [run(hook, state_event(i, "Stopped", clock.now - 60))[0] for i in ids]
    assert [d["decision"] for d in decisions[:10]] == [ACTED] * 10
    assert [d["reason"] for d in decisions[10:]] == ["breaker-open"] * 40
    assert len(emulator.calls("StartInstance")) == 10
    clock.now += 61
    assert run(hook, state_event(ids[10], "Stopped", clock.now - 60))[0]["decision"] == ACTED


def test_dry_run_calls_nothing_mutating(emulator):
    emulator.add_instance(INSTANCE, status="Stopped", tags=TAG)
    clock = hook_clock()
    hook = RestartHook(dataclasses.replace(LIVE, dry_run=True), openapi(emulator), clock=clock, sleep=clock.sleep)
    [record] = run(hook, state_event(INSTANCE, "Stopped", clock.now - 60))
    assert (record["decision"], record["outcome"], record["stop_cause"]) == (DRY_RUN, "", "user-or-api")
    assert emulator.calls() == []
    assert emulator.instance(INSTANCE).status == "Stopped"


def test_start_error_is_the_outcome(emulator):
    emulator.add_instance(INSTANCE, status="Stopped", tags=TAG, stopped_mode="StopCharging")
    emulator.fail_next("OperationDenied.NoStock", operation="StartInstance")
    clock = hook_clock()
    hook = RestartHook(LIVE, openapi(emulator), clock=clock, sleep=clock.sleep)
    [record] = run(hook, state_event(INSTANCE, "Stopped", clock.now - 60))
    assert (record["decision"], record["outcome"], record["error_code"]) == (ACTED, FAILED, "OperationDenied.NoStock")
    assert record["finished_time"] and "stock" in json.loads(record["detail"])["charge"]


def test_not_running_within_the_confirm_timeout_fails(emulator):
    emulator.add_instance(INSTANCE, status="Stopped", tags=TAG)
    emulator.start_delay = 600.0
    clock = hook_clock()
    hook = RestartHook(dataclasses.replace(LIVE, confirm_timeout_seconds=20.0), openapi(emulator),
                       clock=clock, sleep=clock.sleep)
    decision, outcome = run(hook, state_event(INSTANCE, "Stopped", clock.now - 60))
    assert (outcome["outcome"], outcome["error_code"]) == (FAILED, "confirm-timeout")
    assert json.loads(outcome["detail"])["status"] == "Starting"
    assert sum(clock.delays) == pytest.approx(20.0)


def test_unknown_and_masked_instances(emulator):
    clock = hook_clock()
    hook = RestartHook(LIVE, openapi(emulator), clock=clock, sleep=clock.sleep)
    [record] = run(hook, state_event("i-bp1released0000001", "Stopped", clock.now - 60))
    assert (record["reason"], record["stop_cause"]) == ("not-found", "user-or-api")
    [record] = run(hook, state_event("i-bp1res***001", "Stopped", clock.now - 60))   # an alert may bypass wants()
    assert record["reason"] == "masked-id"
    assert emulator.request_counts() == {"DescribeInstances": 1}
