"""Every shared fixture against the expected values written in its README (shared/fixtures/README.md)."""
import re
from pathlib import Path

import orjson
import pytest

from shipper.decode import NOT_AN_EVENT, NOT_JSON, Rejected
from shipper.events import format_time_ms
from shipper.normalize import events_from_bytes

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
RECEIVED_MS = 1767268800123  # 2026-01-01T12:00:00.123Z, later than every fixture

# file: (envelope, event_name, category, state, event_status, instance_id, event_time, extra expected fields)
EXPECTED = {
    "a_statechange_pending.json": ("cms", "Instance:StateChange", "lifecycle", "Pending", "", "i-bp1f3kq7z2m9w4x6c8v0", "2025-06-14T01:15:02.114Z", {}),
    "a_statechange_created.json": ("cms", "Instance:StateChange", "lifecycle", "Pending", "", "i-uf6d2hj8n4p1r7t3y5w9", "2025-07-02T06:03:06.552Z", {"state_raw": "Created"}),
    "a_statechange_starting.json": ("cms", "Instance:StateChange", "lifecycle", "Starting", "", "i-bp1f3kq7z2m9w4x6c8v0", "2025-06-14T01:15:19.870Z", {}),
    "a_statechange_running.json": ("cms", "Instance:StateChange", "lifecycle", "Running", "", "i-bp1f3kq7z2m9w4x6c8v0", "2025-06-14T01:15:47.305Z", {}),
    "a_statechange_stopping.json": ("cms", "Instance:StateChange", "lifecycle", "Stopping", "", "i-bp1f3kq7z2m9w4x6c8v0", "2025-06-20T15:59:58.660Z", {}),
    "a_statechange_stopped.json": ("cms", "Instance:StateChange", "lifecycle", "Stopped", "", "i-bp1f3kq7z2m9w4x6c8v0", "2025-06-20T16:00:31.009Z", {}),
    "a_statechange_deleted.json": ("cms", "Instance:StateChange", "lifecycle", "Deleted", "", "i-bp1c9x6z3v0b7n4m1q8w", "2025-07-14T19:11:22.801Z", {}),
    "a_preemptible_interruption.json": ("cms", "Instance:PreemptibleInstanceInterruption", "interruption", "", "", "i-bp1q8w3e5r7t9y2u4i6o", "2025-08-03T02:44:55.027Z", {"not_before": "2025-08-03T02:49:55.027Z"}),
    "c_preemptible_interruption.json": ("eventbridge", "Instance:PreemptibleInstanceInterruption", "interruption", "", "", "i-t4n7b2v5c8x1z3l6k9j0", "2025-08-03T02:51:07.412Z", {"not_before": "2025-08-03T02:56:07.412Z"}),
    "a_sysmaint_reboot_scheduled.json": ("cms", "Instance:SystemMaintenance.Reboot", "maintenance", "", "Scheduled", "i-bp1m5n8b1v4c7x0z3a6s", "2025-09-01T06:00:00.318Z", {"not_before": "2025-09-03T18:00:00.000Z"}),
    "a_sysmaint_reboot_executing.json": ("cms", "Instance:SystemMaintenance.Reboot", "maintenance", "", "Executing", "i-bp1m5n8b1v4c7x0z3a6s", "2025-09-03T18:00:04.770Z", {}),
    "a_sysmaint_reboot_executed.json": ("cms", "Instance:SystemMaintenance.Reboot", "maintenance", "", "Executed", "i-bp1m5n8b1v4c7x0z3a6s", "2025-09-03T18:02:51.093Z", {}),
    "a_sysmaint_reboot_avoided.json": ("cms", "Instance:SystemMaintenance.Reboot", "maintenance", "", "Avoided", "i-bp1r2t4y6u8i0o1p3a5s", "2025-09-05T01:30:12.640Z", {}),
    "a_systemfailure_reboot_executing.json": ("cms", "Instance:SystemFailure.Reboot", "failure", "", "Executing", "i-2ze4r6t8y0u2i4o6p8a0", "2025-10-10T19:15:45.202Z", {"not_before": ""}),
    "a_instancefailure_reboot_executed.json": ("cms", "Instance:InstanceFailure.Reboot", "failure", "", "Executed", "i-2zeq1w3e5r7t9y1u3i5o", "2025-10-12T14:05:10.455Z", {}),
    "a_livemigration_accomplished.json": ("cms", "Instance:LiveMigrationAcrossDDH", "maintenance", "", "", "i-bp1d4f6g8h0j2k4l6z8x", "2025-11-01T04:09:44.017Z", {}),
    "a_performancemodechange.json": ("cms", "Instance:PerformanceModeChange", "performance", "", "", "i-uf6z1x3c5v7b9n1m3q5w", "2025-11-05T00:15:00.600Z", {}),
    "a_burstable_restricted.json": ("cms", "Instance:BurstablePerformanceRestricted", "performance", "", "", "i-uf6e2r4t6y8u0i2o4p6a", "2025-11-06T07:00:12.330Z", {}),
    "a_disk_stalled_executing.json": ("cms", "Disk:Stalled", "disk", "", "Executing", "i-bp1g7h9j1k3l5z7x9c1v", "2025-11-19T20:33:10.905Z", {"resource_type": "disk"}),
    "a_disk_operation_completed.json": ("cms", "Disk:DiskOperationCompleted", "disk", "", "", "", "2025-11-21T02:17:05.118Z", {}),
    "a_snapshot_created.json": ("cms", "Snapshot:CreateSnapshotCompleted", "snapshot", "", "", "", "2025-11-21T19:04:55.771Z", {"resource_type": "snapshot"}),
    "a_eni_operation_completed.json": ("cms", "NetworkInterface:NetworkInterfaceOperateCompleted", "network", "", "", "i-bp1n2m4q6w8e0r2t4y6u", "2025-11-25T03:42:30.246Z", {"resource_type": "network-interface"}),
    "b_subscription_json_statechange_stopped.json": ("cms-subscription", "Instance:StateChange", "lifecycle", "Stopped", "", "i-2ze6h1j4k7l0p3o5i8u2", "2025-12-08T01:45:05.482Z", {"event_uid": "6d0f2b4a-8c1e-4f35-a7b9-c1d3e5f7a9b2"}),
    "b_subscription_formstyle_interruption.json": ("cms-subscription", "Instance:PreemptibleInstanceInterruption", "interruption", "", "", "i-wz9c4v7b0n3m6q1e8r5t", "2025-12-09T14:14:07.936Z", {"not_before": "2025-12-09T14:19:07.936Z"}),
    "b_subscription_form_urlencoded.txt": ("cms-subscription", "Instance:PreemptibleInstanceInterruption", "interruption", "", "", "i-wz9c4v7b0n3m6q1e8r5t", "2025-12-09T14:14:07.936Z", {"not_before": "2025-12-09T14:19:07.936Z"}),
    "c_statechange_stopped.json": ("eventbridge", "Instance:StateChange", "lifecycle", "Stopped", "", "i-8vb3x6z9c2v5b8n1m4q7", "2025-12-09T23:30:18.000Z", {}),
    "c_sysmaint_reboot_scheduled.json": ("eventbridge", "Instance:SystemMaintenance.Reboot", "maintenance", "", "Scheduled", "i-0jl5k7h9g1f3d5s7a9z1", "2025-12-11T08:00:00.000Z", {"not_before": "2025-12-13T02:00:00.000Z"}),
    "a_debug_masked_statechange.json": ("cms", "Instance:StateChange", "lifecycle", "", "", "i-bp1***7xk", format_time_ms(RECEIVED_MS), {"state_raw": "Ru***ng"}),
    "mns_body_base64.txt": ("cms", "Instance:StateChange", "lifecycle", "Running", "", "i-uf6d2hj8n4p1r7t3y5w9", "2025-07-02T06:03:41.090Z", {}),
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
    assert form_style["event_uid"] == urlencoded["event_uid"] == "0e2a4c6e-8a0c-4e2b-94d6-f8a0c2e4a6b8"
    assert form_style["detail"] == urlencoded["detail"]


def test_the_form_encoded_push_decodes_without_a_content_type():
    data = (FIXTURES / "b_subscription_form_urlencoded.txt").read_bytes()
    [record] = events_from_bytes(data, received_ms=RECEIVED_MS)
    assert record["event_uid"] == "0e2a4c6e-8a0c-4e2b-94d6-f8a0c2e4a6b8"


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
    assert {orjson.loads(r["detail"])["eventId"] for r in records} == {"e-bp1h2j5k8l1z4x7c0v3b"}


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
