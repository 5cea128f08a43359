"""The stop cause: one pure classifier for the stored rows and the restart hook, table-tested."""
import datetime as dt

import pytest

from shipper.instances import stop_cause
from tests.unit.test_guards import NOW, instance, seen, stopped


def minute_text(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


@pytest.mark.parametrize("spot, locks, events, expected", [
    ("SpotAsPriceGo", ("Recycling",), [], True),
    ("SpotWithPriceLimit", (), [seen(stop_cause.INTERRUPTION, "interruption", -240)], True),
    ("SpotAsPriceGo", (), [], False),
    ("NoSpot", ("Recycling",), [], False),       # a pay-as-you-go instance pending release is not a reclaim
    ("NoSpot", ("recycling",), [], False),
    ("SpotAsPriceGo", ("recycling",), [], True),  # the documented spelling; the doc's example says Recycling
    ("NoSpot", (), [seen(stop_cause.INTERRUPTION, "interruption", -240)], False),
])
def test_spot_reclaim(spot, locks, events, expected):
    assert stop_cause.is_spot_reclaim(instance(spot_strategy=spot, lock_reasons=locks), events) is expected


def test_spot_reclaim_of_an_instance_already_gone_is_told_by_the_interruption():
    assert stop_cause.is_spot_reclaim(None, [seen(stop_cause.INTERRUPTION, "interruption", -240)])
    assert not stop_cause.is_spot_reclaim(None, [])


@pytest.mark.parametrize("inst, history, cause", [
    (instance(), [], "user-or-api"),
    (None, [], "user-or-api"),
    (instance(lock_reasons=("security",)), [], "system"),
    (instance(spot_strategy="", charge_type=""), [seen(stop_cause.INTERRUPTION, "interruption", -240)], "spot-reclaim"),
    (instance(), [seen("Instance:SystemFailure.Reboot", "failure", -600)], "system"),
    (instance(), [seen("Instance:SystemMaintenance.Stop", "maintenance", -30)], "system"),
    (instance(), [seen("Instance:SystemFailure.Stop", "failure", 5)], "system"),      # notice after the stop
    (instance(), [seen("Instance:SystemFailure.Reboot", "failure", -7200)], "user-or-api"),  # too old to explain it
    (instance(lock_reasons=("financial",)), [], "billing-lock"),
    (instance(), [seen("Instance:AccountUnbalanced.Stop", "lifecycle", -60)], "billing-lock"),
    (instance(), [seen("Instance:InstanceExpiration.Stop", "lifecycle", -60)], "expired"),
    (instance(charge_type="PrePaid", expired_time=minute_text(NOW - 3600)), [], "expired"),
    (instance(charge_type="PrePaid", expired_time=minute_text(NOW + 86400)), [], "user-or-api"),
    (instance(charge_type="PostPaid", expired_time=minute_text(NOW - 3600)), [], "user-or-api"),
    (instance(spot_strategy="SpotAsPriceGo", lock_reasons=("Recycling",)), [], "spot-reclaim"),
    (instance(spot_strategy="SpotAsPriceGo"), [seen(stop_cause.INTERRUPTION, "interruption", -300)], "spot-reclaim"),
    (None, [seen(stop_cause.INTERRUPTION, "interruption", -300)], "spot-reclaim"),
    (instance(spot_strategy="SpotAsPriceGo", lock_reasons=("financial",)), [], "billing-lock"),
])
def test_stop_cause(inst, history, cause):
    assert stop_cause.classify(stopped(), inst, history, NOW) == cause


def test_the_stop_event_itself_does_not_count_as_history():
    assert stop_cause.recent_events(stopped(), [stopped()]) == []
