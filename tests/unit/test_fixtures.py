"""Every fixture against the expected values written in its README (tests/fixtures/README.md)."""
import re

import orjson
import pytest

from shipper.decode import NOT_AN_EVENT, NOT_JSON, Rejected
from shipper.normalize import events_from_bytes
from shipper.times import format_time_ms
from tests.conftest import FIXTURES

RECEIVED_MS = 1767268800123  # 2026-01-01T12:00:00.123Z, later than every fixture

# file: (envelope, event_name, category, state, event_status, instance_id, event_time, extra expected fields)
EXPECTED = {
    "a_statechange_pending.json": ("cms", "Instance:StateChange", "lifecycle", "Pending", "", "i-uf6a8k2m5q9t3w7x1z4c", "2025-03-18T02:22:04.517Z", {}),
    "a_statechange_created.json": ("cms", "Instance:StateChange", "lifecycle", "Pending", "", "i-2zeb7n1v4c8x2m6q9w3r", "2025-04-11T08:12:08.204Z", {"state_raw": "Created"}),
    "a_statechange_starting.json": ("cms", "Instance:StateChange", "lifecycle", "Starting", "", "i-uf6a8k2m5q9t3w7x1z4c", "2025-03-18T02:22:21.093Z", {}),
    "a_statechange_running.json": ("cms", "Instance:StateChange", "lifecycle", "Running", "", "i-uf6a8k2m5q9t3w7x1z4c", "2025-03-18T02:22:49.760Z", {}),
    "a_statechange_stopping.json": ("cms", "Instance:StateChange", "lifecycle", "Stopping", "", "i-uf6a8k2m5q9t3w7x1z4c", "2025-04-02T14:45:09.341Z", {}),
    "a_statechange_stopped.json": ("cms", "Instance:StateChange", "lifecycle", "Stopped", "", "i-uf6a8k2m5q9t3w7x1z4c", "2025-04-02T14:45:37.886Z", {}),
    "a_statechange_deleted.json": ("cms", "Instance:StateChange", "lifecycle", "Deleted", "", "i-m5e3p7r1t5v9x2z6b0d4", "2025-04-28T22:53:18.427Z", {}),
    "a_preemptible_interruption.json": ("cms", "Instance:PreemptibleInstanceInterruption", "interruption", "", "", "i-wz9e4h8k2n6r0u3y7b1f", "2025-05-17T13:30:06.812Z", {"not_before": "2025-05-17T13:35:06.812Z"}),
    "c_preemptible_interruption.json": ("eventbridge", "Instance:PreemptibleInstanceInterruption", "interruption", "", "", "i-j6c5t9w3y7a1d5g9k3m7", "2025-05-17T13:41:52.275Z", {"not_before": "2025-05-17T13:46:52.275Z"}),
    "a_sysmaint_reboot_scheduled.json": ("cms", "Instance:SystemMaintenance.Reboot", "maintenance", "", "Scheduled", "i-hp3c7x9v5n1m7k3h9f5a", "2025-06-09T01:15:00.236Z", {"not_before": "2025-06-12T17:00:00.000Z"}),
    "a_sysmaint_reboot_executing.json": ("cms", "Instance:SystemMaintenance.Reboot", "maintenance", "", "Executing", "i-hp3c7x9v5n1m7k3h9f5a", "2025-06-12T17:00:03.581Z", {"not_before": "2025-06-12T17:00:00.000Z"}),
    "a_sysmaint_reboot_executed.json": ("cms", "Instance:SystemMaintenance.Reboot", "maintenance", "", "Executed", "i-hp3c7x9v5n1m7k3h9f5a", "2025-06-12T17:04:12.907Z", {"not_before": "2025-06-12T17:00:00.000Z"}),
    "a_sysmaint_reboot_avoided.json": ("cms", "Instance:SystemMaintenance.Reboot", "maintenance", "", "Avoided", "i-uf6q1w5e9r3t7y1u5i9o", "2025-06-21T06:40:27.119Z", {"not_before": "2025-06-23T18:00:00.000Z"}),
    "a_systemfailure_reboot_executing.json": ("cms", "Instance:SystemFailure.Reboot", "failure", "", "Executing", "i-t4n8d2g6j0m4p8s2v6y0", "2025-07-06T21:22:33.648Z", {"not_before": ""}),
    "a_instancefailure_reboot_executed.json": ("cms", "Instance:InstanceFailure.Reboot", "failure", "", "Executed", "i-8vb6f0j4n8r2v6z0d4h8", "2025-07-15T10:30:11.372Z", {}),
    "a_livemigration_accomplished.json": ("cms", "Instance:LiveMigrationAcrossDDH", "maintenance", "", "", "i-2zem3k7p1s5w9a3e7i1n", "2025-08-01T19:14:58.540Z", {}),
    "a_performancemodechange.json": ("cms", "Instance:PerformanceModeChange", "performance", "", "", "i-bp1y5u9i3o7p1a5s9d3f", "2025-08-14T03:20:45.903Z", {}),
    "a_burstable_restricted.json": ("cms", "Instance:BurstablePerformanceRestricted", "performance", "", "", "i-wz9h3k7n1q5t9w3z7c1f", "2025-08-19T12:00:09.655Z", {}),
    "a_disk_stalled_executing.json": ("cms", "Disk:Stalled", "disk", "", "Executing", "i-uf6c4g8k2o6s0w4a8e2i", "2025-09-02T07:48:26.377Z", {"resource_type": "disk"}),
    "a_disk_operation_completed.json": ("cms", "Disk:DiskOperationCompleted", "disk", "", "", "", "2025-09-10T00:33:17.226Z", {}),
    "a_snapshot_created.json": ("cms", "Snapshot:CreateSnapshotCompleted", "snapshot", "", "", "", "2025-09-17T18:03:42.584Z", {"resource_type": "snapshot"}),
    "a_eni_operation_completed.json": ("cms", "NetworkInterface:NetworkInterfaceOperateCompleted", "network", "", "", "i-wz9s7w1a5e9i3m7q1u5y", "2025-09-26T09:30:05.718Z", {"resource_type": "network-interface"}),
    "b_subscription_json_statechange_stopped.json": ("cms-subscription", "Instance:StateChange", "lifecycle", "Stopped", "", "i-uf6v8b2n6m0q4w8e2r6t", "2025-10-13T23:33:52.671Z", {"event_uid": "9c3e7a1b-5d2f-4e68-b0a4-c6e8f2a4b6d8"}),
    "b_subscription_formstyle_interruption.json": ("cms-subscription", "Instance:PreemptibleInstanceInterruption", "interruption", "", "", "i-8vbk5n9q3t7w1z5c9f3j", "2025-11-03T12:15:18.244Z", {"not_before": "2025-11-03T12:20:18.244Z"}),
    "b_subscription_form_urlencoded.txt": ("cms-subscription", "Instance:PreemptibleInstanceInterruption", "interruption", "", "", "i-8vbk5n9q3t7w1z5c9f3j", "2025-11-03T12:15:18.244Z", {"not_before": "2025-11-03T12:20:18.244Z"}),
    "c_statechange_stopped.json": ("eventbridge", "Instance:StateChange", "lifecycle", "Stopped", "", "i-bp1t6y0u4i8o2p6a0s4d", "2025-11-17T22:12:44.000Z", {}),
    "c_sysmaint_reboot_scheduled.json": ("eventbridge", "Instance:SystemMaintenance.Reboot", "maintenance", "", "Scheduled", "i-rj9p2s6v0y4b8e2h6k0n", "2025-12-02T09:30:00.000Z", {"not_before": "2025-12-05T01:00:00.000Z"}),
    "a_debug_masked_statechange.json": ("cms", "Instance:StateChange", "lifecycle", "", "", "i-uf6***9qd", format_time_ms(RECEIVED_MS), {"state_raw": "St***ng"}),
    "mns_body_base64.txt": ("cms", "Instance:StateChange", "lifecycle", "Running", "", "i-2zeb7n1v4c8x2m6q9w3r", "2025-04-11T08:12:43.659Z", {}),
}

REJECTED = {
    "bad_not_json.txt": NOT_JSON,
    "bad_json_not_event.json": NOT_AN_EVENT,
    "bad_truncated.json": NOT_JSON,
    "bad_wrong_types.json": NOT_AN_EVENT,
    "bad_empty.txt": NOT_JSON,
    "bad_trailing_comma.json": NOT_JSON,
}

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded; charset=UTF-8"


def events_of(name: str, received_ms: int = RECEIVED_MS) -> list[dict]:
    content_type = FORM_CONTENT_TYPE if name == "b_subscription_form_urlencoded.txt" else None
    return events_from_bytes((FIXTURES / name).read_bytes(), received_ms=received_ms, content_type=content_type)


def test_every_fixture_file_is_covered():
    files = {path.name for path in FIXTURES.iterdir()} - {"README.md"}
    assert files == set(EXPECTED) | set(REJECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_expected_values(name):
    envelope, event_name, category, state, event_status, instance_id, event_time, extra = EXPECTED[name]
    [record] = events_of(name)
    expected = {
        "envelope": envelope,
        "event_name": event_name,
        "category": category,
        "state": state,
        "event_status": event_status,
        "instance_id": instance_id,
        "event_time": event_time,
        **extra,
    }
    assert {field: record[field] for field in expected} == expected
    assert record["received_time"] == format_time_ms(RECEIVED_MS)
    assert record["event_uid"]


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_bad_fixture_is_rejected(name):
    with pytest.raises(Rejected) as caught:
        events_of(name)
    assert caught.value.reason == REJECTED[name]


def test_the_form_encoded_and_form_style_pushes_are_one_event():
    [form_style] = events_of("b_subscription_formstyle_interruption.json")
    [urlencoded] = events_of("b_subscription_form_urlencoded.txt")
    assert form_style["event_uid"] == urlencoded["event_uid"] == "3f7b1d5e-9a2c-4b64-8e0f-2a4c6e8a0b1d"
    assert form_style["detail"] == urlencoded["detail"]


def test_the_form_encoded_push_decodes_without_a_content_type():
    data = (FIXTURES / "b_subscription_form_urlencoded.txt").read_bytes()
    [record] = events_from_bytes(data, received_ms=RECEIVED_MS)
    assert record["event_uid"] == "3f7b1d5e-9a2c-4b64-8e0f-2a4c6e8a0b1d"


def test_every_other_fixture_has_its_own_uid():
    uids = [events_of(name)[0]["event_uid"] for name in EXPECTED]
    assert len(set(uids)) == len(uids) - 1  # only the two B form pushes share one


def test_debug_template_gets_a_content_hash_uid_and_the_received_time():
    [first] = events_of("a_debug_masked_statechange.json", received_ms=RECEIVED_MS)
    [again] = events_of("a_debug_masked_statechange.json", received_ms=RECEIVED_MS + 60_000)
    assert re.fullmatch(r"[0-9a-f]{32}", first["event_uid"])
    assert first["event_uid"] == again["event_uid"]
    assert (first["event_time"], first["event_time_ms"]) == (format_time_ms(RECEIVED_MS), str(RECEIVED_MS))
    assert again["event_time"] == format_time_ms(RECEIVED_MS + 60_000)


def test_system_event_sequence_shares_its_event_id():
    names = ["a_sysmaint_reboot_scheduled.json", "a_sysmaint_reboot_executing.json", "a_sysmaint_reboot_executed.json"]
    records = [events_of(name)[0] for name in names]
    assert len({r["event_uid"] for r in records}) == 3
    assert [r["event_status"] for r in records] == ["Scheduled", "Executing", "Executed"]
    assert {orjson.loads(r["detail"])["eventId"] for r in records} == {"e-hp3w6q2z8x4c0v6b2n8m"}


def test_lifecycle_sequence_is_in_time_order():
    names = [f"a_statechange_{state}.json" for state in ("pending", "starting", "running", "stopping", "stopped")]
    records = [events_of(name)[0] for name in names]
    assert [r["state"] for r in records] == ["Pending", "Starting", "Running", "Stopping", "Stopped"]
    times = [int(r["event_time_ms"]) for r in records]
    assert times == sorted(times)


def test_raw_is_the_message_text():
    name = "a_statechange_pending.json"
    [record] = events_of(name)
    assert record["raw"] == (FIXTURES / name).read_text(encoding="utf-8").strip()
