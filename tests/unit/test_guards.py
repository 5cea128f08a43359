"""The hooks' policy: pure functions and the budget/breaker, table-tested with an injected clock."""
import pytest

from shipper import events
from shipper.hooks import guards
from shipper.instances.model import Instance
from tests.fakes import FakeClock

STOP_MS = 1_760_000_000_000          # the Stopped event's time
NOW = STOP_MS / 1000 + 60


def instance(**overrides) -> Instance:
    fields = dict(instance_id="i-bp1guard0000000001", status="Stopped", tags={}, lock_reasons=(),
                  spot_strategy="NoSpot", charge_type="PostPaid", stopped_mode="KeepCharging",
                  expired_time="2099-12-31T15:59Z")
    return Instance(**(fields | overrides))


def stopped(**overrides) -> dict:
    return {"event_uid": "stop-1", "event_name": "Instance:StateChange", "state": "Stopped",
            "category": "lifecycle", "instance_id": "i-bp1guard0000000001",
            "event_time_ms": str(STOP_MS)} | overrides


def seen(name: str, category: str, seconds_from_stop: float, **extra) -> dict:
    at_ms = STOP_MS + int(seconds_from_stop * 1000)
    return {"event_uid": f"{name}@{seconds_from_stop}", "event_name": name, "category": category,
            "instance_id": "i-bp1guard0000000001", "event_time_ms": str(at_ms)} | extra


@pytest.mark.parametrize("instance_id, real", [
    ("i-bp1guard0000000001", True),
    ("i-bp1gu***0001", False),       # debug templates mask ids
    ("i-*", False),
    ("", False),
    ("i-", False),
    ("d-bp1disk000000001", False),
])
def test_only_real_instance_ids_are_actionable(instance_id, real):
    assert events.is_real_instance_id(instance_id) is real


@pytest.mark.parametrize("tags, opt_in_tag, instances, expected", [
    ({"shipper:auto-restart": "true"}, "shipper:auto-restart=true", (), True),
    ({"shipper:auto-restart": "false"}, "shipper:auto-restart=true", (), False),
    ({}, "shipper:auto-restart=true", (), False),
    ({"other": "true"}, "shipper:auto-restart=true", (), False),
    ({}, "shipper:auto-restart=true", ("i-bp1guard0000000001",), True),   # the list opts in too
    ({}, "", ("i-bp1guard0000000001",), True),
    ({}, "", ("i-bp1someone0000000",), False),
    ({}, "", (), True),                                                    # nothing configured: everyone
    ({"env": "a=b"}, "env=a=b", (), True),                                  # value may contain '='
])
def test_opt_in_by_tag_or_list(tags, opt_in_tag, instances, expected):
    assert guards.opted_in("i-bp1guard0000000001", tags, opt_in_tag, instances) is expected


@pytest.mark.parametrize("locks, reason", [
    ((), ""),
    (("financial",), "locked-financial"),
    (("dedicatedhostfinancial",), "locked-financial"),
    (("security",), "locked-security"),
    (("Recycling",), "locked-recycling"),
    (("security", "financial"), "locked-financial"),
])
def test_lock_reasons(locks, reason):
    assert guards.lock_reason(instance(lock_reasons=locks)) == reason


@pytest.mark.parametrize("state, seconds_from_stop, superseded", [
    ("Running", 30, True),
    ("Starting", 1, True),
    ("Running", -30, False),       # an older Running: the stop is the news
    ("Stopping", 30, False),
    ("Stopped", 30, False),
])
def test_superseded_by_a_newer_start(state, seconds_from_stop, superseded):
    history = [seen("Instance:StateChange", "lifecycle", seconds_from_stop, state=state)]
    assert guards.is_superseded(stopped(), history) is superseded


def test_charge_notes():
    assert "2026-01-01T00:00Z" in guards.charge_note(instance(charge_type="PrePaid", expired_time="2026-01-01T00:00Z"))
    assert "stock" in guards.charge_note(instance(stopped_mode="StopCharging"))
    assert "SpotAsPriceGo" in guards.charge_note(instance(spot_strategy="SpotAsPriceGo"))


def test_budget_quarantines_until_the_window_clears():
    clock = FakeClock()
    limits = guards.RestartLimits(3, 100, clock=clock)
    for _ in range(3):
        assert limits.acquire("i-flap") == ""
        clock.now += 10
    # starts at 1000, 1010, 1020: exhausted, quarantined until the newest leaves the hour
    assert limits.acquire("i-flap") == "budget-exhausted"
    assert limits.quarantined_until("i-flap") == 1020 + 3600
    clock.now = 1015 + 3600          # a plain sliding window would have room again here
    assert limits.acquire("i-flap") == "budget-exhausted"
    assert limits.acquire("i-other") == ""            # other instances are not affected
    clock.now = 1021 + 3600
    assert limits.acquire("i-flap") == ""
    assert limits.quarantined_until("i-flap") is None


def test_breaker_counts_the_fleet_per_minute():
    clock = FakeClock()
    limits = guards.RestartLimits(3, 10, clock=clock)
    reasons = [limits.acquire(f"i-burst{n:03d}") for n in range(50)]
    assert reasons[:10] == [""] * 10
    assert reasons[10:] == ["breaker-open"] * 40
    clock.now += 61
    assert limits.acquire("i-burst010") == ""   # a refused start did not spend its instance's budget
