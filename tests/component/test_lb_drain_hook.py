"""The lb_drain hook against the emulator: every membership found and removed exactly, before the reclaim."""
import dataclasses
import json
import threading
import time

import pytest

from shipper import events
from shipper.times import format_time_ms
from shipper.hooks import ACTED, ALERT, DRY_RUN, FAILED, INLINE, PENDING, SKIPPED, SUCCEEDED, execute
from shipper.hooks import guards
from shipper.hooks.guards import reclaim_time
from shipper.hooks.lb_drain import LbDrainHook
from shipper.instances.model import Instance
from shipper.hooks.lb_drain import LbDrainHookSettings
from tests.component.test_restart_hook import emulator, hook_clock, openapi  # noqa: F401 (emulator is a fixture)
from tests.waiting import wait_until

SPOT = "i-bp1spot0000000001"
OTHER = "i-bp1other000000001"
LIVE = LbDrainHookSettings(enabled=True, dry_run=False, drain_seconds=30.0, safety_margin_seconds=30.0)


def interruption(instance_id: str, at: float, reclaim_in: float | None = 300.0, region: str = "") -> dict:
    return events.new_event(
        event_uid=f"notice-{instance_id}-{at}", event_name="Instance:PreemptibleInstanceInterruption",
        category="interruption", instance_id=instance_id, action="delete", event_time_ms=str(int(at * 1000)),
        not_before="" if reclaim_in is None else format_time_ms(int((at + reclaim_in) * 1000)), region_id=region)


def run(hook, event, trigger=INLINE) -> list[dict]:
    """The records of one drain: the decision, then (from another thread) the outcome of an acted one."""
    records = []
    execute(hook, event, trigger, records.append)
    wait_until(lambda: records and (records[0]["decision"] != ACTED or records[-1]["finished_time"]), timeout=30)
    assert all(set(r) == set(events.ACTION_FIELDS) for r in records)
    return records


def spot(emulator, *instance_ids: str, strategy: str = "SpotAsPriceGo") -> None:
    for instance_id in instance_ids:
        emulator.add_instance(instance_id, spot_strategy=strategy)


def two_vserver_groups_and_an_alb_group(emulator) -> None:
    spot(emulator, SPOT)
    emulator.add_load_balancer("lb-web", backends=[{"ServerId": OTHER}])
    emulator.add_vserver_group("lb-web", "rsp-http", backends=[{"ServerId": SPOT, "Port": 80, "Weight": 100},
                                                               {"ServerId": OTHER, "Port": 80}])
    emulator.add_load_balancer("lb-api")
    emulator.add_vserver_group("lb-api", "rsp-api", backends=[{"ServerId": SPOT, "Port": 8080, "Weight": 40}])
    emulator.add_server_group("alb", "sgp-alb", servers=[{"ServerId": SPOT, "Port": 443, "Weight": 70},
                                                         {"ServerId": OTHER, "Port": 443}])


def hook_for(emulator, clock, settings=LIVE) -> LbDrainHook:
    return LbDrainHook(settings, openapi(emulator), clock=clock, sleep=clock.sleep)


def wait_for_alb_job(emulator, group_id: str) -> list[dict]:
    deadline = time.monotonic() + 5
    while (state := emulator.server_group(group_id))[0] != "Available":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return state[1]


def test_wants_real_interruptions_only():
    hook = LbDrainHook(LIVE, api=None)
    assert hook.wants(interruption(SPOT, 0))
    assert not hook.wants(interruption("i-bp1sp***001", 0))
    assert not hook.wants(events.new_event(event_name="Instance:StateChange", state="Stopped", instance_id=SPOT))
    assert hook.delay_seconds(interruption(SPOT, 0)) == 0


def test_interrupted_instance_leaves_every_group_with_its_exact_ports_before_the_deadline(emulator):
    two_vserver_groups_and_an_alb_group(emulator)
    clock = hook_clock()
    decision, outcome = run(hook_for(emulator, clock), interruption(SPOT, clock.now))
    assert (decision["decision"], decision["outcome"]) == (ACTED, PENDING)
    assert float(decision["seconds_before_reclaim"]) == pytest.approx(300, abs=1)
    assert (outcome["decision"], outcome["outcome"], outcome["error_code"]) == (ACTED, SUCCEEDED, "")
    detail = json.loads(outcome["detail"])
    assert (detail["removed"], detail["total"]) == (3, 3)
    assert float(outcome["seconds_before_reclaim"]) == pytest.approx(270, abs=1)   # 300 - the 30 s drain
    assert clock.delays == [30.0]

    # drained first (weight 0), then removed exactly as listed: port, listed weight, type
    actions = [c.action for c in emulator.calls() if not c.code]
    assert actions.index("RemoveVServerGroupBackendServers") > actions.index("SetVServerGroupAttribute")
    removed = {c.params["VServerGroupId"]: json.loads(c.params["BackendServers"])
               for c in emulator.calls("RemoveVServerGroupBackendServers")}
    assert removed == {"rsp-http": [{"ServerId": SPOT, "Weight": "100", "Type": "ecs", "Port": "80"}],
                       "rsp-api": [{"ServerId": SPOT, "Weight": "40", "Type": "ecs", "Port": "8080"}]}
    [alb] = [c.params for c in emulator.calls("RemoveServersFromServerGroup") if not c.code]
    assert (alb["Servers.1.ServerId"], alb["Servers.1.Port"], alb["Servers.1.ServerType"]) == (SPOT, "443", "Ecs")

    assert [b["ServerId"] for b in emulator.vserver_group_backends("rsp-http")] == [OTHER]
    assert emulator.vserver_group_backends("rsp-api") == []
    assert [s["ServerId"] for s in wait_for_alb_job(emulator, "sgp-alb")] == [OTHER]
    assert [b["ServerId"] for b in emulator.backend_servers("lb-web")] == [OTHER]


def test_each_instance_is_drained_in_its_own_region(emulator):
    emulator.add_instance(SPOT, region_id="cn-beijing", spot_strategy="SpotAsPriceGo")
    emulator.add_instance(OTHER, spot_strategy="SpotAsPriceGo")                   # Hangzhou
    emulator.add_load_balancer("lb-bj", region_id="cn-beijing")
    emulator.add_vserver_group("lb-bj", "rsp-bj", backends=[{"ServerId": SPOT, "Port": 80}])
    emulator.add_server_group("nlb", "sgp-bj", region_id="cn-beijing", servers=[{"ServerId": SPOT, "Port": 53}])
    emulator.add_load_balancer("lb-hz", backends=[{"ServerId": OTHER}])
    clock = hook_clock()
    hook = LbDrainHook(LIVE, openapi(emulator, regions=("cn-hangzhou", "cn-beijing")), clock=clock,
                       sleep=clock.sleep)
    assert run(hook, interruption(SPOT, clock.now, region="cn-beijing"))[-1]["outcome"] == SUCCEEDED
    assert run(hook, interruption(OTHER, clock.now, region="cn-hangzhou"))[-1]["outcome"] == SUCCEEDED
    regions = {(c.action, c.params.get("VServerGroupId") or c.params.get("LoadBalancerId")
                or c.params["ServerGroupId"]): c.params["RegionId"] for c in emulator.calls() if not c.code}
    assert regions == {
        ("SetVServerGroupAttribute", "rsp-bj"): "cn-beijing",
        ("RemoveVServerGroupBackendServers", "rsp-bj"): "cn-beijing",
        ("UpdateServerGroupServersAttribute", "sgp-bj"): "cn-beijing",
        ("RemoveServersFromServerGroup", "sgp-bj"): "cn-beijing",
        ("SetBackendServers", "lb-hz"): "cn-hangzhou", ("RemoveBackendServers", "lb-hz"): "cn-hangzhou"}
    assert emulator.request_counts()["DescribeLoadBalancers"] == 2              # one discovery per region
    assert emulator.vserver_group_backends("rsp-bj") == [] and emulator.backend_servers("lb-hz") == []
    assert wait_for_alb_job(emulator, "sgp-bj") == []


def test_default_backend_list_and_nlb_without_drain(emulator):
    spot(emulator, SPOT, strategy="SpotWithPriceLimit")
    emulator.add_load_balancer("lb-classic", backends=[{"ServerId": SPOT, "Weight": 60}, {"ServerId": OTHER}])
    emulator.add_server_group("nlb", "sgp-nlb", servers=[{"ServerId": SPOT, "Port": 6379}])
    clock = hook_clock()
    decision, outcome = run(hook_for(emulator, clock, dataclasses.replace(LIVE, drain_seconds=0.0)),
                            interruption(SPOT, clock.now))
    assert outcome["outcome"] == SUCCEEDED and clock.delays == []
    assert {c.action for c in emulator.calls()} == {"RemoveBackendServers", "RemoveServersFromServerGroup"}
    [clb] = emulator.calls("RemoveBackendServers")
    assert json.loads(clb.params["BackendServers"]) == [{"ServerId": SPOT, "Weight": "60", "Type": "ecs"}]
    assert [b["ServerId"] for b in emulator.backend_servers("lb-classic")] == [OTHER]
    assert wait_for_alb_job(emulator, "sgp-nlb") == []


def test_dry_run_discovers_and_calls_nothing_mutating(emulator):
    two_vserver_groups_and_an_alb_group(emulator)
    clock = hook_clock()
    [record] = run(hook_for(emulator, clock, dataclasses.replace(LIVE, dry_run=True)), interruption(SPOT, clock.now))
    assert record["decision"] == DRY_RUN and float(record["seconds_before_reclaim"]) > 290
    would = {(m["kind"], m["group"], m["port"]) for m in json.loads(record["detail"])["memberships"]}
    assert would == {("clb-vserver", "rsp-http", 80), ("clb-vserver", "rsp-api", 8080), ("alb", "sgp-alb", 443)}
    assert emulator.calls() == []


@pytest.mark.parametrize("settings, instance_id, reclaim_in, reason", [
    (dataclasses.replace(LIVE, opt_in_tag="spot:drain=true"), SPOT, 300.0, "not-opted-in"),
    (dataclasses.replace(LIVE, instances=(OTHER,)), SPOT, 300.0, "not-opted-in"),
    (LIVE, "i-bp1alone000000001", 300.0, "no-memberships"),
    (LIVE, SPOT, -1.0, "deadline-passed"),
    (LIVE, "i-bp1sp***001", 300.0, "masked-id"),
])
def test_skips_with_a_reason(emulator, settings, instance_id, reclaim_in, reason):
    two_vserver_groups_and_an_alb_group(emulator)
    spot(emulator, "i-bp1alone000000001")
    clock = hook_clock()
    [record] = run(hook_for(emulator, clock, settings), interruption(instance_id, clock.now, reclaim_in))
    assert (record["decision"], record["reason"]) == (SKIPPED, reason)
    assert emulator.calls() == []


def test_opt_in_by_tag(emulator):
    emulator.add_instance(SPOT, spot_strategy="SpotAsPriceGo", tags={"spot:drain": "true"})
    emulator.add_load_balancer("lb-classic", backends=[{"ServerId": SPOT}])
    clock = hook_clock()
    records = run(hook_for(emulator, clock, dataclasses.replace(LIVE, opt_in_tag="spot:drain=true")),
                  interruption(SPOT, clock.now))
    assert records[-1]["outcome"] == SUCCEEDED


def test_the_deadline_bounds_the_drain(emulator):
    spot(emulator, SPOT)
    emulator.add_load_balancer("lb-classic", backends=[{"ServerId": SPOT}])
    clock = hook_clock()
    outcome = run(hook_for(emulator, clock), interruption(SPOT, clock.now - 255))[-1]   # 45 s left
    assert clock.delays == [pytest.approx(15.0, abs=0.5)]                               # 45 - 30 s margin
    assert float(outcome["seconds_before_reclaim"]) >= LIVE.safety_margin_seconds - 0.5


def test_inside_the_safety_margin_removal_is_immediate(emulator):
    spot(emulator, SPOT)
    emulator.add_load_balancer("lb-classic", backends=[{"ServerId": SPOT}])
    clock = hook_clock()
    outcome = run(hook_for(emulator, clock), interruption(SPOT, clock.now - 290))[-1]    # 10 s left
    assert outcome["outcome"] == SUCCEEDED and clock.delays == []
    assert [c.action for c in emulator.calls()] == ["RemoveBackendServers"]


def test_without_not_before_the_reclaim_is_five_minutes_after_the_notice():
    event = interruption(SPOT, 1_000_000.0, reclaim_in=None)
    assert reclaim_time(event) == 1_000_300.0
    assert reclaim_time(interruption(SPOT, 1_000_000.0, reclaim_in=280)) == 1_000_280.0


def test_a_failed_removal_is_reported_with_its_code(emulator):
    two_vserver_groups_and_an_alb_group(emulator)
    emulator.fail_next("LbStatusNotSupport", operation="RemoveVServerGroupBackendServers")
    clock = hook_clock()
    outcome = run(hook_for(emulator, clock, dataclasses.replace(LIVE, drain_seconds=0.0)),
                  interruption(SPOT, clock.now))[-1]
    assert (outcome["outcome"], outcome["error_code"]) == (FAILED, "LbStatusNotSupport")
    detail = json.loads(outcome["detail"])
    assert (detail["removed"], detail["total"]) == (2, 3)


def test_discovery_is_cached_and_refreshed(emulator):
    third = "i-bp1third000000001"
    late = "i-bp1late0000000001"
    spot(emulator, SPOT, OTHER, third, late)
    emulator.add_load_balancer("lb-classic", backends=[{"ServerId": SPOT}, {"ServerId": OTHER}, {"ServerId": third}])
    clock = hook_clock()
    settings = dataclasses.replace(LIVE, drain_seconds=0.0, discovery_cache_seconds=300.0)
    hook = hook_for(emulator, clock, settings)
    run(hook, interruption(SPOT, clock.now - 10))
    run(hook, interruption(OTHER, clock.now - 10))            # from the index built for the first notice
    assert emulator.request_counts()["DescribeLoadBalancers"] == 1
    emulator.add_load_balancer("lb-new", backends=[{"ServerId": late}])
    clock.now += 60
    records = run(hook, interruption(late, clock.now))       # joined after the index was built: one rebuild
    assert records[-1]["outcome"] == SUCCEEDED
    assert emulator.request_counts()["DescribeLoadBalancers"] == 2
    clock.now += 301                                          # the index is now too old, though it knows `third`
    assert run(hook, interruption(third, clock.now - 10))[-1]["outcome"] == SUCCEEDED
    assert emulator.request_counts()["DescribeLoadBalancers"] == 3


def test_a_wave_of_interruptions_in_one_alb_group_is_removed_in_few_calls(emulator):
    """ALB locks a group while a change applies: one call per instance would pile up behind retries."""
    wave = [f"i-bp1wave{n:011d}" for n in range(20)]
    spot(emulator, *wave)
    emulator.add_load_balancer("lb-wave")
    emulator.add_vserver_group("lb-wave", "rsp-wave", backends=[{"ServerId": i, "Port": 80, "Weight": 100} for i in wave])
    emulator.add_server_group("alb", "sgp-wave", servers=[{"ServerId": i, "Port": 443, "Weight": 100} for i in wave])
    emulator.set_latency(0.3, operation="DescribeInstances")  # a real API's pace: the others ask meanwhile
    clock = hook_clock()
    hook = hook_for(emulator, clock, dataclasses.replace(LIVE, drain_seconds=0.0))
    outcomes = {}

    def drain(instance):
        outcomes[instance] = run(hook, interruption(instance, clock.now))[-1]

    threads = [threading.Thread(target=drain, args=(i,)) for i in wave]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert {o["outcome"] for o in outcomes.values()} == {SUCCEEDED} and len(outcomes) == 20
    assert emulator.vserver_group_backends("rsp-wave") == []
    assert wait_for_alb_job(emulator, "sgp-wave") == []
    removals = [c for c in emulator.calls("RemoveServersFromServerGroup") if not c.code]
    # shared calls, not one per instance (20): gathered per group, and the re-reads of whoever asks together;
    # bounds loose enough for a loaded machine, where the threads start spread out
    assert len(removals) < 10 and len(emulator.calls("RemoveVServerGroupBackendServers")) < 10
    assert emulator.request_counts()["DescribeInstances"] <= 3


# ---- only a spot instance under interruption is drained (an alert names any instance it likes) ----------

NOW_MS = 1_760_000_000_000


def notice(reclaim_in: float | None, at_ms: int = NOW_MS, **extra) -> dict:
    return {"event_uid": f"n-{at_ms}", "event_name": guards.INTERRUPTION, "instance_id": SPOT,
            "event_time_ms": str(at_ms),
            "not_before": "" if reclaim_in is None else format_time_ms(at_ms + int(reclaim_in * 1000))} | extra


def stopped_event() -> dict:
    return {"event_uid": "s", "event_name": guards.STATE_CHANGE, "state": "Stopped", "event_time_ms": str(NOW_MS)}


@pytest.mark.parametrize("event, inline, history, found", [
    (notice(300), True, [], "event"),                                  # inline: the notice itself
    (stopped_event(), True, [notice(300)], None),                      # inline, not a notice
    ({"event_name": guards.INTERRUPTION}, False, [], None),            # alert, nothing on record
    ({"event_name": guards.INTERRUPTION}, False, [notice(300)], "history"),
    ({"event_name": guards.INTERRUPTION}, False, [notice(-1)], None),  # its reclaim time is past
    ({"event_name": guards.INTERRUPTION}, False, [notice(None, NOW_MS - 400_000)], None),  # 5 min default, past
    ({"event_name": guards.INTERRUPTION}, False, [notice(None, NOW_MS - 100_000)], "history"),
    ({"event_name": guards.INTERRUPTION}, False, [stopped_event()], None),
])
def test_interruption_notice(event, inline, history, found):
    got = guards.interruption_notice(event, inline, history, NOW_MS / 1000)
    assert got is {"event": event, "history": history[0] if history else None, None: None}[found]


@pytest.mark.parametrize("strategy, has_notice, refusal", [
    ("SpotAsPriceGo", True, ""),
    ("SpotWithPriceLimit", True, ""),
    ("NoSpot", True, "not-spot"),
    ("", True, "not-spot"),
    ("SpotAsPriceGo", False, "not-interrupted"),
    ("NoSpot", False, "not-spot"),
])
def test_drain_refusal(strategy, has_notice, refusal):
    instance = Instance(instance_id=SPOT, status="Running", tags={}, spot_strategy=strategy)
    assert guards.drain_refusal(instance, notice(300) if has_notice else None) == refusal


class History:
    """The engine's history of committed events, as `recent_events` gives it to the hook."""

    def __init__(self, *committed: dict):
        self.committed = list(committed)

    def __call__(self, instance_id: str) -> list[dict]:
        return [e for e in self.committed if e.get("instance_id") == instance_id]


def alert_drain(emulator, clock, history: History) -> list[dict]:
    hook = LbDrainHook(LIVE, openapi(emulator), clock=clock, sleep=clock.sleep, recent_events=history)
    event = dict(interruption(SPOT, clock.now), event_uid=f"alert:firing-1:{SPOT}")
    return run(hook, event, ALERT)


def test_an_alert_cannot_drain_an_on_demand_instance(emulator):
    two_vserver_groups_and_an_alb_group(emulator)
    emulator.add_instance(SPOT, spot_strategy="NoSpot")          # re-added: an ordinary on-demand instance
    clock = hook_clock()
    [record] = alert_drain(emulator, clock, History(interruption(SPOT, clock.now - 10)))
    assert (record["decision"], record["reason"], record["trigger"]) == (SKIPPED, "not-spot", ALERT)
    assert emulator.calls() == []


def test_an_inline_notice_for_an_on_demand_instance_drains_nothing(emulator):
    two_vserver_groups_and_an_alb_group(emulator)
    emulator.add_instance(SPOT, spot_strategy="NoSpot")
    clock = hook_clock()
    [record] = run(hook_for(emulator, clock), interruption(SPOT, clock.now))
    assert (record["decision"], record["reason"]) == (SKIPPED, "not-spot")
    assert emulator.calls() == []


@pytest.mark.parametrize("committed", [[], [dict(interruption(SPOT, 0), instance_id=OTHER)], "expired"])
def test_an_alert_cannot_drain_a_spot_instance_with_no_live_notice_on_record(emulator, committed):
    two_vserver_groups_and_an_alb_group(emulator)
    clock = hook_clock()
    if committed == "expired":
        committed = [interruption(SPOT, clock.now - 400, reclaim_in=None)]
    [record] = alert_drain(emulator, clock, History(*committed))
    assert (record["decision"], record["reason"]) == (SKIPPED, "not-interrupted")
    assert emulator.calls() == []


def test_an_alert_drains_a_spot_instance_whose_notice_is_on_record(emulator):
    two_vserver_groups_and_an_alb_group(emulator)
    clock = hook_clock()
    decision, outcome = alert_drain(emulator, clock, History(interruption(SPOT, clock.now - 60, reclaim_in=240)))
    assert (decision["decision"], outcome["outcome"]) == (ACTED, SUCCEEDED)
    # the deadline is the committed notice's: 180 s left, 30 s drained
    assert float(decision["seconds_before_reclaim"]) == pytest.approx(180, abs=1)
    assert float(outcome["seconds_before_reclaim"]) == pytest.approx(150, abs=1)
    assert emulator.vserver_group_backends("rsp-api") == []
