"""The reconciliation of the inventory with the trail: each finding kind, its clearing, incomplete syncs."""
import orjson
import pytest

from shipper.audit.reconcile import (
    ABSENT, BASELINE, CLEARED, INFO, OPEN, STATE_DRIFT, UNRECORDED_CREATION, UNRECORDED_RELEASE, Facts, Memory,
    Snapshot, Trail, finding_uid, reconcile,
)
from shipper.events import AUDIT_FIELDS
from shipper.instances.model import Instance

T0 = 1_767_225_600_000          # 2026-01-01T00:00:00Z: the trail's first record
MIN = 60_000
WINDOW = 30 * MIN
REGION = "cn-hangzhou"


def listed(instance_id, status="Running", created="2026-01-01T01:00Z", region=REGION):
    return Instance(instance_id=instance_id, status=status, tags={}, region_id=region, creation_time=created,
                    instance_name=f"name-{instance_id}", instance_type="ecs.g7.large")


def snap(at_ms, *instances, complete=True, regions=(REGION,)):
    return Snapshot(at_ms, {i.instance_id: i for i in instances}, frozenset(regions), complete)


def trail(*facts, start=T0):
    return Trail(start, {f.instance_id: f for f in facts})


def running(instance_id, at=T0 + 70 * MIN, created=True, region=REGION):
    return Facts(instance_id, region_id=region, created=created, last_state="Running", last_state_ms=at)


def kinds(records):
    return sorted((r["finding"], r["instance_id"], r["status"]) for r in records)


def standing(records):
    """What a store answers as still holding: the latest record of each finding, open or info."""
    latest = {}
    for record in records:
        latest[record["finding_uid"]] = record
    return [r for r in latest.values() if r["status"] in (OPEN, INFO)]


class Run:
    """Successive syncs, the records each wrote, as the runner chains them."""

    def __init__(self):
        self.memory, self.records = Memory(), []

    def sync(self, snapshot, t):
        new, self.memory = reconcile(snapshot, t, standing(self.records), self.memory, WINDOW)
        self.records += new
        return new


def test_a_trail_that_holds_everything_finds_nothing():
    new = Run().sync(snap(T0 + 2 * 60 * MIN, listed("i-a")), trail(running("i-a")))
    assert new == []


def test_a_listed_instance_created_after_the_trail_began_without_a_creation_is_unrecorded_creation():
    [record] = Run().sync(snap(T0 + 2 * 60 * MIN, listed("i-a")), trail(running("i-a", created=False)))
    assert (record["finding"], record["status"], record["instance_id"]) == (UNRECORDED_CREATION, OPEN, "i-a")
    assert set(record) == set(AUDIT_FIELDS)
    assert (record["inventory_status"], record["recorded_state"], record["region_id"]) == ("Running", "Running", REGION)
    assert record["instance_name"] == "name-i-a" and record["found_time"] == "2026-01-01T02:00:00.000Z"
    assert record["finding_uid"] == finding_uid(UNRECORDED_CREATION, "i-a")


@pytest.mark.parametrize("created, expected", [
    ("2025-12-31T23:59Z", BASELINE),             # its whole creation minute is before the trail: it predates
    ("2026-01-01T00:00Z", UNRECORDED_CREATION),  # created within the trail's first minute: the trail could hold it
    ("", BASELINE),                              # unknown creation time: not called a hole
])
def test_an_instance_older_than_the_trail_is_a_baseline_not_a_hole(created, expected):
    [record] = Run().sync(snap(T0 + MIN, listed("i-a", created=created)), trail())
    assert record["finding"] == expected
    assert record["status"] == (INFO if expected == BASELINE else OPEN)


def test_with_an_empty_trail_every_listed_instance_is_a_baseline_once():
    run = Run()
    empty = Trail(None, {})
    assert kinds(run.sync(snap(T0, listed("i-a"), listed("i-b")), empty)) == [
        (BASELINE, "i-a", INFO), (BASELINE, "i-b", INFO)]
    assert run.sync(snap(T0 + 10 * MIN, listed("i-a"), listed("i-b")), empty) == []


def test_a_finding_is_written_once_and_cleared_when_the_creation_arrives_late():
    run = Run()
    gap = trail(running("i-a", created=False))
    first = run.sync(snap(T0 + 60 * MIN, listed("i-a")), gap)
    assert run.sync(snap(T0 + 70 * MIN, listed("i-a")), gap) == []
    [cleared] = run.sync(snap(T0 + 80 * MIN, listed("i-a")), trail(running("i-a")))
    assert (cleared["finding_uid"], cleared["status"]) == (first[0]["finding_uid"], CLEARED)
    assert orjson.loads(cleared["detail"])["cleared"] == "its creation is now recorded"
    assert run.sync(snap(T0 + 90 * MIN, listed("i-a")), trail(running("i-a"))) == []


def test_a_baseline_becomes_unrecorded_creation_when_the_trail_reaches_back_before_the_creation():
    run = Run()
    run.sync(snap(T0, listed("i-a")), Trail(None, {}))                       # first sync, nothing stored yet
    new = run.sync(snap(T0 + 2 * 60 * MIN, listed("i-a")), trail(running("i-a", created=False)))
    assert kinds(new) == [(BASELINE, "i-a", CLEARED), (UNRECORDED_CREATION, "i-a", OPEN)]


def test_an_instance_the_trail_says_is_alive_gone_from_two_complete_syncs_is_unrecorded_release():
    run = Run()
    alive = trail(running("i-a"))
    assert run.sync(snap(T0 + 80 * MIN), alive) == []                        # gone once: may be on its way
    [record] = run.sync(snap(T0 + 90 * MIN), alive)
    assert (record["finding"], record["inventory_status"], record["recorded_state"]) == (
        UNRECORDED_RELEASE, ABSENT, "Running")
    assert run.sync(snap(T0 + 100 * MIN), alive) == []                       # once only
    released = trail(Facts("i-a", region_id=REGION, created=True, released=True, last_state="Deleted",
                           last_state_ms=T0 + 85 * MIN))
    assert kinds(run.sync(snap(T0 + 110 * MIN), released)) == [(UNRECORDED_RELEASE, "i-a", CLEARED)]


def test_an_incomplete_sync_concludes_no_release_and_does_not_count():
    run = Run()
    alive = trail(running("i-a"))
    assert run.sync(snap(T0 + 80 * MIN), alive) == []
    assert run.sync(snap(T0 + 90 * MIN, complete=False), alive) == []        # a region failed
    assert run.sync(snap(T0 + 95 * MIN, complete=False, regions=()), alive) == []
    assert kinds(run.sync(snap(T0 + 100 * MIN), alive)) == [(UNRECORDED_RELEASE, "i-a", OPEN)]


def test_being_listed_again_resets_the_count_and_clears_a_release_finding():
    run = Run()
    alive = trail(running("i-a"))
    run.sync(snap(T0 + 80 * MIN), alive)
    run.sync(snap(T0 + 85 * MIN, listed("i-a")), alive)
    assert run.sync(snap(T0 + 90 * MIN), alive) == []
    run.sync(snap(T0 + 95 * MIN), alive)
    [cleared] = run.sync(snap(T0 + 100 * MIN, listed("i-a")), alive)
    assert (cleared["finding"], cleared["status"]) == (UNRECORDED_RELEASE, CLEARED)


@pytest.mark.parametrize("facts", [
    Facts("i-a", region_id="cn-beijing", created=True, last_state="Running", last_state_ms=T0),  # another region
    Facts("i-a", region_id=REGION, created=True, released=True, last_state="Deleted", last_state_ms=T0),
    Facts("i-a", region_id=REGION),                                    # only calls (e.g. a failed StopInstance)
])
def test_no_release_is_concluded_for_an_instance_outside_the_synced_regions_or_not_alive(facts):
    run = Run()
    for minutes in (80, 90, 100):
        assert run.sync(snap(T0 + minutes * MIN), trail(facts)) == []


def test_state_drift_needs_the_window_and_clears_when_the_missing_state_change_arrives():
    run = Run()
    stopping = trail(Facts("i-a", region_id=REGION, created=True, last_state="Stopping", last_state_ms=T0 + 60 * MIN))
    assert run.sync(snap(T0 + 61 * MIN, listed("i-a", "Stopped")), stopping) == []
    assert run.sync(snap(T0 + 80 * MIN, listed("i-a", "Stopped")), stopping) == []   # 19 min: within the window
    [drift] = run.sync(snap(T0 + 91 * MIN, listed("i-a", "Stopped")), stopping)
    assert (drift["finding"], drift["inventory_status"], drift["recorded_state"]) == (STATE_DRIFT, "Stopped", "Stopping")
    stopped = trail(Facts("i-a", region_id=REGION, created=True, last_state="Stopped", last_state_ms=T0 + 60 * MIN + 20_000))
    [cleared] = run.sync(snap(T0 + 100 * MIN, listed("i-a", "Stopped")), stopped)
    assert (cleared["finding_uid"], cleared["status"]) == (drift["finding_uid"], CLEARED)


def test_a_difference_that_changes_restarts_the_drift_window():
    run = Run()
    recorded = trail(running("i-a", at=T0))
    run.sync(snap(T0 + 10 * MIN, listed("i-a", "Stopping")), recorded)
    assert run.sync(snap(T0 + 30 * MIN, listed("i-a", "Stopped")), recorded) == []   # a new difference
    assert run.sync(snap(T0 + 45 * MIN, listed("i-a", "Stopped")), recorded) == []
    assert kinds(run.sync(snap(T0 + 60 * MIN, listed("i-a", "Stopped")), recorded)) == [(STATE_DRIFT, "i-a", OPEN)]


def test_a_drift_clears_when_the_inventory_agrees_with_the_record_again():
    run = Run()
    recorded = trail(running("i-a", at=T0))
    run.sync(snap(T0 + 10 * MIN, listed("i-a", "Stopped")), recorded)
    assert kinds(run.sync(snap(T0 + 40 * MIN, listed("i-a", "Stopped")), recorded)) == [(STATE_DRIFT, "i-a", OPEN)]
    assert kinds(run.sync(snap(T0 + 50 * MIN, listed("i-a", "Running")), recorded)) == [(STATE_DRIFT, "i-a", CLEARED)]


def test_a_gap_still_holds_while_the_instance_is_absent_from_an_incomplete_sync():
    run = Run()
    run.sync(snap(T0 + 60 * MIN, listed("i-a")), trail(running("i-a", created=False)))
    assert run.sync(snap(T0 + 70 * MIN, complete=False, regions=()), trail(running("i-a", created=False))) == []
