"""FleetSimulator: realistic, deterministic ECS event streams (reference/events.md sections 1-5, 8)."""
import collections
import datetime as dt
import hashlib
import io
import ipaddress
import os
import re
import subprocess
import sys

import orjson
import pytest

from shipper.normalize import events_from_bytes
from shipper.simulate import ENVELOPES, FleetSimulator, SimEvent, write_ndjson
from tests.conftest import REPO

START_MS = 1_749_863_702_114  # 2025-06-14T01:15:02.114Z
HOUR_MS = 3_600_000
RECLAIM_MS = 300_000  # events.md 5.2: the spot instance is released 5 minutes after the notice

# The brief's id prefixes per region (real ECS ids start this way).
ID_PREFIXES = {"cn-hangzhou": "bp1", "cn-shanghai": "uf6", "cn-beijing": "2ze", "ap-southeast-1": "t4n",
               "cn-shenzhen": "wz9", "cn-zhangjiakou": "8vb", "eu-central-1": "gw8"}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

# Field sets of the fixtures in tests/fixtures.
A_CLASSIC = {"ver", "id", "product", "resourceId", "level", "name", "userId", "eventTime", "regionId", "content"}
A_NEWER = A_CLASSIC | {"instanceName", "groupId", "status"}  # a_preemptible_interruption.json
A_CALLBACK = A_NEWER | {"eventType", "ruleName"}  # a_statechange_deleted.json
B_OUTER = {"userInfo", "subscription", "batchId", "alert", "severity", "strategyName", "userId", "time"}
B_ALERT = {"alertStatus", "groupId", "source", "eventContentMap", "dedupId", "eventName", "arn", "timestamp",
           "traceId", "severity", "product", "eventRawContent", "eventType", "userId", "meta"}
B_META = {"regionNameEn", "resourceId", "product", "eventNameEn", "instanceName", "level", "resource",
          "regionNameZh", "groupId", "serviceTypeEn", "eventType", "serviceTypeZh", "regionId", "eventTime",
          "name", "id", "status", "eventNameZh"}
C_KEYS = {"id", "source", "specversion", "type", "subject", "time", "datacontenttype", "aliyunaccountid",
          "aliyunpublishtime", "aliyuneventbusname", "aliyunregionid", "aliyunpublishaddr", "data"}
STATE_CHANGE_KEYS = {"resourceId", "resourceType", "state", "instanceName", "instanceType", "privateIpAddress"}
SYSTEM_KEYS = {"eventId", "publishTime", "instanceId", "eventType", "eventStatus"}

# events.md 5.1 transitions, plus Running -> Deleted for a reclaimed spot instance.
TRANSITIONS = {("Pending", "Starting"), ("Starting", "Running"), ("Running", "Stopping"), ("Stopping", "Stopped"),
               ("Stopped", "Starting"), ("Stopped", "Deleted"), ("Running", "Deleted")}
STATUS_SEQUENCES = {("Scheduled", "Executing", "Executed"), ("Scheduled", "Avoided"), ("Executing", "Executed")}


def make(**overrides) -> FleetSimulator:
    args = dict(instances=200, seed=7, start_ms=START_MS, duration_s=3 * 3600, maintenance_ratio=0.2,
                failure_ratio=0.1, duplicate_ratio=0.05)
    args.update(overrides)
    return FleetSimulator(**args)


@pytest.fixture(scope="module")
def sim() -> FleetSimulator:
    return make()


@pytest.fixture(scope="module")
def stream(sim) -> list[SimEvent]:
    return list(sim.events())


@pytest.fixture(scope="module")
def originals(stream) -> list[SimEvent]:
    """The stream without redeliveries (the first copy of every body)."""
    seen = set()
    firsts = []
    for event in stream:
        if event.body not in seen:
            seen.add(event.body)
            firsts.append(event)
    return firsts


def classify(doc: dict) -> str | None:
    """events.md section 1, first match wins."""
    if "specversion" in doc and "type" in doc and "source" in doc:
        return "eventbridge"
    if isinstance(doc.get("alert"), dict):
        return "cms-subscription"
    if isinstance(doc.get("name"), str) and (isinstance(doc.get("content"), dict) or "product" in doc):
        return "cms"
    return None


def content_of(doc: dict) -> dict:
    """A `content` = B `alert.eventContentMap` = C `data` (events.md section 5)."""
    envelope = classify(doc)
    if envelope == "cms":
        return doc["content"]
    if envelope == "cms-subscription":
        return doc["alert"]["eventContentMap"]
    return doc["data"]


def cms_name(doc: dict) -> str:
    return doc["name"] if "name" in doc else doc["alert"]["eventName"]


def by_instance(events):
    grouped = collections.defaultdict(list)
    for event in events:
        grouped[event.instance_id].append(event)
    return grouped


def parse_cms_time(text: str) -> int:
    """events.md section 8: basic ISO 8601 with offset."""
    assert re.fullmatch(r"\d{8}T\d{6}\.\d{3}\+0800", text), text
    return int(dt.datetime.strptime(text, "%Y%m%dT%H%M%S.%f%z").timestamp() * 1000 + 0.5)


def parse_rfc3339(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).timestamp() * 1000 + 0.5)


def utc_text(ms: int) -> str:
    """The schema's time text (DESIGN.md): UTC `YYYY-MM-DDTHH:MM:SS.mmmZ`."""
    seconds = dt.datetime.fromtimestamp(ms // 1000, tz=dt.timezone.utc)
    return seconds.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def message_id(doc: dict) -> str:
    """A and C `id`, B `alert.dedupId` (events.md sections 2-4)."""
    return doc["alert"]["dedupId"] if classify(doc) == "cms-subscription" else doc["id"]


# -- determinism, order, window ---------------------------------------------------------------------


def test_same_seed_and_arguments_give_byte_identical_output(stream):
    assert list(make().events()) == stream
    assert [e.body for e in make(seed=8).events()] != [e.body for e in stream]


def test_output_does_not_depend_on_the_process_hash_seed(stream):
    script = ("import hashlib, sys; from shipper.simulate import FleetSimulator; h = hashlib.sha256(); "
              f"[h.update(e.body) for e in FleetSimulator(instances=200, seed=7, start_ms={START_MS}, "
              "duration_s=3 * 3600, maintenance_ratio=0.2, failure_ratio=0.1, duplicate_ratio=0.05).events()]; "
              "print(h.hexdigest())")
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    expected = hashlib.sha256()
    for event in stream:
        expected.update(event.body)
    assert out.stdout.strip() == expected.hexdigest()


def test_events_come_in_time_order_within_the_window(sim, stream):
    times = [e.time_ms for e in stream]
    assert times == sorted(times)
    assert START_MS <= times[0] and times[-1] <= START_MS + 3 * HOUR_MS
    assert sim.end_ms == START_MS + 3 * HOUR_MS


def test_short_window_cuts_timelines_at_its_end():
    events = list(make(duration_s=90, duplicate_ratio=0).events())
    assert events and all(START_MS <= e.time_ms <= START_MS + 90_000 for e in events)


def test_event_count_scales_linearly_with_instances():
    small = sum(1 for _ in make(instances=100, duplicate_ratio=0).events())
    large = sum(1 for _ in make(instances=1000, duplicate_ratio=0).events())
    assert 8 * small <= large <= 12 * small


def test_events_is_a_lazy_iterator():
    events = make(instances=1000).events()
    assert isinstance(next(events), SimEvent)


# -- the fleet --------------------------------------------------------------------------------------


def test_fleet_ids_are_realistic_and_unique(sim):
    ids = [i.instance_id for i in sim.fleet]
    assert len(ids) == 200 and len(set(ids)) == 200
    for instance in sim.fleet:
        assert re.fullmatch(r"i-[0-9a-z]{20}", instance.instance_id)
        assert instance.instance_id.startswith("i-" + ID_PREFIXES[instance.region_id])
        assert instance.zone_id.startswith(instance.region_id)
        assert ipaddress.ip_address(instance.private_ip).is_private
        assert instance.public_ip == "" or ipaddress.ip_address(instance.public_ip)
        assert instance.charge_type in ("PostPaid", "PrePaid")
        assert instance.instance_type.startswith("ecs.")


def test_spot_instances_are_pay_as_you_go_and_near_the_ratio(sim):
    spot = [i for i in sim.fleet if i.spot]
    assert all(i.charge_type == "PostPaid" for i in spot)
    assert 0.15 * 200 <= len(spot) <= 0.35 * 200
    assert not [i for i in make(spot_ratio=0).fleet if i.spot]


# -- lifecycles -------------------------------------------------------------------------------------


def test_every_instance_is_created_then_moves_by_valid_transitions(sim, originals):
    spot_ids = {i.instance_id for i in sim.fleet if i.spot}
    timelines = by_instance(e for e in originals if e.event_name == "Instance:StateChange")
    assert set(timelines) == {i.instance_id for i in sim.fleet}
    for instance_id, events in timelines.items():
        states = [e.state for e in events]
        assert states[:3] == ["Pending", "Starting", "Running"]
        for transition in zip(states, states[1:]):
            assert transition in TRANSITIONS
            if transition == ("Running", "Deleted"):
                assert instance_id in spot_ids
        assert states.count("Deleted") <= 1 and "Deleted" not in states[:-1]


def test_both_creation_spellings_appear(originals):
    raw_states = {content_of(orjson.loads(e.body))["state"] for e in originals if e.state == "Pending"}
    assert raw_states == {"Pending", "Created"}


def test_stops_restarts_and_releases_all_occur(originals):
    sequences = [tuple(e.state for e in events)
                 for events in by_instance(e for e in originals if e.state).values()]
    assert any(s[-3:] == ("Stopping", "Stopped", "Deleted") for s in sequences)
    assert any(s[-3:] == ("Stopped", "Starting", "Running") for s in sequences)
    assert any(s == ("Pending", "Starting", "Running") for s in sequences)


def test_spot_interruption_is_followed_by_deleted_exactly_five_minutes_later(sim, originals):
    spot_ids = {i.instance_id for i in sim.fleet if i.spot}
    interruptions = [e for e in originals if e.event_name == "Instance:PreemptibleInstanceInterruption"]
    assert interruptions and {e.instance_id for e in interruptions} <= spot_ids
    deleted = {e.instance_id: e.time_ms for e in originals if e.state == "Deleted"}
    inside = 0
    for notice in interruptions:
        assert content_of(orjson.loads(notice.body))["action"] == "delete"
        if notice.time_ms + RECLAIM_MS <= sim.end_ms:
            assert deleted[notice.instance_id] - notice.time_ms == RECLAIM_MS
            inside += 1
        else:
            assert notice.instance_id not in deleted
    assert inside


def test_system_events_share_one_event_id_and_move_through_valid_statuses(sim, originals):
    sequences = collections.defaultdict(list)
    for event in originals:
        if event.event_status:
            content = content_of(orjson.loads(event.body))
            assert event.event_status == content["eventStatus"]
            assert event.event_name == "Instance:" + content["eventType"]
            sequences[content["eventId"]].append((event, content))
    assert sequences
    complete = set()
    for event_id, notifications in sequences.items():
        assert re.fullmatch(r"e-[0-9a-z]{20}", event_id)
        assert len({e.instance_id for e, _ in notifications}) == 1
        statuses = tuple(e.event_status for e, _ in notifications)
        assert any(full[:len(statuses)] == statuses for full in STATUS_SEQUENCES), statuses
        if statuses in STATUS_SEQUENCES:
            complete.add(statuses)
        region = next(i.region_id for i in sim.fleet if i.instance_id == notifications[0][0].instance_id)
        assert event_id.startswith("e-" + ID_PREFIXES[region])
    assert complete == STATUS_SEQUENCES  # maintenance done, maintenance avoided, failure


def test_avoided_maintenance_keeps_the_scheduled_name_suffix(originals):
    avoided = [orjson.loads(e.body) for e in originals if e.event_status == "Avoided"]
    assert avoided
    for doc in avoided:
        content = content_of(doc)
        assert content["executeStartTime"] == content["executeFinishTime"]
        if classify(doc) != "eventbridge":
            assert cms_name(doc) == "Instance:SystemMaintenance.Reboot:Scheduled"


def test_maintenance_not_before_is_moved_inside_a_short_window(sim, originals):
    scheduled = [content_of(orjson.loads(e.body)) for e in originals if e.event_status == "Scheduled"]
    assert scheduled
    for content in scheduled:
        published, not_before = parse_rfc3339(content["publishTime"]), parse_rfc3339(content["notBefore"])
        assert published < not_before <= sim.end_ms


def test_maintenance_not_before_is_24_to_48_hours_ahead_when_the_window_allows():
    sim = make(instances=40, duration_s=10 * 24 * 3600, maintenance_ratio=1.0, spot_ratio=0)
    scheduled = [content_of(orjson.loads(e.body)) for e in sim.events() if e.event_status == "Scheduled"]
    assert scheduled
    for content in scheduled:
        ahead = parse_rfc3339(content["notBefore"]) - parse_rfc3339(content["publishTime"])
        assert 24 * HOUR_MS <= ahead <= 48 * HOUR_MS
        assert content["notBefore"].endswith(":00:00Z")


# -- envelopes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("envelope", ENVELOPES)
def test_a_fixed_envelope_is_used_for_every_message(envelope):
    events = list(make(instances=30, envelope=envelope).events())
    assert events and all(e.envelope == envelope == classify(orjson.loads(e.body)) for e in events)


def test_mixed_uses_every_envelope_and_each_body_classifies_as_its_envelope(stream):
    assert {e.envelope for e in stream} == set(ENVELOPES)
    assert all(classify(orjson.loads(e.body)) == e.envelope for e in stream)


def test_unknown_envelope_is_refused():
    with pytest.raises(ValueError, match="envelope"):
        FleetSimulator(start_ms=START_MS, envelope="sns")


def test_envelope_field_sets_match_the_fixtures(sim, originals):
    names = {i.instance_id: i for i in sim.fleet}
    a_styles = set()
    for event in originals:
        doc = orjson.loads(event.body)
        instance = names[event.instance_id]
        arn = f"acs:ecs:{instance.region_id}:1827364554637281:instance/{instance.instance_id}"
        if event.envelope == "cms":
            assert set(doc) in (A_CLASSIC, A_NEWER, A_CALLBACK)
            a_styles.add(frozenset(doc))
            assert doc["resourceId"] == arn and doc["userId"] == "1827364554637281"
            assert doc["regionId"] == instance.region_id and doc["product"] == "ECS"
            assert parse_cms_time(doc["eventTime"]) == event.time_ms
        elif event.envelope == "cms-subscription":
            alert, meta = doc["alert"], doc["alert"]["meta"]["sysEventMeta"]
            assert (set(doc), set(alert), set(meta)) == (B_OUTER, B_ALERT, B_META)
            assert alert["dedupId"] == alert["traceId"] == meta["id"]
            assert alert["arn"] == meta["resourceId"] == arn
            assert orjson.loads(alert["eventRawContent"]) == alert["eventContentMap"]
            assert parse_cms_time(meta["eventTime"]) == event.time_ms
            assert alert["timestamp"] == doc["time"] == event.time_ms - event.time_ms % 1000
        else:
            assert set(doc) == C_KEYS
            assert doc["source"] == "acs.ecs" and doc["specversion"] == "1.0"
            assert doc["type"] == "ecs:" + event.event_name  # never a status suffix
            assert doc["subject"] == f"acs.ecs:{instance.region_id}:1827364554637281:{instance.instance_id}"
            assert parse_rfc3339(doc["time"]) == event.time_ms
            assert parse_rfc3339(doc["aliyunpublishtime"]) >= event.time_ms
    assert len(a_styles) == 3


def test_content_field_sets_match_their_family(sim, originals):
    names = {i.instance_id: i for i in sim.fleet}
    for event in originals:
        content = content_of(orjson.loads(event.body))
        instance = names[event.instance_id]
        if event.event_name == "Instance:StateChange":
            expected = STATE_CHANGE_KEYS | ({"publicIpAddress"} if instance.public_ip else set())
            assert set(content) == expected
            assert (content["resourceId"], content["instanceName"], content["instanceType"],
                    content["privateIpAddress"], content.get("publicIpAddress", "")) == (
                instance.instance_id, instance.name, instance.instance_type, instance.private_ip, instance.public_ip)
        elif event.event_name == "Instance:PreemptibleInstanceInterruption":
            assert content == {"instanceId": instance.instance_id, "instanceName": instance.name, "action": "delete"}
        else:
            timing = {"Scheduled": set(), "Executing": {"executeStartTime"},
                      "Executed": {"executeStartTime", "executeFinishTime"},
                      "Avoided": {"executeStartTime", "executeFinishTime"}}[event.event_status]
            if event.event_name == "Instance:SystemMaintenance.Reboot":
                timing = timing | {"notBefore"}
            assert set(content) == SYSTEM_KEYS | timing
            assert content["instanceId"] == instance.instance_id


def test_account_id_is_configurable():
    events = list(make(instances=10, account_id="1111222233334444").events())
    assert all(b"1111222233334444" in e.body and b"1827364554637281" not in e.body for e in events)


# -- ids and duplicates -----------------------------------------------------------------------------


def test_every_message_has_its_own_uuid(originals):
    ids = [message_id(orjson.loads(e.body)).lower() for e in originals]
    assert all(UUID.match(i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_redeliveries_repeat_the_bytes_later(sim, stream, originals):
    first_seen = {e.body: e.time_ms for e in originals}
    repeats = [e for e in stream if e.time_ms != first_seen[e.body]]
    assert 0 < len(repeats) < 0.15 * len(originals)
    counts = collections.Counter(e.body for e in stream)
    assert set(counts.values()) == {1, 2}
    for repeat in repeats:
        assert 10_000 <= repeat.time_ms - first_seen[repeat.body] <= 120_000
    assert len(stream) == len(originals) + len(repeats)


def test_no_duplicates_by_default():
    events = list(make(duplicate_ratio=0).events())
    assert len({e.body for e in events}) == len(events)


# -- normalization ----------------------------------------------------------------------------------


def test_every_message_normalizes_to_the_intended_record(sim, stream, originals):
    names = {i.instance_id: i for i in sim.fleet}
    first_time = {e.body: e.time_ms for e in originals}
    deleted = {e.instance_id: e.time_ms for e in originals if e.state == "Deleted"}
    for event in stream:
        [record] = events_from_bytes(event.body, received_ms=event.time_ms + 40)
        instance = names[event.instance_id]
        assert (record["envelope"], record["instance_id"], record["event_name"], record["state"],
                record["event_status"], record["event_time_ms"]) == (
            event.envelope, event.instance_id, event.event_name, event.state, event.event_status,
            str(first_time[event.body]))
        carries_name = f'"{instance.name}"'.encode() in event.body
        assert (record["account_id"], record["region_id"], record["instance_name"]) == (
            "1827364554637281", instance.region_id, instance.name if carries_name else "")
        if event.event_name == "Instance:PreemptibleInstanceInterruption" and event.instance_id in deleted:
            assert record["not_before"] == utc_text(deleted[event.instance_id])


def test_redelivered_messages_normalize_to_the_same_uid(stream, originals):
    uids = collections.Counter(events_from_bytes(e.body, received_ms=e.time_ms)[0]["event_uid"] for e in stream)
    assert len(uids) == len(originals)


# -- NDJSON -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("buffer", [io.BytesIO, io.StringIO])
def test_write_ndjson_writes_one_compact_message_per_line(stream, buffer):
    fp = buffer()
    assert write_ndjson(stream[:50], fp) == 50
    data = fp.getvalue()
    lines = (data if isinstance(data, bytes) else data.encode()).split(b"\n")
    assert lines[-1] == b"" and lines[:-1] == [e.body for e in stream[:50]]
    assert all(orjson.dumps(orjson.loads(line)) == line for line in lines[:-1])
